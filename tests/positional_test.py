"""Tests of posrec.models.positional and its wiring into SASRec.

References are independent of the JAX code: RoPE as a complex multiplication in numpy,
sinusoidal PE by its written formula, ALiBi as hand-written matrices, learned biases filled
entry by entry; model-level checks are invariants (causality through the full Jacobian,
padding invariance, zero init equal to `none`, the kernel and a second scheme both acting).
"""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posrec import config_lib
from posrec.config_lib import default_config
from posrec.errors import ConfigError
from posrec.models import attention, kernel, positional, sasrec

N_ITEMS, T_MAX = 20, 8


def model_config(positional_name: str, with_pe: str = "none", **kw):
    cfg = default_config().model
    cfg.max_len, cfg.hidden, cfg.num_heads, cfg.dropout = T_MAX, 16, 2, 0.0
    cfg.positional = positional_name
    cfg.kernel.with_pe = with_pe
    for key, value in kw.items():
        node, leaf = (cfg, key) if "." not in key else (cfg[key.split(".")[0]], key.split(".")[1])
        node[leaf] = value
    return cfg


def init(cfg, seed: int = 0):
    model = sasrec.SASRec(cfg, N_ITEMS)
    params = model.init(jax.random.key(seed), jnp.ones((1, T_MAX), jnp.int32))["params"]
    return model, params


def perturbed(params, seed: int = 1, scale: float = 0.3):
    """Move learned biases and kernels off their zero/identity init, so they matter."""
    rng = np.random.default_rng(seed)

    def move(path, p):
        top = path[0].key
        if top.startswith("bias_") or top.startswith("kernel"):
            return p + scale * rng.normal(size=p.shape).astype(np.float32)
        return p

    return jax.tree_util.tree_map_with_path(move, params)


# ---------------------------------------------------------------------------------------------
# RoPE.


def numpy_rope(x: np.ndarray, positions: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """Pairs (x_2i, x_2i+1) as complex numbers times exp(i·p·base^(-2i/D)), float64."""
    D = x.shape[-1]
    z = x[..., 0::2].astype(np.float64) + 1j * x[..., 1::2].astype(np.float64)
    theta = base ** (-np.arange(D // 2) * 2.0 / D)
    z = z * np.exp(1j * positions[None, :, None, None] * theta)
    out = np.empty(x.shape, np.float64)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def test_rope_matches_numpy_complex_rotation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3, 8)).astype(np.float32)
    positions = np.array([0, 3, 7, 50, 199])
    got = positional.apply_rope(jnp.asarray(x), jnp.asarray(positions))
    np.testing.assert_allclose(np.asarray(got), numpy_rope(x, positions), rtol=1e-5, atol=1e-5)
    # position 0 is the identity; the rotation preserves each pair's norm
    np.testing.assert_array_equal(np.asarray(got)[:, 0], x[:, 0])
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(got), axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5
    )


def test_rope_scores_depend_only_on_offset():
    """⟨R_i q, R_j k⟩ is unchanged when both positions shift, and changes with i - j."""
    rng = np.random.default_rng(1)
    q, k = (rng.normal(size=(1, 1, 1, 16)).astype(np.float32) for _ in range(2))

    def score(i: int, j: int) -> float:
        qi = positional.apply_rope(jnp.asarray(q), jnp.array([i]))
        kj = positional.apply_rope(jnp.asarray(k), jnp.array([j]))
        return float(jnp.sum(qi * kj))

    for i, j in [(3, 0), (5, 5), (7, 2), (1, 0)]:
        ref = (numpy_rope(q, np.array([i])) * numpy_rope(k, np.array([j]))).sum()
        for shift in (1, 13, 120):
            assert score(i + shift, j + shift) == pytest.approx(score(i, j), abs=1e-4)
            assert score(i + shift, j + shift) == pytest.approx(ref, abs=1e-4)
    offsets = [score(d, 0) for d in range(6)]
    assert min(abs(a - b) for a, b in itertools.combinations(offsets, 2)) > 1e-3


