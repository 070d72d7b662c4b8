#!/usr/bin/env python3
"""OpenBLAS's SGEMM on the shapes of benches/matmul.rs, the issue's GEMM
reference, through numpy (whose wheels bundle OpenBLAS; `pip install numpy`).
Run by hand on an idle machine:

    OPENBLAS_NUM_THREADS=1 python3 scripts/bench_matmul_openblas.py
    OPENBLAS_NUM_THREADS=2 python3 scripts/bench_matmul_openblas.py

Prints the median GFLOP/s of `np.matmul(a, b, out=c)` in float32 (into a
preallocated output, as the bare-library columns of the Rust bench).
"""
import os

import numpy as np

from bench_matmul_torch import SHAPES, median_seconds


def main():
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
