"""Legacy sampled evaluation against exact and numpy references (issue 8 item 4)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posrec import config_lib, evaluate, metrics, train
from posrec.data.preprocess import Sequences
from posrec.data.splits import EvalSet
from posrec.errors import ConfigError
from posrec.models import sasrec

sample_negatives = jax.jit(metrics.sample_negatives, static_argnums=4)


def user_keys(users):
    base = jax.random.key(evaluate.SAMPLED_SEED)
    return jax.vmap(lambda u: jax.random.fold_in(base, u))(jnp.asarray(users, jnp.uint32))


def exact_inclusion(weights, n):
    """P(item is among n draws) of successive sampling without replacement, by enumeration."""
    items = [i for i, w in enumerate(weights) if w > 0]
    p = np.zeros(len(weights))
    for seq in itertools.permutations(items, n):
        prob, left = 1.0, sum(weights[i] for i in items)
        for i in seq:
            prob *= weights[i] / left
            left -= weights[i]
        for i in seq:
            p[i] += prob
    return p


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_negative_law_and_exclusions(sampler):
    # catalog 1..7; every user saw {2, 5} (0 = history padding) and has target 3
    U, n = 20000, 2
    counts = np.array([0, 1, 4, 2, 3, 9, 1, 5])
    log_w = evaluate.item_log_weights(sampler, np.repeat(np.arange(8), counts), 7)
    seen = np.tile(np.array([[0, 2, 5]], np.int32), (U, 1))
    targets = np.full(U, 3, np.int32)
    neg = np.asarray(sample_negatives(user_keys(np.arange(U)), log_w, targets, seen, n))
    assert neg.shape == (U, n)
    assert np.all(neg[:, 0] != neg[:, 1])  # without replacement
    assert not np.isin(neg, [0, 2, 3, 5]).any()  # padding, history, target
    weights = np.where(np.isin(np.arange(8), [0, 2, 3, 5]), 0.0, np.exp(log_w))
    want = exact_inclusion(weights, n)
    got = np.bincount(neg.ravel(), minlength=8) / U
    se = np.sqrt(want * (1 - want) / U) + 1e-12
    assert np.all(np.abs(got - want) < 5 * se), (got, want)
    if sampler == "uniform":
        np.testing.assert_allclose(want[[1, 4, 6, 7]], n / 4)


def test_negatives_depend_on_user_not_batch():
    log_w = np.zeros(50, np.float32)
    users = np.arange(10)
    seen = np.zeros((10, 4), np.int32)
    targets = np.arange(1, 11, dtype=np.int32)
    together = np.asarray(sample_negatives(user_keys(users), log_w, targets, seen, 5))
    for u in users:
        alone = sample_negatives(user_keys([u]), log_w, targets[u : u + 1], seen[:1], 5)
        np.testing.assert_array_equal(np.asarray(alone)[0], together[u])


def test_sampled_ranks_against_loop():
    rng = np.random.default_rng(0)
    B, N, n = 12, 25, 6
    scores = rng.integers(0, 4, size=(B, N + 1)).astype(np.float32)  # many ties
    targets = rng.integers(1, N + 1, size=B).astype(np.int32)
    negatives = np.stack([rng.choice(np.arange(1, N + 1), n, replace=False) for _ in range(B)])
    got = np.asarray(metrics.sampled_ranks(scores, targets, negatives.astype(np.int32)))
    want = [1 + sum(scores[b, j] >= scores[b, targets[b]] for j in negatives[b]) for b in range(B)]
    np.testing.assert_array_equal(got, want)


def test_sampled_summary_keys_and_values():
    out = metrics.sampled_summary(np.array([1, 3, 12]), (1, 10, 20), 10, "popularity")
    assert set(out) == {
        "sampled10_popularity_ndcg@1", "sampled10_popularity_hr@1", "sampled10_popularity_mrr@1",
        "sampled10_popularity_ndcg@10", "sampled10_popularity_hr@10",
        "sampled10_popularity_mrr@10", "sampled10_popularity_num_users",
    }  # k = 20 > n is dropped: every target is within the top n + 1
    assert out["sampled10_popularity_ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert out["sampled10_popularity_hr@10"] == pytest.approx(2 / 3)


def tiny_evalset():
    # 4 users, catalog 1..9; histories of different lengths, user 3's target repeats item 4
    hist = [[1, 2], [3], [5, 6, 7, 8], [4, 2, 9]]
    return EvalSet(
        history=np.array(sum(hist, []), np.int32),
        offsets=np.cumsum([0] + [len(h) for h in hist]).astype(np.int64),
        targets=np.array([3, 4, 1, 4], np.int32),
        users=np.array([0, 2, 5, 7], np.int64),
    )


def test_check_sampled_pool_sizes():
    ev = tiny_evalset()
    uniform = evaluate.item_log_weights("uniform", np.arange(1, 10), 9)
    # pools: 9 - |{1,2,3}| = 6, 9 - 2 = 7, 9 - 5 = 4, 9 - |{4,2,9}| = 6 -> smallest 4
    evaluate.check_sampled(ev, uniform, 4)
    with pytest.raises(ConfigError, match=r"1 users .*smallest pool 4"):
        evaluate.check_sampled(ev, uniform, 6)
    # popularity: item 6 never occurs in the data, so it cannot be drawn -> pools 5, 6, 4, 5
    pop = evaluate.item_log_weights("popularity", np.array([1, 2, 3, 4, 5, 7, 8, 9]), 9)
    evaluate.check_sampled(ev, pop, 4)
    with pytest.raises(ConfigError, match=r"3 users .*smallest pool 4"):
        evaluate.check_sampled(ev, pop, 6)


def test_evaluate_sampled_against_numpy():
    sampler = "popularity"  # the uniform law differs only in log_weights (tested above)
    cfg = config_lib.default_config()
    cfg.model.update(max_len=4, hidden=8, num_blocks=1, dropout=0.0, positional="absolute")
    cfg.eval.update(sampled=3, sampler=sampler, ks=(1, 2, 10))
    model = sasrec.SASRec(cfg.model, 9)
    params = model.init(jax.random.key(1), jnp.ones((1, 4), jnp.int32))["params"]
    ev = tiny_evalset()
    data_items = np.array([1, 1, 2, 3, 4, 4, 4, 5, 6, 7, 8, 9, 9])
    seqs = Sequences(items=data_items, times=np.arange(13), offsets=np.array([0, 13]),
                     raw_user=np.array([0]), raw_item=np.arange(-1, 9), num_items=9)
    log_w = evaluate.item_log_weights(sampler, data_items, 9)
    U = len(ev.targets)
    inputs, seen = np.zeros((U, 4), np.int32), np.zeros((U, 8), np.int32)
    for r in range(U):  # left-padded last 4 items; the whole history for exclusion
        h = ev.history[ev.offsets[r] : ev.offsets[r + 1]]
        inputs[r, 4 - len(h[-4:]) :] = h[-4:]
        seen[r, : len(h)] = h
    hidden_UxC = np.asarray(model.apply({"params": params}, inputs, train=False))[:, -1]
    scores_UxN = hidden_UxC @ np.asarray(sasrec.item_table(params)).T
    neg_Uxn = np.asarray(sample_negatives(user_keys(ev.users), log_w, ev.targets, seen, 3))
    want_ranks = np.array([
        1 + int(np.sum(scores_UxN[r, neg_Uxn[r]] >= scores_UxN[r, ev.targets[r]]))
        for r in range(U)
    ])
    assert len(set(want_ranks)) > 1  # the check below can tell ranks apart
    for batch_size in (3, 64):
        cfg.eval.batch_size = batch_size
        got = evaluate.evaluate_sampled(model, params, ev, cfg, seqs)
        prefix = f"sampled3_{sampler}_"
        assert got[prefix + "num_users"] == 4
        assert got[prefix + "hr@1"] == pytest.approx(np.mean(want_ranks == 1))
        assert got[prefix + "ndcg@1"] == pytest.approx(np.mean(want_ranks == 1))
        ndcg2 = np.where(want_ranks <= 2, 1 / np.log2(want_ranks + 1), 0)
        assert got[prefix + "ndcg@2"] == pytest.approx(ndcg2.mean())
        assert got[prefix + "mrr@2"] == pytest.approx(np.mean((want_ranks <= 2) / want_ranks))
        assert "ndcg@10" not in got and prefix + "ndcg@10" not in got  # 10 > n


def test_config_validation():
    cfg = config_lib.default_config()
    assert cfg.eval.sampled == 0  # full ranking only, by default
    cfg.eval.sampler = "random"
    with pytest.raises(ConfigError, match="eval.sampler"):
        config_lib.validate(cfg)
    cfg = config_lib.default_config()
    cfg.eval.sampled = -1
    with pytest.raises(ConfigError, match="eval.sampled"):
        config_lib.validate(cfg)


def test_train_refuses_impossible_sampled_before_training(tmp_path):
    cfg = config_lib.default_config()
    cfg.data.synthetic.update(num_users=50, num_items=30, seq_len=10)
    cfg.data.min_user_count = cfg.data.min_item_count = 0
    cfg.eval.sampled = 25  # every test user has seen 9 of the 30 items
    with pytest.raises(ConfigError, match="eval.sampled=25"):
        train.train_and_evaluate(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
