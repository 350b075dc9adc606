"""Tests of posrec.models.kernel against independent float64 numpy references.

The references rebuild U and L from the raw parameters with explicit loops and evaluate the
written formulas (S·U, causal mask, softmax, times L·V, ...) with dense matrices per example
and head, so they share no code with the efficient JAX forms.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posrec.config_lib import default_config
from posrec.errors import CheckpointError, ConfigError
from posrec.models import attention, kernel, sasrec

T_MAX, T, B, H, D = 8, 6, 3, 2, 4
PARAMS = kernel.PARAMETRIZATIONS
FORMS = kernel.FORMS


def make_cfg(u="toeplitz", lf="full", form="ul", l_norm="none", per_head=True, **kw):
    """config.model.kernel with U parametrization `u` and L parametrization `lf`."""
    cfg = default_config().model.kernel
    cfg.u, cfg.l, cfg.form, cfg.l_norm, cfg.per_head = u, lf, form, l_norm, per_head
    for key, value in kw.items():
        cfg[key] = value
    return cfg


def make_inputs(seed: int, garbage: float | None = None):
    """q, k, v [B, T, H, D]; example 0 full, 1 with 2 pads, 2 with only the last item real."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(B, T, H, D)).astype(np.float32) for _ in range(3))
    valid = np.ones((B, T), bool)
    valid[1, :2] = False
    valid[2, : T - 1] = False
    if garbage is not None:
        for x in (q, k, v):
            x[~valid] = garbage * rng.normal(size=x[~valid].shape)
    return q, k, v, valid


def init_params(cfg, seed: int, scale: float = 0.5):
    """Parameters of a PositionalKernel, moved away from identity by N(0, scale) noise."""
    variables = kernel.PositionalKernel(cfg, T_MAX, H).init(jax.random.PRNGKey(seed), T)
    params = variables.get("params", {})
    rng = np.random.default_rng(seed + 1)
    return jax.tree_util.tree_map(
        lambda p: np.asarray(p) + scale * rng.normal(size=p.shape).astype(np.float32), params
    )


def jax_factors(cfg, params, window: int = T):
    variables = {"params": params} if params else {}
    return kernel.PositionalKernel(cfg, T_MAX, H).apply(variables, window)


def run_jax(cfg, params, q, k, v, valid, bias=None, dropout=lambda w: w):
    factors = jax_factors(cfg, params)
    mask = attention.causal_mask(jnp.asarray(valid))
    return kernel.kernel_attention(
        factors, cfg, jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask,
        jnp.asarray(valid), dropout, None if bias is None else jnp.asarray(bias),
    )


# ---------------------------------------------------------------------------------------------
# Numpy float64 reference.


def ref_factor(cfg, params, factor: str) -> np.ndarray:
    """[Hk, T, T] factor from raw parameters, by explicit loops (Hk = H or 1)."""
    name = cfg[factor]
    hk = H if cfg.per_head else 1
    upper = factor == "u"
    p = {key: np.asarray(val, np.float64) for key, val in params.items()}
    out = np.zeros((hk, T, T))
    if name == "identity":
        out[:] = np.eye(T)
        return out
    if name == "full":
        packed = p[f"{factor}_full"]
        dense = np.zeros((hk, T_MAX, T_MAX))
        idx = 0
        for r in range(T_MAX):
            for c in range(r, T_MAX) if upper else range(r + 1):
                dense[:, r, c] = packed[:, idx]
                idx += 1
        assert idx == packed.shape[1]
        return dense[:, T_MAX - T :, T_MAX - T :]
    if name == "toeplitz":
        coef = p[f"{factor}_toeplitz"]
    else:  # decay
        coef = np.zeros((hk, T))
        gamma = 1.0 / (1.0 + np.exp(-p[f"{factor}_decay_logit"]))
        coef[:, 0] = p[f"{factor}_decay_diag"]
        for d in range(1, T):
            coef[:, d] = p[f"{factor}_decay_amp"] * gamma**d
    for r in range(T):
        for c in range(T):
            d = c - r if upper else r - c
            if d >= 0:
                out[:, r, c] = coef[:, d]
    return out


