"""Losses against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posrec import losses


def numpy_ce(hidden, table, targets):
    logits = hidden @ table.T  # [B, T, N+1]
    logits[..., 0] = -np.inf
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    vals = [-logp[b, t, targets[b, t]] for b, t in zip(*np.nonzero(targets))]
    return np.mean(vals), len(vals)


def test_full_ce_matches_numpy_log_softmax():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4)).astype(np.float64)
    table = rng.normal(size=(9, 4)).astype(np.float64)
    targets = rng.integers(1, 9, size=(3, 5))
    targets[0, :2] = 0  # padding: no loss
    want, n = numpy_ce(hidden, table, targets)
    got, count = losses.full_ce(hidden.astype(np.float32), table.astype(np.float32), targets)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert int(count) == n


def test_full_ce_gradient_finite_with_padding():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 3, 4)).astype(np.float32)
    table = rng.normal(size=(6, 4)).astype(np.float32)
    targets = np.array([[0, 0, 2], [0, 1, 5]])
    g = jax.grad(lambda h: losses.full_ce(h, table, targets)[0])(hidden)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g)[0, :2], 0.0)


def test_sampled_bce_negatives_never_target_and_value():
    rng = np.random.default_rng(2)
    hidden = rng.normal(size=(4, 6, 3)).astype(np.float32)
    table = rng.normal(size=(3, 3)).astype(np.float32)  # 2 items: negative is the other one
    targets = rng.integers(1, 3, size=(4, 6))
    got, count = losses.sampled_bce(hidden, table, targets, jax.random.key(0))
    neg = 3 - targets
    pos_s = np.einsum("btc,btc->bt", hidden, table[targets])
    neg_s = np.einsum("btc,btc->bt", hidden, table[neg])
    want = np.mean(np.log1p(np.exp(-pos_s)) + np.log1p(np.exp(neg_s)))
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert int(count) == targets.size


def _dense_per_position(hidden, table, targets):
    """float64 numpy CE per position (0 where target is 0)."""
    logits = hidden @ table.T
    logits[..., 0] = -np.inf
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    tgt = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return np.where(targets > 0, lse - tgt, 0.0)


@pytest.mark.parametrize("rows", [0, 4, 7])
def test_fused_ce_matches_dense_value_and_gradients(rows):
    """The fused CE (training path) equals the dense CE: per-position values, the gradient of
    the masked mean (uniform cotangent: gradients from the forward pass) and of a random
    weighting (non-uniform cotangent: recomputed), against float64 finite-free references."""
    rng = np.random.default_rng(rows)
    B, T, C, N = 3, 9, 5, 13
    hidden = rng.normal(size=(B, T, C)).astype(np.float32)
    table = rng.normal(size=(N, C)).astype(np.float32)
    targets = rng.integers(1, N, size=(B, T))
    targets[0, :4] = 0  # left padding
    targets[2, :] = 0  # a row without any target
    got = losses.fused_ce_per_position(hidden, table, targets, rows)
    want = _dense_per_position(hidden.astype(np.float64), table.astype(np.float64), targets)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)

    def mean_dense(h, t):
        return losses.full_ce(h, t, targets)[0]

    def mean_fused(h, t):
        return losses.masked_sum(losses.fused_ce_per_position(h, t, targets, rows), targets)[0] \
            / np.sum(targets > 0)

    weights = rng.uniform(0.5, 2.0, size=(B, T)).astype(np.float32)

    def weighted_dense(h, t):
        return jax.numpy.sum(
            jax.numpy.where(targets > 0, losses._full_ce_per_position(h, t, targets), 0.0)
            * weights)

    def weighted_fused(h, t):
        return jax.numpy.sum(losses.fused_ce_per_position(h, t, targets, rows) * weights)

    for dense, fused in ((mean_dense, mean_fused), (weighted_dense, weighted_fused)):
        v1, (gh1, gt1) = jax.value_and_grad(dense, argnums=(0, 1))(hidden, table)
        v2, (gh2, gt2) = jax.jit(jax.value_and_grad(fused, argnums=(0, 1)))(hidden, table)
        assert float(v2) == pytest.approx(float(v1), rel=1e-5)
        np.testing.assert_allclose(np.asarray(gh2), np.asarray(gh1), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(gt2), np.asarray(gt1), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(gh2)[0, :4], 0.0)
        np.testing.assert_array_equal(np.asarray(gh2)[2], 0.0)


def test_fused_ce_rows_bounds_chunk_memory():
    assert losses.fused_ce_rows(3416) == 512
    assert losses.fused_ce_rows(1_000_000) == 64
    assert losses.fused_ce_rows(10**9) == 8
    assert losses.fused_ce_rows(1_000_000) * 1_000_000 <= losses.FUSED_CE_MAX_LOGITS


def test_sampled_bce_refuses_raw_uint32_keys():
    """A legacy PRNGKey (uint32, shape (2,)) would pass for two per-row keys: refused."""
    hidden = jnp.ones((3, 2, 4))
    table = jnp.ones((10, 4))
    targets = jnp.ones((3, 2), jnp.int32)
    with pytest.raises(TypeError, match="typed keys"):
        losses.sampled_bce(hidden, table, targets, jax.random.PRNGKey(0))
    assert np.isfinite(float(losses.sampled_bce(hidden, table, targets, jax.random.key(0))[0]))
