#!/usr/bin/env python3
"""The same GPT as zeroformer's (nanoGPT's bias-free model: learned
positions, pre-norm, tanh-GELU, tied head, GPT-2 init), trained step by step
in PyTorch, to compare speed on the same machine. Run by hand:

    python3 scripts/train_gpt_torch.py --preset cpu-mini --batch-size 12
    python3 scripts/train_gpt_torch.py --preset gpt-mini --batch-size 32
    python3 scripts/train_gpt_torch.py --preset gpt2 --vocab 50257 --batch-size 8 --device cuda

The PyTorch code path is the one nanoGPT's model.py and train.py take, as a
user runs it: attention through `F.scaled_dot_product_attention(q, k, v,
is_causal=True)` (nanoGPT's flash path), AdamW with `fused=True` where the
installed torch has it on this device (else its default, foreach), the
gradient clip by `clip_grad_norm_`, eager mode. `--compile` wraps the model
in `torch.compile` (inductor; on the CPU it needs a C++ compiler, and the
first steps compile), the second reference. `--attention explicit` runs
matmul, masked_fill, softmax, matmul instead: an extra row for comparison
only, never the reference. The line printed names the path taken.
`--bf16` runs the forward (and the loss) under `torch.autocast("cpu",
torch.bfloat16)`, as nanoGPT's train.py does with dtype "bfloat16": mixed
precision, f32 weights; paired, zeroformer's step gets `--precision bf16`.
`--device cuda` runs it on the GPU in f32, TF32 switched off for matmuls
and cuDNN (zeroformer's cuBLAS calls use none), timing between
`torch.cuda.synchronize()` calls.

Prints the median step time and tokens/s over --steps steps (after
--warmup), with random token batches (speed does not depend on the data).

With --data PATH it instead runs examples/shakespeare's recipe on that corpus,
nanoGPT's CPU recipe (char vocabulary, 90/10 split, warmup 100 + cosine
1e-3 -> 1e-4 over --steps, AdamW betas (0.9, 0.99), weight decay 0.1 on
matrices, clip 1.0), doing the same work around the steps as the example:
every --eval-every steps (and at the last) the loss on --eval-iters random
batches of each split and a checkpoint (model and optimizer) saved as
"last", and as "best" when the val loss improved; at the end the loss over
the whole validation split in non-overlapping windows (the figure the
example prints as final val_loss), a train-loss estimate, and a
--sample-tokens sample as nanoGPT's sample.py draws it. --eval-every 0
leaves out the periodic evaluations and the sample (this script's recipe
before 2026-12-01):

    python3 scripts/train_gpt_torch.py --data ../shared/data/tinyshakespeare.txt --steps 2000

With --paired BIN it alternates, round by round, PyTorch's step here and
zeroformer's in BIN (examples/step_time, the same preset, batch, steps and
threads), and prints each round's ratio of tokens/s and the median ratio: on
a shared host whose speed drifts within minutes, only timings taken side by
side compare:

    python3 scripts/train_gpt_torch.py --paired target/release/examples/step_time --rounds 5
"""
import argparse
import math
import os
import statistics
import subprocess
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # n_layer, n_head, n_embd, block_size
    "cpu-mini": (4, 4, 128, 64),
    "gpt-mini": (6, 6, 192, 256),
    "shakespeare-char": (6, 6, 384, 256),
    "gpt2": (12, 12, 768, 1024),
}


class Block(nn.Module):
    def __init__(self, c, h, attention="sdpa", bias=False):
        super().__init__()
        self.h, self.attention = h, attention
        self.ln_1 = nn.LayerNorm(c, bias=bias)
        self.qkv = nn.Linear(c, 3 * c, bias=bias)
        self.proj = nn.Linear(c, c, bias=bias)
        self.ln_2 = nn.LayerNorm(c, bias=bias)
        self.fc = nn.Linear(c, 4 * c, bias=bias)
        self.mlp_proj = nn.Linear(4 * c, c, bias=bias)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        if self.attention == "sdpa":
            # nanoGPT's path.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # The explicit form: the T x T scores, masked, softmax, times V.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
            mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
            y = att.masked_fill(mask, float("-inf")).softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, n_layer, n_head, c, block_size, attention="sdpa", bias=False):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(block_size, c)
        self.blocks = nn.ModuleList(Block(c, n_head, attention, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(c, bias=bias)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets=None):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu-mini", choices=PRESETS)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--data", help="train on this corpus and report the whole-split val loss")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--eval-every", type=int, default=250, help="with --data; 0: no periodic evaluation")
    ap.add_argument("--eval-iters", type=int, default=20, help="with --data: random batches per estimate")
    ap.add_argument("--sample-tokens", type=int, default=500, help="with --data")
    ap.add_argument("--out", help="with --data: checkpoint folder (default: a temporary one)")
    ap.add_argument("--attention", choices=["sdpa", "explicit"], default="sdpa",
                    help="sdpa (nanoGPT's, the reference) or the explicit matmul-softmax-matmul form")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (the second reference)")
    ap.add_argument("--bf16", action="store_true",
                    help="the forward under torch.autocast(cpu, bfloat16), as nanoGPT's dtype='bfloat16'")
    ap.add_argument("--paired", metavar="BIN", help="alternate with zeroformer's step_time binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu",
                    help="cpu or cuda (f32 throughout: TF32 is switched off, as zeroformer's cuBLAS calls use none)")
    args = ap.parse_args()
    if args.data:
        return train_on_corpus(args)
    if args.paired:
        return paired(args)
    print(time_steps(args))


