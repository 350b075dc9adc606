"""Peak memory of one training step over a large catalog: dense vs chunked full CE.

    python benchmarks/ce_memory.py                                  # 1M items, B·T = 25,600
    python benchmarks/ce_memory.py --sizes=20000,1000000 --variants=dense,chunked

Each (catalog size, variant) runs in a fresh subprocess that builds the default SASRec
(d = 64, T = 200, batch 128 -> 25,600 target tokens, every position a target), compiles and
runs `--steps` full training steps (model, loss, gradients, Adam) through posrec.parallel on
one device, and reports its peak resident memory (VmHWM in /proc/self/status, the whole
process: Python, XLA, parameters, optimizer state and the step's temporaries).

Variants (`train.loss` = "ce" unless said otherwise):
  dense    [B·T, N] logits materialised by this script's own 4-line loss (the memory that
           grows with B·T·N);
  chunked  train.ce_chunk_size = --chunk (logits and log-sum-exp over item chunks, custom VJP);
  default  train.ce_chunk_size = 0 (whatever posrec.losses.make_loss uses for it);
  sampled  train.loss = "sampled_softmax" with --negatives uniform negatives.
A dense variant whose logits alone would exceed the available memory is not started; the
table says so with the size it would need.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

B_T_NOTE = "every position carries a target"


def child(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from posrec import config_lib, losses, parallel, train
    from posrec.models import sasrec

    config = config_lib.default_config()
    config.model.max_len = args.max_len
    config.train.batch_size = args.batch_size
    if args.variant == "chunked":
        config.train.ce_chunk_size = args.chunk
    elif args.variant == "sampled":
        config.train.loss = "sampled_softmax"
        config.train.num_negatives = args.negatives
    N = args.num_items
    model = sasrec.SASRec(config.model, N)
    if args.variant == "dense":

        def loss_fn(h, table, y, rng, rows):
            logits = jnp.einsum("btc,nc->btn", h, table).astype(jnp.float32)
            logits = logits.at[..., 0].set(-jnp.inf)
            tgt = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
            return jax.nn.logsumexp(logits, axis=-1) - tgt
    else:
        loss_fn = losses.make_loss(config.train, np.ones(N + 1))
    plan = parallel.make_plan("sharding", 1)
    state = plan.replicate(train.init_state(config, model))
    step = plan.make_train_step(functools.partial(train.train_step, model=model, loss_fn=loss_fn))
    rng = plan.replicate(jax.random.key(0))
    gen = np.random.default_rng(0)
    shape = (args.batch_size, args.max_len)
    times = []
    for _ in range(args.steps):
        batch = {"inputs": gen.integers(1, N + 1, shape).astype(np.int32),
                 "targets": gen.integers(1, N + 1, shape).astype(np.int32)}
        t = time.perf_counter()
        state, m = step(state, batch, rng)
        loss = float(m["loss"])
        times.append(time.perf_counter() - t)
    print(json.dumps(dict(peak_gib=_vm_hwm_gib(), loss=loss, step_seconds=times)))


def _vm_hwm_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000000", help="catalog sizes, comma-separated")
    p.add_argument("--variants", default="dense,chunked", help="dense,chunked,default,sampled")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--max_len", type=int, default=200)
    p.add_argument("--chunk", type=int, default=4096, help="train.ce_chunk_size of 'chunked'")
    p.add_argument("--negatives", type=int, default=100, help="sampled softmax negatives")
    p.add_argument("--steps", type=int, default=1, help="steps per run (the first compiles)")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--num_items", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return child(args)

    tokens = args.batch_size * args.max_len
    print(f"one training step, d=64, T={args.max_len}, batch {args.batch_size}: B·T = "
          f"{tokens:,} tokens ({B_T_NOTE}); peak = VmHWM of a fresh process per run; "
          f"{os.cpu_count()} CPUs, {_available_gib():.1f} GiB available at start", flush=True)
    print(f"{'items':>10}  {'variant':<18} {'peak GiB':>9}  {'step s':>8}  loss", flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        for variant in args.variants.split(","):
            label = {"chunked": f"chunked ({args.chunk})",
                     "sampled": f"sampled ({args.negatives})"}.get(variant, variant)
            logits_gib = tokens * (size + 1) * 4 / 2**30
            if variant == "dense" and logits_gib > 0.8 * _available_gib():
                print(f"{size:>10,}  {label:<18} {'-':>9}  {'-':>8}  not run: the [B·T, N] "
                      f"float32 logits alone need {logits_gib:,.0f} GiB (> 80% of the "
                      f"{_available_gib():.1f} GiB available)", flush=True)
                continue
            cmd = [sys.executable, __file__, f"--variant={variant}", f"--num_items={size}",
                   f"--batch_size={args.batch_size}", f"--max_len={args.max_len}",
                   f"--chunk={args.chunk}", f"--negatives={args.negatives}",
                   f"--steps={args.steps}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
                print(f"{size:>10,}  {label:<18} {'failed':>9}  {'-':>8}  {tail[0][:120]}",
                      flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{size:>10,}  {label:<18} {r['peak_gib']:>9.2f}  "
                  f"{r['step_seconds'][-1]:>8.1f}  {r['loss']:.4f}", flush=True)


if __name__ == "__main__":
    main()
