"""preprocess: k-core fixed point, dedup, stable tie order and id re-indexing on hand-made data."""

import os
from pathlib import Path

import numpy as np
import pytest

from posrec.data.preprocess import load_id_maps, preprocess, save_id_maps
from posrec.data.readers import Interactions, read_csv
from posrec.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _inter(rows, has_real_time=True) -> Interactions:
    a = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return Interactions(user=a[:, 0], item=a[:, 1], time=a[:, 2], has_real_time=has_real_time)


def _histories(seqs) -> dict[int, list[int]]:
    """raw user -> list of raw items, read through the maps (an independent view)."""
    return {
        int(seqs.raw_user[u]): seqs.raw_item[seqs.user_items(u)].tolist()
        for u in range(seqs.num_users)
    }


def test_kcore_needs_several_passes():
    # min 2 per user and per item. Pass 1 drops user 30 (1 row) and item 9 (1 row); then
    # user 20 has 1 row and item 8 has 1 row; then user 10 and item 1 fall too. Only the dense
    # block {40, 50} x {7, 3} survives. A single pass would wrongly keep users 10 and 20.
    rows = [
        (10, 1, 0), (10, 8, 1),
        (20, 1, 0), (20, 9, 1),
        (30, 8, 0),
        (40, 7, 0), (40, 3, 1),
        (50, 3, 0), (50, 7, 1),
    ]
    seqs = preprocess(_inter(rows), min_user_count=2, min_item_count=2)
    assert seqs.raw_user.tolist() == [40, 50]
    assert seqs.raw_item.tolist() == [-1, 3, 7]
    assert seqs.num_items == 2 and seqs.num_users == 2
    assert _histories(seqs) == {40: [7, 3], 50: [3, 7]}
    assert seqs.items.tolist() == [2, 1, 1, 2]
    assert seqs.offsets.tolist() == [0, 2, 4]
    assert seqs.lengths().tolist() == [2, 2]
    assert seqs.items.dtype == np.int32 and seqs.offsets.dtype == np.int64


def test_kcore_zero_disables_a_side():
    rows = [(1, 5, 0), (1, 6, 1), (2, 5, 0)]
    seqs = preprocess(_inter(rows), min_user_count=2, min_item_count=0)
    assert _histories(seqs) == {1: [5, 6]}
    seqs = preprocess(_inter(rows), min_user_count=0, min_item_count=2)
    assert _histories(seqs) == {1: [5], 2: [5]}


def test_stable_chronological_order_with_ties():
    # File order deliberately not chronological and interleaved across users; ties at t=10
    # must keep file order (5 before 6 for user 1; 9 before 8 for user 2).
    rows = [
        (2, 9, 10), (1, 5, 10), (1, 6, 10), (2, 7, 3), (1, 4, 5), (2, 8, 10), (1, 3, 11),
    ]
    seqs = preprocess(_inter(rows), min_user_count=0, min_item_count=0)
    assert _histories(seqs) == {1: [4, 5, 6, 3], 2: [7, 9, 8]}
    assert seqs.times.tolist() == [5, 10, 10, 11, 3, 10, 10]
    # Items re-indexed in raw-id order: 3..9 -> 1..7.
    assert seqs.raw_item.tolist() == [-1, 3, 4, 5, 6, 7, 8, 9]
    assert seqs.items.tolist() == [2, 3, 4, 1, 5, 7, 6]


def test_dedup_consecutive():
    rows = [(1, 1, 0), (1, 1, 1), (1, 2, 2), (1, 1, 3), (1, 3, 4), (1, 3, 5), (2, 3, 0)]
    seqs = preprocess(_inter(rows), 0, 0, dedup_consecutive=True)
    assert _histories(seqs) == {1: [1, 2, 1, 3], 2: [3]}
    seqs = preprocess(_inter(rows), 0, 0, dedup_consecutive=False)
    assert _histories(seqs)[1] == [1, 1, 2, 1, 3, 3]