def autocast(args):
    """nanoGPT's `ctx`: bf16 autocast with --bf16, else nothing."""
    import contextlib
    if args.bf16:
        return torch.autocast(device_type=args.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adamw(groups):
    """AdamW as nanoGPT configures it, fused where this torch has it on the
    CPU; returns the optimizer and which implementation it is."""
    try:
        return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99)), "foreach"


def time_steps(args):
    """PyTorch's median step on random tokens, as the line main() prints."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n_layer, n_head, c, block_size = PRESETS[args.preset]
    # zeroformer's gpt2 preset has GPT-2's biases; the others have none.
    model = Gpt(args.vocab, n_layer, n_head, c, block_size, args.attention, bias=args.preset == "gpt2").to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt, adam = adamw([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}])
    params = sum(p.numel() for p in model.parameters())
    if args.compile:
        model = torch.compile(model)
    times = []
    for i in range(args.warmup + args.steps):
        seq = torch.randint(0, args.vocab, (args.batch_size, block_size + 1), device=device)
        x, y = seq[:, :-1], seq[:, 1:]
        sync()
        t0 = time.perf_counter()
        with autocast(args):
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    tokens = args.batch_size * block_size
    path = (f"attention={args.attention} adamw={adam} compile={'yes' if args.compile else 'no'} "
            f"precision={'bf16' if args.bf16 else 'f32'}")
    where = f"threads={args.threads}" if device.type == "cpu" else f"device={torch.cuda.get_device_name(device)} tf32=off"
    return (f"torch {torch.__version__} {where} preset={args.preset} batch={args.batch_size} "
            f"{path} params={params} median_step_ms={step * 1e3:.1f} tokens_per_s={tokens / step:.0f}")


def paired(args):
    tokens_per_s = lambda line: float(line.rsplit("tokens_per_s=", 1)[1].split()[0])
    ratios = []
    for _ in range(args.rounds):
        ref = time_steps(args)
        cmd = [args.paired, "--preset", args.preset, "--batch-size", str(args.batch_size),
               "--vocab", str(args.vocab), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), "--device", args.device,
               "--precision", "bf16" if args.bf16 else "f32"]
        ours = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        ratios.append(tokens_per_s(ours) / tokens_per_s(ref))
        print(ref)
        print(f"{ours}  ratio={ratios[-1]:.2f}x", flush=True)
    print(f"preset={args.preset} batch={args.batch_size}: ratios "
          f"{' / '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}x")


def train_on_corpus(args):
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        return run_recipe(args, args.out)
    with tempfile.TemporaryDirectory() as out:
        return run_recipe(args, out)


def run_recipe(args, out):
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text])
    n = int(len(ids) * 0.9)
    train, val = ids[:n], ids[n:]
    n_layer, n_head, c, block_size = PRESETS[args.preset]
    model = Gpt(len(chars), n_layer, n_head, c, block_size, args.attention)
    is_decay = lambda n, p: p.dim() >= 2 and "wte" not in n and "wpe" not in n
    opt, _ = adamw(
        [{"params": [p for n, p in model.named_parameters() if is_decay(n, p)], "weight_decay": 0.1},
         {"params": [p for n, p in model.named_parameters() if not is_decay(n, p)], "weight_decay": 0.0}])

    # Evaluation draws its batches from its own stream, as the example does, so
    # that the training batches do not depend on how often it evaluates.
    eval_gen = torch.Generator().manual_seed(args.seed ^ 0xE7A1)

    def batch(split, gen=None):
        starts = torch.randint(len(split) - block_size, (args.batch_size,), generator=gen)
        x = torch.stack([split[i:i + block_size] for i in starts])
        y = torch.stack([split[i + 1:i + 1 + block_size] for i in starts])
        return x, y

    @torch.no_grad()
    def estimate_loss(split):
        model.eval()
        with autocast(args):
            loss = statistics.fmean(model(*batch(split, eval_gen)).item() for _ in range(args.eval_iters))
        model.train()
        return loss

    def save(name, it):
        path = os.path.join(out, name)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter": it}, path + ".tmp")
        os.replace(path + ".tmp", path)

    train_seconds, best_val = 0.0, float("inf")
    for it in range(args.steps):
        t0 = time.perf_counter()
        lr = 1e-3 * (it + 1) / 101 if it < 100 else 1e-4 + 0.5 * (1 + math.cos(math.pi * (it - 100) / (args.steps - 100))) * 9e-4
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(args):
            loss = model(*batch(train))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_seconds += time.perf_counter() - t0
        step = it + 1
        if args.eval_every > 0 and (step % args.eval_every == 0 or step == args.steps):
            train_loss, val_loss = estimate_loss(train), estimate_loss(val)
            print(f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}", flush=True)
            if val_loss < best_val:
                best_val = val_loss
                save("best.pt", step)
            save("last.pt", step)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for s0 in range(0, len(val) - block_size, block_size * 32):
            starts = [s for s in range(s0, min(s0 + block_size * 32, len(val) - block_size), block_size)]
            x = torch.stack([val[i:i + block_size] for i in starts])
            y = torch.stack([val[i + 1:i + 1 + block_size] for i in starts])
            with autocast(args):
                total += model(x, y).item() * y.numel()
            count += y.numel()
        if args.eval_every > 0:
            estimate_loss(train)
            idx = torch.tensor([[chars.index("\n")]])
            for _ in range(args.sample_tokens):
                logits = model(idx[:, -block_size:])[:, -1, :] / 0.8
                idx = torch.cat([idx, torch.multinomial(F.softmax(logits, dim=-1), 1)], dim=1)
            print("---\n" + "".join(chars[i] for i in idx[0].tolist()) + "\n---")
    print(f"torch {torch.__version__} preset={args.preset} steps={args.steps} seed={args.seed} "
          f"final val_loss={total / count:.4f} train_seconds={train_seconds:.1f} "
          f"seconds={time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
