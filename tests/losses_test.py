"""Losses against numpy references."""

import jax
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
