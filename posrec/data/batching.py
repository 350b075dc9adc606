"""Fixed-shape numpy batches for training and evaluation (vectorised, no per-example loop).

Shapes never change between steps (the final partial batch is padded), so a jitted step
compiles once; evaluation's seen-item lists are padded to a multiple of 64 for the same reason.
Padding id is 0 everywhere; a 0 target carries no loss.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from posrec.data.preprocess import Sequences
from posrec.data.splits import EvalSet
from posrec.errors import DataError

SEEN_MULTIPLE = 64


def left_pad_windows(
    items: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int
) -> np.ndarray:
    """int32 [R, length]: row r = items[max(starts[r], ends[r]-length):ends[r]], left-padded.

    Args:
        items: [N] flat item array (e.g. CSR `items`).
        starts, ends: int [R] half-open ranges into `items` (ends >= starts).
        length: window width T; longer ranges keep their most recent T items.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    R = len(starts)
    if R == 0 or len(items) == 0 or length == 0:
        return np.zeros((R, length), dtype=np.int32)
    # Column c of row r holds items[ends[r] - length + c] when that index is >= the start.
    src = ends[:, None] - length + np.arange(length, dtype=np.int64)[None, :]
    lo = np.maximum(starts, ends - length)[:, None]
    valid = src >= lo
    gathered = np.asarray(items)[np.clip(src, 0, len(items) - 1)]
    return np.where(valid, gathered, 0).astype(np.int32)


def train_examples(train: Sequences, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """One training example per user from the last max_len+1 training items.

    With h = the user's last max_len+1 training items: inputs = h[:-1] and targets = h[1:],
    each left-padded with 0 to max_len, so inputs[:, t] predicts targets[:, t] and a 0 target
    means "no loss here". Users with < 2 training items have no (input, target) pair and are
    dropped.

    Returns:
        (inputs int32 [U', max_len], targets int32 [U', max_len]).
    """
    lengths = train.lengths()
    users = np.flatnonzero(lengths >= 2)
    starts = train.offsets[:-1][users]
    ends = train.offsets[1:][users]
    inputs = left_pad_windows(train.items, starts, ends - 1, max_len)
    targets = left_pad_windows(train.items, starts + 1, ends, max_len)
    return inputs, targets


class TrainBatches:
    """Seeded shuffled epochs of fixed-shape [B, T] batches; exact resume via (epoch, step).

    The order of epoch e is np.random.default_rng([seed, e]).permutation(N): it depends only
    on (seed, epoch), never on how many batches were drawn before, so a run restarted at
    (epoch, start_step) sees exactly the batches it would have seen.

    `process_shard=(i, n)` (multi-process data parallelism): batch_size stays the global
    batch, and process i builds only rows [i·B/n, (i+1)·B/n) of each global batch, so n
    processes together feed exactly the batches of one process.
    """

    def __init__(
        self,
        inputs_NxT: np.ndarray,
        targets_NxT: np.ndarray,
        batch_size: int,
        seed: int,
        drop_last: bool = False,
        process_shard: tuple[int, int] = (0, 1),
    ) -> None:
        if inputs_NxT.shape != targets_NxT.shape or inputs_NxT.ndim != 2:
            raise ValueError(
                f"inputs {inputs_NxT.shape} and targets {targets_NxT.shape} must both be [N, T]"
            )
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.inputs = np.asarray(inputs_NxT, dtype=np.int32)
        self.targets = np.asarray(targets_NxT, dtype=np.int32)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.shard_index, self.shard_count = (int(x) for x in process_shard)
        if not 0 <= self.shard_index < self.shard_count or batch_size % self.shard_count:
            raise ValueError(
                f"process_shard={process_shard} must be (i, n) with 0 <= i < n and n dividing "
                f"batch_size={batch_size}"
            )
        if self.steps_per_epoch() == 0:
            raise DataError(
                f"no training batches: {len(self.inputs)} training examples, batch size "
                f"{batch_size}, drop_last={drop_last}; lower the batch size or the filters"
            )

    @property
    def num_examples(self) -> int:
        return len(self.inputs)

    def steps_per_epoch(self) -> int:
        """Batches per epoch: ceil(N / B), or floor(N / B) with drop_last."""
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
        """Yields {"inputs": int32 [b, T], "targets": int32 [b, T]} from step `start_step` on.

        b = B / n rows of each global batch (b = B in a single process). The last partial
        batch (if not dropped) is filled with all-zero rows, which carry no loss, so every
        batch has the same shape.
        """
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_examples)
        B, T = self.batch_size, self.inputs.shape[1]
        b = B // self.shard_count
        lo = self.shard_index * b
        for step in range(int(start_step), self.steps_per_epoch()):
            idx = perm[step * B + lo : step * B + lo + b]
            x = self.inputs[idx]
            y = self.targets[idx]
            if len(idx) < b:
                pad = np.zeros((b - len(idx), T), np.int32)
                x = np.concatenate([x, pad])
                y = np.concatenate([y, pad])
            yield {"inputs": x, "targets": y}


def eval_batches(ev: EvalSet, max_len: int, batch_size: int, num_items: int) -> Iterator[dict]:
    """Fixed-size evaluation batches, in row order.

    Yields dicts with:
        "inputs": int32 [B, T] the last T items of each history, left-padded with 0.
        "targets": int32 [B] (0 on padding rows).
        "seen_BxS": int32 [B, S] every item of the full history (for exclude_seen masking),
            left-padded with 0; S = the longest history in the batch rounded up to a multiple
            of 64 (>= 64), which bounds the number of distinct shapes a jitted step sees.
        "valid": bool [B], False on the padding rows of the final batch (padded to B).
        "users": int64 [B] internal user index per row, -1 on padding rows (for per-user
            metrics and paired tests).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(ev.targets)
    top = max(int(ev.targets.max(initial=0)), int(ev.history.max(initial=0)))
    if top > num_items:
        raise DataError(f"evaluation set has item ids above num_items={num_items}")
    lengths = np.diff(ev.offsets)
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        k = hi - lo
        starts = ev.offsets[lo:hi]
        ends = ev.offsets[lo + 1 : hi + 1]
        longest = int(lengths[lo:hi].max()) if k else 0
        S = max(SEEN_MULTIPLE, -(-longest // SEEN_MULTIPLE) * SEEN_MULTIPLE)
        inputs = np.zeros((batch_size, max_len), np.int32)
        seen = np.zeros((batch_size, S), np.int32)
        targets = np.zeros((batch_size,), np.int32)
        valid = np.zeros((batch_size,), bool)
        users = np.full((batch_size,), -1, np.int64)
        inputs[:k] = left_pad_windows(ev.history, starts, ends, max_len)
        seen[:k] = left_pad_windows(ev.history, starts, ends, S)
        targets[:k] = ev.targets[lo:hi]
        valid[:k] = True
        users[:k] = ev.users[lo:hi]
        yield {
            "inputs": inputs,
            "targets": targets,
            "seen_BxS": seen,
            "valid": valid,
            "users": users,
        }
