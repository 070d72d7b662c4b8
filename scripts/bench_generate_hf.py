#!/usr/bin/env python3
"""GPT-2 124M generation speed, side by side in one run: zeroformer's
examples/gpt2_generate and Hugging Face transformers' cached generate,
alternated round by round on the same model directory (random weights of
GPT-2's shape: nothing can be downloaded here), batch 1, a 16-token prompt,
128 new tokens, greedy. Run by hand:

    pip install torch transformers
    cargo build --release --example gpt2_generate
    python3 scripts/bench_generate_hf.py [--rounds 5] [--threads 2]

Also measures the machine's memory read bandwidth (torch summing a 1 GiB
tensor, the same threads) to say what fraction of it each achieves: every
new token reads all 498 MB of f32 weights (249 MB in bf16).

Rows: ours f32, ours int8, ours bf16 (`--dtype bf16`), transformers f32 and
transformers bf16 (the model cast with `.to(torch.bfloat16)`, as
`torch_dtype=torch.bfloat16` loads it); the order alternates by round. The
bf16 rows' greedy ids are compared with each other.

`--device cuda` runs both on the GPU (f32, TF32 off; the bandwidth is the
GPU's, timing between `torch.cuda.synchronize()` calls), and `--bin` names
another gpt2_generate binary (scripts/gpu_check.sh passes the one built
with `--features cuda`).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples", "gpt2_generate")


def ours(model_dir, prompt, new, threads, extra=(), device="cpu", binary=BIN):
    r = subprocess.run([binary, "--device", device, "--model-dir", model_dir, "--prompt-ids", ",".join(map(str, prompt)),
                        "--max-new-tokens", str(new), "--temperature", "0", "--print-ids",
                        "--threads", str(threads), "--warm-up", *extra],
                       capture_output=True, text=True, check=True)
    line = [l for l in r.stderr.splitlines() if l.startswith("speed ")][-1]
    fields = dict(kv.split("=") for kv in line.split()[1:])
    ids = json.loads(r.stdout.strip().splitlines()[-1])
    # Tokens over the whole call, the prompt's forward included, as HF is timed.
    return float(fields["tokens_per_s_with_prompt"]), ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--bin", default=BIN, help="the gpt2_generate binary")
    args = ap.parse_args()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model_dir = os.path.join(tempfile.mkdtemp(), "gpt2-random")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(model_dir)
    hf = GPT2LMHeadModel.from_pretrained(model_dir).eval().to(device)
    hf16 = GPT2LMHeadModel.from_pretrained(model_dir).eval().to(device).to(torch.bfloat16)
    prompt = list(range(1000, 1016))
    x = torch.tensor([prompt], device=device)
    weight_bytes = sum(p.numel() for p in hf.parameters()) * 4

    def hf_run(model):
        with torch.no_grad():
            model.generate(x, max_new_tokens=1, min_new_tokens=1, do_sample=False, use_cache=True, pad_token_id=0)
            sync()
            start = time.perf_counter()
            out = model.generate(x, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                                 use_cache=True, pad_token_id=0)
            sync()
            elapsed = time.perf_counter() - start
        return args.new / elapsed, out[0, len(prompt):].tolist()

    big = torch.ones(256 * 1024 * 1024, device=device)
    big.sum()

    def bandwidth():
        reads = []
        for _ in range(5):
            sync()
            t = time.perf_counter()
            big.sum()
            sync()
            reads.append(big.numel() * 4 / (time.perf_counter() - t) / 1e9)
        return statistics.median(reads)

    where = f"{args.threads} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)

    def mine(*extra):
        return lambda: ours(model_dir, prompt, args.new, args.threads, extra, args.device, args.bin)

    # name: (run, bytes of weights read per token)
    rows = {
        "ours f32": (mine(), weight_bytes),
        "ours int8": (mine("--int8"), None),
        "ours bf16": (mine("--dtype", "bf16"), weight_bytes / 2),
        "HF f32": (lambda: hf_run(hf), weight_bytes),
        "HF bf16": (lambda: hf_run(hf16), weight_bytes / 2),
    }
    speeds = {name: [] for name in rows}
    # The bandwidth is measured in every round, between the rows: a shared
    # machine's speed drifts, and a fraction is only fair within one round.
    reads = []
    ids = {}
    agree, agree16 = [], []
    for rnd in range(args.rounds):
        order = list(rows) if rnd % 2 == 0 else list(reversed(rows))
        for i, name in enumerate(order):
            if i == len(order) // 2:
                reads.append(bandwidth())
            speed, ids[name] = rows[name][0]()
            speeds[name].append(speed)
        same = lambda a, b: next((i for i, (p, q) in enumerate(zip(ids[a], ids[b])) if p != q), len(ids[a]))
        agree.append(same("ours f32", "HF f32"))
        agree16.append(same("ours bf16", "HF bf16"))
        print(f"round {rnd}: " + ", ".join(f"{n} {speeds[n][-1]:.2f}" for n in rows) + f" tok/s, memory read "
              f"bandwidth {reads[-1]:.1f} GB/s (torch sum of 1 GiB, {where}); greedy ids agree "
              f"for the first {agree[-1]} of {args.new} in f32, {agree16[-1]} in bf16 "
              f"(int8 with f32: {same('ours int8', 'ours f32')}; random weights, so int8 may drift)", flush=True)
    med = {n: statistics.median(v) for n, v in speeds.items()}
    ratio = lambda a, b: statistics.median([x / y for x, y in zip(speeds[a], speeds[b])])
    for name, (_, nbytes) in rows.items():
        share = statistics.median([v * nbytes / 1e9 / r for v, r in zip(speeds[name], reads)]) if nbytes else 0
        read = f" ({med[name] * nbytes / 1e9:.1f} GB/s, {share:.0%} of the bandwidth measured in the same " \
               f"round)" if nbytes else ""
        print(f"median {name}: {med[name]:.2f} tok/s{read}")
    print(f"ours/HF f32 {ratio('ours f32', 'HF f32'):.2f}x, ours/HF bf16 {ratio('ours bf16', 'HF bf16'):.2f}x, "
          f"ours bf16/ours f32 {ratio('ours bf16', 'ours f32'):.2f}x, ours int8/HF f32 {ratio('ours int8', 'HF f32'):.2f}x")
    print(f"both: {args.new} new tokens over the whole call, the prompt's forward included, after a warm-up call of one token")


if __name__ == "__main__":
    main()
