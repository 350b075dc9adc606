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


# Length bucketing (issue 7): bucketing changes which rows share a batch and the window
# width, never which targets carry loss; the order stays a function of (seed, epoch).


def _ragged_examples(n, T, seed=0):
    """Left-padded rows with lengths 0..T; every real input/target value names its row."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, n)
    lengths[:3] = [T, 1, 0]  # a full row, a one-item row, an empty row
    x = np.zeros((n, T), np.int32)
    for r, length in enumerate(lengths):
        if length:
            x[r, T - length :] = (r + 1) * 1000 + np.arange(length) + 1
    y = np.where(x > 0, x + 500, 0).astype(np.int32)
    return x, y, lengths


def _collect(batches, T):
    """{row id: (inputs, targets) right-aligned to width T} and the list of batch widths."""
    seen, widths = {}, []
    for bt in batches:
        x, y = bt["inputs"], bt["targets"]
        assert x.shape == y.shape and x.dtype == y.dtype == np.int32
        widths.append(x.shape[1])
        for xr, yr in zip(x, y, strict=True):
            if not xr.any() and not yr.any():
                continue  # a padding row (or an empty example: checked by count below)
            rid = int(xr[xr > 0][0]) // 1000
            assert rid not in seen, "a row appears twice in one epoch"
            full_x = np.zeros(T, np.int32)
            full_y = np.zeros(T, np.int32)
            full_x[T - len(xr) :], full_y[T - len(yr) :] = xr, yr
            seen[rid] = (full_x, full_y)
    return seen, widths


@pytest.mark.parametrize("buckets,drop_last", [((4, 8), False), ((2, 5, 9), False),
                                               ((4, 8), True), ((16,), False)])
def test_bucketing_every_target_once_per_epoch_in_smallest_bucket(buckets, drop_last):
    T, B = 16, 5
    x, y, lengths = _ragged_examples(83, T)
    tb = TrainBatches(x, y, batch_size=B, seed=7, drop_last=drop_last, bucket_lengths=buckets)
    full = sorted(set(buckets) | {T})
    assert tb.buckets == tuple(full)
    smallest = np.asarray(full)[np.searchsorted(full, lengths)]
    sizes = [int((smallest == b).sum()) for b in full]
    want_steps = sum(n // B if drop_last else -(-n // B) for n in sizes)
    assert tb.steps_per_epoch() == want_steps
    for epoch in range(3):
        batches = list(tb.epoch(epoch))
        assert len(batches) == want_steps
        seen, widths = _collect(batches, T)
        for bt, width in zip(batches, widths, strict=True):
            assert width in full and bt["inputs"].shape == (B, width)
            rows = [int(r[r > 0][0]) // 1000 - 1 for r in bt["inputs"] if r.any()]
            # Every row of the batch has this bucket as its smallest fitting bucket.
            assert all(smallest[r] == width for r in rows)
        if not drop_last:
            # Every non-empty example exactly once, with all its targets, unchanged.
            assert sorted(seen) == sorted(int(r) + 1 for r in np.flatnonzero(lengths))
            for rid, (fx, fy) in seen.items():
                np.testing.assert_array_equal(fx, x[rid - 1])
                np.testing.assert_array_equal(fy, y[rid - 1])
            assert sum(int((fy > 0).sum()) for _, fy in seen.values()) == int((y > 0).sum())
        else:  # full batches only; each bucket drops fewer than B rows
            plan = tb.epoch_plan(epoch)
            assert all(len(idx) == B for idx, _ in plan)
            used = np.concatenate([idx for idx, _ in plan])
            assert len(np.unique(used)) == len(used)
            for b, n in zip(full, sizes, strict=True):
                assert n - np.sum(smallest[used] == b) < B


def test_bucketing_deterministic_resumable_and_epochs_differ():
    x, y, _ = _ragged_examples(61, 12, seed=1)
    a = TrainBatches(x, y, batch_size=4, seed=3, bucket_lengths=(3, 6))
    b = TrainBatches(x, y, batch_size=4, seed=3, bucket_lengths=(6, 3))  # order irrelevant
    e1 = list(a.epoch(1))
    list(b.epoch(0))  # drawing another epoch first changes nothing
    e1b = list(b.epoch(1))
    assert [bt["inputs"].shape for bt in e1] == [bt["inputs"].shape for bt in e1b]
    for p, q in zip(e1, e1b, strict=True):
        np.testing.assert_array_equal(p["inputs"], q["inputs"])
        np.testing.assert_array_equal(p["targets"], q["targets"])
    tail = list(a.epoch(1, start_step=5))
    assert len(tail) == len(e1) - 5
    for p, q in zip(tail, e1[5:], strict=True):
        np.testing.assert_array_equal(p["inputs"], q["inputs"])
    e2 = list(a.epoch(2))
    assert [bt["inputs"].shape for bt in e1] != [bt["inputs"].shape for bt in e2] or any(
        not np.array_equal(p["inputs"], q["inputs"]) for p, q in zip(e1, e2, strict=True))


def test_no_buckets_is_the_documented_permutation():
    """bucket_lengths=() keeps the unbucketed batches bit for bit (running runs resume)."""
    x, y, _ = _ragged_examples(23, 6, seed=2)
    tb = TrainBatches(x, y, batch_size=5, seed=4)
    assert tb.buckets == ()
    perm = np.random.default_rng([4, 2]).permutation(23)
    got = list(tb.epoch(2))
    assert len(got) == 5
    for s, bt in enumerate(got):
        idx = perm[s * 5 : (s + 1) * 5]
        want = np.zeros((5, 6), np.int32)
        want[: len(idx)] = x[idx]
        np.testing.assert_array_equal(bt["inputs"], want)


def test_bucketing_process_shards_rebuild_the_global_batch():
    x, y, _ = _ragged_examples(50, 10, seed=5)
    kw = dict(batch_size=6, seed=2, bucket_lengths=(4,))
    whole = list(TrainBatches(x, y, **kw).epoch(0))
    parts = [list(TrainBatches(x, y, process_shard=(i, 3), **kw).epoch(0)) for i in range(3)]
    for s, bt in enumerate(whole):
        np.testing.assert_array_equal(
            bt["inputs"], np.concatenate([p[s]["inputs"] for p in parts]))


def test_bucketing_rejects_lengths_outside_the_window():
    x, y, _ = _ragged_examples(10, 8)
    with pytest.raises(ValueError, match="bucket_lengths"):
        TrainBatches(x, y, batch_size=2, seed=0, bucket_lengths=(4, 9))
    with pytest.raises(ValueError, match="bucket_lengths"):
        TrainBatches(x, y, batch_size=2, seed=0, bucket_lengths=(0, 4))


@pytest.mark.parametrize("positional", ["absolute", "kernel"])
def test_window_width_does_not_change_outputs_at_real_positions(positional):
    """What bucketing relies on: a left-padded row gives the same hidden states at its real
    positions in a [B, T_b] window as in the [B, T] window (absolute PE indexes positions
    from the right; Full kernel factors use their last T_b rows/cols, Toeplitz the first
    T_b offsets)."""
    import jax

    from posrec.config_lib import default_config
    from posrec.models import sasrec

    cfg = default_config().model
    cfg.max_len, cfg.hidden, cfg.positional = 12, 8, positional
    cfg.kernel.init = "identity_noise"
    cfg.kernel.init_noise = 0.3  # non-trivial U and L
    model = sasrec.SASRec(cfg, 30)
    x, _, _ = _ragged_examples(6, 12, seed=3)
    x = np.where(x > 0, x % 29 + 1, 0).astype(np.int32)
    x[:, :7] = 0  # every row fits a window of 5
    params = model.init(jax.random.key(0), x, train=False)
    full = np.asarray(model.apply(params, x, train=False))
    short = np.asarray(model.apply(params, x[:, 7:], train=False))
    real = x[:, 7:] > 0
    np.testing.assert_allclose(short[real], full[:, 7:][real], rtol=1e-5, atol=1e-5)


def test_prefetch_same_items_errors_and_early_close():
    import threading

    from posrec.data.batching import prefetch

    assert list(prefetch(iter(range(10)), size=3, transform=lambda v: v * 2)) == list(
        range(0, 20, 2))

    def failing():
        yield 1
        raise RuntimeError("boom")

    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for v in prefetch(failing()):
            got.append(v)
    assert got == [1]
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    gen = prefetch(endless(), size=2)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()  # stops the producer thread
    assert threading.active_count() == before
    assert len(produced) <= 3 + 2 + 2


def test_seen_width_powers_of_two():
    from posrec.data.batching import seen_width

    assert [seen_width(n) for n in (0, 1, 64, 65, 128, 129, 2275)] == [
        64, 64, 64, 128, 128, 256, 4096]


def _random_eval_set(n_users, num_items, max_hist, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_hist + 1, n_users)
    lengths[:2] = [max_hist, 1]
    hist = rng.integers(1, num_items + 1, int(lengths.sum())).astype(np.int32)
    return EvalSet(
        history=hist,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        targets=rng.integers(1, num_items + 1, n_users).astype(np.int32),
        users=np.arange(n_users, dtype=np.int64) * 3,
    )


def test_eval_batches_by_length_cover_users_once_with_cut_windows():
    from posrec.data.batching import eval_window

    ev = _random_eval_set(53, 40, 90, seed=1)
    lengths = np.diff(ev.offsets)
    plain = list(eval_batches(ev, max_len=40, batch_size=8, num_items=40))
    by_len = list(eval_batches(ev, max_len=40, batch_size=8, num_items=40, by_length=True))
    assert len(plain) == len(by_len) == 7
    full_inputs = np.concatenate([b["inputs"][b["valid"]] for b in plain])
    rows = np.concatenate([b["rows"][b["valid"]] for b in by_len])
    assert sorted(rows.tolist()) == list(range(53))
    assert np.all(np.diff(lengths[rows]) >= 0)  # sorted by history length
    for b in by_len:
        r = b["rows"][b["valid"]]
        T = b["inputs"].shape[1]
        assert T == eval_window(min(int(lengths[r].max()), 40), 40) and T in (16, 32, 40)
        np.testing.assert_array_equal(b["inputs"][b["valid"]], full_inputs[r][:, 40 - T :])
        assert (full_inputs[r][:, : 40 - T] == 0).all()  # only padding was cut
        np.testing.assert_array_equal(b["targets"][b["valid"]], ev.targets[r])
        np.testing.assert_array_equal(b["users"][b["valid"]], ev.users[r])
        assert (b["rows"][~b["valid"]] == -1).all()


@pytest.mark.parametrize(
    "positional", ["absolute", "kernel", "sinusoidal", "rope", "alibi", "learned_bias", "none"])
def test_evaluate_ranks_equal_full_window_row_order_reference(positional):
    """evaluate() (length-sorted batches, cut windows) gives exactly the ranks and metrics of
    scoring every user alone with the full max_len window, in row order."""
    import jax

    from posrec import evaluate, metrics
    from posrec.config_lib import default_config
    from posrec.models import sasrec

    config = default_config()
    config.model.update(max_len=48, hidden=16, positional=positional)
    config.model.kernel.init = "identity_noise"
    config.model.kernel.init_noise = 0.3
    config.model.bias.kind = "full"
    config.eval.batch_size = 16
    num_items = 60
    ev = _random_eval_set(70, num_items, 120, seed=2)
    model = sasrec.SASRec(config.model, num_items)
    params = model.init(jax.random.key(3), np.ones((1, 48), np.int32), train=False)["params"]
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(4), p.shape),
                          params)  # non-trivial learned biases / positions
    scorer = evaluate.make_scorer(model, 100, True)
    summary, per_user = evaluate.evaluate(scorer, params, ev, config, num_items)

    ranks = []
    for b in eval_batches(ev, max_len=48, batch_size=1, num_items=num_items):
        h = model.apply({"params": params}, b["inputs"], train=False)[:, -1]
        r, _ = metrics.rank_and_topk(h @ sasrec.item_table(params).T, b["targets"],
                                     b["seen_BxS"], 100)
        ranks.append(int(r[0]))
    np.testing.assert_array_equal(per_user["rank"], ranks)
    np.testing.assert_array_equal(per_user["users"], ev.users)
    assert summary["ndcg@10"] == pytest.approx(
        metrics.summarize(np.array(ranks), np.zeros((70, 1), int), (10,), num_items)["ndcg@10"],
        abs=0)
