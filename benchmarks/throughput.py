"""Training throughput on 1 vs N local devices, in one run (the ratio is the figure).

    python benchmarks/throughput.py                       # CPU: forces 2 host devices
    python benchmarks/throughput.py --devices=1,2 --parallelism=pmap --batch_size=256

Times `--steps` training steps (after `--warmup` compiled ones) of the quickstart model
(configs/quickstart.py: T = 20, d = 64, kernel attention, full CE over 200 items) through
posrec.parallel with 1, then N devices, on the same global batches, and prints examples/s
for each and the ratio to 1 device. On CPU the devices are XLA host devices carved out of
the same cores (XLA_FLAGS=--xla_force_host_platform_device_count, set here before JAX is
imported): one CPU device already uses every core for its matmuls, so the ratio measures the
overhead of splitting, not a speed-up; on GPUs/TPUs each device is a chip.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", default="1,2", help="device counts to compare, first = base")
    p.add_argument("--parallelism", default="sharding", choices=["sharding", "pmap"])
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="alternating timed rounds")
    args = p.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    if "jax" not in sys.modules and "--xla_force_host_platform_device_count" not in os.environ.get(
        "XLA_FLAGS", ""
    ):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={max(counts)}")

    import functools

    import jax
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from configs import quickstart
    from posrec import losses, parallel, train
    from posrec.models import sasrec

    config = quickstart.get_config()
    config.train.batch_size = args.batch_size
    N, T = config.data.synthetic.num_items, config.model.max_len
    model = sasrec.SASRec(config.model, N)
    gen = np.random.default_rng(0)
    batches = [{"inputs": gen.integers(1, N + 1, (args.batch_size, T)).astype(np.int32),
                "targets": gen.integers(1, N + 1, (args.batch_size, T)).astype(np.int32)}
               for _ in range(8)]
    runners = {}
    for n in counts:
        plan = parallel.make_plan(args.parallelism, n)
        plan.check_batch_size(args.batch_size)
        step = plan.make_train_step(functools.partial(
            train.train_step, model=model, loss_fn=losses.make_loss(config.train, None)))
        state = plan.replicate(train.init_state(config, model))
        rng = plan.replicate(jax.random.key(0))
        for i in range(args.warmup):
            state, m = step(state, batches[i % len(batches)], rng)
        float(m["loss"])
        runners[n] = [step, state, rng]

    seconds = {n: [] for n in counts}
    for _ in range(args.repeats):  # alternate, so load changes hit every count alike
        for n in counts:
            step, state, rng = runners[n]
            t = time.perf_counter()
            for i in range(args.steps):
                state, m = step(state, batches[i % len(batches)], rng)
            float(m["loss"])  # wait for the last step
            seconds[n].append(time.perf_counter() - t)
            runners[n][1] = state

    print(f"{jax.devices()[0].platform} x {jax.local_device_count()} devices, "
          f"{os.cpu_count()} cores; quickstart model, global batch {args.batch_size}, "
          f"{args.parallelism}; best of {args.repeats} rounds of {args.steps} steps")
    base = None
    for n in counts:
        rate = args.steps * args.batch_size / min(seconds[n])
        base = base or rate
        print(f"{n} device(s): {rate:8.0f} examples/s   ratio to {counts[0]}: {rate / base:.2f}")


if __name__ == "__main__":
    main()
