"""Positional schemes other than the kernel: sinusoidal, RoPE, ALiBi and a learned logit bias.

Every scheme is a pure function of positions (plus, for the learned bias, its parameters) and
enters the model at one of the places `posrec.models.attention` provides:

  * at the input (added to the scaled item embeddings): ``absolute`` (learned, in
    `posrec.models.sasrec`) and ``sinusoidal`` (`sinusoidal_table`);
  * `rotate_qk` on queries and keys: ``rope`` (`rope_qk`);
  * `bias_HxTxT` on the logits: ``alibi`` (`alibi_bias`) and ``learned_bias``
    (`LearnedBias`).

Positions follow the left-padded window of `posrec.models.sasrec`: index T-1 is the most
recent item. Tables indexed by absolute position (sinusoidal; the `full` learned bias) live at
the T_max = `model.max_len` scale and a window of length T uses their last T rows (and
columns), so an item's position code depends on its distance from the end of the sequence,
not on how much padding precedes it. RoPE, ALiBi and the `offset` learned bias depend only
on i - j, so any window gives the same scores for the same real suffix.

Combined with the kernel (`model.kernel.with_pe`), the scheme acts where it acts alone, and
the kernel then acts on what it receives: input PE enters before the first block; RoPE
rotates Q and K first and the kernel then mixes the *rotated* keys (K' = Uᵀ R(K)) and values;
additive biases are added by `kernel.kernel_attention` to its logits in every operator form
(``mult`` adds them next to log C).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from posrec.config_lib import BIAS_KINDS, KERNEL_WITH_PE, POSITIONAL
from posrec.errors import ConfigError
from posrec.models import kernel as kernel_lib

Array = jax.Array

# Wavelength base of sinusoidal PE and RoPE (Vaswani et al. 2017; Su et al. 2021).
ROPE_BASE = 10000.0
SINUSOIDAL_BASE = 10000.0


def pe_scheme(cfg: ml_collections.ConfigDict) -> str:
    """The non-kernel positional scheme in effect for `cfg` (= config.model).

    `positional` itself, or `kernel.with_pe` when `positional == "kernel"`. Raises
    ConfigError for a name this module does not know.
    """
    if cfg.positional == "kernel":
        name, key, valid = cfg.kernel.with_pe, "model.kernel.with_pe", KERNEL_WITH_PE
    else:
        name, key, valid = cfg.positional, "model.positional", POSITIONAL
    if name not in valid:
        raise ConfigError(f"{key}={name!r} is not a known option; valid: {', '.join(valid)}")
    return name


# ---------------------------------------------------------------------------------------------
# Sinusoidal input PE.


def sinusoidal_table(max_len: int, dim: int, base: float = SINUSOIDAL_BASE) -> np.ndarray:
    """[max_len, dim] float32 table PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i).

    ω_i = base^(-2i/dim) (Vaswani et al. 2017, interleaved sin/cos); an odd `dim` drops the
    last cosine. Row p is position p of the T_max window (p = max_len-1 the most recent);
    callers use the last T rows for a window of length T, as with learned absolute PE.
    """
    pos_Px1 = np.arange(max_len, dtype=np.float64)[:, None]
    omega_F = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    angle_PxF = pos_Px1 * omega_F[None]
    table = np.stack([np.sin(angle_PxF), np.cos(angle_PxF)], axis=-1).reshape(max_len, -1)
    return table[:, :dim].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# RoPE.


def apply_rope(x_BxTxHxD: Array, positions_T: Array, base: float = ROPE_BASE) -> Array:
    """Rotate each pair (x_2i, x_2i+1) of every head by the angle p·θ_i, θ_i = base^(-2i/D).

    Su et al. 2021 (RoFormer), interleaved pairs. As complex numbers z_i = x_2i + i·x_2i+1,
    the result is z_i·exp(i·p·θ_i), so ⟨R_p q, R_s k⟩ depends on p and s only through p - s.
    D must be even. Computed in float32, returned in x's dtype.
    """
    D = x_BxTxHxD.shape[-1]
    if D % 2:
        raise ConfigError(f"RoPE needs an even head dimension (hidden / num_heads), got {D}")
    theta_F = base ** (-jnp.arange(0, D, 2, dtype=jnp.float32) / D)
    angle_TxF = positions_T.astype(jnp.float32)[:, None] * theta_F[None]
    cos = jnp.cos(angle_TxF)[None, :, None, :]
    sin = jnp.sin(angle_TxF)[None, :, None, :]
    x = x_BxTxHxD.astype(jnp.float32)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return rotated.reshape(x.shape).astype(x_BxTxHxD.dtype)


def rope_qk(q_BxTxHxD: Array, k_BxTxHxD: Array) -> tuple[Array, Array]:
    """The `rotate_qk` hook: RoPE on queries and keys, position = index in the window."""
    positions_T = jnp.arange(q_BxTxHxD.shape[1])
    return apply_rope(q_BxTxHxD, positions_T), apply_rope(k_BxTxHxD, positions_T)


# ---------------------------------------------------------------------------------------------
# ALiBi.


def alibi_slopes(num_heads: int) -> np.ndarray:
    """[H] head slopes of Press et al. 2022: m_h = 2^(-8h/H), h = 1..H, for H a power of 2.

    Otherwise (as in the reference implementation) the slopes of the nearest lower power of
    two n, followed by every other slope of 2n for the remaining H - n heads.
    """
    if num_heads < 1:
        raise ConfigError(f"model.num_heads must be >= 1, got {num_heads}")

    def power_of_2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_2(n) + power_of_2(2 * n)[0::2][: num_heads - n]
    return np.asarray(slopes, np.float32)


def alibi_bias(num_heads: int, T: int) -> Array:
    """[H, T, T] logit bias -m_h·(i - j) for key j ≤ query i, 0 above the diagonal (masked).

    A Toeplitz lower triangle in the offset i - j, built by `kernel.toeplitz_factor`.
    """
    coef_HxT = -alibi_slopes(num_heads)[:, None] * np.arange(T, dtype=np.float32)[None]
    return kernel_lib.toeplitz_factor(jnp.asarray(coef_HxT), T, upper=False)


# ---------------------------------------------------------------------------------------------
# Learned additive bias.


class LearnedBias(nn.Module):
    """A learned additive bias on one block's attention logits (`model.positional="learned_bias"`).

    The additive counterpart of the positional kernel, as learned positional attention in
    PARec/FPARec (Luo et al. 2024, arXiv 2407.02793). `cfg.kind`:

      * ``offset``: b_h[i - j] for key j ≤ query i: T_max parameters per head, a Toeplitz
        matrix (a relative-position bias), parameter `offset` of shape [H, T_max];
      * ``full``: a free lower triangle b_h[i, j], T_max(T_max+1)/2 parameters per head,
        packed as `np.tril_indices` (parameter `full`), indexed by position in the T_max
        window; a window of length T uses its last T rows and columns.

    H = num_heads if `cfg.per_head` else 1 (broadcast over heads). Parameters start at zero,
    so the model starts as `positional="none"`. Entries above the diagonal are 0 (masked).
    """

    cfg: ml_collections.ConfigDict  # config.model.bias
    max_len: int
    num_heads: int

    @nn.compact
    def __call__(self, T: int) -> Array:
        """Bias [H, T, T] for a window of length T ≤ max_len."""
        cfg = self.cfg
        if cfg.kind not in BIAS_KINDS:
            raise ConfigError(
                f"model.bias.kind={cfg.kind!r} is not a known option; valid: "
                + ", ".join(BIAS_KINDS)
            )
        if not 1 <= T <= self.max_len:
            raise ConfigError(f"window length {T} exceeds model.max_len={self.max_len}")
        H = self.num_heads if cfg.per_head else 1
        zeros = nn.initializers.zeros
        if cfg.kind == "offset":
            coef_HxN = self.param("offset", zeros, (H, self.max_len))
            return kernel_lib.toeplitz_factor(coef_HxN[:, :T], T, upper=False)
        packed_HxN = self.param("full", zeros, (H, self.max_len * (self.max_len + 1) // 2))
        return kernel_lib.full_factor(packed_HxN, self.max_len, T, upper=False)


def bias_param_count(cfg: ml_collections.ConfigDict, max_len: int, num_heads: int) -> int:
    """Parameters of one block's `LearnedBias`, from the formula: (T or T(T+1)/2) × heads."""
    per_head = max_len if cfg.kind == "offset" else max_len * (max_len + 1) // 2
    return per_head * (num_heads if cfg.per_head else 1)