def test_rope_qk_gives_toeplitz_scores():
    """Constant q and k over the window: after `rope_qk` the score matrix is Toeplitz."""
    rng = np.random.default_rng(2)
    T, D = 7, 8
    q = jnp.broadcast_to(jnp.asarray(rng.normal(size=(1, 1, 2, D)), jnp.float32), (1, T, 2, D))
    k = jnp.broadcast_to(jnp.asarray(rng.normal(size=(1, 1, 2, D)), jnp.float32), (1, T, 2, D))
    s = np.asarray(attention.scores(*positional.rope_qk(q, k)))[0]  # [H, T, T]
    for h in range(2):
        for i in range(T):
            for j in range(T):
                assert s[h, i, j] == pytest.approx(s[h, i - min(i, j), j - min(i, j)], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# ALiBi.


def test_alibi_bias_hand_computed():
    dist = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [2, 1, 0, 0], [3, 2, 1, 0]], np.float32)
    # H = 2: slopes 2^-4, 2^-8.
    want2 = np.stack([-dist / 16, -dist / 256])
    np.testing.assert_array_equal(np.asarray(positional.alibi_bias(2, 4)), want2)
    # H = 4: slopes 2^-2, 2^-4, 2^-6, 2^-8.
    want4 = np.stack([-dist / 4, -dist / 16, -dist / 64, -dist / 256])
    np.testing.assert_array_equal(np.asarray(positional.alibi_bias(4, 4)), want4)
    # Non-powers of two follow the reference recipe: H = 3 -> slopes of 2, then 2^-2 from 4.
    np.testing.assert_array_equal(positional.alibi_slopes(3), [1 / 16, 1 / 256, 1 / 4])
    np.testing.assert_array_equal(positional.alibi_slopes(1), [1 / 256])


# ---------------------------------------------------------------------------------------------
# Learned bias.


@pytest.mark.parametrize("kind", config_lib.BIAS_KINDS)
def test_learned_bias_zero_init_equals_none(kind):
    items = jnp.asarray([[0, 0, 3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8, 9, 7]])
    model, params = init(model_config("learned_bias", **{"bias.kind": kind}))
    biases = {k: v for k, v in params.items() if k.startswith("bias_")}
    assert set(biases) == {"bias_0", "bias_1"}
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(biases))
    base = {k: v for k, v in params.items() if not k.startswith("bias_")}
    none_model = sasrec.SASRec(model_config("none"), N_ITEMS)
    got = model.apply({"params": params}, items)
    want = none_model.apply({"params": base}, items)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    moved = model.apply({"params": perturbed(params)}, items)
    assert np.abs(np.asarray(moved - got)).max() > 1e-3


@pytest.mark.parametrize("per_head", [True, False])
def test_learned_bias_offset_is_toeplitz(per_head):
    cfg = model_config("learned_bias", **{"bias.per_head": per_head}).bias
    H = 3 if per_head else 1
    rng = np.random.default_rng(3)
    coef = rng.normal(size=(H, T_MAX)).astype(np.float32)
    mod = positional.LearnedBias(cfg, T_MAX, 3)
    assert mod.init(jax.random.key(0), T_MAX)["params"]["offset"].shape == (H, T_MAX)
    for T in (T_MAX, 5):
        got = np.asarray(mod.apply({"params": {"offset": coef}}, T))
        assert got.shape == (H, T, T)
        for i in range(T):
            for j in range(T):
                np.testing.assert_array_equal(got[:, i, j], coef[:, i - j] if j <= i else 0.0)


