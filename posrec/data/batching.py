"""Fixed-shape numpy batches for training and evaluation (vectorised, no per-example loop).

Shapes come from a small fixed set, so a jitted step compiles a few times at most: training
batches are [B, T] (or [B, T_b] for a length bucket T_b, see `TrainBatches`), partial batches
are padded with empty rows, and evaluation's seen-item lists are padded to a power of two
(>= 64). Padding id is 0 everywhere; a 0 target carries no loss. `prefetch` builds batches
in a background thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from posrec.data.preprocess import Sequences
from posrec.data.splits import EvalSet
from posrec.errors import DataError

SEEN_MULTIPLE = 64


def seen_width(longest: int) -> int:
    """Width S of a batch's seen-item lists: the smallest power of two >= max(longest, 64).

    Each distinct S compiles the scorer once; powers of two bound the count by
    log2(longest history / 64) + 1 at the cost of at most 2x padding in a cheap scatter.
    """
    return max(SEEN_MULTIPLE, 1 << max(int(longest) - 1, 0).bit_length())


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

    `bucket_lengths` (e.g. (50, 100, 200); empty = off): length bucketing. A row's length is
    the span of its real positions (left padding excluded); it belongs to the smallest bucket
    T_b >= its length (T itself is always the last bucket). Epoch e then takes the same
    permutation, groups it by bucket (stable, so the order inside a bucket stays random),
    cuts each bucket into batches of B rows (its last one padded with empty rows, or dropped
    with drop_last), and shuffles the batch order with the same generator. A batch of bucket
    T_b holds the last T_b columns, which contain every real position of its rows: each row
    still appears exactly once per epoch with every target, the order still depends only on
    (seed, epoch), and the step compiles once per bucket. Left padding makes the model's
    outputs at real positions independent of the window length, so only the batch
    composition differs from unbucketed training (rows of similar length train together).
    """

    def __init__(
        self,
        inputs_NxT: np.ndarray,
        targets_NxT: np.ndarray,
        batch_size: int,
        seed: int,
        drop_last: bool = False,
        process_shard: tuple[int, int] = (0, 1),
        bucket_lengths: Sequence[int] = (),
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
        T = self.inputs.shape[1]
        buckets = sorted({int(b) for b in bucket_lengths} | ({T} if bucket_lengths else set()))
        if buckets and not 1 <= buckets[0] <= buckets[-1] == T:
            raise ValueError(f"bucket_lengths={tuple(bucket_lengths)} must lie in [1, T={T}]")
        self.buckets = tuple(buckets)
        self.bucket_N = np.zeros(self.num_examples, np.int64)
        if buckets:
            real_NxT = (self.inputs > 0) | (self.targets > 0)
            length_N = np.where(real_NxT.any(axis=1), T - real_NxT.argmax(axis=1), 0)
            self.bucket_N = np.searchsorted(np.asarray(buckets), length_N, side="left")
        if self.steps_per_epoch() == 0:
            raise DataError(
                f"no training batches: {len(self.inputs)} training examples, batch size "
                f"{batch_size}, drop_last={drop_last}; lower the batch size or the filters"
            )

    @property
    def num_examples(self) -> int:
        return len(self.inputs)

    def steps_per_epoch(self) -> int:
        """Batches per epoch: ceil(N / B), or floor(N / B) with drop_last (summed over the
        buckets when bucketing)."""
        b = self.batch_size
        sizes = np.bincount(self.bucket_N) if self.buckets else [self.num_examples]
        return int(sum(n // b if self.drop_last else -(-n // b) for n in sizes))

    def epoch_plan(self, epoch: int) -> list[tuple[np.ndarray, int]]:
        """Epoch `epoch` as a list of (example indices [<= B], window length) per step; a
        function of (seed, epoch) only."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        perm = rng.permutation(self.num_examples)
        B, T = self.batch_size, self.inputs.shape[1]
        if not self.buckets:
            return [(perm[s * B : (s + 1) * B], T) for s in range(self.steps_per_epoch())]
        grouped = perm[np.argsort(self.bucket_N[perm], kind="stable")]
        ends = np.cumsum(np.bincount(self.bucket_N, minlength=len(self.buckets)))
        plan = []
        for bucket, (lo, hi) in enumerate(zip(np.r_[0, ends[:-1]], ends, strict=True)):
            stop = lo + (hi - lo) // B * B if self.drop_last else hi
            plan += [(grouped[s : min(s + B, hi)], self.buckets[bucket])
                     for s in range(lo, stop, B)]
        return [plan[i] for i in rng.permutation(len(plan))]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
        """Yields {"inputs": int32 [b, T_b], "targets": int32 [b, T_b]} from step `start_step`.

        b = B / n rows of each global batch (b = B in a single process); T_b = T, or the
        batch's bucket length when bucketing. A partial batch (if not dropped) is filled with
        all-zero rows, which carry no loss, so every batch of a bucket has the same shape.
        """
        b = self.batch_size // self.shard_count
        lo = self.shard_index * b
        T = self.inputs.shape[1]
        for idx_B, length in self.epoch_plan(epoch)[int(start_step):]:
            idx = idx_B[lo : lo + b]
            x = np.zeros((b, length), np.int32)
            y = np.zeros((b, length), np.int32)
            x[: len(idx)] = self.inputs[idx, T - length :]
            y[: len(idx)] = self.targets[idx, T - length :]
            yield {"inputs": x, "targets": y}


def eval_window(longest: int, max_len: int) -> int:
    """Window width of a `by_length` evaluation batch: the smallest power of two >= its
    longest history (at least 16), capped at max_len, so at most log2(max_len / 16) + 2
    shapes compile."""
    return min(int(max_len), max(16, 1 << max(int(longest) - 1, 0).bit_length()))


def eval_batches(
    ev: EvalSet, max_len: int, batch_size: int, num_items: int, by_length: bool = False
) -> Iterator[dict]:
    """Fixed-size evaluation batches, in row order (or by history length).

    `by_length=True` visits the users sorted by history length (stable) and cuts each
    batch's window to T = `eval_window(longest history in the batch, max_len)`: the model's
    output at the last position does not depend on left padding, so every user's scores are
    those of the full window (up to float rounding) at ~60% of the cost on ML-1M; "rows"
    says where each user sits in `ev`.

    Yields dicts with:
        "inputs": int32 [B, T] the last T items of each history, left-padded with 0
            (T = max_len unless by_length).
        "targets": int32 [B] (0 on padding rows).
        "seen_BxS": int32 [B, S] every item of the full history (for exclude_seen masking),
            left-padded with 0; S = `seen_width(longest history in the batch)`, a power of
            two >= 64, so ML-1M's histories (up to 2,275 items) give 6 shapes, not 36.
        "valid": bool [B], False on the padding rows of the final batch (padded to B).
        "users": int64 [B] internal user index per row, -1 on padding rows (for per-user
            metrics and paired tests).
        "rows": int64 [B] index of the row's user in `ev`, -1 on padding rows.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(ev.targets)
    top = max(int(ev.targets.max(initial=0)), int(ev.history.max(initial=0)))
    if top > num_items:
        raise DataError(f"evaluation set has item ids above num_items={num_items}")
    lengths = np.diff(ev.offsets)
    order = np.argsort(lengths, kind="stable") if by_length else np.arange(n)
    for lo in range(0, n, batch_size):
        rows = order[lo : lo + batch_size]
        k = len(rows)
        starts = ev.offsets[rows]
        ends = ev.offsets[rows + 1]
        longest = int(lengths[rows].max()) if k else 0
        S = seen_width(longest)
        T = eval_window(min(longest, max_len), max_len) if by_length else max_len
        inputs = np.zeros((batch_size, T), np.int32)
        seen = np.zeros((batch_size, S), np.int32)
        targets = np.zeros((batch_size,), np.int32)
        valid = np.zeros((batch_size,), bool)
        users = np.full((batch_size,), -1, np.int64)
        rows_B = np.full((batch_size,), -1, np.int64)
        inputs[:k] = left_pad_windows(ev.history, starts, ends, T)
        seen[:k] = left_pad_windows(ev.history, starts, ends, S)
        targets[:k] = ev.targets[rows]
        valid[:k] = True
        users[:k] = ev.users[rows]
        rows_B[:k] = rows
        yield {
            "inputs": inputs,
            "targets": targets,
            "seen_BxS": seen,
            "valid": valid,
            "users": users,
            "rows": rows_B,
        }


class _Failure:
    """An exception raised by the producer thread, re-raised in the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetch(items: Iterator, size: int = 2, transform=None) -> Iterator:
    """Yields `transform(item)` for the items of `items`, produced up to `size` ahead by a
    background thread (batch building and the host-to-device copy overlap the running step).

    The order and values are exactly those of `items`; an exception in the producer is
    raised here at the item where it occurred. Closing the generator (a `break` in the
    consumer's loop, or an exception) stops the producer after at most one more item.
    """
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    transform = transform or (lambda item: item)
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(transform(item)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failure(error))
            return
        put(_END)

    worker = threading.Thread(target=produce, name="posrec-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            entry = buffer.get()
            if entry is _END:
                return
            if isinstance(entry, _Failure):
                raise entry.error
            yield entry
    finally:
        stop.set()
        worker.join()
