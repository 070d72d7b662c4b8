#!/usr/bin/env python3
"""PyTorch's reference for benches/attention.rs: causal attention over
[B=8, H=6, T, d], F.scaled_dot_product_attention and the naive
matmul-softmax-matmul, forward and forward + backward, median ms.

    python3 scripts/bench_attention_torch.py [--threads 2] [--naive] [--reps 5]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def naive(q, k, v):
    t = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--naive", action="store_true")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, B=8 H=6 causal, median of {args.reps}")
    for d in (32, 64):
        for t in args.lengths:
            q, k, v = (torch.randn(8, 6, t, d, requires_grad=True) for _ in range(3))
            g = torch.randn(8, 6, t, d)
            for name, f in [("sdpa", sdpa)] + ([("naive", naive)] if args.naive else []):
                with torch.no_grad():
                    fwd = median_ms(lambda: f(q, k, v), args.reps)
                both = median_ms(lambda: f(q, k, v).backward(g), args.reps)
                print(f"d={d} T={t} {name}: fwd {fwd:.1f} ms, fwd+bwd {both:.1f} ms")


if __name__ == "__main__":
    main()
