#!/usr/bin/env python3
"""Reference token ids for tests/tokenizer_gpt2.rs, run by hand:

    pip install tiktoken tokenizers
    python3 scripts/make_tokenizer_fixtures.py

GPT-2's encoding is built by tiktoken from the local vocab.json and
merges.txt (../shared/data/gpt2; byte-identical to OpenAI's, see SOURCE.md),
with tiktoken's GPT-2 pattern. Writes tests/fixtures/gpt2_tokens.json: the
ids of hard cases (ordinary and with special tokens allowed) and checksums
of the whole tiny Shakespeare corpus's ids.

Also trains a small byte-level BPE with Hugging Face tokenizers and writes
its tokenizer.json and the ids it gives for the same cases
(tests/fixtures/hf_bpe_tokenizer.json, hf_bpe_tokens.json), so the crate's
reader of that format is checked against the library that writes it.
"""
import json
import os
import sys

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# tiktoken_ext/openai_public.py's r50k_pat_str (GPT-2's pattern).
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

CASES = [
    "Hello world",
    "a  b",
    "a   b",
    "  leading spaces",
    "trailing spaces   ",
    "tab\tand\t\ttabs",
    "line\nbreaks\n\nand\r\nCRLF\r\n",
    "\n\n\n",
    "   \n   x",
    "digits 0 12 345 6789 3.14159 1,000,000 2024-06-01",
    "don't won't I'll we've they're she'd I'm it's",
    "DON'T I'LL WE'VE",
    "rock'n'roll o'clock ma'am 'tis",
    "curly \u2019s apostrophe don\u2019t",
    "punctuation!!! ... ?!? --- (((x))) [y] {z} <|> #$%^&*",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 nai\u0308ve",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587\u5206\u8bcd \ud55c\uad6d\uc5b4",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u041f\u0440\u0438\u0432\u0435\u0442",
    "emoji \U0001f600 \U0001f44d\U0001f3fd \U0001f469\u200d\U0001f469\u200d\U0001f467 \U0001f1eb\U0001f1f7",
    "controls \x00\x01\x07\x1b[0m\x7f end",
    "\u00a0non-breaking\u00a0space \u3000ideographic\u2028line",
    "x" * 300,
    " " * 50 + "y",
    "<|endoftext|> is plain text here",
    "https://example.com/path?query=1&b=2#frag",
    "def f(x):\n    return x ** 2  # square\n",
    "",
]

SPECIAL_CASES = [
    "<|endoftext|>",
    "one<|endoftext|>two",
    "<|endoftext|><|endoftext|>",
    "a <|endoftext|> b <|endoft",
]


def checksum(ids):
    """FNV-1a over the ids as little-endian u32 bytes, as the Rust test computes it."""
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def gpt2():
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(SHARED, "gpt2", "merges.txt"),
        encoder_json_file=os.path.join(SHARED, "gpt2", "vocab.json"),
    )
    return tiktoken.Encoding(
        name="gpt2-local",
        pat_str=PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


def main():
    enc = gpt2()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    corpus = open(os.path.join(SHARED, "tinyshakespeare.txt"), encoding="utf-8").read()
    ids = enc.encode_ordinary(corpus)
    block = 10_000
    fixture = {
        "source": "tiktoken " + tiktoken.__version__ + " from ../shared/data/gpt2",
        "ordinary": [{"text": t, "ids": enc.encode_ordinary(t)} for t in CASES],
        "special": [{"text": t, "ids": enc.encode(t, allowed_special="all")} for t in SPECIAL_CASES],
        "shakespeare": {
            "tokens": len(ids),
            "checksum": checksum(ids),
            "block": block,
            "block_checksums": [checksum(ids[i:i + block]) for i in range(0, len(ids), block)],
            "first": ids[:64],
        },
    }
    with open(os.path.join(FIXTURES, "gpt2_tokens.json"), "w") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=0)

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([corpus[:50_000]], trainer)
    hf.save(os.path.join(FIXTURES, "hf_bpe_tokenizer.json"))
    cases = [{"text": t, "ids": hf.encode(t).ids} for t in CASES]
    with open(os.path.join(FIXTURES, "hf_bpe_tokens.json"), "w") as f:
        json.dump({"source": "tokenizers " + __import__("tokenizers").__version__, "cases": cases},
                  f, ensure_ascii=True, indent=0)
    print(f"{len(CASES)} cases, {len(ids)} corpus tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
