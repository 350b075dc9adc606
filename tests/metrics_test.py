"""Metrics against hand-computed rankings and a naive numpy reference."""

import numpy as np
import pytest

from posrec import metrics


def naive_rank(scores, target, seen, exclude_seen=True):
    """Rank by a Python loop: 1 + #items (not pad, not seen unless target) scoring >= target."""
    t = scores[target]
    rank = 1
    for item in range(1, len(scores)):
        if item == target:
            continue
        if exclude_seen and item in seen:
            continue
        if scores[item] >= t:
            rank += 1
    return rank


def test_hand_computed_ranks_with_ties_and_seen():
    # items 1..5 (0 = padding, whose score is huge but must be ignored)
    scores = np.array([[9.0, 0.5, 0.9, 0.5, 0.1, 0.7]], np.float32)
    seen = np.array([[2, 0]], np.int32)  # item 2 was seen: masked
    # target 3 (0.5): ahead are 5 (0.7) and tie 1 (0.5, pessimistic) -> rank 3
    ranks, topk = metrics.rank_and_topk(scores, np.array([3]), seen, 3)
    assert int(ranks[0]) == 3
    assert set(np.asarray(topk[0]).tolist()) == {5, 1, 3}
    # without exclude-seen, item 2 (0.9) also counts -> rank 4
    ranks, _ = metrics.rank_and_topk(scores, np.array([3]), None, 3)
    assert int(ranks[0]) == 4


def test_seen_target_is_not_masked():
    scores = np.array([[0.0, 0.2, 0.8, 0.1]], np.float32)
    seen = np.array([[2, 1]], np.int32)  # the target 2 is a repeat
    ranks, _ = metrics.rank_and_topk(scores, np.array([2]), seen, 2)
    assert int(ranks[0]) == 1


def test_random_against_naive():
    rng = np.random.default_rng(0)
    B, N = 16, 30
    scores = rng.integers(0, 5, size=(B, N + 1)).astype(np.float32)  # many ties
    targets = rng.integers(1, N + 1, size=B)
    seen = rng.integers(0, N + 1, size=(B, 7)).astype(np.int32)
    for exclude in (True, False):
        ranks, _ = metrics.rank_and_topk(scores, targets, seen if exclude else None, 5)
        want = [naive_rank(scores[b], targets[b], set(seen[b]) - {0}, exclude) for b in range(B)]
        np.testing.assert_array_equal(np.asarray(ranks), want)


def test_summary_formulas():
    ranks = np.array([1, 2, 10, 11, 100])
    topk = np.array([[1, 2], [2, 3], [1, 3], [4, 1], [1, 2]])
    out = metrics.summarize(ranks, topk, ks=(1, 10), num_items=8)
    assert out["hr@1"] == pytest.approx(1 / 5)
    assert out["hr@10"] == pytest.approx(3 / 5)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)
    assert out["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)
    assert out["cov@1"] == pytest.approx(3 / 8)  # {1, 2, 4}
    assert out["num_users"] == 5


def test_empty_raises():
    with pytest.raises(ValueError):
        metrics.summarize(np.array([]), np.zeros((0, 2)), (10,), 5)