def ref_normalize(L: np.ndarray, l_norm: str, real: np.ndarray | None = None) -> np.ndarray:
    """Row r normalized over the columns c ≤ r that are real (all of them if `real` is None)."""
    real = np.ones(L.shape[-1], bool) if real is None else real
    out = np.zeros_like(L)
    for h in range(L.shape[0]):
        for r in range(L.shape[-1]):
            cols = [c for c in range(r + 1) if real[c]]
            if not cols:
                continue
            row = L[h, r, cols]
            if l_norm == "none":
                out[h, r, cols] = row
            elif l_norm == "rowsum":
                out[h, r, cols] = row / max(np.abs(row).sum(), 1e-6)
            else:
                e = np.exp(row - row.max())
                out[h, r, cols] = e / e.sum()
    return out


def ref_factors(cfg, params):
    """Raw U and L (before `l_norm`), broadcast to [H, T, T]."""
    U = ref_factor(cfg, params, "u")
    L = ref_factor(cfg, params, "l")
    return np.broadcast_to(U, (H, T, T)), np.broadcast_to(L, (H, T, T))


def masked_softmax(Z: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    A = np.zeros_like(Z)
    for i in range(T):
        if allowed[i].any():
            z = Z[i, allowed[i]]
            e = np.exp(z - z.max())
            A[i, allowed[i]] = e / e.sum()
    return A


def ref_attention(cfg, params, q, k, v, valid, bias=None) -> np.ndarray:
    U_all, L_raw = ref_factors(cfg, params)
    out = np.zeros((B, T, H, D))
    for b in range(B):
        real = valid[b]
        L_all = L_raw if cfg.l == "identity" else ref_normalize(L_raw, cfg.l_norm, real)
        allowed = np.array([[j <= i and real[j] for j in range(T)] for i in range(T)])
        for h in range(H):
            U, L = U_all[h], L_all[h]
            Q, K, V = (x[b, :, h].astype(np.float64) * real[:, None] for x in (q, k, v))
            S = Q @ K.T / math.sqrt(D)
            bias_h = 0.0 if bias is None else bias[h].astype(np.float64)
            if cfg.form == "ul":
                o = masked_softmax(S @ U + bias_h, allowed) @ (L @ V)
            elif cfg.form == "alt1":
                agg = masked_softmax(S @ U + bias_h, allowed) @ V
                agg[~real] = 0.0
                o = L @ agg
            elif cfg.form == "alt2":
                S_tilde = np.where(allowed & real[:, None], S, 0.0)
                o = masked_softmax(L @ S_tilde @ U + bias_h, allowed) @ V
            else:  # mult: A ∝ exp(S) ⊙ C, C = exp(U·L − I)
                C = np.exp(U @ L - np.eye(T))
                W = np.where(allowed, np.exp(S + bias_h) * C, 0.0)
                sums = W.sum(axis=1, keepdims=True)
                o = np.divide(W, sums, out=np.zeros_like(W), where=sums > 0) @ V
            o[~real] = 0.0
            out[b, :, h] = o
    return out


# ---------------------------------------------------------------------------------------------
# Exactness against the reference.

REF_CASES = [
    (form, p, p, l_norm, per_head)
    for form, p in itertools.product(FORMS, PARAMS)
    for l_norm, per_head in (("none", True), ("none", False), ("rowsum", True), ("softmax", False))
] + [
    (form, u, lf, "none", True)
    for form in FORMS
    for u, lf in (
        ("toeplitz", "full"), ("full", "toeplitz"), ("decay", "full"), ("identity", "decay")
    )
]


@pytest.mark.parametrize("form,u,lf,l_norm,per_head", REF_CASES)
def test_matches_numpy_reference(form, u, lf, l_norm, per_head):
    cfg = make_cfg(u, lf, form, l_norm, per_head)
    seed = REF_CASES.index((form, u, lf, l_norm, per_head))
    params = init_params(cfg, seed)
    q, k, v, valid = make_inputs(seed)
    bias = np.random.default_rng(seed + 7).normal(scale=0.5, size=(H, T, T)).astype(np.float32)
    got = np.asarray(run_jax(cfg, params, q, k, v, valid, bias))
    want = ref_attention(cfg, params, q, k, v, valid, bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "u,lf", [("full", "toeplitz"), ("decay", "decay"), ("toeplitz", "full")]
)
@pytest.mark.parametrize("l_norm", kernel.L_NORMS)
def test_factors_and_effective_kernel_match_reference(u, lf, l_norm):
    cfg = make_cfg(u, lf, l_norm=l_norm)
    params = init_params(cfg, 3)
    factors = jax_factors(cfg, params)
    U, L = ref_factors(cfg, params)
    np.testing.assert_allclose(np.asarray(factors.U_HxTxT), U, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(factors.L_HxTxT), L, rtol=1e-6, atol=1e-6)
    # The window's normalized L (what plots show) and per example, over real positions only.
    window_L = np.asarray(kernel.normalize_l(factors.L_HxTxT, l_norm))
    np.testing.assert_allclose(window_L, ref_normalize(L, l_norm), rtol=1e-6, atol=1e-6)
    valid = make_inputs(0)[3]
    per_example = np.asarray(kernel.normalize_l(factors.L_HxTxT, l_norm, jnp.asarray(valid)))
    want_shape = (B, H, T, T) if l_norm != "none" else (H, T, T)
    assert per_example.shape == want_shape
    for b in range(B if l_norm != "none" else 0):
        np.testing.assert_allclose(per_example[b], ref_normalize(L, l_norm, valid[b]),
                                   rtol=1e-6, atol=1e-6)
    for M in (factors.L_HxTxT, window_L, per_example):
        assert np.all(np.triu(np.asarray(M), 1) == 0)
    assert np.all(np.tril(np.asarray(factors.U_HxTxT), -1) == 0)
    np.testing.assert_allclose(np.asarray(kernel.effective_kernel(factors)), U @ L, atol=1e-5)


def test_decay_extrapolates_beyond_training_offsets():
    """The decay family is a closed form in the offset: a long window continues the short one."""
    cfg = make_cfg("decay", "decay", per_head=False)
    params = init_params(cfg, 0)
    long_max = 64
    module = kernel.PositionalKernel(cfg, long_max, H)
    short = module.apply({"params": params}, T)
    long = module.apply({"params": params}, long_max)
    np.testing.assert_allclose(long.U_HxTxT[:, :T, :T], short.U_HxTxT, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(long.U_HxTxT)))


