"""Train / validation / test splits, exactly as in shared/docs/protocol.md.

Every evaluation input here is a *prefix* of the user's chronological history (all earlier
items, never truncated): batching takes its last T items as the model input, and evaluation
uses the whole prefix to mask seen items.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from posrec.data.preprocess import Sequences
from posrec.data.readers import are_order_indices
from posrec.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Evaluation rows: one (input history, target) pair per evaluated user.

    Attributes:
        history: int32 [M] concatenated input histories (the FULL history before the target,
            chronological).
        offsets: int64 [U_eval+1]; row r's history is history[offsets[r]:offsets[r+1]].
        targets: int32 [U_eval] the item to rank.
        users: int64 [U_eval] internal user index of each row (increasing).
    """

    history: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray
    users: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


@dataclasses.dataclass(frozen=True)
class Split:
    """Training sequences plus validation and test rows.

    `train` keeps every user of the full data (same internal ids, same `num_items` and raw
    maps); a user with nothing to train on has an empty history.
    """

    train: Sequences
    valid: EvalSet
    test: EvalSet
    name: str

    def fingerprint(self) -> str:
        """sha256 (hex) of everything a run trains and is evaluated on: the training
        histories, the validation and test rows, and the raw id maps. A checkpoint stores it,
        so that resuming or evaluating on changed data is refused instead of silently mixing
        two data sets (the item count alone misses, e.g., a file with users added)."""
        h = hashlib.sha256()
        t = self.train
        arrays = [t.items, t.offsets, t.raw_user, t.raw_item]
        for ev in (self.valid, self.test):
            arrays += [ev.history, ev.offsets, ev.targets, ev.users]
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def _gather_ranges(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of values[starts[r]:starts[r]+lengths[r]] over r, vectorised."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return values[:0].copy()
    row_start = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=row_start[1:])
    idx = np.arange(total, dtype=np.int64) + np.repeat(starts.astype(np.int64) - row_start, lengths)
    return values[idx]


def _csr_offsets(lengths: np.ndarray) -> np.ndarray:
    off = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    return off


def _prefix_evalset(seqs: Sequences, prefix_len: np.ndarray, evaluate: np.ndarray) -> EvalSet:
    """Rows for users with `evaluate`: history = first prefix_len[u] items, target the next.

    Args:
        prefix_len: int64 [U] number of history items before the target, per user.
        evaluate: bool [U]; callers guarantee prefix_len[u] >= 1 and a target exists.
    """
    users = np.flatnonzero(evaluate).astype(np.int64)
    starts = seqs.offsets[:-1][users]
    plen = prefix_len[users].astype(np.int64)
    history = _gather_ranges(seqs.items, starts, plen).astype(np.int32)
    targets = seqs.items[starts + plen].astype(np.int32)
    return EvalSet(history=history, offsets=_csr_offsets(plen), targets=targets, users=users)


def _prefix_sequences(seqs: Sequences, keep_len: np.ndarray) -> Sequences:
    """The same users with histories truncated to their first keep_len[u] items."""
    keep_len = keep_len.astype(np.int64)
    starts = seqs.offsets[:-1]
    return Sequences(
        items=_gather_ranges(seqs.items, starts, keep_len).astype(np.int32),
        times=_gather_ranges(seqs.times, starts, keep_len).astype(np.int64),
        offsets=_csr_offsets(keep_len),
        raw_user=seqs.raw_user,
        raw_item=seqs.raw_item,
        num_items=seqs.num_items,
    )


def leave_one_out(seqs: Sequences) -> Split:
    """Leave-one-out: per user, last item = test, second-to-last = validation, rest = train.

    Validation input = all items before the validation item (= the training items); test
    input = all items before the test item (training items + the validation item).

    Users with fewer than 3 interactions are NOT evaluated (they would have no training
    input for validation); all their items stay in training (as in SASRec's data_partition),
    which cannot leak anything since they have no validation or test rows.
    """
    lengths = seqs.lengths()
    evaluate = lengths >= 3
    train_len = np.where(evaluate, lengths - 2, lengths)
    if not evaluate.any():
        raise DataError(
            "leave-one-out split: no user has >= 3 interactions, so nothing can be evaluated; "
            "raise data.min_user_count to at least 3"
        )
    return Split(
        train=_prefix_sequences(seqs, train_len),
        valid=_prefix_evalset(seqs, lengths - 2, evaluate),
        test=_prefix_evalset(seqs, lengths - 1, evaluate),
        name="loo",
    )


