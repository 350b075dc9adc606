"""Position-aware kernel attention (Nabiev & Frolov, arXiv 2602.21052; shared/docs/paper.md §2).

A learnable position-to-position kernel C = U·L, split into an upper-triangular U that acts on
the attention logits and a lower-triangular L that acts on the values, modulates causal
attention independently of the semantic (query-key) similarity. Per head, with
S = Q Kᵀ / √D (shape T×T), the operator forms (`cfg.form`) are:

  * ``ul`` (main reading, default):  out = softmax(mask(S·U)) · (L·V).
    Computed exactly as ordinary causal attention on K' = Uᵀ K (K'_j = Σ_{k≤j} U_kj K_k) and
    V' = L V (V'_j = Σ_{k≤j} L_jk V_k): O(T² D) extra per head and example, the same order
    as attention itself; no T×T by T×T product is formed per example.
  * ``alt1``: out = L · (softmax(mask(S·U)) · V): L mixes the aggregated outputs.
  * ``alt2``: out = softmax(mask(L·S̃·U)) · V, where S̃ is S with the future (j > i) and every
    entry of a padded query or key set to zero before the products. L·S̃·U has no cheap
    factorisation (the mask sits between the factors), so this form costs O(T³) per head and
    example, against O(T² D) for the others.
  * ``mult``: A ∝ exp(S) ⊙ C on the causal support, with the positive kernel
    C = exp(U·L − I): the factors are read in log space relative to their identity value, i.e.
    log C = U·L − I is added to the logits. Identity factors give C ≡ 1 (plain attention,
    exactly) and C > 0 for any parameters. U·L is formed once per call (O(H T³), independent
    of the batch).

All forms are causal: (S·U)_ij uses keys k ≤ j and (L·V)_j values k ≤ j (see paper.md §2).
Padded positions (valid_BxT False) are zeroed in Q, K and V before any mixing with U or L
(a pad key would otherwise leak into real positions through Uᵀ K or L V), and outputs at padded
query positions are returned as zeros, so no output depends on padded inputs and every
output at position t is independent of inputs after t.

Factor parametrizations (`cfg.u`, `cfg.l`), for a window of length T ≤ T_max = max_len,
with H = num_heads if `cfg.per_head` else 1 (then broadcast over heads):

  * ``identity``: U = I or L = I, no parameters. It is left unchanged by every `l_norm` (it is
    a fixed point of `rowsum`, and the limit of a dominant diagonal logit under `softmax`).
  * ``full``: a dense triangle of T_max(T_max+1)/2 free entries per head, stored packed in
    row-major triangle order (`np.triu_indices` for U, `np.tril_indices` for L), indexed by
    absolute position in the left-padded window (index T_max-1 = the most recent item).
    A window of length T uses the last T rows and columns.
  * ``toeplitz``: one coefficient per offset, T_max per head: U_kj = u_{j-k} (j ≥ k) and
    L_jk = l_{j-k} (j ≥ k), a causal 1-D convolution over positions. A window of length T uses
    the first T offsets.
  * ``decay``: a Toeplitz kernel with 3 parameters per head (our addition, not in the paper):
    c_0 = w (the diagonal) and c_d = a · γ^d for offsets d ≥ 1, with γ = sigmoid(θ) ∈ (0, 1).
    Defined for any offset, so its parameters fit a model of any max_len (a PositionalKernel
    built with a longer max_len continues the short one exactly). Identity init is w = 1, a = 0
    (exact), θ = logit(0.9) (a slow decay, half-life ≈ 6.6 positions, once a moves off 0).
    Parameters are named `<f>_decay_diag`, `<f>_decay_amp`, `<f>_decay_logit`.

Initialization (`cfg.init`): ``identity`` makes U = L = I exactly (the model then starts as
SASRec without positional embeddings), except under `l_norm="softmax"` (below);
``identity_noise`` adds N(0, cfg.init_noise) to every free parameter.

Normalization of L (`cfg.l_norm`), applied by `kernel_attention` to each example's rows of
L over their real causal support, the positions k ≤ j that hold an item (padding excluded).
The normalized L is then the same for any window length and any amount of left padding, so
a user's outputs do not depend on which other users share the batch (evaluation windows
follow the batch's longest history) or on the training bucket. It costs a per-example
[B, H, T, T] L (and, for ``mult``, a per-example C: O(B H T³)); `l_norm="none"` keeps the
shared [H, T, T] factor.

  * ``none``;
  * ``rowsum``: L_jk / max(Σ_{k'} |L_jk'|, 1e-6), the sum over the real support of row j.
    The denominator is the absolute row sum, so the result equals the plain row-sum
    normalization whenever entries are non-negative (for instance near identity init,
    which it leaves exactly at I) but cannot divide by a sum that crosses zero when signs
    mix; the floor guards an all-zero row.
  * ``softmax``: row softmax of the raw entries, read as logits, over the real support
    (0 elsewhere). Exact identity would need an infinite diagonal logit (and would have
    zero gradient), so identity init sets the diagonal logit to log(T_max) + 4 and the
    others to 0: the diagonal weight is then ≥ e⁴/(e⁴+1) ≈ 0.982 in every row, and the rest
    is spread uniformly over earlier positions.

`PositionalKernel` returns the raw factors; `normalize_l` without a validity mask gives the
L of a full window (every position real), which is what `posrec.plot_kernels` shows.

Sharing (`cfg.share`: ``layerwise`` or ``shared``) is applied by `posrec.models.sasrec`, which
builds one `PositionalKernel` per block or one for all blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from posrec.errors import CheckpointError, ConfigError
from posrec.models import attention

Array = jax.Array

PARAMETRIZATIONS = ("identity", "full", "toeplitz", "decay")
FORMS = ("ul", "alt1", "alt2", "mult")
INITS = ("identity", "identity_noise")
L_NORMS = ("none", "rowsum", "softmax")
SHARES = ("layerwise", "shared")

ROWSUM_EPS = 1e-6
SOFTMAX_DIAG_MARGIN = 4.0  # identity init under l_norm="softmax": diag logit log(T_max) + this
DECAY_INIT_GAMMA = 0.9  # initial decay rate γ of the `decay` family
DECAY_PARAMS_PER_HEAD = 3  # diag, amp, logit

# Kernel mixing is a handful of small matmuls; keep them in full fp32 even where the default
# matmul precision is lower (TF32 on recent GPUs), so identity factors stay exact.
_PRECISION = jax.lax.Precision.HIGHEST


class KernelFactors(NamedTuple):
    """The factors of C = U·L for one window; H is num_heads, or 1 (broadcast over heads)."""

    U_HxTxT: Array  # noqa: N815  upper triangular, acts on the logits (keys)
    L_HxTxT: Array  # noqa: N815  lower triangular, acts on the values


def _check_name(cfg: ml_collections.ConfigDict, key: str, valid: tuple[str, ...]) -> None:
    value = cfg[key]
    if value not in valid:
        raise ConfigError(
            f"model.kernel.{key}={value!r} is not a known option; valid: {', '.join(valid)}"
        )


def validate_kernel_config(
    cfg: ml_collections.ConfigDict,
    max_len: int,
    num_heads: int,
    hidden: int | None = None,
) -> None:
    """Raise ConfigError for any unknown or impossible `model.kernel` setting.

    `hidden` (the model width) is optional: when given, per-head kernels also require that
    the head count divides it.
    """
    for key, valid in (
        ("u", PARAMETRIZATIONS),
        ("l", PARAMETRIZATIONS),
        ("form", FORMS),
        ("init", INITS),
        ("l_norm", L_NORMS),
        ("share", SHARES),
    ):
        _check_name(cfg, key, valid)
    if max_len < 1:
        raise ConfigError(f"model.max_len must be >= 1 for a positional kernel, got {max_len}")
    if num_heads < 1:
        raise ConfigError(f"model.num_heads must be >= 1, got {num_heads}")
    if cfg.init == "identity_noise" and cfg.init_noise < 0:
        raise ConfigError(f"model.kernel.init_noise must be >= 0, got {cfg.init_noise}")
    if hidden is not None and hidden % num_heads:
        raise ConfigError(
            f"model.hidden={hidden} is not divisible by model.num_heads={num_heads}"
            + (" (needed by per-head kernels)" if cfg.per_head else "")
        )


def factor_param_count(name: str, max_len: int) -> int:
    """Free parameters of one factor for one head: 0, T(T+1)/2, T or 3."""
    return {
        "identity": 0,
        "full": max_len * (max_len + 1) // 2,
        "toeplitz": max_len,
        "decay": DECAY_PARAMS_PER_HEAD,
    }[name]


def kernel_param_count(
    cfg: ml_collections.ConfigDict, max_len: int, num_heads: int, num_blocks: int
) -> int:
    """Kernel parameters of a whole model, from the formulas (not from a parameter tree).

    (count(U) + count(L)) × (num_heads if per_head) × (num_blocks if layerwise), with
    count = 0 (identity), T(T+1)/2 (full), T (toeplitz), 3 (decay), T = max_len.
    """
    for key, valid in (("u", PARAMETRIZATIONS), ("l", PARAMETRIZATIONS), ("share", SHARES)):
        _check_name(cfg, key, valid)
    per_factor = factor_param_count(cfg.u, max_len) + factor_param_count(cfg.l, max_len)
    heads = num_heads if cfg.per_head else 1
    blocks = num_blocks if cfg.share == "layerwise" else 1
    return per_factor * heads * blocks


# ---------------------------------------------------------------------------------------------
# Factor construction (pure functions of the parameters).


def _offsets(T: int, upper: bool) -> np.ndarray:
    """[T, T] offset d of each entry on the causal side (-1 elsewhere): j-k for U_kj, j-k for
    L_jk (row j, column k)."""
    row, col = np.indices((T, T))
    d = (col - row) if upper else (row - col)
    return np.where(d >= 0, d, -1)


def toeplitz_factor(coef_HxN: Array, T: int, upper: bool) -> Array:
    """[H, T, T] triangular Toeplitz matrix from per-offset coefficients (first T are used)."""
    d = _offsets(T, upper)
    gathered = coef_HxN[:, np.maximum(d, 0)]
    return jnp.where(d >= 0, gathered, 0.0)


def full_factor(packed_HxN: Array, max_len: int, T: int, upper: bool) -> Array:
    """[H, T, T] triangle from its packed entries: the last T rows/cols of the T_max window."""
    rows, cols = np.triu_indices(max_len) if upper else np.tril_indices(max_len)
    H = packed_HxN.shape[0]
    dense = jnp.zeros((H, max_len, max_len), packed_HxN.dtype).at[:, rows, cols].set(packed_HxN)
    return dense[:, max_len - T :, max_len - T :]


def decay_coefficients(diag_H: Array, amp_H: Array, logit_H: Array, T: int) -> Array:
    """[H, T] coefficients c_0 = diag, c_d = amp · sigmoid(logit)^d (d ≥ 1)."""
    d = jnp.arange(T, dtype=jnp.float32)
    tail = amp_H[:, None] * jnp.exp(d[None, :] * jax.nn.log_sigmoid(logit_H)[:, None])
    return jnp.where(d[None, :] == 0, diag_H[:, None], tail)


def normalize_l(L_HxTxT: Array, l_norm: str, valid_BxT: Array | None = None) -> Array:
    """Row normalization of a lower-triangular L over its real causal support (module doc).

    With `valid_BxT`, per example: [B, H, T, T], rows normalized over the positions k ≤ j
    that hold an item. Without it, over the whole causal triangle of the window: [H, T, T].
    """
    if l_norm == "none":
        return L_HxTxT
    T = L_HxTxT.shape[-1]
    support = np.tril(np.ones((T, T), dtype=bool))
    if valid_BxT is not None:
        support = support & valid_BxT[:, None, None, :]  # [B, 1, T, T]
        L_HxTxT = L_HxTxT[None]
    if l_norm == "rowsum":
        L = jnp.where(support, L_HxTxT, 0.0)
        denom = jnp.sum(jnp.abs(L), axis=-1, keepdims=True)
        return L / jnp.maximum(denom, ROWSUM_EPS)
    if l_norm == "softmax":
        logits = jnp.where(support, L_HxTxT, attention.NEG_INF)
        return jnp.where(support, jax.nn.softmax(logits, axis=-1), 0.0)
    raise ConfigError(f"model.kernel.l_norm={l_norm!r} is not a known option; valid: {L_NORMS}")


def _identity_value(factor: str, cfg: ml_collections.ConfigDict, max_len: int) -> float:
    """Value of the diagonal parameter at identity init (a logit under softmax normalization)."""
    if factor == "l" and cfg.l_norm == "softmax":
        return math.log(max_len) + SOFTMAX_DIAG_MARGIN
    return 1.0


def _noisy(base: np.ndarray, cfg: ml_collections.ConfigDict) -> Callable:
    """A flax initializer returning `base` (+ N(0, init_noise) under identity_noise)."""

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        value = jnp.asarray(np.broadcast_to(base, shape), dtype)
        if cfg.init == "identity_noise":
            value = value + cfg.init_noise * jax.random.normal(key, shape, dtype)
        return value

    return init


def _build_factor(
    param: Callable, factor: str, cfg: ml_collections.ConfigDict, max_len: int, H: int, T: int
) -> Array:
    """[H, T, T] factor U (factor="u") or L ("l"), declaring its parameters through `param`."""
    name = cfg[factor]
    upper = factor == "u"
    one = _identity_value(factor, cfg, max_len)
    if name == "identity":
        return jnp.broadcast_to(jnp.eye(T, dtype=jnp.float32), (H, T, T))
    if name == "full":
        rows, cols = np.triu_indices(max_len) if upper else np.tril_indices(max_len)
        base = np.where(rows == cols, one, 0.0).astype(np.float32)
        n = max_len * (max_len + 1) // 2
        packed = param(f"{factor}_full", _noisy(base, cfg), (H, n))
        return full_factor(packed, max_len, T, upper)
    if name == "toeplitz":
        base = np.zeros(max_len, np.float32)
        base[0] = one
        coef = param(f"{factor}_toeplitz", _noisy(base, cfg), (H, max_len))
        return toeplitz_factor(coef[:, :T], T, upper)
    if name == "decay":
        logit0 = math.log(DECAY_INIT_GAMMA / (1.0 - DECAY_INIT_GAMMA))
        diag = param(f"{factor}_decay_diag", _noisy(np.float32(one), cfg), (H,))
        amp = param(f"{factor}_decay_amp", _noisy(np.float32(0.0), cfg), (H,))
        logit = param(f"{factor}_decay_logit", _noisy(np.float32(logit0), cfg), (H,))
        return toeplitz_factor(decay_coefficients(diag, amp, logit, T), T, upper)
    raise ConfigError(
        f"model.kernel.{factor}={name!r} is not a known option; valid: {PARAMETRIZATIONS}"
    )


class PositionalKernel(nn.Module):
    """Learnable factors U (upper) and L (lower) of one block's positional kernel.

    Parameters live at the T_max = `max_len` scale; calling with a window length T ≤ T_max
    returns the factors for that window (Full: last T rows/cols, i.e. the most recent
    positions; Toeplitz/decay: first T offsets). Built once per forward pass, shared by the
    whole batch.
    """

    cfg: ml_collections.ConfigDict  # config.model.kernel
    max_len: int
    num_heads: int

    @nn.compact
    def __call__(self, T: int) -> KernelFactors:
        """Raw factors U, L of shape [H, T, T], H = num_heads if per_head else 1 (L before
        `l_norm`, which `kernel_attention` applies per example)."""
        cfg = self.cfg
        validate_kernel_config(cfg, self.max_len, self.num_heads)
        if not 1 <= T <= self.max_len:
            raise ConfigError(
                f"window length {T} exceeds model.max_len={self.max_len} of the kernel"
            )
        H = self.num_heads if cfg.per_head else 1
        U = _build_factor(self._param, "u", cfg, self.max_len, H, T)
        L = _build_factor(self._param, "l", cfg, self.max_len, H, T)
        return KernelFactors(U, L)

    def _param(self, name: str, init: Callable, shape: tuple[int, ...]) -> Array:
        """`self.param`, with a clear error for parameters of another max_len or head count."""
        if self.has_variable("params", name):
            got = tuple(self.get_variable("params", name).shape)
            if got != tuple(shape):
                raise CheckpointError(
                    f"kernel parameter {name!r} has shape {got} but model.max_len="
                    f"{self.max_len}, num_heads={self.num_heads}, per_head={self.cfg.per_head} "
                    f"need {tuple(shape)}: the parameters come from a run with another window "
                    "length or head layout; use that run's config"
                )
        return self.param(name, init, shape)


def effective_kernel(factors: KernelFactors) -> Array:
    """C = U·L (for plots and the `mult` form); C_ij sums over k ≥ max(i, j).

    [H, T, T], or [B, H, T, T] for a per-example (normalized) L of shape [B, H, T, T].
    """
    return jnp.einsum(
        "hik,...hkj->...hij", factors.U_HxTxT, factors.L_HxTxT, precision=_PRECISION
    )


def _mix_keys(U_HxTxT: Array, k_BxTxHxD: Array) -> Array:
    """K' = Uᵀ K per head: K'_j = Σ_k U_kj K_k (only k ≤ j, U is upper triangular)."""
    return jnp.einsum("hkj,bkhd->bjhd", U_HxTxT, k_BxTxHxD, precision=_PRECISION)


def _mix_values(L: Array, v_BxTxHxD: Array) -> Array:
    """V' = L V per head: V'_j = Σ_k L_jk V_k (only k ≤ j, L is lower triangular).

    L is [H, T, T], or [B, H, T, T] when normalized per example."""
    eq = "bhjk,bkhd->bjhd" if L.ndim == 4 else "hjk,bkhd->bjhd"
    return jnp.einsum(eq, L, v_BxTxHxD, precision=_PRECISION)


def kernel_attention(
    factors: KernelFactors,
    cfg: ml_collections.ConfigDict,
    q_BxTxHxD: Array,
    k_BxTxHxD: Array,
    v_BxTxHxD: Array,
    mask_Bx1xTxT: Array,
    valid_BxT: Array,
    dropout: Callable[[Array], Array] = lambda w: w,
    bias_HxTxT: Array | None = None,
    last_only: bool = False,
) -> Array:
    """Causal multi-head attention modulated by the positional kernel; out is [B, T, H, D].

    With `last_only`, only the output of the last query (the most recent position) is
    computed, as [B, 1, H, D] (scoring needs nothing else). For ``ul`` it is then read right
    to left, w = softmax((q Kᵀ) U), out = (w L) V: O(T² + T D) per head instead of O(T² D),
    because K' = Uᵀ K and V' = L V are never formed. ``mult`` uses the last rows of its
    logits; ``alt1`` and ``alt2`` mix rows after or inside the softmax, so they compute every
    row and keep the last.

    `cfg.form` selects the operator (module doc). `mask_Bx1xTxT` is the causal ∧ real-key
    mask of `attention.causal_mask`; `dropout` acts on the softmax weights; `bias_HxTxT`, an
    optional additive logit bias from another positional scheme, is added to the logits.
    Outputs at padded query positions are zero. Factors named `identity` in `cfg` are skipped
    rather than multiplied, so identity kernels give plain attention bit for bit.
    """
    _check_name(cfg, "form", FORMS)
    B, T, H, D = q_BxTxHxD.shape
    U, L = factors
    for name, f in (("U", U), ("L", L)):
        if f.ndim != 3 or f.shape[0] not in (1, H) or f.shape[1:] != (T, T):
            raise ConfigError(
                f"kernel factor {name} has shape {f.shape}, expected [1 or {H}, {T}, {T}] "
                "(per-head kernels need the attention's head count and window length)"
            )
    U = jnp.broadcast_to(U, (H, T, T))
    L = jnp.broadcast_to(L, (H, T, T))
    u_id, l_id = cfg.u == "identity", cfg.l == "identity"
    if not l_id:
        L = normalize_l(L, cfg.l_norm, valid_BxT)  # [B, H, T, T] unless l_norm == "none"
    real_BxTx1x1 = valid_BxT[:, :, None, None]
    q = jnp.where(real_BxTx1x1, q_BxTxHxD, 0)
    k = jnp.where(real_BxTx1x1, k_BxTxHxD, 0)
    v = jnp.where(real_BxTx1x1, v_BxTxHxD, 0)
    if cfg.form == "mult" and not (u_id and l_id):  # the kernel enters as a log-bias
        log_c = effective_kernel(KernelFactors(U, L)) - jnp.eye(T, dtype=U.dtype)
        bias_HxTxT = log_c if bias_HxTxT is None else bias_HxTxT + log_c

    if last_only and cfg.form in ("ul", "mult"):
        return _last_query_attention(U, L, cfg, q[:, -1:], k, v, mask_Bx1xTxT[:, :, -1:],
                                     valid_BxT, dropout, bias_HxTxT).astype(v_BxTxHxD.dtype)
    if cfg.form == "ul":
        k_mixed = k if u_id else _mix_keys(U, k).astype(k.dtype)
        v_mixed = v if l_id else _mix_values(L, v).astype(v.dtype)
        out = attention.plain_attention(q, k_mixed, v_mixed, mask_Bx1xTxT, bias_HxTxT, dropout)
    elif cfg.form == "alt1":
        k_mixed = k if u_id else _mix_keys(U, k).astype(k.dtype)
        out = attention.plain_attention(q, k_mixed, v, mask_Bx1xTxT, bias_HxTxT, dropout)
        # Padded rows attend to nothing real; zero them before L mixes rows together.
        out = jnp.where(real_BxTx1x1, out, 0)
        out = out if l_id else _mix_values(L, out).astype(v.dtype)
    elif cfg.form == "alt2":
        # O(T³) per head and example: the mask sits between L and U.
        real_query_Bx1xTx1 = valid_BxT[:, None, :, None]
        s = attention.scores(q, k).astype(jnp.float32)
        s = jnp.where(mask_Bx1xTxT & real_query_Bx1xTx1, s, 0.0)
        if not l_id:
            eq = "bhik,bhkj->bhij" if L.ndim == 4 else "hik,bhkj->bhij"
            s = jnp.einsum(eq, L, s, precision=_PRECISION)
        if not u_id:
            s = jnp.einsum("bhik,hkj->bhij", s, U, precision=_PRECISION)
        if bias_HxTxT is not None:
            s = s + bias_HxTxT
        out = attention.aggregate(dropout(attention.attention_weights(s, mask_Bx1xTxT)), v)
    else:  # mult: its log-kernel is already in bias_HxTxT
        out = attention.plain_attention(q, k, v, mask_Bx1xTxT, bias_HxTxT, dropout)
    out = jnp.where(real_BxTx1x1, out, 0).astype(v_BxTxHxD.dtype)
    return out[:, -1:] if last_only else out


def _last_query_attention(U_HxTxT, L_HxTxT, cfg, q_Bx1xHxD, k_BxTxHxD, v_BxTxHxD,
                          mask_Bx1x1xT, valid_BxT, dropout, bias_HxTxT) -> Array:
    """`kernel_attention` of the last query only, forms ``ul`` and ``mult``: [B, 1, H, D].

    q, k, v are already zero at padded positions; for ``mult`` `bias_HxTxT` already holds the
    log-kernel. For ``ul``, logits (q·K'_j) = Σ_k (q·K_k) U_kj and Σ_j w_j V'_j =
    Σ_k (Σ_j w_j L_jk) V_k, so U and L act on [B, H, 1, T] rows. L, and the bias of
    ``mult``, carry a leading batch axis when L is normalized per example.
    """
    if bias_HxTxT is not None:
        bias_HxTxT = bias_HxTxT[..., -1:, :]
    if cfg.form == "mult":
        out = attention.plain_attention(q_Bx1xHxD, k_BxTxHxD, v_BxTxHxD, mask_Bx1x1xT,
                                        bias_HxTxT, dropout)
    else:
        s_BxHx1xT = attention.scores(q_Bx1xHxD, k_BxTxHxD)
        if cfg.u != "identity":
            s_BxHx1xT = jnp.einsum("bhqk,hkj->bhqj", s_BxHx1xT.astype(jnp.float32), U_HxTxT,
                                   precision=_PRECISION)
        if bias_HxTxT is not None:
            s_BxHx1xT = s_BxHx1xT + bias_HxTxT
        w_BxHx1xT = dropout(attention.attention_weights(s_BxHx1xT, mask_Bx1x1xT))
        if cfg.l != "identity":
            eq = "bhqj,bhjk->bhqk" if L_HxTxT.ndim == 4 else "bhqj,hjk->bhqk"
            w_BxHx1xT = jnp.einsum(eq, w_BxHx1xT, L_HxTxT, precision=_PRECISION)
        out = attention.aggregate(w_BxHx1xT, v_BxTxHxD)
    return jnp.where(valid_BxT[:, -1:, None, None], out, 0)