def test_learned_bias_full_fills_lower_triangle_by_window_position():
    cfg = model_config("learned_bias", **{"bias.kind": "full"}).bias
    H, n = 2, T_MAX * (T_MAX + 1) // 2
    packed = np.random.default_rng(4).normal(size=(H, n)).astype(np.float32)
    dense = np.zeros((H, T_MAX, T_MAX), np.float32)
    idx = 0
    for i in range(T_MAX):  # row-major lower triangle (np.tril_indices order)
        for j in range(i + 1):
            dense[:, i, j] = packed[:, idx]
            idx += 1
    mod = positional.LearnedBias(cfg, T_MAX, H)
    for T in (T_MAX, 3):
        got = np.asarray(mod.apply({"params": {"full": packed}}, T))
        np.testing.assert_array_equal(got, dense[:, T_MAX - T :, T_MAX - T :])


@pytest.mark.parametrize("kind", config_lib.BIAS_KINDS)
@pytest.mark.parametrize("per_head", [True, False])
def test_learned_bias_param_count(kind, per_head):
    cfg = model_config("learned_bias", **{"bias.kind": kind, "bias.per_head": per_head})
    _, params = init(cfg)
    biases = {k: v for k, v in params.items() if k.startswith("bias_")}
    counted = sum(x.size for x in jax.tree_util.tree_leaves(biases))
    per_block = (T_MAX if kind == "offset" else T_MAX * (T_MAX + 1) // 2) * (2 if per_head else 1)
    assert counted == cfg.num_blocks * per_block
    assert positional.bias_param_count(cfg.bias, T_MAX, cfg.num_heads) == per_block


# ---------------------------------------------------------------------------------------------
# Sinusoidal.


def test_sinusoidal_table_matches_formula():
    for P, C in ((12, 6), (5, 7)):
        got = positional.sinusoidal_table(P, C)
        want = np.zeros((P, C))
        for p in range(P):
            for c in range(C):
                rate = 10000.0 ** (-(c - c % 2) / C)
                want[p, c] = np.sin(p * rate) if c % 2 == 0 else np.cos(p * rate)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_sinusoidal_is_added_at_the_input_indexed_from_the_end():
    """The embedding layer's output is item·√C + PE[T_max-T:] (position T-1 = most recent)."""
    cfg = model_config("sinusoidal")
    model, params = init(cfg)
    items = jnp.asarray([[0, 4, 7, 1, 9]])  # T = 5 < T_max
    def input_dropout(mdl, _):
        return isinstance(mdl, nn.Dropout) and mdl.name == "Dropout_0"

    _, state = model.apply({"params": params}, items, capture_intermediates=input_dropout)
    (x,) = state["intermediates"]["Dropout_0"]["__call__"]
    emb = np.asarray(sasrec.item_table(params))[np.asarray(items[0])] * np.sqrt(cfg.hidden)
    want = emb + positional.sinusoidal_table(T_MAX, cfg.hidden)[T_MAX - 5 :]
    np.testing.assert_allclose(np.asarray(x)[0], want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Kernel combos: order (RoPE before the kernel mixes keys) and both schemes acting.


def test_kernel_with_rope_rotates_before_mixing_keys():
    """Attention with both hooks equals numpy: K' = Uᵀ R(K), softmax(R(Q) K'ᵀ/√D) (L V)."""
    B, T, H, D = 1, 5, 2, 4
    rng = np.random.default_rng(5)
    U = np.triu(rng.normal(size=(H, T, T))).astype(np.float32)
    L = np.tril(rng.normal(size=(H, T, T))).astype(np.float32)
    kcfg = default_config().model.kernel  # u="toeplitz", l="full": names only skip identity
    hook = functools.partial(kernel.kernel_attention, kernel.KernelFactors(U, L), kcfg)
    mod = attention.CausalSelfAttention(H, 0.0, kernel_attention=hook, rotate_qk=positional.rope_qk)
    x = rng.normal(size=(B, T, H * D)).astype(np.float32)
    valid = np.ones((B, T), bool)
    params = mod.init(jax.random.key(0), x, x, valid, False)["params"]
    got = np.asarray(mod.apply({"params": params}, x, x, valid, False))[0]

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    proj = {n: np.einsum("tc,chd->thd", x[0], p[n]["kernel"]) + p[n]["bias"]
            for n in ("query", "key", "value")}
    q = numpy_rope(proj["query"][None], np.arange(T))[0]
    k = numpy_rope(proj["key"][None], np.arange(T))[0]
    out = np.zeros((T, H, D))
    causal = np.tril(np.ones((T, T), bool))
    for h in range(H):
        k_mixed = U[h].T @ k[:, h]
        s = np.where(causal, q[:, h] @ k_mixed.T / np.sqrt(D), -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        out[:, h] = (w / w.sum(-1, keepdims=True)) @ (L[h] @ proj["value"][:, h])
    want = np.einsum("thd,hdc->tc", out, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("with_pe", [w for w in config_lib.KERNEL_WITH_PE if w != "none"])
def test_kernel_and_second_scheme_both_act(with_pe):
    items = jnp.asarray([[0, 0, 3, 1, 4, 1, 5, 9]])
    model, params = init(model_config("kernel", with_pe, **{"kernel.init": "identity_noise"}))
    # Make the second scheme's effect large at init: absolute PE at the scale of the item
    # embeddings, attention outputs at the scale of the residual stream, and (for RoPE, which
    # acts through q·k) sharper attention than the ~0 init scores.
    scale = {"pos_embed": 50.0, "value": 30.0, "out": 30.0}
    if with_pe == "rope":
        scale.update(query=30.0, key=30.0)

    def rescale(path, p):
        names = [entry.key for entry in path]
        return max(scale.get(name, 1.0) for name in names) * p

    params = jax.tree_util.tree_map_with_path(rescale, perturbed(params))
    both = np.asarray(model.apply({"params": params}, items))
    kernel_only, _ = init(model_config("kernel", **{"kernel.init": "identity_noise"}))
    pe_only, _ = init(model_config(with_pe))
    no_pe = {k: v for k, v in params.items() if k != "pos_embed"}
    no_kernel = {k: v for k, v in params.items() if not k.startswith("kernel")}
    assert np.abs(both - np.asarray(kernel_only.apply({"params": no_pe}, items))).max() > 1e-3
    assert np.abs(both - np.asarray(pe_only.apply({"params": no_kernel}, items))).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Causality and padding invariance for every scheme and kernel combo.

SCHEMES = [(p, "none") for p in config_lib.POSITIONAL if p != "kernel"]
COMBOS = [("kernel", w) for w in config_lib.KERNEL_WITH_PE]
FORM_COMBOS = [("kernel", w, f) for w in ("rope", "alibi") for f in ("alt1", "alt2", "mult")]
CASES = [(p, w, "ul") for p, w in SCHEMES + COMBOS] + FORM_COMBOS


def case_model(pos: str, with_pe: str, form: str):
    cfg = model_config(pos, with_pe, **{"kernel.form": form, "kernel.init": "identity_noise"})
    model, params = init(cfg)
    return model, perturbed(params)


@pytest.mark.parametrize("pos,with_pe,form", CASES)
def test_causality_jacobian(pos, with_pe, form):
    """d hidden[t] / d input embedding[s] == 0 for every s > t, > 0 for every real s <= t."""
    model, params = case_model(pos, with_pe, form)
    table = sasrec.item_table(params)
    inputs = jnp.array([[0, 0, 3, 5, 7, 2, 9, 4]], jnp.int32)
    # Each position reads its own embedding row (ids N+1-T .. N), so a per-position delta on
    # those rows perturbs that position's input only.
    ids = jnp.where(inputs > 0, N_ITEMS - T_MAX + 1 + jnp.arange(T_MAX)[None], 0)

    def f(delta_TxC):
        new = table.at[N_ITEMS - T_MAX + 1 :].set(table[inputs[0]] + delta_TxC)
        return model.apply({"params": dict(params, item_embed={"embedding": new})}, ids)[0]

    jac = jax.jacrev(f)(jnp.zeros((T_MAX, table.shape[1])))  # [t_out, C, t_in, C]
    dep = np.abs(np.asarray(jac)).sum(axis=(1, 3))  # [t_out, t_in]
    assert np.all(dep[np.triu_indices(T_MAX, 1)] == 0.0), dep
    assert np.all(dep[2:, 2:][np.tril_indices(T_MAX - 2)] > 0)  # real past inputs do


@pytest.mark.parametrize("pos,with_pe,form", CASES)
def test_padded_states_influence_no_real_position(pos, with_pe, form):
    """A perturbation added to every block's input at each position: real outputs depend on
    it at real positions s <= t only, never at the two padded ones. (The input embedding of
    a pad is zeroed before the blocks, so only a perturbation inside reaches what attention
    does with padded keys: their keys and values are the Dense biases, not zero.)"""
    model, params = case_model(pos, with_pe, form)
    inputs = jnp.array([[0, 0, 3, 5, 7, 2, 9, 4]], jnp.int32)

    def f(delta_TxC):
        def add_delta(next_fun, args, kwargs, context):
            if isinstance(context.module, sasrec.Block) and context.method_name == "__call__":
                args = (args[0] + delta_TxC[None].astype(args[0].dtype), *args[1:])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(add_delta):
            return model.apply({"params": params}, inputs)[0]

    jac = jax.jacrev(f)(jnp.zeros((T_MAX, model.config.hidden)))  # [t_out, C, t_in, C]
    dep = np.abs(np.asarray(jac)).sum(axis=(1, 3))  # [t_out, t_in]
    assert np.all(dep[:, :2] == 0.0), dep[:, :2]
    assert np.all(dep[np.triu_indices(T_MAX, 1)] == 0.0), dep
    assert np.all(dep[2:, 2:][np.tril_indices(T_MAX - 2)] > 0)


@pytest.mark.parametrize("pos,with_pe,form", CASES)
def test_padding_length_does_not_change_outputs(pos, with_pe, form):
    """The same real items in windows of length 8 (3 pads), 6 (1 pad) and 5 (no pad)."""
    model, params = case_model(pos, with_pe, form)
    real = [3, 5, 7, 2, 9]
    outs = [
        np.asarray(model.apply({"params": params}, jnp.asarray([[0] * pads + real])))[0, pads:]
        for pads in (3, 1, 0)
    ]
    for other in outs[1:]:
        np.testing.assert_allclose(other, outs[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("positional", "rotary", "model.positional"),
        ("kernel.with_pe", "learned_bias", "model.kernel.with_pe"),
        ("kernel.with_pe", "bogus", "model.kernel.with_pe"),
        ("bias.kind", "toeplitz", "model.bias.kind"),
    ],
)
def test_unknown_names_raise_config_error(key, value, match):
    config = default_config()
    config.model.positional = "kernel" if key.startswith("kernel") else "learned_bias"
    cfg = model_config(config.model.positional, **{key: value})
    config.model = cfg
    with pytest.raises(ConfigError, match=match):
        config_lib.validate(config)
    with pytest.raises(ConfigError, match=match):
        init(cfg)


def test_rope_needs_an_even_head_dimension():
    config = default_config()
    config.model.update(hidden=6, num_heads=2, positional="rope")
    with pytest.raises(ConfigError, match="even head dimension"):
        config_lib.validate(config)
    config.model.update(positional="kernel")
    config.model.kernel.with_pe = "rope"
    with pytest.raises(ConfigError, match="even head dimension"):
        config_lib.validate(config)
    with pytest.raises(ConfigError, match="even head dimension"):
        positional.apply_rope(jnp.ones((1, 2, 1, 3)), jnp.arange(2))