def _count_before(seqs: Sequences, cut: float) -> np.ndarray:
    """int64 [U] per user, how many interactions have time < cut (a prefix: times sorted)."""
    before = (seqs.times < cut).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(before)])
    return csum[seqs.offsets[1:]] - csum[seqs.offsets[:-1]]


def temporal_split(seqs: Sequences, quantile: float = 0.9, has_real_time: bool = True) -> Split:
    """Global temporal split (protocol.md): cuts at quantiles of the timestamps.

    t_q = np.quantile(all timestamps, quantile) (linear interpolation). Test: for each user,
    the target is the first interaction with time >= t_q and the input is all the user's
    interactions with time < t_q. Validation: t_v = np.quantile(timestamps < t_q, quantile);
    target = first interaction with time in [t_v, t_q), input = interactions with time < t_v.
    Training sequences = interactions with time < t_v, so nothing the validation targets
    depend on is trained on. Users with an empty input history (or no target) are not
    evaluated. Interactions after a user's first post-cut one are never used.

    Raises:
        DataError: when `has_real_time` is False or every user's times are exactly 0, 1, 2,
            ... (order indices, not comparable across users; `data.load_split` also checks
            the raw file, where a k-core filter has not left gaps yet), when the quantile is
            not in (0, 1), or when a split comes out empty.
    """
    if not has_real_time:
        raise DataError(
            "temporal split: this data file has per-user order indices only, not real "
            "timestamps, so a global time cut is meaningless; use data.split=\"loo\""
        )
    if not 0.0 < quantile < 1.0:
        raise DataError(f"temporal split: data.temporal_quantile must be in (0, 1), got {quantile}")
    if len(seqs.times) == 0:
        raise DataError("temporal split: no interactions")
    lengths = seqs.lengths()
    if are_order_indices(np.repeat(np.arange(seqs.num_users), lengths), seqs.times):
        raise DataError(
            "temporal split: every user's timestamps are 0, 1, 2, ... (per-user order "
            "indices, as in files without real times), so a global time cut is meaningless; "
            "set data.has_real_time=False for this file and use data.split=\"loo\""
        )
    t_q = float(np.quantile(seqs.times, quantile))
    n_q = _count_before(seqs, t_q)
    pre = seqs.times[seqs.times < t_q]
    if len(pre) == 0:
        raise DataError(
            f"temporal split: no interaction is before the test cut {t_q} "
            f"(quantile {quantile}); the timestamps are nearly all equal"
        )
    t_v = float(np.quantile(pre, quantile))
    n_v = _count_before(seqs, t_v)
    test_eval = (n_q >= 1) & (n_q < lengths)
    valid_eval = (n_v >= 1) & (n_v < n_q)
    for name, ev in (("test", test_eval), ("validation", valid_eval)):
        if not ev.any():
            raise DataError(
                f"temporal split: the {name} set is empty (cuts t_v={t_v}, t_q={t_q}); "
                "change data.temporal_quantile or use data.split=\"loo\""
            )
    return Split(
        train=_prefix_sequences(seqs, n_v),
        valid=_prefix_evalset(seqs, n_v, valid_eval),
        test=_prefix_evalset(seqs, n_q, test_eval),
        name="temporal",
    )


def make_split(seqs: Sequences, kind: str, quantile: float, has_real_time: bool) -> Split:
    """Dispatches on `kind` ("loo" or "temporal", i.e. config data.split)."""
    if kind == "loo":
        return leave_one_out(seqs)
    if kind == "temporal":
        return temporal_split(seqs, quantile=quantile, has_real_time=has_real_time)
    raise ConfigError(f"data.split={kind!r} is unknown; use \"loo\" or \"temporal\"")