# ---------------------------------------------------------------------------------------------
# Causality and padding.


@pytest.mark.parametrize("l_norm", kernel.L_NORMS)
@pytest.mark.parametrize("form", FORMS)
def test_causal_full_jacobian(form, l_norm):
    """d out[b, i] / d {q, k, v}[b', j] is exactly zero for every j > i, every parametrization."""
    q, k, v, valid = make_inputs(11)
    for p in PARAMS:
        cfg = make_cfg(p, p, form, l_norm, per_head=True)
        params = init_params(cfg, 5)
        factors = jax_factors(cfg, params)
        mask = attention.causal_mask(jnp.asarray(valid))

        def f(q, k, v, cfg=cfg, factors=factors, mask=mask):
            return kernel.kernel_attention(factors, cfg, q, k, v, mask, jnp.asarray(valid))

        jacs = jax.jacfwd(f, argnums=(0, 1, 2))(*map(jnp.asarray, (q, k, v)))
        future = np.arange(T)[None, :] > np.arange(T)[:, None]  # [i, j]: j after i
        for jac in jacs:  # [B, T, H, D, B, T, H, D]
            jac = np.asarray(jac)
            assert np.all(jac.transpose(1, 5, 0, 2, 3, 4, 6, 7)[future] == 0), (form, p)
            assert np.any(jac != 0), (form, p)


