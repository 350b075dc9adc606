"""From a raw interaction log to per-user chronological sequences with dense internal ids.

Order of operations (fixed, so results are reproducible and comparable):
  1. Sort each user's rows chronologically: by timestamp, ties kept in original row order
     (a stable sort; ML-1M has many same-second ratings, so this matters).
  2. Optionally drop consecutive repeats (same user, same item as the previous row of that
     user). This runs BEFORE k-core, so the counts seen by k-core are the deduplicated ones.
     k-core removal can make two equal items adjacent again; they are kept (dedup is not
     repeated), which is what "dedup, then k-core" means.
  3. Iterative k-core: drop users with < `min_user_count` rows and items with
     < `min_item_count` rows, repeated until nothing changes (one pass is not enough:
     removing an item can push a user under the threshold and vice versa). 0 disables a side.
  4. Re-index: internal users 0..U-1 in increasing raw user id, internal items 1..N in
     increasing raw item id (0 is reserved for padding). Deterministic given the data.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np

from posrec import config_lib
from posrec.data.readers import Interactions
from posrec.errors import DataError


@dataclasses.dataclass(frozen=True)
class Sequences:
    """All users' histories, CSR layout, chronological within a user.

    Attributes:
        items: int32 [N] internal item ids in 1..num_items (0 is padding and never occurs).
        times: int64 [N] timestamps (or order indices) aligned with `items`.
        offsets: int64 [U+1]; user u's history is items[offsets[u]:offsets[u+1]]. A user may
            have an empty history (e.g. a training split in which the user has no items).
        raw_user: int64 [U] original id of internal user u.
        raw_item: int64 [num_items+1] original id of internal item i; raw_item[0] = -1.
        num_items: catalog size, excluding padding.
    """

    items: np.ndarray
    times: np.ndarray
    offsets: np.ndarray
    raw_user: np.ndarray
    raw_item: np.ndarray
    num_items: int

    @property
    def num_users(self) -> int:
        """U, the number of internal users (including any with an empty history)."""
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """int64 [U] history length of each user."""
        return np.diff(self.offsets)

    def user_items(self, u: int) -> np.ndarray:
        """int32 [L_u] user u's history (a view)."""
        return self.items[self.offsets[u] : self.offsets[u + 1]]


def _kcore(
    u_idx: np.ndarray, i_idx: np.ndarray, n_users: int, n_items: int, min_u: int, min_i: int
) -> np.ndarray:
    """bool [N] rows surviving iterative k-core on dense user/item indices (fixed point)."""
    keep = np.ones(len(u_idx), dtype=bool)
    while True:
        uc = np.bincount(u_idx[keep], minlength=n_users)
        ic = np.bincount(i_idx[keep], minlength=n_items)
        new_keep = keep.copy()
        if min_u > 0:
            new_keep &= uc[u_idx] >= min_u
        if min_i > 0:
            new_keep &= ic[i_idx] >= min_i
        if new_keep.sum() == keep.sum():
            return keep
        keep = new_keep


def preprocess(
    inter: Interactions,
    min_user_count: int = 5,
    min_item_count: int = 5,
    dedup_consecutive: bool = False,
    source: str = "",
) -> Sequences:
    """Sorts, optionally dedups, k-core filters and re-indexes an interaction log.

    Args:
        inter: raw interactions (any row order).
        min_user_count, min_item_count: k-core thresholds (counts of rows, after dedup);
            0 (or 1) disables that side.
        dedup_consecutive: drop a row when the same user's previous row (chronologically)
            has the same item; done before k-core.
        source: a name for messages (e.g. the file path).

    Returns:
        `Sequences` in CSR layout; see the module docstring for the exact rules.

    Raises:
        DataError: if no interaction survives the filtering.
    """
    if min_user_count < 0 or min_item_count < 0:
        raise DataError(
            f"{source or 'data'}: k-core thresholds must be >= 0, got "
            f"min_user_count={min_user_count}, min_item_count={min_item_count}"
        )
    user = np.asarray(inter.user, dtype=np.int64)
    item = np.asarray(inter.item, dtype=np.int64)
    time = np.asarray(inter.time, dtype=np.int64)
    if len(user) == 0:
        raise DataError(f"{source or 'data'}: no interactions to preprocess")

    # 1. Chronological within user; np.lexsort is stable, so ties keep the original row order.
    order = np.lexsort((time, user))
    user, item, time = user[order], item[order], time[order]

    # 2. Consecutive repeats (rows are now grouped by user, so "previous row" is well defined).
    if dedup_consecutive:
        keep = np.ones(len(user), dtype=bool)
        keep[1:] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
        user, item, time = user[keep], item[keep], time[keep]

    # 3. Iterative k-core on dense indices.
    uniq_u, u_idx = np.unique(user, return_inverse=True)
    uniq_i, i_idx = np.unique(item, return_inverse=True)
    keep = _kcore(u_idx, i_idx, len(uniq_u), len(uniq_i), min_user_count, min_item_count)
    if not keep.any():
        raise DataError(
            f"{source or 'data'}: no interactions survive the k-core filter "
            f"(min_user_count={min_user_count}, min_item_count={min_item_count}, "
            f"{len(uniq_u)} users / {len(uniq_i)} items / {len(user)} rows before it); "
            "lower data.min_user_count / data.min_item_count"
        )
    user, item, time = user[keep], item[keep], time[keep]

    # 4. Re-index (np.unique sorts, so ids follow raw-id order).
    raw_user, u_new = np.unique(user, return_inverse=True)
    raw_item_sorted, i_new = np.unique(item, return_inverse=True)
    counts = np.bincount(u_new, minlength=len(raw_user))
    offsets = np.zeros(len(raw_user) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    raw_item = np.concatenate([np.array([-1], np.int64), raw_item_sorted.astype(np.int64)])
    return Sequences(
        items=(i_new + 1).astype(np.int32),
        times=time.astype(np.int64),
        offsets=offsets,
        raw_user=raw_user.astype(np.int64),
        raw_item=raw_item,
        num_items=len(raw_item_sorted),
    )


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    config_lib.write_atomic(path, buf.getvalue())


def save_id_maps(seqs: Sequences, directory: str | os.PathLike) -> None:
    """Writes `item_ids.npy` (int64 [num_items+1], raw id of internal item i, [0] = -1),
    `user_ids.npy` (int64 [U]) and a small `id_maps.json` summary into `directory`.

    Each file is written to a temp file in the same directory and `os.replace`d, so a reader
    never sees a half-written map (e.g. when a run is killed mid-save).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_save_npy(d / "item_ids.npy", np.asarray(seqs.raw_item, np.int64))
    _atomic_save_npy(d / "user_ids.npy", np.asarray(seqs.raw_user, np.int64))
    meta = {"num_items": int(seqs.num_items), "num_users": int(seqs.num_users)}
    config_lib.write_atomic(d / "id_maps.json", json.dumps(meta))


def load_id_maps(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Returns (raw_item int64 [num_items+1], raw_user int64 [U]) saved by `save_id_maps`."""
    d = Path(directory)
    out = []
    for name in ("item_ids.npy", "user_ids.npy"):
        p = d / name
        if not p.exists():
            raise DataError(f"{p}: id map not found; was save_id_maps run for this directory?")
        try:
            out.append(np.load(p, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: corrupt id map ({e}); re-run preprocessing") from e
    item_ids, user_ids = out
    if item_ids.ndim != 1 or len(item_ids) == 0 or item_ids[0] != -1:
        raise DataError(f"{d / 'item_ids.npy'}: not an item id map (entry 0 must be -1)")
    return item_ids, user_ids
