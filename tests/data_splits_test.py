"""Splits: leave-one-out and global temporal split on hand-made data (protocol.md)."""

import dataclasses

import numpy as np
import pytest

from posrec.data.preprocess import Sequences
from posrec.data.splits import leave_one_out, make_split, temporal_split
from posrec.errors import ConfigError, DataError


def _seqs(histories: list[list[tuple[int, int]]], num_items: int | None = None) -> Sequences:
    """Sequences from per-user [(item, time), ...] lists (already chronological)."""
    items = [i for h in histories for i, _ in h]
    times = [t for h in histories for _, t in h]
    lengths = [len(h) for h in histories]
    n = num_items if num_items is not None else max(items)
    return Sequences(
        items=np.array(items, np.int32),
        times=np.array(times, np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        raw_user=np.arange(len(histories), dtype=np.int64) + 100,
        raw_item=np.arange(-1, n, dtype=np.int64),
        num_items=n,
    )


def _rows(ev) -> list[tuple[int, list[int], int]]:
    return [
        (int(u), ev.history[ev.offsets[r] : ev.offsets[r + 1]].tolist(), int(ev.targets[r]))
        for r, u in enumerate(ev.users)
    ]


def _train(seqs) -> list[list[int]]:
    return [seqs.user_items(u).tolist() for u in range(seqs.num_users)]


def test_leave_one_out_hand_made():
    seqs = _seqs([
        [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)],
        [(6, 0), (7, 1)],  # 2 interactions: not evaluated, all in training
        [(8, 0), (9, 1), (10, 2)],
        [(11, 0)],
    ])
    sp = leave_one_out(seqs)
    assert sp.name == "loo"
    assert _train(sp.train) == [[1, 2, 3], [6, 7], [8], [11]]
    assert _rows(sp.valid) == [(0, [1, 2, 3], 4), (2, [8], 9)]
    assert _rows(sp.test) == [(0, [1, 2, 3, 4], 5), (2, [8, 9], 10)]
    assert sp.train.num_items == seqs.num_items
    assert sp.train.raw_user is seqs.raw_user and sp.train.raw_item is seqs.raw_item
    for ev in (sp.valid, sp.test):
        assert ev.history.dtype == np.int32 and ev.targets.dtype == np.int32
        assert ev.offsets.dtype == np.int64 and ev.users.dtype == np.int64


def test_leave_one_out_random_invariants():
    rng = np.random.default_rng(0)
    hs = [[(int(i), t) for t, i in enumerate(rng.integers(1, 50, rng.integers(1, 12)))]
          for _ in range(200)]
    seqs = _seqs(hs, num_items=50)
    sp = leave_one_out(seqs)
    lengths = seqs.lengths()
    assert sp.test.users.tolist() == np.flatnonzero(lengths >= 3).tolist()
    for (u, vh, vt), (u2, th, tt) in zip(_rows(sp.valid), _rows(sp.test), strict=True):
        full = seqs.user_items(u).tolist()
        assert u == u2 and th == vh + [vt] and full == th + [tt]
        assert sp.train.user_items(u).tolist() == vh


def test_temporal_split_hand_made():
    seqs = _seqs([
        [(1, 1), (2, 2), (3, 6), (4, 9)],
        [(5, 3), (6, 7), (7, 8)],
        [(8, 10)],
        [(9, 0), (10, 4), (11, 5)],
    ])
    # All times 0..10: median t_q = 5. Times < 5 are 0..4: median t_v = 2.
    sp = temporal_split(seqs, quantile=0.5, has_real_time=True)
    assert sp.name == "temporal"
    # Test: first interaction at t >= 5, input = everything before 5; user 2 has no input.
    assert _rows(sp.test) == [(0, [1, 2], 3), (1, [5], 6), (3, [9, 10], 11)]
    # Validation: first interaction in [2, 5), input before 2; user 1 has no input before 2.
    assert _rows(sp.valid) == [(0, [1], 2), (3, [9], 10)]
    # Training: t < t_v = 2 only (no leakage into validation).
    assert _train(sp.train) == [[1], [], [], [9]]
    assert sp.train.times.tolist() == [1, 0]


def test_temporal_split_no_leakage_random():
    rng = np.random.default_rng(1)
    hs = []
    for _ in range(300):
        n = int(rng.integers(1, 15))
        times = np.sort(rng.integers(0, 1000, n))
        hs.append([(int(rng.integers(1, 40)), int(t)) for t in times])
    seqs = _seqs(hs, num_items=40)
    sp = temporal_split(seqs, 0.8)
    t_q = np.quantile(seqs.times, 0.8)
    t_v = np.quantile(seqs.times[seqs.times < t_q], 0.8)
    assert sp.train.times.max() < t_v
    for ev, cut in ((sp.valid, t_v), (sp.test, t_q)):
        for r, u in enumerate(ev.users):
            lo, hi = seqs.offsets[u], seqs.offsets[u + 1]
            t = seqs.times[lo:hi]
            n_before = int((t < cut).sum())
            assert ev.offsets[r + 1] - ev.offsets[r] == n_before >= 1
            assert ev.targets[r] == seqs.items[lo + n_before]


def test_temporal_refused_without_real_time():
    seqs = _seqs([[(1, 0), (2, 1), (3, 2)]])
    with pytest.raises(DataError) as e:
        temporal_split(seqs, 0.9, has_real_time=False)
    assert "order indices" in str(e.value) and 'data.split="loo"' in str(e.value)
    with pytest.raises(DataError):
        make_split(seqs, "temporal", 0.9, has_real_time=False)


def test_make_split_dispatch():
    seqs = _seqs([[(1, 0), (2, 1), (3, 2)]])
    assert make_split(seqs, "loo", 0.9, False).name == "loo"
    with pytest.raises(ConfigError):
        make_split(seqs, "random", 0.9, True)


def test_fingerprint_changes_with_any_input_a_run_sees():
    """Equal data, equal fingerprint; one changed test target, training item or raw id map
    entry changes it."""
    hist = [[(1, 0), (2, 1), (3, 2), (4, 3)], [(2, 0), (3, 1), (4, 2), (1, 3), (5, 4)]]
    split = leave_one_out(_seqs(hist))
    assert split.fingerprint() == leave_one_out(_seqs(hist)).fingerprint()
    assert len(split.fingerprint()) == 64
    changes = [
        dataclasses.replace(split, test=dataclasses.replace(
            split.test, targets=split.test.targets[::-1].copy())),
        dataclasses.replace(split, train=dataclasses.replace(
            split.train, items=np.roll(split.train.items, 1))),
        dataclasses.replace(split, train=dataclasses.replace(
            split.train, raw_item=split.train.raw_item + 100)),
    ]
    for changed in changes:
        assert changed.fingerprint() != split.fingerprint()


def test_temporal_split_refuses_order_indices_passed_as_times():
    """A file whose 'timestamps' are each user's 0, 1, 2, ... (has_real_time left True) is
    refused by the global cut; the same users with real times split."""
    order = _seqs([[(1, 0), (2, 1), (3, 2)], [(2, 0), (3, 1), (4, 2), (1, 3)]])
    with pytest.raises(DataError, match="per-user order indices.*has_real_time=False"):
        temporal_split(order, quantile=0.5)
    real = _seqs([[(1, 10), (2, 20), (3, 30)], [(2, 5), (3, 15), (4, 25), (1, 35)]])
    assert len(temporal_split(real, quantile=0.6).test.targets) > 0
