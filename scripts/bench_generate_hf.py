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
new token reads all 498 MB of f32 weights.

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


def ours(model_dir, prompt, new, threads, int8=False, device="cpu", binary=BIN):
    r = subprocess.run([binary, "--device", device, "--model-dir", model_dir, "--prompt-ids", ",".join(map(str, prompt)),
                        "--max-new-tokens", str(new), "--temperature", "0", "--print-ids",
                        "--threads", str(threads), "--warm-up"] + (["--int8"] if int8 else []),
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
    prompt = list(range(1000, 1016))
    x = torch.tensor([prompt], device=device)
    weight_bytes = sum(p.numel() for p in hf.parameters()) * 4

    def hf_run():
        with torch.no_grad():
            hf.generate(x, max_new_tokens=1, min_new_tokens=1, do_sample=False, use_cache=True, pad_token_id=0)
            sync()
            start = time.perf_counter()
            out = hf.generate(x, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                              use_cache=True, pad_token_id=0)
            sync()
            elapsed = time.perf_counter() - start
        return args.new / elapsed, out[0, len(prompt):].tolist()

    big = torch.ones(256 * 1024 * 1024, device=device)
    big.sum()
    reads = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        big.sum()
        sync()
        reads.append(big.numel() * 4 / (time.perf_counter() - t) / 1e9)
    bandwidth = statistics.median(reads)
    del big
    where = f"{args.threads} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"memory read bandwidth (torch sum of 1 GiB, {where}): {bandwidth:.1f} GB/s", flush=True)

    o, h, q8, agree = [], [], [], []
    for rnd in range(args.rounds):
        if rnd % 2 == 0:
            a, mine = ours(model_dir, prompt, args.new, args.threads, False, args.device, args.bin)
            c, mine8 = ours(model_dir, prompt, args.new, args.threads, True, args.device, args.bin)
            b, theirs = hf_run()
        else:
            b, theirs = hf_run()
            c, mine8 = ours(model_dir, prompt, args.new, args.threads, True, args.device, args.bin)
            a, mine = ours(model_dir, prompt, args.new, args.threads, False, args.device, args.bin)
        o.append(a)
        h.append(b)
        q8.append(c)
        same = next((i for i, (p, q) in enumerate(zip(mine, theirs)) if p != q), len(mine))
        same8 = next((i for i, (p, q) in enumerate(zip(mine8, mine)) if p != q), len(mine))
        agree.append(same)
        print(f"round {rnd}: ours {a:.2f} tok/s, ours int8 {c:.2f} tok/s, HF {b:.2f} tok/s; greedy ids agree with HF "
              f"for the first {same} of {len(mine)} (int8 with f32: {same8}; random weights, so int8 may drift)",
              flush=True)
    mo, mh = statistics.median(o), statistics.median(h)
    print(f"median: ours {mo:.2f} tok/s ({mo * weight_bytes / 1e9:.1f} GB/s, {mo * weight_bytes / 1e9 / bandwidth:.0%} "
          f"of the measured bandwidth), HF transformers {mh:.2f} tok/s ({mh * weight_bytes / 1e9:.1f} GB/s, "
          f"{mh * weight_bytes / 1e9 / bandwidth:.0%}); ours/HF {statistics.median([a / b for a, b in zip(o, h)]):.2f}x")
    m8 = statistics.median(q8)
    print(f"int8: {m8:.2f} tok/s, {statistics.median([c / b for c, b in zip(q8, h)]):.2f}x HF's f32")
    print(f"both: {args.new} new tokens over the whole call, the prompt's forward included, after a warm-up call of one token")


if __name__ == "__main__":
    main()
