#!/usr/bin/env python3
"""Byte-level BPE training speed, side by side in one run: zeroformer's
`examples/tokenize --train` and Hugging Face tokenizers' BpeTrainer
(ByteLevel pre-tokenizer, byte alphabet, min_frequency 2: the same task),
alternated round by round on the same corpus, vocabulary size and thread
count. Run by hand:

    pip install tiktoken tokenizers
    cargo build --release --example tokenize
    python3 scripts/bench_bpe_train.py [--rounds 5]

Also checks that Hugging Face tokenizers loads the tokenizer.json we write
and encodes the corpus to the same ids as we do.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
BIN = os.path.join(ROOT, "target", "release", "examples", "tokenize")
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def ours(corpus, vocab, threads, out):
    r = subprocess.run([BIN, "--train", corpus, "--vocab-size", str(vocab), "--out", out,
                        "--threads", str(threads)], capture_output=True, text=True, check=True)
    line = [l for l in r.stderr.splitlines() if l.startswith("train ")][-1]
    return float(dict(kv.split("=") for kv in line.split()[1:])["seconds"])


def hf(corpus, vocab):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    start = time.perf_counter()
    tok.train([corpus], trainer)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    # Hugging Face's thread pool is sized once, at import.
    os.environ["RAYON_RS_NUM_CPUS"] = str(args.threads)
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    import tokenizers
    from bench_tokenizer import mixed_text

    tmp = tempfile.mkdtemp()
    shakespeare = os.path.join(SHARED, "tinyshakespeare.txt")
    mixed = os.path.join(tmp, "mixed.txt")
    with open(mixed, "w", encoding="utf-8") as f:
        f.write(mixed_text(open(shakespeare, encoding="utf-8").read()))
    out = os.path.join(tmp, "ours.json")

    # Hugging Face reads what we write, and encodes as we do.
    ours(shakespeare, 4096, args.threads, out)
    loaded = tokenizers.Tokenizer.from_file(out)
    lines = open(shakespeare, encoding="utf-8").read().splitlines(keepends=True)[:5000]
    theirs = [i for enc in loaded.encode_batch(lines) for i in enc.ids]
    r = subprocess.run([BIN, "--tokenizer", out], input="".join(lines), capture_output=True, text=True, check=True)
    mine = json.loads(r.stdout.strip().splitlines()[-1])
    assert mine == theirs, "Hugging Face encodes with our tokenizer.json differently"
    print(f"tokenizers {tokenizers.__version__} loads our tokenizer.json and encodes 5000 lines identically")

    for name, corpus in [("shakespeare", shakespeare), ("mixed", mixed)]:
        for vocab in [4096, 16384]:
            ratios, o, h = [], [], []
            for rnd in range(args.rounds):
                if rnd % 2 == 0:
                    a, b = ours(corpus, vocab, args.threads, out), hf(corpus, vocab)
                else:
                    b, a = hf(corpus, vocab), ours(corpus, vocab, args.threads, out)
                o.append(a)
                h.append(b)
                ratios.append(b / a)
                print(f"{name} vocab={vocab} round {rnd}: ours {a:.3f} s, HF {b:.3f} s", flush=True)
            print(f"{name} ({os.path.getsize(corpus)} bytes) vocab={vocab} threads={args.threads}: "
                  f"median ours {statistics.median(o):.3f} s, HF {statistics.median(h):.3f} s, "
                  f"HF/ours {statistics.median(ratios):.1f}x", flush=True)


if __name__ == "__main__":
    main()
