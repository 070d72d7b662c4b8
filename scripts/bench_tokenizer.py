#!/usr/bin/env python3
"""GPT-2 encoding speed, side by side in one run: zeroformer's
examples/tokenize, tiktoken and Hugging Face tokenizers, alternated round
by round on the same machine and the same text. Run by hand:

    pip install tiktoken tokenizers
    cargo build --release --example tokenize
    python3 scripts/bench_tokenizer.py [--rounds 7] [--reps 5]

Texts: tiny Shakespeare (1.1 MB) and a generated mixed text (prose, code,
numbers, accents, CJK, emoji, long runs; fixed seed). One thread each, then
two (tiktoken's encode_ordinary_batch over chunks of 200 lines, ours
--threads 2). Hugging Face tokenizers runs encode_batch over the same chunks
with its parallelism off (one string of megabytes is far slower for it). Prints each round and the medians.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
# Hugging Face tokenizers runs encode_batch sequentially with this unset.
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from make_tokenizer_fixtures import gpt2  # noqa: E402

VOCAB = os.path.join(SHARED, "gpt2", "vocab.json")
MERGES = os.path.join(SHARED, "gpt2", "merges.txt")
BIN = os.path.join(ROOT, "target", "release", "examples", "tokenize")


def mixed_text(shakespeare, size=4_000_000, seed=0):
    rng = random.Random(seed)
    words = shakespeare.split()
    code = ["def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }\n",
            "{\"key\": [1, 2.5, -3e10], \"ok\": true}\n", "https://example.com/a/b?c=d&e=f\n"]
    exotic = ["caf\u00e9", "nai\u0308ve", "\u65e5\u672c\u8a9e", "\u4e2d\u6587\u5206\u8bcd", "\ud55c\uad6d\uc5b4",
              "\u041f\u0440\u0438\u0432\u0435\u0442", "\u0645\u0631\u062d\u0628\u0627", "\U0001f600",
              "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\u00a0", "\u3000"]
    out, n = [], 0
    while n < size:
        kind = rng.random()
        if kind < 0.6:
            piece = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + rng.choice([".\n", " ", "\n\n"])
        elif kind < 0.75:
            piece = rng.choice(code)
        elif kind < 0.85:
            piece = " ".join(str(rng.randint(0, 10 ** rng.randint(1, 12))) for _ in range(rng.randint(1, 10))) + "\n"
        elif kind < 0.97:
            piece = " ".join(rng.choice(exotic) for _ in range(rng.randint(1, 12))) + " "
        else:
            piece = rng.choice("ab=-_ \t") * rng.randint(20, 400) + "\n"
        out.append(piece)
        n += len(piece.encode())
    return "".join(out)


def time_median(f, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ours(path, threads, reps):
    r = subprocess.run([BIN, "--vocab", VOCAB, "--merges", MERGES, "--input", path, "--repeat", str(reps),
                        "--threads", str(threads), "--quiet"], capture_output=True, text=True, check=True)
    line = [l for l in r.stderr.splitlines() if l.startswith("encode ")][-1]
    fields = dict(kv.split("=") for kv in line.split()[1:])
    return float(fields["median_s"]), int(fields["tokens"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tik = gpt2()
    hf = Tokenizer(models.BPE.from_file(VOCAB, MERGES))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()

    shakespeare = open(os.path.join(SHARED, "tinyshakespeare.txt"), encoding="utf-8").read()
    tmp = tempfile.mkdtemp()
    texts = {"shakespeare": shakespeare, "mixed": mixed_text(shakespeare)}
    paths = {}
    for name, text in texts.items():
        paths[name] = os.path.join(tmp, name + ".txt")
        with open(paths[name], "w", encoding="utf-8") as f:
            f.write(text)
        ids = tik.encode_ordinary(text)
        r = subprocess.run([BIN, "--vocab", VOCAB, "--merges", MERGES, "--input", paths[name]],
                           capture_output=True, text=True, check=True)
        mine = json.loads(r.stdout.strip().splitlines()[-1])
        assert mine == ids, f"{name}: ids differ from tiktoken's"
        print(f"{name}: {len(text.encode())} bytes, {len(ids)} tokens, ids equal to tiktoken's", flush=True)

    print(f"tiktoken {tik.__class__.__module__} / tokenizers {tokenizers.__version__}; "
          f"{args.rounds} rounds, median of {args.reps} reps each", flush=True)
    results = {}
    for name, text in texts.items():
        mb = len(text.encode()) / 1e6
        lines = text.splitlines(keepends=True)
        chunks = ["".join(lines[i:i + 200]) for i in range(0, len(lines), 200)]
        for rnd in range(args.rounds):
            row = {}
            order = ["ours", "tiktoken", "hf"] if rnd % 2 == 0 else ["hf", "tiktoken", "ours"]
            for who in order:
                if who == "ours":
                    row["ours1"] = mb / ours(paths[name], 1, args.reps)[0]
                    row["ours2"] = mb / ours(paths[name], 2, args.reps)[0]
                elif who == "tiktoken":
                    row["tik1"] = mb / time_median(lambda: tik.encode_ordinary(text), args.reps)
                    row["tik2"] = mb / time_median(lambda: tik.encode_ordinary_batch(chunks, num_threads=2), args.reps)
                else:
                    row["hf1"] = mb / time_median(lambda: hf.encode_batch(chunks), args.reps)
            print(name, rnd, " ".join(f"{k}={v:.2f}" for k, v in row.items()), flush=True)
            for k, v in row.items():
                results.setdefault((name, k), []).append(v)
            results.setdefault((name, "ratio1"), []).append(row["ours1"] / row["tik1"])
            results.setdefault((name, "ratio2"), []).append(row["ours2"] / row["tik2"])
            results.setdefault((name, "ratio_hf"), []).append(row["ours1"] / row["hf1"])
    print("median MB/s and ratios:")
    for name in texts:
        m = {k: statistics.median(v) for (n, k), v in results.items() if n == name}
        print(f"{name}: ours 1 thread {m['ours1']:.1f}, tiktoken {m['tik1']:.1f}, HF tokenizers {m['hf1']:.1f}; "
              f"ours/tiktoken {m['ratio1']:.2f}x, ours/HF {m['ratio_hf']:.2f}x | "
              f"2 threads: ours {m['ours2']:.1f}, tiktoken {m['tik2']:.1f}, ratio {m['ratio2']:.2f}x")


if __name__ == "__main__":
    main()
