"""What share of the fp32 matmul peak the ML-1M step's own matmul shapes can reach here.

    .venv/bin/python benchmarks/matmul_shapes.py > benchmarks/results/matmul_shapes_cpu.txt

Each shape is a jitted `jnp.einsum` timed warm (best of `--repeats`), interleaved with the
2048x2048 peak in the same process. It bounds the issue-7 target "train step >= 50% of the
matmul peak": the step's matmuls run near the peak, so the gap is the non-matmul work
(dropout randomness, LayerNorm, softmax, residuals), not the shapes.
"""

import argparse
import time

import jax
import jax.numpy as jnp

B, T, C, N = 128, 200, 64, 3417  # ML-1M: batch, window, hidden, catalog + padding row
SHAPES = {  # name: (einsum, operand shapes, FLOPs)
    "peak: [2048,2048] x [2048,2048]": ("ik,kj->ij", ((2048, 2048), (2048, 2048)), 2 * 2048**3),
    "Q/K/V/out/FFN: [B*T,C] x [C,C]": ("ik,kj->ij", ((B * T, C), (C, C)), 2 * B * T * C * C),
    "fused CE chunk: [512,C] x [C,N]": ("ik,kj->ij", ((512, C), (C, N)), 2 * 512 * C * N),
    "attention scores: [B,T,C] x [B,T,C]": ("bqd,bkd->bqk", ((B, T, C), (B, T, C)),
                                            2 * B * T * T * C),
    "attention values: [B,T,T] x [B,T,C]": ("bqk,bkd->bqd", ((B, T, T), (B, T, C)),
                                            2 * B * T * T * C),
    "kernel mixing U^T K: [T,T] x [B,T,C]": ("kj,bkd->bjd", ((T, T), (B, T, C)),
                                             2 * B * T * T * C),
}


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
    best = {name: 0.0 for name in fns}
    for _ in range(args.rounds):  # interleaved: load changes hit every shape alike
        for name, (f, ops, flops) in fns.items():
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(f(*ops))
                best[name] = max(best[name], flops / (time.perf_counter() - t0) / 1e9)
    peak = best["peak: [2048,2048] x [2048,2048]"]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; best of {args.rounds} rounds "
          f"x {args.repeats} repeats")
    for name, gflops in best.items():
        print(f"{name:40s} {gflops:7.1f} GFLOP/s  {100 * gflops / peak:5.1f}% of peak")


if __name__ == "__main__":
    main()
