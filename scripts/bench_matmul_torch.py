#!/usr/bin/env python3
"""PyTorch's matmul on the shapes of benches/matmul.rs, for a same-machine
reference. Run by hand (needs torch), on an idle machine:

    python3 scripts/bench_matmul_torch.py

Prints the median GFLOP/s of `a @ b` (allocating the output, as the Rust
bench's Tensor::matmul does) on 1 and 2 threads.
"""
import statistics
import time

import torch

SHAPES = [
    (256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
    (4096, 192, 768), (4096, 768, 192), (4096, 192, 192), (4096, 384, 1536),
    (768, 128, 384), (768, 128, 512), (768, 512, 128),  # cpu-mini
    (64, 32, 64), (64, 64, 32),  # attention tiles
]


def median_seconds(f, budget=2.0, min_runs=10):
    for _ in range(3):
        f()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for m, k, n in SHAPES:
            a, b = torch.randn(m, k), torch.randn(k, n)
            s = median_seconds(lambda: a @ b)
            print(f"{threads}t {m}x{k}@{k}x{n}: {s * 1e3:8.3f} ms  {2 * m * k * n / s / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
