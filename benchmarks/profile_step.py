"""Where a training step's time goes: a jax.profiler trace of posrec's train_step, per op.

    .venv/bin/python benchmarks/profile_step.py --positional absolute            # today's step
    .venv/bin/python benchmarks/profile_step.py --positional absolute --dense_ce --old_aggregate
    .venv/bin/python benchmarks/profile_step.py --max_len 20 --batch_size 128    # quickstart-like

Traces `--steps` steps of the jitted `train.train_step` on the first ML-1M batch (B=128,
T=max_len, unbucketed) and aggregates the XLA:CPU thunks of the trace (perfetto JSON) by op
and by the JAX source of each op (HLO `op_name` metadata): dense CE, dropout, LayerNorm,
attention, kernel mixing... `--dense_ce` and `--old_aggregate` restore the two code paths
that issue 7 replaced (posrec.bench's `_dense_ce_loss`, `_aggregate_bqhd`), for before/after
profiles. Host-side entries (dispatch, device_put) are listed separately.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import re
import tempfile
from pathlib import Path

import jax

from posrec import bench, losses, train
from posrec.data import batching
from posrec.models import attention, sasrec

CATEGORIES = ("Dropout", "kernel", "while/body", "ln_", "final_ln", "attn/query", "attn/key",
              "attn/value", "attn/out", "ffn", "attn", "item_embed", "btc,nc->btn", "adam",
              "SASRec")
HOST = ("$", "Pjit", "Thunk", "Slinky", "shard", "Device", "ExecuteRep", "batched", "end:",
        "Thread", "Wait")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--positional", default="absolute", choices=("absolute", "kernel"))
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--max_len", type=int, default=200)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--dense_ce", action="store_true", help="loss before issue 7")
    p.add_argument("--old_aggregate", action="store_true", help="attention.aggregate before")
    p.add_argument("--rng_impl", default="threefry2x32", choices=("threefry2x32", "rbg"))
    p.add_argument("--data_path", type=Path, default=bench.DEFAULT_DATA)
    args = p.parse_args(argv)
    if args.old_aggregate:
        attention.aggregate = bench._aggregate_bqhd
    data = bench.load_data(args.data_path, args.max_len)
    cfg = bench.model_config(bench.parse_args(["--max_len", str(args.max_len), "--batch_size",
                                               str(args.batch_size)]),
                             "absolute" if args.positional == "absolute"
                             else "kernel_toeplitz_full")
    model = sasrec.SASRec(cfg.model, data.num_items)
    loss_fn = bench._dense_ce_loss if args.dense_ce else losses.make_loss(cfg.train, None)
    step = jax.jit(functools.partial(train.train_step, model=model, loss_fn=loss_fn))
    batch = next(batching.TrainBatches(data.inputs_NxT, data.targets_NxT, args.batch_size,
                                       seed=0).epoch(0))
    state = train.init_state(cfg, model)
    rng = jax.random.key(1, impl=args.rng_impl)
    state, m = step(state, batch, rng)
    jax.block_until_ready(m)
    hlo = step.lower(state, batch, rng).compile().as_text()
    meta = {}
    for line in hlo.splitlines():
        found = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*?op_name="([^"]*)"', line)
        if found:
            meta[found.group(1)] = (found.group(2), found.group(3))
    trace_dir = tempfile.mkdtemp(prefix="posrec_trace_")
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(args.steps):
        state, m = step(state, batch, rng)
        jax.block_until_ready(m)
    jax.profiler.stop_trace()
    trace = sorted(glob.glob(trace_dir + "/**/*.trace.json.gz", recursive=True))[-1]
    events = json.load(gzip.open(trace))["traceEvents"]
    per_op, per_cat, host, n_ops = collections.Counter(), collections.Counter(), \
        collections.Counter(), 0
    for e in events:
        if e.get("ph") != "X":
            continue
        name, dur = e["name"], e.get("dur", 0) / 1e3 / args.steps  # ms per step
        if name.startswith(HOST):
            host[name] += dur
            continue
        n_ops += 1
        per_op[name] += dur
        op_name = meta.get(name, ("", ""))[1]
        per_cat[next((c for c in CATEGORIES if c in op_name), "other / no metadata")] += dur
    total = sum(per_op.values())
    valid = int((batch["targets"] > 0).sum())
    print(f"{args.positional}, B={args.batch_size}, T={args.max_len}, {data.num_items} items, "
          f"{valid}/{batch['targets'].size} positions with a target; dense_ce={args.dense_ce}, "
          f"old_aggregate={args.old_aggregate}, rng={args.rng_impl}")
    print(f"ops: {total:.1f} ms/step summed over threads, {n_ops / args.steps:.0f} ops/step; "
          f"wall (ThunkExecutor::Execute wait): "
          f"{host.get('ThunkExecutor::Execute (wait for completion)', float('nan')):.1f} ms")
    print("\nby JAX source (op_name):")
    for cat, ms in per_cat.most_common():
        print(f"  {ms:8.1f} ms  {100 * ms / total:5.1f}%  {cat}")
    print(f"\ntop {args.top} ops:")
    for name, ms in per_op.most_common(args.top):
        shape, op_name = meta.get(name, ("", ""))
        print(f"  {ms:8.1f} ms  {name:28s} {shape[:34]:34s} {op_name[-60:]}")
    print("\nhost side (ms/step):")
    for name, ms in host.most_common(6):
        print(f"  {ms:8.1f} ms  {name[:80]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
