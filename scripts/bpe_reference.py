#!/usr/bin/env python3
"""BPE training the slow, obvious way: recount every pair after each merge.
The reference for the crate's incremental trainer (src/tokenizer/train.rs),
run by hand:

    pip install regex
    python3 scripts/bpe_reference.py

Both variants learn from the first 300,000 bytes of tiny Shakespeare
(../shared/data): byte-level BPE on GPT-2's pieces (600 merges) and the
classic word-level BPE with `</w>` (400 merges). The rule both follow: merge
the most frequent pair; among equally frequent pairs, the smallest left id,
then the smallest right id (ids: the initial symbols in order, then merged
symbols in the order made); a merge that spells an existing symbol makes no
new id; a pair is merged once; stop below 2 occurrences. Writes
tests/fixtures/bpe_merges.json.
"""
import collections
import json
import os

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")
OUT = os.path.join(ROOT, "tests", "fixtures", "bpe_merges.json")
BYTES = 300_000

# OpenAI's GPT-2 pattern.
GPT2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def learn(words, symbols, new_ids):
    """words: {tuple of ids: count}; symbols: list of symbol values (bytes or
    str) by id, extended in place. Returns [(left, right)] in order."""
    ids = {s: i for i, s in enumerate(symbols)}
    merged, merges, made = set(), [], 0
    while made < new_ids:
        counts = collections.Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        candidates = [(c, p) for p, c in counts.items() if p not in merged]
        if not candidates:
            break
        count = max(c for c, _ in candidates)
        if count < 2:
            break
        best = min(p for c, p in candidates if c == count)
        merged.add(best)
        joined = symbols[best[0]] + symbols[best[1]]
        if joined in ids:
            new = ids[joined]
        else:
            new = len(symbols)
            symbols.append(joined)
            ids[joined] = new
            made += 1
        merges.append(best)
        rewritten = collections.Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            rewritten[tuple(out)] += n
        words = rewritten
    return merges


def main():
    text = open(CORPUS, "rb").read()[:BYTES].decode("utf-8", errors="ignore")
    pieces = collections.Counter(GPT2.findall(text))
    byte_words = collections.Counter()
    for piece, n in pieces.items():
        byte_words[tuple(piece.encode())] += n
    byte_merges = learn(byte_words, [bytes([b]) for b in range(256)], 600)

    words = collections.Counter(text.split())
    chars = sorted({c for w in words for c in w})
    symbols = chars + ["</w>"]
    index = {c: i for i, c in enumerate(chars)}
    classic_words = collections.Counter()
    for w, n in words.items():
        classic_words[tuple(index[c] for c in w) + (len(chars),)] += n
    classic_merges = learn(classic_words, symbols, 400)

    with open(OUT, "w") as f:
        # classic_symbols: after training, the initial symbols and those made.
        json.dump({"bytes": BYTES, "byte_level": byte_merges, "classic": classic_merges,
                   "classic_symbols": len(symbols)}, f, separators=(",", ":"))
    print(f"{len(byte_merges)} byte-level merges, {len(classic_merges)} classic merges")


if __name__ == "__main__":
    main()