@pytest.mark.parametrize("form", FORMS)
def test_padded_inputs_do_not_matter(form):
    """Garbage in padded q/k/v changes no output bit; outputs at padded positions are zero."""
    for u, lf in [(p, p) for p in PARAMS] + [("toeplitz", "full")]:
        cfg = make_cfg(u, lf, form, "rowsum" if lf == "full" else "none")
        params = init_params(cfg, 2)
        clean = np.asarray(run_jax(cfg, params, *make_inputs(4)))
        dirty = np.asarray(run_jax(cfg, params, *make_inputs(4, garbage=1e3)))
        np.testing.assert_array_equal(clean, dirty, err_msg=f"{form} {u} {lf}")
        _, _, _, valid = make_inputs(4)
        assert np.all(clean[~valid] == 0)


# ---------------------------------------------------------------------------------------------
# Identity kernels are plain attention.


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("l_norm", ["none", "rowsum"])
def test_identity_init_is_plain_attention(form, p, l_norm):
    cfg = make_cfg(p, p, form, l_norm, init="identity")
    variables = kernel.PositionalKernel(cfg, T_MAX, H).init(jax.random.PRNGKey(0), T)
    factors = kernel.PositionalKernel(cfg, T_MAX, H).apply(variables, T)
    eye = np.broadcast_to(np.eye(T), (H, T, T))
    np.testing.assert_array_equal(np.asarray(factors.U_HxTxT), eye)
    np.testing.assert_array_equal(np.asarray(factors.L_HxTxT), eye)
    q, k, v, valid = map(jnp.asarray, make_inputs(9))
    mask = attention.causal_mask(valid)
    for bias in (None, jnp.asarray(np.random.default_rng(0).normal(size=(H, T, T)), jnp.float32)):
        got = kernel.kernel_attention(factors, cfg, q, k, v, mask, valid, bias_HxTxT=bias)
        want = attention.plain_attention(q, k, v, mask, bias)
        real = np.asarray(valid)
        np.testing.assert_array_equal(np.asarray(got)[real], np.asarray(want)[real])


def test_softmax_norm_identity_init_is_near_identity():
    cfg = make_cfg("toeplitz", "full", l_norm="softmax", init="identity")
    factors = kernel.PositionalKernel(cfg, T_MAX, H).apply(
        kernel.PositionalKernel(cfg, T_MAX, H).init(jax.random.PRNGKey(0), T_MAX), T_MAX
    )
    L = np.asarray(kernel.normalize_l(factors.L_HxTxT, "softmax"))
    bound = math.exp(kernel.SOFTMAX_DIAG_MARGIN) / (math.exp(kernel.SOFTMAX_DIAG_MARGIN) + 1)
    assert np.all(np.diagonal(L, axis1=1, axis2=2) >= bound - 1e-6)
    np.testing.assert_allclose(L.sum(-1), 1.0, rtol=1e-6)


def small_model_config(positional: str, **kernel_kw):
    config = default_config().model
    config.max_len, config.hidden, config.num_heads, config.num_blocks = T_MAX, 8, 2, 2
    config.dropout = 0.0
    config.positional = positional
    for key, value in kernel_kw.items():
        config.kernel[key] = value
    return config


def test_sasrec_identity_kernel_equals_no_positional_encoding():
    """The whole model with identity-initialised kernels is SASRec without PE (same params)."""
    items = jnp.asarray([[0, 0, 3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8, 9, 7]])
    with_kernel = sasrec.SASRec(small_model_config("kernel", u="toeplitz", l="full"), 10)
    variables = with_kernel.init(jax.random.PRNGKey(0), items)
    base = {k: v for k, v in variables["params"].items() if not k.startswith("kernel")}
    none = sasrec.SASRec(small_model_config("none"), 10)
    got = with_kernel.apply(variables, items)
    want = none.apply({"params": base}, items)
    real = np.asarray(items > 0)
    np.testing.assert_array_equal(np.asarray(got)[real], np.asarray(want)[real])


