"""What share of the fp32 matmul peak the ML-1M step's own matmul shapes can reach here.

    .venv/bin/python benchmarks/matmul_shapes.py > benchmarks/results/matmul_shapes_cpu.txt

Each shape is a jitted `jnp.einsum` timed warm (best of `--repeats`), interleaved with the
2048x2048 peak in the same process. It bounds the issue-7 target "train step >= 50% of the
matmul peak": the step's matmuls run near the peak, so the gap is the non-matmul work
(dropout randomness, LayerNorm, softmax, residuals), not the shapes.

The ceiling part then takes one epoch of ML-1M batches as `posrec.bench` builds them (B=128,
buckets 50/100/200) and prints, per step: the useful FLOPs (`bench.useful_flops`), the time
the step's matmuls alone would take at the rates measured above (projections and FFN on the
whole bucket window, attention on the full T_b x T_b, CE logits at the targets; x3 for
forward + backward), so the % of peak a step could reach if nothing else cost time, and the
time of unavoidable non-matmul work timed in the same loop: an exact full-catalog CE
exponentiates every logit at least once ([targets per step, N]), and its softmax forward +
backward (`jax.grad` of logsumexp) is the plain way to do it.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from posrec import bench
from posrec.data import batching

B, T, C, N = 128, 200, 64, 3417  # ML-1M: batch, window, hidden, catalog + padding row
BLOCKS = 2
SHAPES = {  # name: (einsum, operand shapes, FLOPs)
    "peak: [2048,2048] x [2048,2048]": ("ik,kj->ij", ((2048, 2048), (2048, 2048)), 2 * 2048**3),
    "Q/K/V/out/FFN: [B*T,C] x [C,C]": ("ik,kj->ij", ((B * T, C), (C, C)), 2 * B * T * C * C),
    "fused CE chunk: [512,C] x [C,N]": ("ik,kj->ij", ((512, C), (C, N)), 2 * 512 * C * N),
    "CE table grad as p^T h: [512,N]^T [512,C]": ("rk,rc->kc", ((512, N), (512, C)),
                                                   2 * 512 * C * N),
    "CE table grad as h^T p: [512,C]^T [512,N]": ("rc,rk->ck", ((512, C), (512, N)),
                                                   2 * 512 * C * N),
    "attention scores: [B,T,C] x [B,T,C]": ("bqd,bkd->bqk", ((B, T, C), (B, T, C)),
                                            2 * B * T * T * C),
    "attention values: [B,T,T] x [B,T,C]": ("bqk,bkd->bqd", ((B, T, T), (B, T, C)),
                                            2 * B * T * T * C),
    "kernel mixing U^T K: [T,T] x [B,T,C]": ("kj,bkd->bjd", ((T, T), (B, T, C)),
                                             2 * B * T * T * C),
}


RATES = {  # which measured shape times which part of the step
    "dense": "Q/K/V/out/FFN: [B*T,C] x [C,C]",
    "ce": "fused CE chunk: [512,C] x [C,N]",
    "attn": ("attention scores: [B,T,C] x [B,T,C]", "attention values: [B,T,T] x [B,T,C]"),
}


def epoch_steps(buckets=(50, 100, 200)) -> tuple[int, list[tuple[int, int, int, float]]]:
    """ML-1M's catalog size and, per step of one bucketed epoch: (rows, window, targets,
    useful FLOPs of `bench.useful_flops`)."""
    data = bench.load_data(bench.DEFAULT_DATA, T)
    steps = []
    for b in batching.TrainBatches(data.inputs_NxT, data.targets_NxT, B, 0,
                                   bucket_lengths=buckets).epoch(0):
        rows, window = b["inputs"].shape
        useful = bench.useful_flops((b["inputs"] > 0).sum(1), hidden=C, ffn=C,
                                    num_blocks=BLOCKS, num_items=data.num_items,
                                    kernel_mixing=False)
        steps.append((rows, window, int((b["targets"] > 0).sum()), useful))
    return data.num_items, steps


def matmul_seconds(num_items: int, steps: list, best: dict) -> float:
    """Mean seconds per step of the step's matmuls alone at the rates `best` (GFLOP/s by
    shape name); x3 for forward + backward."""
    dense, ce = best[RATES["dense"]] * 1e9, best[RATES["ce"]] * 1e9
    attn = float(np.mean([best[k] for k in RATES["attn"]])) * 1e9
    return float(np.mean([
        3 * (BLOCKS * rows * window * (8 * C * C + 4 * C * C) / dense
             + BLOCKS * rows * 4 * C * window * window / attn
             + n_targets * 2 * num_items * C / ce)
        for rows, window, n_targets, _ in steps]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    key = jax.random.key(0)
    fns = {}
    for name, (spec, shapes, flops) in SHAPES.items():
        ops = [jax.random.normal(k, s) for k, s in zip(jax.random.split(key, 2), shapes)]
        f = jax.jit(lambda a, b, spec=spec: jnp.einsum(spec, a, b))
        jax.block_until_ready(f(*ops))
        fns[name] = (f, ops, flops)
    num_items, steps = epoch_steps()
    targets = sum(st[2] for st in steps) // len(steps)
    logits = [jax.random.normal(key, (targets, N))]
    floors = {  # non-matmul work any exact full-catalog CE does: exp of every logit
        f"CE: one exp pass over [{targets},N]": lambda x: jnp.exp(x).sum(),
        f"CE: logsumexp fwd+bwd [{targets},N]":
            jax.grad(lambda x: jax.nn.logsumexp(x, axis=-1).sum()),
    }
    for name, f in floors.items():
        fns[name] = (jax.jit(f), logits, None)
        jax.block_until_ready(fns[name][0](*logits))
    best = dict.fromkeys(fns, 0.0)
    fastest = dict.fromkeys(fns, float("inf"))
    for _ in range(args.rounds):  # interleaved: load changes hit every shape alike
        for name, (f, ops, flops) in fns.items():
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(f(*ops))
                fastest[name] = min(fastest[name], time.perf_counter() - t0)
            if flops:
                best[name] = flops / fastest[name] / 1e9
    peak = best["peak: [2048,2048] x [2048,2048]"]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; best of {args.rounds} rounds "
          f"x {args.repeats} repeats")
    for name, gflops in best.items():
        if fns[name][2]:
            print(f"{name:40s} {gflops:7.1f} GFLOP/s  {100 * gflops / peak:5.1f}% of peak")
    useful = float(np.mean([st[3] for st in steps]))
    matmul_s = matmul_seconds(num_items, steps, best)
    budget = useful / (0.5 * peak * 1e9)
    print(f"\nML-1M step, absolute PE (B={B}, buckets 50/100/200, mean of one epoch): "
          f"{useful / 1e9:.2f} useful GFLOP")
    print(f"  matmuls alone at the rates above: {1e3 * matmul_s:6.0f} ms  -> at most "
          f"{100 * useful / matmul_s / (peak * 1e9):.0f}% of peak if nothing else took time")
    print(f"  50% of peak needs a whole step  <= {1e3 * budget:6.0f} ms, leaving "
          f"{1e3 * (budget - matmul_s):.0f} ms for all non-matmul work")
    for name in floors:
        print(f"  {name}: {1e3 * fastest[name]:6.0f} ms")


if __name__ == "__main__":
    main()
