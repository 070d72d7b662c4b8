#!/usr/bin/env python3
"""OpenBLAS's SGEMM on the shapes of benches/matmul.rs, the issue's GEMM
reference, through numpy (whose wheels bundle OpenBLAS; `pip install numpy`).
Run by hand on an idle machine:

    OPENBLAS_NUM_THREADS=1 python3 scripts/bench_matmul_openblas.py
    OPENBLAS_NUM_THREADS=2 python3 scripts/bench_matmul_openblas.py

Prints the median GFLOP/s of `np.matmul(a, b, out=c)` in float32 (into a
preallocated output, as the bare-library columns of the Rust bench).

With --paired BIN it alternates, shape by shape and round by round,
OpenBLAS here and zeroformer's kernel in BIN (examples/matmul_time, the same
shape and thread count), and prints each ratio and the median per shape: on
a shared host whose speed drifts within minutes, only timings taken side by
side compare. OpenBLAS is warmed up first: cold, it runs narrow shapes at a
third of its speed for its first seconds.

    OPENBLAS_NUM_THREADS=1 python3 scripts/bench_matmul_openblas.py --paired target/release/examples/matmul_time
"""
import argparse
import os
import statistics
import subprocess

import numpy as np

from bench_matmul_torch import SHAPES, median_seconds

# The shapes the GEMM target is stated on: a GPT's linear layers
# (tokens x width, forward and backward) and cpu-mini's.
PAIRED_SHAPES = [s for s in SHAPES if s[0] in (4096, 768)]


def paired(binary, rounds, seconds):
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    rng = np.random.default_rng(0)
    warm = rng.standard_normal((1024, 1024), dtype=np.float32)
    median_seconds(lambda: warm @ warm, budget=2.0)
    print(f"numpy {np.__version__}, OpenBLAS vs {binary}, {threads} threads, {rounds} rounds")
    for m, k, n in PAIRED_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        ratios = []
        for _ in range(rounds):
            ref = 2 * m * k * n / median_seconds(lambda: np.matmul(a, b, out=c), budget=seconds) / 1e9
            cmd = [binary, "--shape", f"{m}x{k}x{n}", "--threads", str(threads), "--seconds", str(seconds)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            ours = float(out.split("ms", 1)[1].split()[0])
            ratios.append(ours / ref)
            print(f"{m}x{k}@{k}x{n}: openblas {ref:6.1f} GFLOP/s, zeroformer {ours:6.1f}, {ours / ref:.2f}x", flush=True)
        print(f"{m}x{k}@{k}x{n}: ratios {' / '.join(f'{r:.2f}' for r in ratios)}, "
              f"median {statistics.median(ratios):.2f}x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--paired", metavar="BIN", help="alternate with zeroformer's matmul_time binary")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args()
    if args.paired:
        return paired(args.paired, args.rounds, args.seconds)
    rng = np.random.default_rng(0)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "(default)")
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    print(f"numpy {np.__version__}, {blas['name']} {blas['version']}, threads {threads}")
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        s = median_seconds(lambda: np.matmul(a, b, out=c))
        print(f"{m}x{k}@{k}x{n}: {s * 1e3:8.3f} ms  {2 * m * k * n / s / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
