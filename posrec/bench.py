"""Speed benchmark: training and full-ranking evaluation, variants measured side by side.

    python -m posrec.bench                 # ML-1M shapes, catalogs 3,416 and 100,000 items
    python -m posrec.bench --json          # one JSON object instead of the tables
    python -m posrec.bench --ablations     # before/after of each optimisation (BENCHMARKS.md)
    python -m posrec.bench --ablations=eval_last_only   # one of them

Everything is measured in one process, in interleaved rounds (round r runs the matmul peak,
then every variant, then the next round), so CPU contention from other processes slows all
variants alike and the ratios stay fair; each figure is the median over rounds.

Training: the jitted `train.train_step` (fused CE, AdamW, dropout as in training) on real
ML-1M training windows (`--data_path`; ragged synthetic lengths if the file is absent), cut
by length bucketing (`--bucket_lengths`), on one device. The same fixed list of `--steps`
batches (drawn from epoch 0) is run by every variant. For the 100,000-item catalog the
ML-1M item ids are mapped to random ids in 1..100,000 (the softmax still covers all items).

Useful FLOPs (`useful_flops`) count matmul work at real positions only, forward + backward
= 3 x forward, with C = hidden, F = FFN width, N = catalog size, and per real row of length L
(its L real positions all carry a target) and block:
    dense layers   L·(8C² + 4CF)          Q, K, V, output (4 C×C) and FFN (C×F, F×C)
    attention      2C·L(L+1)              scores and weighted values on the L(L+1)/2 causal pairs
    kernel mixing  2C·L(L+1)              K' = UᵀK and V' = LV (both factors non-identity)
and per target  2NC  (logits over the catalog). Padding, LayerNorm, softmax and the optimizer
are not counted. The peak is the best GFLOP/s of a 2048×2048 float32 `jnp.dot` over the
rounds of the same run.

Evaluation: `evaluate.evaluate` (length-sorted batches, exclude-seen, top-100) of the ML-1M
validation users (6,040), warm; compile time is the first call minus a warm one.
Memory: XLA's buffer assignment of the compiled step (arguments + outputs + temporaries,
the largest over the bucket shapes) and the process's peak RSS (VmHWM) at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from posrec import config_lib, evaluate, losses, parallel, train
from posrec.data import batching
from posrec.data.splits import EvalSet
from posrec.models import sasrec

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ml-1m.csv.gz"

# name -> (model.positional, kernel.u, kernel.l)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "absolute": ("absolute", "identity", "identity"),
    "kernel_toeplitz_full": ("kernel", "toeplitz", "full"),
    "kernel_full_full": ("kernel", "full", "full"),
    "kernel_toeplitz_toeplitz": ("kernel", "toeplitz", "toeplitz"),
}


def useful_flops(
    lengths_R: np.ndarray, hidden: int, ffn: int, num_blocks: int, num_items: int,
    kernel_mixing: bool,
) -> float:
    """Matmul FLOPs of one training step at real positions (forward + backward = 3x forward).

    `lengths_R`: real positions (= targets) of each row of the batch; module doc has the
    formula.
    """
    L = np.asarray(lengths_R, np.float64)
    C, F = float(hidden), float(ffn or hidden)
    pairs_term = 2 * C * np.sum(L * (L + 1))
    per_block = np.sum(L) * (8 * C * C + 4 * C * F) + pairs_term * (2 if kernel_mixing else 1)
    forward = num_blocks * per_block + np.sum(L) * 2 * num_items * C
    return float(3 * forward)


@dataclass
class Data:
    """Training windows and an evaluation set, with where they came from."""

    inputs_NxT: np.ndarray
    targets_NxT: np.ndarray
    valid: EvalSet
    num_items: int
    source: str


def load_data(path: Path, max_len: int, seed: int = 0) -> Data:
    """ML-1M training windows and validation set from `path` (a user,item,timestamp CSV as in
    shared/data), or ragged synthetic sequences of similar lengths if the file is absent."""
    if Path(path).exists():
        from posrec.data import load_split

        config = config_lib.default_config()
        config.data.name, config.data.path, config.data.has_real_time = "csv", str(path), False
        split, seqs = load_split(config)
        inputs, targets = batching.train_examples(split.train, max_len)
        return Data(inputs, targets, split.valid, seqs.num_items, str(path))
    return synthetic_data(6040, 3416, max_len, seed)


def synthetic_data(num_users: int, num_items: int, max_len: int, seed: int = 0) -> Data:
    """Ragged random histories (log-normal lengths around 96, like ML-1M's median)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(96), 1.0, num_users).astype(np.int64), 4, 2500)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(1, num_items + 1, int(offsets[-1])).astype(np.int32)
    ends = offsets[1:] - 1  # the last item is the validation target
    inputs = batching.left_pad_windows(items, offsets[:-1], ends - 1, max_len)
    targets = batching.left_pad_windows(items, offsets[:-1] + 1, ends, max_len)
    valid = EvalSet(
        history=np.concatenate([items[s:e] for s, e in zip(offsets[:-1], ends, strict=True)]),
        offsets=np.concatenate([[0], np.cumsum(lengths - 1)]).astype(np.int64),
        targets=items[ends],
        users=np.arange(num_users, dtype=np.int64),
    )
    return Data(inputs, targets, valid, num_items, f"synthetic ({num_users} users)")


def remap_items(data: Data, num_items: int, seed: int = 0) -> Data:
    """The same sequences over a catalog of `num_items` items (ids mapped to random ids)."""
    if num_items == data.num_items:
        return data
    rng = np.random.default_rng(seed)
    new_ids = np.concatenate([[0], rng.choice(np.arange(1, num_items + 1), data.num_items,
                                              replace=num_items < data.num_items)])
    ev = data.valid
    valid = EvalSet(history=new_ids[ev.history].astype(np.int32), offsets=ev.offsets,
                    targets=new_ids[ev.targets].astype(np.int32), users=ev.users)
    return Data(new_ids[data.inputs_NxT].astype(np.int32),
                new_ids[data.targets_NxT].astype(np.int32), valid, num_items, data.source)


def model_config(args: argparse.Namespace, variant: str) -> ml_collections.ConfigDict:
    config = config_lib.default_config()
    positional, u_factor, l_factor = VARIANTS[variant]
    config.model.update(max_len=args.max_len, hidden=args.hidden, num_blocks=args.num_blocks,
                        num_heads=args.num_heads, dropout=args.dropout, positional=positional)
    config.model.kernel.u, config.model.kernel.l = u_factor, l_factor
    config.train.batch_size = args.batch_size
    config.train.rng_impl = args.rng_impl
    config.model.dropout_bits = args.dropout_bits
    config.eval.batch_size = args.eval_batch_size
    return config


@dataclass
class Case:
    """One (variant, catalog) configuration: its compiled steps, state and results."""

    variant: str
    num_items: int
    config: ml_collections.ConfigDict
    data: Data
    batches: list[dict[str, np.ndarray]]
    loss_fn: Callable
    steps: dict[int, Any] = field(default_factory=dict)  # window length -> compiled step
    state: Any = None
    rng: Any = None
    scorer: Any = None
    model: Any = None
    results: dict[str, Any] = field(default_factory=dict)
    step_times: list[float] = field(default_factory=list)
    eval_times: list[float] = field(default_factory=list)


def build_case(variant: str, num_items: int, data: Data, args: argparse.Namespace,
               loss_fn: Callable | None = None) -> Case:
    """Compile the training step for every window length of the batch list (timed)."""
    config = model_config(args, variant)
    tb = batching.TrainBatches(data.inputs_NxT, data.targets_NxT, args.batch_size, seed=0,
                               bucket_lengths=args.bucket_lengths)
    batches = [b for _, b in zip(range(args.steps), tb.epoch(0), strict=False)]
    model = sasrec.SASRec(config.model, data.num_items)
    loss_fn = loss_fn or losses.make_loss(config.train, None)
    case = Case(variant, num_items, config, data, batches, loss_fn, model=model)
    state = train.init_state(config, model)
    rng = jax.random.key(1, impl=args.rng_impl)
    compile_s, memory = 0.0, 0
    if args.parallelism:  # train.py's data-parallel step over the local devices
        plan = parallel.make_plan(args.parallelism, args.num_devices)
        plan.check_rng_impl(args.rng_impl)
        step = plan.make_train_step(
            functools.partial(train.train_step, model=model, loss_fn=loss_fn))
        state, rng = plan.replicate(state), plan.replicate(rng)
        for b in batches:  # compile by a first call per window, on a copy (it is donated)
            if b["inputs"].shape[1] not in case.steps:
                t0 = time.perf_counter()
                jax.block_until_ready(step(jax.tree.map(jnp.copy, state), b, rng))
                compile_s += time.perf_counter() - t0
                case.steps[b["inputs"].shape[1]] = step
    else:
        step = jax.jit(functools.partial(train.train_step, model=model, loss_fn=loss_fn),
                       donate_argnums=0)
        for b in batches:
            T = b["inputs"].shape[1]
            if T in case.steps:
                continue
            t0 = time.perf_counter()
            compiled = step.lower(state, b, rng).compile()
            compile_s += time.perf_counter() - t0
            mem = compiled.memory_analysis()
            if mem is not None:
                memory = max(memory, int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                                         + mem.temp_size_in_bytes - mem.alias_size_in_bytes))
            case.steps[T] = compiled
    case.state, case.rng = state, rng
    lengths = np.concatenate([(b["targets"] > 0).sum(axis=1) for b in batches])
    kernel_mixing = VARIANTS[variant][0] == "kernel"
    flops = useful_flops(lengths, args.hidden, config.model.ffn_dim, args.num_blocks,
                         data.num_items, kernel_mixing)
    case.results.update(
        variant=variant, num_items=num_items, compile_s=compile_s,
        step_memory_bytes=memory or None, windows=sorted(case.steps),  # None: not known
        examples_per_round=int(sum(int((b["targets"] > 0).any(axis=1).sum()) for b in batches)),
        targets_per_round=int(sum(int((b["targets"] > 0).sum()) for b in batches)),
        positions_per_round=int(sum(b["targets"].size for b in batches)),
        useful_gflop_per_round=flops / 1e9,
    )
    return case


