"""Batching: windows vs a naive loop, training examples, epoch coverage/resume, eval padding."""

import numpy as np
import pytest

from posrec.data.batching import TrainBatches, eval_batches, left_pad_windows, train_examples
from posrec.data.preprocess import Sequences
from posrec.data.splits import EvalSet


def _naive_windows(items, starts, ends, length):
    out = np.zeros((len(starts), length), np.int32)
    for r, (s, e) in enumerate(zip(starts, ends, strict=True)):
        w = list(items[max(s, e - length) : e])
        if w:
            out[r, length - len(w) :] = w
    return out


@pytest.mark.parametrize("length", [1, 3, 8, 20])
def test_left_pad_windows_matches_naive(length):
    rng = np.random.default_rng(length)
    items = rng.integers(1, 100, 300).astype(np.int32)
    starts = rng.integers(0, 300, 500)
    ends = starts + rng.integers(0, 30, 500)
    ends = np.minimum(ends, 300)
    got = left_pad_windows(items, starts, ends, length)
    assert got.dtype == np.int32 and got.shape == (500, length)
    np.testing.assert_array_equal(got, _naive_windows(items, starts, ends, length))


def test_left_pad_windows_empty_inputs():
    empty = np.zeros(0, np.int32)
    assert left_pad_windows(empty, np.zeros(2, int), np.zeros(2, int), 4).shape == (2, 4)
    assert left_pad_windows(np.arange(5), np.zeros(0, int), np.zeros(0, int), 3).shape == (0, 3)


def _seqs(histories):
    lengths = [len(h) for h in histories]
    flat = [i for h in histories for i in h]
    n = max(flat) if flat else 1
    return Sequences(
        items=np.array(flat, np.int32),
        times=np.arange(len(flat), dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        raw_user=np.arange(len(histories), dtype=np.int64),
        raw_item=np.arange(-1, n, dtype=np.int64),
        num_items=n,
    )


def test_train_examples_hand_made():
    train = _seqs([[1, 2, 3], [9], [1, 2, 3, 4, 5, 6, 7, 8], [], [4, 5]])
    x, y = train_examples(train, max_len=3)
    # User 1 (1 item) and user 3 (none) are dropped.
    np.testing.assert_array_equal(x, [[0, 1, 2], [5, 6, 7], [0, 0, 4]])
    np.testing.assert_array_equal(y, [[0, 2, 3], [6, 7, 8], [0, 0, 5]])
    x, y = train_examples(train, max_len=5)
    assert x[0].tolist() == [0, 0, 0, 1, 2] and y[0].tolist() == [0, 0, 0, 2, 3]
    assert x.dtype == y.dtype == np.int32


def _examples(n, t=4):
    """Example k has inputs (k+1, ...) so every row is identifiable; no all-zero rows."""
    x = np.tile(np.arange(1, n + 1, dtype=np.int32)[:, None], (1, t))
    return x, x + 1000


@pytest.mark.parametrize("n,b", [(10, 4), (12, 4), (3, 8)])
def test_train_batches_cover_each_example_once(n, b):
    x, y = _examples(n)
    tb = TrainBatches(x, y, batch_size=b, seed=3)
    assert tb.steps_per_epoch() == -(-n // b)
    for epoch in range(3):
        batches = list(tb.epoch(epoch))
        assert len(batches) == tb.steps_per_epoch()
        ids = []
        for bt in batches:
            assert bt["inputs"].shape == (b, 4) and bt["targets"].shape == (b, 4)
            assert bt["inputs"].dtype == np.int32
            real = bt["inputs"][:, 0] != 0
            assert (bt["targets"][~real] == 0).all()  # padding rows carry no loss
            assert (bt["targets"][real, 0] == bt["inputs"][real, 0] + 1000).all()
            ids += bt["inputs"][real, 0].tolist()
        assert sorted(ids) == list(range(1, n + 1))


def test_train_batches_deterministic_and_resumable():
    x, y = _examples(37)
    a = TrainBatches(x, y, batch_size=5, seed=11)
    b = TrainBatches(x, y, batch_size=5, seed=11)
    e1 = [bt["inputs"] for bt in a.epoch(1)]
    # Same (seed, epoch) -> same order, regardless of what was drawn before.
    list(b.epoch(0))
    np.testing.assert_array_equal(np.stack(e1), np.stack([bt["inputs"] for bt in b.epoch(1)]))
    # Different epoch or seed -> different order.
    e2 = np.stack([bt["inputs"] for bt in a.epoch(2)])
    assert not np.array_equal(np.stack(e1), e2)
    c = TrainBatches(x, y, batch_size=5, seed=12)
    assert not np.array_equal(np.stack(e1), np.stack([bt["inputs"] for bt in c.epoch(1)]))
    # Resume mid-epoch: the remaining batches are exactly the tail.
    tail = [bt["inputs"] for bt in a.epoch(1, start_step=4)]
    assert len(tail) == len(e1) - 4
    np.testing.assert_array_equal(np.stack(tail), np.stack(e1[4:]))
    # The documented permutation.
    perm = np.random.default_rng([11, 1]).permutation(37)
    np.testing.assert_array_equal(e1[0][:, 0], perm[:5] + 1)


def test_train_batches_drop_last():
    x, y = _examples(10)
    tb = TrainBatches(x, y, batch_size=4, seed=0, drop_last=True)
    assert tb.steps_per_epoch() == 2
    batches = list(tb.epoch(0))
    assert len(batches) == 2 and all((bt["inputs"][:, 0] != 0).all() for bt in batches)


def test_eval_batches_padding_and_seen():
    hist = [[1, 2, 3, 4, 5], [6], list(range(1, 71)), [7, 8]]
    ev = EvalSet(
        history=np.array([i for h in hist for i in h], np.int32),
        offsets=np.concatenate([[0], np.cumsum([len(h) for h in hist])]).astype(np.int64),
        targets=np.array([9, 10, 11, 12], np.int32),
        users=np.array([0, 2, 5, 7], np.int64),
    )
    batches = list(eval_batches(ev, max_len=3, batch_size=3, num_items=80))
    assert len(batches) == 2
    b0, b1 = batches
    assert b0["inputs"].tolist() == [[3, 4, 5], [0, 0, 6], [68, 69, 70]]
    assert b0["targets"].tolist() == [9, 10, 11]
    assert b0["valid"].tolist() == [True, True, True]
    assert b0["users"].tolist() == [0, 2, 5]
    assert b0["seen_BxS"].shape == (3, 128)  # longest history 70 -> 128
    assert sorted(set(b0["seen_BxS"][2].tolist()) - {0}) == list(range(1, 71))
    assert sorted(set(b0["seen_BxS"][0].tolist()) - {0}) == [1, 2, 3, 4, 5]
    # Final batch padded to B rows, padding flagged invalid and all zero.
    assert b1["inputs"].shape == (3, 3) and b1["seen_BxS"].shape == (3, 64)
    assert b1["valid"].tolist() == [True, False, False]
    assert b1["targets"].tolist() == [12, 0, 0]
    assert b1["users"].tolist() == [7, -1, -1]
    assert (b1["inputs"][1:] == 0).all() and (b1["seen_BxS"][1:] == 0).all()
    assert b1["inputs"][0].tolist() == [0, 7, 8]
