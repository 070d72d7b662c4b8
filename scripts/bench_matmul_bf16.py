#!/usr/bin/env python3
"""bf16 matrix products beside f32 ones, ours and PyTorch's, alternated.

    cargo build --release --example matmul_time
    python3 scripts/bench_matmul_bf16.py [--rounds 5] [--threads 2]

For each shape and round it times, one after another: our f32 product and
our bf16 one (target/release/examples/matmul_time, a row-major product into
a preallocated f32 output), then PyTorch's `a @ b` in f32 and in bf16 (its
bf16 result allocated, as its users get it). A shared host's speed drifts
within minutes, so only figures taken side by side compare: the table gives
the median of each and the ratios of medians.
"""
import argparse
import pathlib
import statistics
import subprocess
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 192, 768), (4096, 768, 192),
          (768, 128, 384), (768, 512, 128)]


def ours(binary, shape, dtype, threads, seconds):
    m, k, n = shape
    out = subprocess.run([binary, "--shape", f"{m}x{k}x{n}", "--dtype", dtype, "--threads",
                          str(threads), "--seconds", str(seconds)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[1]) / 1e3, out.strip()


def torch_seconds(shape, dtype, seconds):
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    times, start = [], time.perf_counter()
    while len(times) < 10 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--binary", default=str(ROOT / "target/release/examples/matmul_time"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds")
    path = ""
    print("| shape | ours f32 GFLOP/s | ours bf16 | bf16 / f32 | PyTorch f32 | PyTorch bf16 | ours bf16 / PyTorch bf16 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for shape in SHAPES:
        t = {"f32": [], "bf16": [], "torch f32": [], "torch bf16": []}
        for _ in range(args.rounds):
            for dtype in ("f32", "bf16"):
                s, line = ours(args.binary, shape, dtype, args.threads, args.seconds)
                t[dtype].append(s)
                if dtype == "bf16":
                    path = line.split("(zeroformer ")[1].split(",")[0]
            t["torch f32"].append(torch_seconds(shape, torch.float32, args.seconds))
            t["torch bf16"].append(torch_seconds(shape, torch.bfloat16, args.seconds))
        m, k, n = shape
        gf = {key: 2 * m * k * n / statistics.median(v) / 1e9 for key, v in t.items()}
        print(f"| {m}x{k}@{k}x{n} | {gf['f32']:.0f} | {gf['bf16']:.0f} | {gf['bf16'] / gf['f32']:.2f}x "
              f"| {gf['torch f32']:.0f} | {gf['torch bf16']:.0f} | {gf['bf16'] / gf['torch bf16']:.2f}x |",
              flush=True)
    print(f"(our bf16 kernel: {path})")


if __name__ == "__main__":
    main()