def run_steps(case: Case) -> float:
    """Run the batch list once; returns seconds per step."""
    t0 = time.perf_counter()
    state = case.state
    for b in case.batches:
        state, m = case.steps[b["inputs"].shape[1]](state, b, case.rng)
    jax.block_until_ready((state, m))
    case.state = state
    return (time.perf_counter() - t0) / len(case.batches)


def run_eval(case: Case, users: int) -> tuple[float, dict[str, float]]:
    """Seconds for a full-ranking evaluation of `users` validation users, and its metrics."""
    ev = case.data.valid
    if users and users < len(ev.targets):
        ev = EvalSet(history=ev.history[: ev.offsets[users]], offsets=ev.offsets[: users + 1],
                     targets=ev.targets[:users], users=ev.users[:users])
    if case.scorer is None:
        case.scorer = evaluate.make_scorer(case.model, max(case.config.eval.ks), True)
    t0 = time.perf_counter()
    summary, _ = evaluate.evaluate(case.scorer, case.state.params, ev, case.config,
                                   case.data.num_items)
    return time.perf_counter() - t0, summary


def matmul_peak(n: int = 2048, repeats: int = 2) -> tuple[float, float]:
    """(GFLOP/s of the best of `repeats` float32 n×n dots, process CPU seconds / wall seconds
    during them: ~2 when XLA keeps both cores busy)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: jnp.dot(x, x))
    jax.block_until_ready(f(a))
    best, cpu, wall = float("inf"), 0.0, 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(f(a))
        dt = time.perf_counter() - t0
        cpu, wall, best = cpu + time.process_time() - c0, wall + dt, min(best, dt)
    return 2 * n**3 / best / 1e9, cpu / wall


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(
        cpu=model or platform.processor(), cpus=os.cpu_count(),
        cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        load_average=list(os.getloadavg()), jax=jax.__version__,
        backend=jax.default_backend(), devices=[str(d) for d in jax.devices()],
        xla_flags=os.environ.get("XLA_FLAGS", ""), python=platform.python_version(),
    )


def peak_rss_bytes() -> int:
    """VmHWM of this process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def benchmark(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """The main benchmark: every variant × catalog, interleaved rounds."""
    base = load_data(args.data_path, args.max_len)
    report: dict[str, Any] = dict(
        machine=machine(), data=base.source,
        settings=dict(batch_size=args.batch_size, max_len=args.max_len, hidden=args.hidden,
                      num_blocks=args.num_blocks, num_heads=args.num_heads,
                      dropout=args.dropout, bucket_lengths=list(args.bucket_lengths),
                      rng_impl=args.rng_impl,
                      steps=args.steps, rounds=args.rounds, eval_users=args.eval_users,
                      eval_batch_size=args.eval_batch_size),
    )
    cases = []
    for num_items in args.num_items:
        data = remap_items(base, num_items)
        for variant in args.variants:
            log(f"compiling {variant} @ {num_items} items ...")
            cases.append(build_case(variant, num_items, data, args))
    peaks, cpu_ratios = [], []
    for case in cases:  # warm-up step and first (compiling) evaluation
        run_steps(case)
        if args.eval_users >= 0:
            t_first, _ = run_eval(case, args.eval_users)
            case.results["eval_first_call_s"] = t_first
    for r in range(args.rounds):
        gflops, ratio = matmul_peak()
        peaks.append(gflops)
        cpu_ratios.append(ratio)
        for case in cases:
            case.step_times.append(run_steps(case))
            if args.eval_users >= 0:
                dt, summary = run_eval(case, args.eval_users)
                case.eval_times.append(dt)
                case.results["eval_users"] = summary["num_users"]
        log(f"round {r + 1}/{args.rounds}: matmul {gflops:.1f} GFLOP/s, "
            + ", ".join(f"{c.variant}@{c.num_items}: {1e3 * c.step_times[-1]:.0f} ms/step"
                        for c in cases))
    peak = max(peaks)
    report["matmul_peak_gflops"] = peak
    report["matmul_gflops_rounds"] = peaks
    report["matmul_cpu_per_wall"] = median(cpu_ratios)
    rows = []
    for case in cases:
        res = case.results
        sec = median(case.step_times)
        steps = len(case.batches)
        res.update(
            ms_per_step=1e3 * sec, ms_per_step_rounds=[1e3 * t for t in case.step_times],
            train_examples_per_s=res["examples_per_round"] / (sec * steps),
            train_targets_per_s=res["targets_per_round"] / (sec * steps),
            useful_gflops=res["useful_gflop_per_round"] / (sec * steps),
        )
        res["fraction_of_peak"] = res["useful_gflops"] / peak
        if case.eval_times:
            ev_s = median(case.eval_times)
            res.update(eval_s=ev_s, eval_users_per_s=res["eval_users"] / ev_s,
                       eval_compile_s=max(res["eval_first_call_s"] - ev_s, 0.0))
        ref = next(c for c in cases if c.num_items == case.num_items)
        res["step_vs_" + ref.variant] = (
            median([a / b for a, b in zip(case.step_times, ref.step_times, strict=True)]))
        rows.append(res)
    report["results"] = rows
    report["peak_rss_bytes"] = peak_rss_bytes()
    report["machine"]["load_average_end"] = list(os.getloadavg())
    return report


# ---------------------------------------------------------------------------------------------
# Ablations: each optimisation against what it replaced, side by side in one run.


def _aggregate_bqhd(weights_BxHxTxT, v_BxTxHxD):
    """attention.aggregate before issue 7: the einsum written straight to [B, T, H, D]."""
    return jnp.einsum("bhqk,bkhd->bqhd", weights_BxHxTxT.astype(v_BxTxHxD.dtype), v_BxTxHxD)


def _dense_ce_loss(h, table, y, rng, rows):
    """loss "ce" before issue 7: dense [B, T, N] logits (losses._full_ce_per_position)."""
    return losses._full_ce_per_position(h, table, y)


def _interleave(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(f())
    return times


ABLATIONS = ("fused_ce", "bucketing", "rng_impl", "dropout_bits", "attention_layout",
             "eval_order", "eval_last_only", "prefetch", "dot_product_attention")


def ablations(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Before/after pairs at the benchmark shapes (first catalog), interleaved rounds."""
    from posrec.models import attention

    base = remap_items(load_data(args.data_path, args.max_len), args.num_items[0])
    out: dict[str, Any] = dict(machine=machine(), data=base.source)
    variants = [v for v in ("absolute", "kernel_toeplitz_full") if v in args.variants]

    def pair(name: str, before: Callable[[str], Case], after: Callable[[str], Case]) -> None:
        rows = {}
        for v in variants:
            log(f"ablation {name}: compiling {v} ...")
            a, b = before(v), after(v)
            run_steps(a)
            run_steps(b)
            t = _interleave({"before": lambda a=a: run_steps(a),
                             "after": lambda b=b: run_steps(b)}, args.rounds)
            speedups = [x / y for x, y in zip(t["before"], t["after"], strict=True)]
            rows[v] = dict(
                before_ms_per_step=1e3 * median(t["before"]),
                after_ms_per_step=1e3 * median(t["after"]),
                speedup=median(speedups),
                before_targets_per_s=a.results["targets_per_round"] / len(a.batches)
                / median(t["before"]),
                after_targets_per_s=b.results["targets_per_round"] / len(b.batches)
                / median(t["after"]),
                before_memory_bytes=a.results["step_memory_bytes"],
                after_memory_bytes=b.results["step_memory_bytes"],
            )
            log(f"  {v}: {rows[v]['before_ms_per_step']:.0f} -> "
                f"{rows[v]['after_ms_per_step']:.0f} ms/step (x{rows[v]['speedup']:.2f})")
        out[name] = rows

    chosen = args.ablations
    no_buckets = argparse.Namespace(**{**vars(args), "bucket_lengths": ()})
    if "fused_ce" in chosen:
        pair("fused_ce", lambda v: build_case(v, args.num_items[0], base, no_buckets,
                                          loss_fn=_dense_ce_loss),
             lambda v: build_case(v, args.num_items[0], base, no_buckets))
    if "bucketing" in chosen:
        pair("bucketing", lambda v: build_case(v, args.num_items[0], base, no_buckets),
             lambda v: build_case(v, args.num_items[0], base, args))
    if "rng_impl" in chosen:  # JAX's default threefry against each other dropout PRNG
        threefry = argparse.Namespace(**{**vars(args), "rng_impl": "threefry2x32"})
        for impl in config_lib.RNG_IMPLS[1:]:
            other = argparse.Namespace(**{**vars(args), "rng_impl": impl})
            pair(f"rng_impl={impl}", lambda v: build_case(v, args.num_items[0], base, threefry),
                 lambda v, other=other: build_case(v, args.num_items[0], base, other))
    if "dropout_bits" in chosen:
        bits8 = argparse.Namespace(**{**vars(args), "dropout_bits": 8})
        bits32 = argparse.Namespace(**{**vars(args), "dropout_bits": 32})
        pair("dropout_bits", lambda v: build_case(v, args.num_items[0], base, bits32),
             lambda v: build_case(v, args.num_items[0], base, bits8))
    if "attention_layout" in chosen:
        original = attention.aggregate
        try:
            attention.aggregate = _aggregate_bqhd
            before = {v: build_case(v, args.num_items[0], base, args) for v in variants}
        finally:
            attention.aggregate = original
        pair("attention_layout", lambda v: before[v],
             lambda v: build_case(v, args.num_items[0], base, args))
    if "eval_order" in chosen:
        out["eval_order"] = eval_ablation(base, args, variants, log,
                                          dict(by_length=False, last_only=False),
                                          dict(by_length=True, last_only=False))
    if "eval_last_only" in chosen:
        out["eval_last_only"] = eval_ablation(base, args, variants, log,
                                              dict(by_length=True, last_only=False),
                                              dict(by_length=True, last_only=True))
    if "prefetch" in chosen:
        out["prefetch"] = prefetch_ablation(base, args)
    if "dot_product_attention" in chosen:
        out["dot_product_attention"] = dpa_ablation(args, log)
    return out


def eval_ablation(base: Data, args, variants, log, before: dict[str, bool],
                  after: dict[str, bool]) -> dict[str, Any]:
    """Full-ranking evaluation of every validation user with two settings of
    (by_length, last_only): time (interleaved), first-call time, distinct compiled shapes,
    and how many ranks differ (by_length reorders nothing numerically: 0 expected;
    last_only reorders float sums: a few ties may flip)."""
    rows = {}
    for v in variants:
        case = build_case(v, args.num_items[0], base, argparse.Namespace(
            **{**vars(args), "steps": 4}))
        for _ in range(3):  # a few updates: non-trivial parameters
            run_steps(case)
        cfg = case.config
        scorers = {k: evaluate.make_scorer(case.model, 100, True, last_only=s["last_only"])
                   for k, s in (("before", before), ("after", after))}
        params = scorers["after"].place(case.state.params)

        def score_all(which: str, cfg=cfg, scorers=scorers, params=params):
            ranks, order, shapes = [], [], set()
            by_length = (before if which == "before" else after)["by_length"]
            for b in batching.eval_batches(base.valid, cfg.model.max_len, cfg.eval.batch_size,
                                           base.num_items, by_length=by_length):
                r, _ = scorers[which](params, b["inputs"], b["targets"], b["seen_BxS"])
                ranks.append(np.asarray(r)[b["valid"]])
                order.append(b["rows"][b["valid"]])
                shapes.add((b["inputs"].shape[1], b["seen_BxS"].shape[1]))
            out = np.empty(len(base.valid.targets), np.int64)
            out[np.concatenate(order)] = np.concatenate(ranks)
            return out, shapes

        first = {}
        for which in ("before", "after"):
            t0 = time.perf_counter()
            first[which] = score_all(which) + (time.perf_counter() - t0,)
        t = _interleave({w: lambda w=w: _timed(lambda: score_all(w))
                         for w in ("before", "after")}, args.rounds)
        rows[v] = dict(
            users=len(base.valid.targets),
            before_s=median(t["before"]), after_s=median(t["after"]),
            speedup=median([a / b for a, b in zip(t["before"], t["after"], strict=True)]),
            before_first_call_s=first["before"][2], after_first_call_s=first["after"][2],
            before_shapes=len(first["before"][1]), after_shapes=len(first["after"][1]),
            ranks_differing=int(np.sum(first["before"][0] != first["after"][0])),
            max_rank_difference=int(np.max(np.abs(first["before"][0] - first["after"][0]))),
        )
        log(f"  eval {v}: {rows[v]}")
    return rows


def _timed(f: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def prefetch_ablation(base: Data, args) -> dict[str, float]:
    """Host time to build one training batch (what prefetching hides behind the step)."""
    tb = batching.TrainBatches(base.inputs_NxT, base.targets_NxT, args.batch_size, seed=0,
                               bucket_lengths=args.bucket_lengths)
    t0 = time.perf_counter()
    n = sum(1 for _ in tb.epoch(0))
    build = (time.perf_counter() - t0) / n
    x = next(tb.epoch(0))["inputs"]
    t0 = time.perf_counter()
    for _ in range(20):
        jax.block_until_ready(jax.device_put(x))
    return dict(batch_build_ms=1e3 * build, device_put_ms=1e3 * (time.perf_counter() - t0) / 20)


def dpa_ablation(args, log) -> dict[str, Any]:
    """posrec's attention core vs `jax.nn.dot_product_attention` (XLA implementation), forward
    + backward on [B, T, H, D] with the causal mask, interleaved."""
    from posrec.models import attention

    B, T, H = args.batch_size, args.max_len, args.num_heads
    D = args.hidden // H
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, (B, T, H, D)) for kk in keys)
    mask = attention.causal_mask(jnp.ones((B, T), bool))

    def ours(q, k, v):
        return attention.plain_attention(q, k, v, mask)

    def dpa(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, mask=mask)

    fns = {}
    for name, f in (("posrec", ours), ("dot_product_attention", dpa)):
        g = jax.jit(jax.grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v) ** 2), argnums=(0, 1, 2)))
        jax.block_until_ready(g(q, k, v))
        fns[name] = lambda g=g: _timed(lambda: jax.block_until_ready(g(q, k, v)))
    t = _interleave(fns, args.rounds)
    res = {k_ + "_ms": 1e3 * median(v_) for k_, v_ in t.items()}
    res["max_abs_diff"] = float(jnp.abs(ours(q, k, v) - dpa(q, k, v)).max())
    log(f"  attention fwd+bwd: {res}")
    return res


# ---------------------------------------------------------------------------------------------
# Command line.


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables."""
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cpus']} CPUs ({m['cpus_usable']} usable), {m['backend']}, "
        f"jax {m['jax']}; load average {m['load_average'][0]:.1f} -> "
        f"{m['load_average_end'][0]:.1f}",
        f"data: {report['data']}; settings: {report['settings']}",
        f"fp32 matmul peak (2048², best of rounds): {report['matmul_peak_gflops']:.1f} GFLOP/s; "
        f"rounds {[round(x, 1) for x in report['matmul_gflops_rounds']]}; CPU/wall during "
        f"matmul {report['matmul_cpu_per_wall']:.2f}",
        "",
    ]
    head = ("variant", "items", "ms/step", "ratio", "examples/s", "targets/s", "GFLOP/s",
            "%peak", "compile s", "step MB", "eval s", "users/s", "eval compile s")
    table = [head]
    for r in report["results"]:
        ratio = next(v for k, v in r.items() if k.startswith("step_vs_"))
        table.append((
            r["variant"], str(r["num_items"]), f"{r['ms_per_step']:.0f}", f"{ratio:.2f}",
            f"{r['train_examples_per_s']:.0f}", f"{r['train_targets_per_s']:.0f}",
            f"{r['useful_gflops']:.1f}", f"{100 * r['fraction_of_peak']:.0f}",
            f"{r['compile_s']:.1f}",
            f"{r['step_memory_bytes'] / 2**20:.0f}" if r["step_memory_bytes"] else "—",
            f"{r.get('eval_s', float('nan')):.2f}",
            f"{r.get('eval_users_per_s', float('nan')):.0f}",
            f"{r.get('eval_compile_s', float('nan')):.1f}",
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    lines.append(f"peak RSS of the benchmark process: {report['peak_rss_bytes'] / 2**30:.2f} GiB")
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m posrec.bench", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ablations", nargs="?", const=",".join(ABLATIONS), default="",
                   type=lambda s: tuple(x for x in s.split(",") if x),
                   help="before/after of each optimisation instead of the main table; "
                   f"optionally a comma-separated subset of {','.join(ABLATIONS)}")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--max_len", type=int, default=200)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--num_blocks", type=int, default=2)
    p.add_argument("--num_heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--num_items", type=_ints, default=(3416, 100000),
                   help="catalog sizes, comma-separated")
    p.add_argument("--variants", type=lambda s: tuple(s.split(",")), default=tuple(VARIANTS))
    p.add_argument("--bucket_lengths", type=_ints, default=(50, 100, 200),
                   help="train.bucket_lengths of the measured batches ('' = off)")
    p.add_argument("--rng_impl", default="threefry2x32", choices=config_lib.RNG_IMPLS,
                   help="train.rng_impl (dropout PRNG)")
    p.add_argument("--dropout_bits", type=int, default=32, choices=(8, 32),
                   help="model.dropout_bits (random bits per dropout decision)")
    p.add_argument("--parallelism", default="", choices=("", *parallel.PARALLELISM),
                   help="train.parallelism: data-parallel steps over the local devices "
                   "('' = one device, plain jit); on CPU with XLA_FLAGS="
                   "--xla_force_host_platform_device_count=N, one device per core")
    p.add_argument("--num_devices", type=int, default=0, help="train.num_devices (0 = all)")
    p.add_argument("--steps", type=int, default=8, help="training batches per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--eval_users", type=int, default=0,
                   help="validation users evaluated per round (0 = all, -1 = skip evaluation)")
    p.add_argument("--eval_batch_size", type=int, default=256)
    p.add_argument("--data_path", type=Path, default=DEFAULT_DATA)
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    bad = [a for a in args.ablations if a not in ABLATIONS]
    if bad:
        p.error(f"unknown ablation(s) {bad}; known: {list(ABLATIONS)}")
    args.bucket_lengths = tuple(b for b in args.bucket_lengths if b < args.max_len)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    report = ablations(args, log) if args.ablations else benchmark(args, log)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=float))
    elif args.ablations:
        print(json.dumps(report, indent=2, sort_keys=True, default=float))
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