def test_dedup_runs_before_kcore():
    # Item 9 has 2 rows but they are one consecutive repeat: after dedup it has 1 < 2.
    rows = [(1, 9, 0), (1, 9, 1), (1, 5, 2), (2, 5, 0), (2, 6, 1), (1, 6, 3)]
    kept = preprocess(_inter(rows), 0, 2, dedup_consecutive=False)
    assert 9 in kept.raw_item.tolist()
    dropped = preprocess(_inter(rows), 0, 2, dedup_consecutive=True)
    assert _histories(dropped) == {1: [5, 6], 2: [5, 6]}


def test_nothing_survives_message():
    with pytest.raises(DataError) as e:
        preprocess(_inter([(1, 1, 0), (2, 2, 0)]), 5, 5, source="tiny.csv")
    msg = str(e.value)
    assert "tiny.csv" in msg and "min_user_count=5" in msg and "min_item_count=5" in msg
    assert "data.min_user_count" in msg


def test_id_maps_roundtrip(tmp_path):
    seqs = preprocess(_inter([(7, 30, 0), (7, 20, 1), (3, 20, 0)]), 0, 0)
    save_id_maps(seqs, tmp_path / "run")
    items, users = load_id_maps(tmp_path / "run")
    assert items.tolist() == [-1, 20, 30] and users.tolist() == [3, 7]
    assert not [n for n in os.listdir(tmp_path / "run") if n.endswith(".tmp")]
    save_id_maps(seqs, tmp_path / "run")  # overwriting works
    with pytest.raises(DataError, match="not found"):
        load_id_maps(tmp_path / "other")


def test_ml1m_5core_counts():
    path = SHARED / "ml-1m.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    seqs = preprocess(read_csv(path, has_real_time=False), 5, 5, source=str(path))
    # SASRec's ml-1m.txt: 6,040 users, 3,416 items, 999,611 interactions.
    assert seqs.num_users == 6040
    assert seqs.num_items == 3416
    assert len(seqs.items) == 999_611
    assert seqs.lengths().min() >= 5
    assert np.bincount(seqs.items, minlength=seqs.num_items + 1)[1:].min() >= 5


def _naive_preprocess(rows, min_u, min_i, dedup):
    """Plain-Python reference: per-user sort by (time, row), dedup, k-core loop, raw-id maps."""
    by_user: dict[int, list[tuple[int, int, int]]] = {}
    for k, (u, i, t) in enumerate(rows):
        by_user.setdefault(u, []).append((t, k, i))
    hist = {u: [i for _, _, i in sorted(v)] for u, v in by_user.items()}
    if dedup:
        hist = {u: [i for j, i in enumerate(h) if j == 0 or h[j - 1] != i] for u, h in hist.items()}
    while True:
        item_count: dict[int, int] = {}
        for h in hist.values():
            for i in h:
                item_count[i] = item_count.get(i, 0) + 1
        new = {
            u: [i for i in h if item_count[i] >= min_i]
            for u, h in hist.items()
            if len(h) >= min_u
        }
        new = {u: h for u, h in new.items() if h}
        if new == hist:
            return hist
        hist = new


@pytest.mark.parametrize("seed", range(12))
def test_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    n = 400
    rows = list(zip(rng.integers(0, 40, n).tolist(), rng.integers(0, 30, n).tolist(),
                    rng.integers(0, 20, n).tolist(), strict=True))
    min_u, min_i = int(rng.integers(4, 11)), int(rng.integers(6, 14))
    dedup = bool(seed % 2)
    want = _naive_preprocess(rows, min_u, min_i, dedup)
    if not want:
        with pytest.raises(DataError):
            preprocess(_inter(rows), min_u, min_i, dedup)
        return
    got = preprocess(_inter(rows), min_u, min_i, dedup)
    assert _histories(got) == want
    assert got.raw_user.tolist() == sorted(want)
    assert got.raw_item.tolist() == [-1] + sorted({i for h in want.values() for i in h})