@pytest.mark.parametrize("form", FORMS)
def test_dropout_acts_on_weights(form):
    cfg = make_cfg("toeplitz", "full", form)
    params = init_params(cfg, 1)
    q, k, v, valid = make_inputs(1)
    base = np.asarray(run_jax(cfg, params, q, k, v, valid))
    halved = np.asarray(run_jax(cfg, params, q, k, v, valid, dropout=lambda w: 0.5 * w))
    np.testing.assert_allclose(halved, 0.5 * base, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Parameter counts.

COUNT_PER_HEAD = {"identity": 0, "full": T_MAX * (T_MAX + 1) // 2, "toeplitz": T_MAX, "decay": 3}


def count_params(config) -> int:
    model = sasrec.SASRec(config, 10)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((1, T_MAX), jnp.int32))
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))


@pytest.mark.parametrize(
    "u,lf",
    [("toeplitz", "full"), ("full", "full"), ("toeplitz", "toeplitz"), ("decay", "identity"),
     ("identity", "identity"), ("full", "decay")],
)
@pytest.mark.parametrize("share", kernel.SHARES)
@pytest.mark.parametrize("per_head", [False, True])
def test_param_count_matches_formula(u, lf, share, per_head):
    config = small_model_config("kernel", u=u, l=lf, share=share, per_head=per_head)
    actual = count_params(config) - count_params(small_model_config("none"))
    heads = config.num_heads if per_head else 1
    blocks = config.num_blocks if share == "layerwise" else 1
    expected = (COUNT_PER_HEAD[u] + COUNT_PER_HEAD[lf]) * heads * blocks
    assert actual == expected
    assert kernel.kernel_param_count(config.kernel, T_MAX, config.num_heads, config.num_blocks) == (
        expected
    )


# ---------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("key", ["u", "l", "form", "init", "l_norm", "share"])
def test_unknown_names_raise_config_error(key):
    cfg = make_cfg(**{key: "bogus"})
    with pytest.raises(ConfigError, match=rf"model\.kernel\.{key}='bogus'.*valid: "):
        kernel.PositionalKernel(cfg, T_MAX, H).init(jax.random.PRNGKey(0), T)
    config = small_model_config("kernel", **{key: "bogus"})
    with pytest.raises(ConfigError, match=key):
        sasrec.SASRec(config, 10).init(jax.random.PRNGKey(0), jnp.ones((1, T_MAX), jnp.int32))


def test_unknown_form_in_kernel_attention():
    cfg = make_cfg("identity", "identity")
    factors = jax_factors(cfg, {})
    cfg.form = "lu"
    q, k, v, valid = map(jnp.asarray, make_inputs(0))
    with pytest.raises(ConfigError, match="form"):
        kernel.kernel_attention(factors, cfg, q, k, v, attention.causal_mask(valid), valid)


def test_window_longer_than_max_len():
    cfg = make_cfg()
    with pytest.raises(ConfigError, match="max_len"):
        kernel.PositionalKernel(cfg, T_MAX, H).init(jax.random.PRNGKey(0), T_MAX + 1)


def test_head_mismatch_and_indivisible_width():
    cfg = make_cfg(per_head=True)
    factors = kernel.PositionalKernel(cfg, T_MAX, 3).apply(
        kernel.PositionalKernel(cfg, T_MAX, 3).init(jax.random.PRNGKey(0), T), T
    )
    q, k, v, valid = map(jnp.asarray, make_inputs(0))
    with pytest.raises(ConfigError, match="head"):
        kernel.kernel_attention(factors, cfg, q, k, v, attention.causal_mask(valid), valid)
    with pytest.raises(ConfigError, match="divisible"):
        kernel.validate_kernel_config(cfg, T_MAX, num_heads=3, hidden=64)


@pytest.mark.parametrize(
    "u,lf", [("full", "identity"), ("identity", "toeplitz"), ("decay", "full")]
)
def test_params_of_another_max_len_or_head_layout(u, lf):
    cfg = make_cfg(u, lf, per_head=True)
    variables = kernel.PositionalKernel(cfg, T_MAX, H).init(jax.random.PRNGKey(0), T)
    with pytest.raises(CheckpointError, match="another window length"):
        kernel.PositionalKernel(cfg, T_MAX + 2, H).apply(variables, T)
    with pytest.raises(CheckpointError, match="per_head"):
        kernel.PositionalKernel(cfg, T_MAX, H + 1).apply(variables, T)
