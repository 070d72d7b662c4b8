#!/usr/bin/env python3
"""PyTorch's reference for benches/attention.rs: causal attention over
[B=8, H=6, T, d], F.scaled_dot_product_attention and the naive
matmul-softmax-matmul, forward and forward + backward, median ms.

    python3 scripts/bench_attention_torch.py [--threads 2] [--naive] [--reps 5]
    python3 scripts/bench_attention_torch.py --memory [--naive]
    python3 scripts/bench_attention_torch.py --paired target/release/examples/attention_memory
    python3 scripts/bench_attention_torch.py --paired target/release/examples/attention_memory \
        --window 256 --lengths 4096 --dims 32

--paired BIN alternates, round by round, SDPA forward + backward here and
zeroformer's fused op in BIN (examples/attention_memory, median of --reps
calls each), and prints each round's ratio and the median ratio: on a
shared host whose speed drifts by 2x within minutes, only timings taken
side by side compare.

--window W (with --paired) times sliding-window attention: PyTorch's SDPA
with an explicit banded bool mask (causal, each query seeing the last W
keys; the way a PyTorch user writes it, as SDPA has no window argument),
zeroformer's fused op with the window (--window W), and zeroformer's full
causal op at the same T, whose ratio to the windowed one shows the O(T·W)
work (it approaches T / (2W)).

--memory runs each case forward + backward in a fresh process and prints its
peak resident set (ru_maxrss, the whole Python process's, as in the issue's
table) beside the peak before the call; examples/attention_memory.rs is
zeroformer's counterpart.
"""
import argparse
import resource
import statistics
import subprocess
import sys
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


def banded_mask(t, window):
    """True where query i may attend to key j: j <= i and j > i - window."""
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    return (j <= i) & (j > i - window)


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def one_case(name, d, t, threads):
    torch.set_num_threads(threads)
    q, k, v = (torch.randn(8, 6, t, d, requires_grad=True) for _ in range(3))
    g = torch.randn(8, 6, t, d)
    before = peak_mb()
    f = sdpa if name == "sdpa" else naive
    for _ in range(2):
        f(q, k, v).backward(g)
    print(f"{name} d={d} T={t} peak_rss_mb={peak_mb():.0f} before_call_mb={before:.0f}")


def run_ours(binary, d, t, reps, threads, window=None):
    cmd = [binary, "--d", str(d), "--t", str(t), "--reps", str(reps), "--threads", str(threads)]
    if window:
        cmd += ["--window", str(window)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.rsplit("ms=", 1)[1].split()[0])


def paired(binary, lengths, dims, threads, reps, rounds, window):
    torch.set_num_threads(threads)
    mask = f"banded (window {window})" if window else "causal"
    print(f"torch {torch.__version__}, {threads} threads, B=8 H=6 {mask}, "
          f"fwd+bwd median of {reps}, {rounds} alternating rounds")
    for d in dims:
        for t in lengths:
            q, k, v = (torch.randn(8, 6, t, d, requires_grad=True) for _ in range(3))
            g = torch.randn(8, 6, t, d)
            if window:
                band = banded_mask(t, window)
                reference = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=band).backward(g)
            else:
                reference = lambda: sdpa(q, k, v).backward(g)
            ratios, speedups = [], []
            for _ in range(rounds):
                ref = median_ms(reference, reps)
                ours = run_ours(binary, d, t, reps, threads, window)
                ratios.append(ref / ours)
                line = f"d={d} T={t}: sdpa {ref:.1f} ms, zeroformer {ours:.1f} ms, {ref / ours:.2f}x"
                if window:
                    full = run_ours(binary, d, t, reps, threads)
                    speedups.append(full / ours)
                    line += f"; zeroformer full causal {full:.1f} ms, {full / ours:.2f}x the window's time"
                print(line)
            print(f"d={d} T={t}: median ratio {statistics.median(ratios):.2f}x", end="")
            if window:
                print(f"; full causal / window {statistics.median(speedups):.2f}x (T/2W = {t / (2 * window):.1f})")
            else:
                print()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--naive", action="store_true")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--memory", action="store_true")
    p.add_argument("--paired", metavar="BIN", help="alternate with zeroformer's attention_memory binary")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dims", type=int, nargs="+", default=[32, 64])
    p.add_argument("--window", type=int, help="sliding-window attention over the last W keys (--paired)")
    p.add_argument("--case", nargs=3, metavar=("IMPL", "D", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        one_case(args.case[0], int(args.case[1]), int(args.case[2]), args.threads)
        return
    if args.paired:
        paired(args.paired, args.lengths, args.dims, args.threads, args.reps, args.rounds, args.window)
        return
    if args.memory:
        for d in (32, 64):
            for t in args.lengths:
                for name in ["sdpa"] + (["naive"] if args.naive else []):
                    cmd = [sys.executable, __file__, "--threads", str(args.threads)]
                    subprocess.run(cmd + ["--case", name, str(d), str(t)], check=True)
        return
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
