"""SASRec invariants: causality, padding invariance, tied output, positional schemes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posrec.config_lib import default_config
from posrec.models import sasrec

N_ITEMS, T = 20, 8


def make(positional="absolute", **kernel):
    cfg = default_config().model
    cfg.max_len, cfg.hidden, cfg.num_heads, cfg.dropout = T, 16, 2, 0.0
    cfg.positional = positional
    cfg.kernel.update(kernel)
    model = sasrec.SASRec(cfg, N_ITEMS)
    params = model.init(jax.random.key(0), jnp.ones((1, T), jnp.int32))["params"]
    return model, params


POSITIONALS = ["absolute", "none"]


@pytest.mark.parametrize("positional", POSITIONALS)
def test_causality_jacobian(positional):
    """d hidden[t] / d input embedding[s] == 0 for every s > t (the whole Jacobian)."""
    model, params = make(positional)
    table = sasrec.item_table(params)
    inputs = jnp.array([[0, 0, 3, 5, 7, 2, 9, 4]], jnp.int32)
    # Give every position its own embedding row (ids N+1-T .. N) so a per-position delta
    # on those rows is a perturbation of that position's input only.
    ids = jnp.where(inputs > 0, N_ITEMS - T + 1 + jnp.arange(T)[None], 0)

    def f(delta_TxC):
        rows = table[inputs[0]] + delta_TxC
        new = table.at[N_ITEMS - T + 1 :].set(rows)
        return model.apply({"params": dict(params, item_embed={"embedding": new})}, ids)[0]

    jac = jax.jacrev(f)(jnp.zeros((T, table.shape[1])))  # [t_out, C, t_in, C]
    dep = np.abs(np.asarray(jac)).sum(axis=(1, 3))  # [t_out, t_in]
    assert np.all(dep[np.triu_indices(T, 1)] == 0.0), dep
    assert dep[T - 1, 2] > 0  # the last output does depend on the first real item


@pytest.mark.parametrize("positional", POSITIONALS)
def test_padding_does_not_change_outputs(positional):
    model, params = make(positional)
    a = jnp.array([[0, 0, 0, 3, 5, 7, 2, 9]], jnp.int32)
    out_a = model.apply({"params": params}, a)
    # same real suffix in a shorter window: last positions agree (absolute PE indexes from the end)
    short = a[:, 3:]
    out_s = model.apply({"params": params}, short)
    np.testing.assert_allclose(out_a[:, 3:], out_s, atol=1e-5)
    # padded positions carry nothing: the same state (the final LayerNorm of zero) whatever
    # the real items are
    other = model.apply({"params": params}, jnp.array([[0, 0, 0, 1, 4, 6, 8, 2]], jnp.int32))
    np.testing.assert_array_equal(out_a[0, :3], other[0, :3])
    assert np.abs(np.asarray(out_a[0, 3:] - other[0, 3:])).min() > 0


def test_none_is_permutation_equivariant_at_last_position_only_through_mask():
    """Without PE, the last output depends on the set of items, not their order."""
    model, params = make("none")
    a = jnp.array([[0, 3, 5, 7, 2, 9, 4, 1]], jnp.int32)
    b = jnp.array([[0, 5, 3, 2, 7, 9, 4, 1]], jnp.int32)  # same items before the last
    ha = model.apply({"params": params}, a)[:, -1]
    hb = model.apply({"params": params}, b)[:, -1]
    np.testing.assert_allclose(ha, hb, atol=1e-5)
    model, params = make("absolute")
    ha = model.apply({"params": params}, a)[:, -1]
    hb = model.apply({"params": params}, b)[:, -1]
    assert np.abs(np.asarray(ha - hb)).max() > 1e-4


def test_dropout_only_in_training():
    model, params = make("absolute")
    cfg = model.config.copy_and_resolve_references()
    cfg.dropout = 0.5
    model = sasrec.SASRec(cfg, N_ITEMS)
    x = jnp.array([[0, 3, 5, 7, 2, 9, 4, 1]], jnp.int32)
    e1 = model.apply({"params": params}, x)
    e2 = model.apply({"params": params}, x)
    np.testing.assert_array_equal(e1, e2)
    t1 = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert np.abs(np.asarray(t1 - e1)).max() > 0


@pytest.mark.parametrize("positional", ["absolute", "kernel", "rope", "learned_bias"])
def test_bfloat16_compute_matches_float32(positional):
    """model.dtype=bfloat16 (issue 7): same parameters (float32), bfloat16 activations, outputs
    within bfloat16 rounding of the float32 model; a training step stays finite."""
    from posrec import losses, train

    model32, params = make(positional, init="identity_noise", init_noise=0.2)
    cfg16 = model32.config.copy_and_resolve_references()
    cfg16.dtype = "bfloat16"
    model16 = sasrec.SASRec(cfg16, N_ITEMS)
    assert jax.tree.map(jnp.shape, model16.init(jax.random.key(0), jnp.ones((1, T), jnp.int32))[
        "params"]) == jax.tree.map(jnp.shape, params)
    x = np.array([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9]], np.int32)
    h32 = model32.apply({"params": params}, x)
    h16 = model16.apply({"params": params}, x)
    assert h32.dtype == jnp.float32 and h16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(h16, np.float32), np.asarray(h32), atol=0.1, rtol=0.05)
    config = default_config()
    config.model = cfg16
    state = train.init_state(config, model16)
    step = jax.jit(lambda s, b: train.train_step(
        s, b, jax.random.key(1), model=model16, loss_fn=losses.make_loss(config.train, None)))
    new, m = step(state, {"inputs": x, "targets": np.roll(x, -1, axis=1)})
    assert np.isfinite(float(m["loss"])) and bool(m["finite"])
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new.params))


LAST_ONLY_CASES = [
    ("absolute", {}), ("none", {}), ("sinusoidal", {}), ("rope", {}), ("alibi", {}),
    ("learned_bias", {}),
    *[("kernel", dict(form=form)) for form in ("ul", "alt1", "alt2", "mult")],
    ("kernel", dict(u="full", l="identity")), ("kernel", dict(u="identity", l="toeplitz")),
    ("kernel", dict(form="mult", u="identity", l="full")),
    ("kernel", dict(with_pe="rope")), ("kernel", dict(with_pe="alibi", share="shared")),
]


@pytest.mark.parametrize("positional, kernel", LAST_ONLY_CASES)
def test_last_only_equals_the_last_row_of_the_full_forward(positional, kernel):
    """The scoring path (final block computes one query row; `ul` reads U, L right to left)
    against the full forward, with random (non-identity) kernels, biases and padding."""
    model, params = make(positional, **kernel)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(  # move every parameter off its (identity, zero) init
        tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    inputs = jnp.array([[0, 0, 0, 3, 5, 7, 2, 9], [1, 4, 6, 8, 10, 12, 14, 16],
                        [0, 0, 0, 0, 0, 0, 0, 11]], jnp.int32)
    for window in (inputs, inputs[:, -5:]):  # full and a bucket-cut window
        full = model.apply({"params": params}, window)[:, -1]
        last = model.apply({"params": params}, window, last_only=True)
        assert last.shape == full.shape
        np.testing.assert_allclose(last, full, rtol=1e-5, atol=1e-5)


WINDOW_CASES = [
    *[(name, {}) for name in ("absolute", "sinusoidal", "none", "rope", "alibi", "learned_bias")],
    *[("kernel", dict(form=form, l_norm=norm)) for form in ("ul", "alt1", "alt2", "mult")
      for norm in ("none", "rowsum", "softmax")],
    ("kernel", dict(l="toeplitz", l_norm="rowsum")), ("kernel", dict(l="decay", l_norm="softmax")),
]


@pytest.mark.parametrize("positional, kernel", WINDOW_CASES)
def test_outputs_do_not_depend_on_the_window_length(positional, kernel):
    """A user's outputs are the same in a full window and in a cut one (training buckets,
    evaluation windows sized by the batch's longest history), for trained-looking (non-init)
    parameters: every scheme indexes positions from the most recent item and `l_norm`
    normalizes over real positions only."""
    model, params = make(positional, **kernel)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(
        tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    inputs = jnp.array([[0, 0, 0, 3, 5, 7, 2, 9], [0, 0, 0, 0, 0, 6, 8, 10],
                        [0, 0, 0, 0, 0, 0, 0, 11]], jnp.int32)
    full = model.apply({"params": params}, inputs)[:, -5:]
    cut = model.apply({"params": params}, inputs[:, -5:])
    real = np.asarray(inputs[:, -5:] > 0)
    np.testing.assert_allclose(np.asarray(cut)[real], np.asarray(full)[real], rtol=1e-5, atol=1e-5)
    last = model.apply({"params": params}, inputs[:, -5:], last_only=True)
    np.testing.assert_allclose(last, full[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_byte_dropout_rate_scale_and_independence(rate):
    """`model.dropout_bits=8`: drop fraction round(256 p)/256 (within 5 sigma), kept values
    scaled by 256/(256 - round(256 p)), neighbouring bytes (one PRNG word) uncorrelated."""
    from posrec.models import attention

    x = jnp.ones((64, 1, 40, 40))
    y = np.asarray(attention.ByteDropout(rate).apply({}, x, rngs={"dropout": jax.random.key(3)}))
    p = round(256 * rate) / 256
    dropped = y == 0
    n = dropped.size
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[~dropped], 1 / (1 - p), rtol=1e-6)
    flat = dropped.reshape(-1).astype(float)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.02
    same_key = attention.ByteDropout(rate).apply({}, x, rngs={"dropout": jax.random.key(3)})
    np.testing.assert_array_equal(y, same_key)
    assert attention.ByteDropout(rate, deterministic=True).apply({}, x) is x


@pytest.mark.parametrize("impl", ["threefry2x32", "philox2x32", "rbg"])
@pytest.mark.parametrize("bits", [32, 8])
def test_dropout_rate_under_each_rng_impl(impl, bits):
    """Every `train.rng_impl` gives the dropout layers of both `model.dropout_bits` their rate
    (within 5 sigma), the inverted scale, and masks without neighbour correlation."""
    from posrec.models import attention

    rate = 0.1
    x = jnp.ones((64, 1, 40, 40))
    layer = attention.dropout(rate, False, bits)
    y = np.asarray(layer.apply({}, x, rngs={"dropout": jax.random.key(5, impl=impl)}))
    p = round(256 * rate) / 256 if bits == 8 else rate
    dropped = y == 0
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / dropped.size)
    np.testing.assert_allclose(y[~dropped], 1 / (1 - p), rtol=1e-6)
    flat = dropped.reshape(-1).astype(float)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.02


def test_dropout_bits_8_changes_only_training():
    model, params = make("kernel")
    cfg = model.config.copy_and_resolve_references()
    cfg.dropout, cfg.dropout_bits = 0.3, 8
    byte_model = sasrec.SASRec(cfg, N_ITEMS)
    x = jnp.array([[0, 3, 5, 7, 2, 9, 4, 1]], jnp.int32)
    np.testing.assert_array_equal(model.apply({"params": params}, x),
                                  byte_model.apply({"params": params}, x))
    rngs = {"dropout": jax.random.key(1)}
    t = byte_model.apply({"params": params}, x, train=True, rngs=rngs)
    assert np.abs(np.asarray(t - model.apply({"params": params}, x))).max() > 0
    np.testing.assert_array_equal(t, byte_model.apply({"params": params}, x, train=True,
                                                      rngs=rngs))
