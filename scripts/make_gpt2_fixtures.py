#!/usr/bin/env python3
"""Reference values for Gpt::from_pretrained / save_pretrained, run by hand:

    pip install torch transformers safetensors
    python3 scripts/make_gpt2_fixtures.py

Builds two small random GPT-2s with Hugging Face transformers
(GPT2LMHeadModel), every parameter drawn from N(0, std^2) with a large std
(biases and layer-norm weights included), so a wrong GELU form or
layer-norm epsilon shows in the logits. Saves each with save_pretrained
into tests/fixtures/hf_gpt2_<name>/ and writes expected.safetensors there:
the input ids, the logits, the mean next-token cross-entropy loss and the
gradient of that loss for every parameter (Hugging Face names and layouts).

`python3 scripts/make_gpt2_fixtures.py --check DIR` loads a directory that
zeroformer's save_pretrained wrote (tests/gpt2_pretrained.rs writes one when
ZEROFORMER_KEEP_SAVED=DIR is set) and compares its logits with the fixture's.

`python3 scripts/make_gpt2_fixtures.py --check-bf16 DIR` loads a bf16
folder written from the tiny fixture (`save_pretrained_as(dir, BF16)`) in
bf16 and compares it with the fixture rounded by PyTorch.
`python3 scripts/make_gpt2_fixtures.py --check-with-tokenizer DIR` loads a
directory that save_pretrained_with_tokenizer wrote (the same test file,
with ZEROFORMER_KEEP_SAVED_WITH_TOKENIZER=DIR) as transformers does: the
model and its generation config, and the tokenizer through AutoTokenizer
(tokenizer.json) and GPT2Tokenizer (vocab.json and merges.txt), whose ids
must be zeroformer's (zeroformer_ids.json).

`python3 scripts/make_gpt2_fixtures.py --only bf16` writes
tests/fixtures/hf_gpt2_bf16/: a random GPT-2 cast to bf16 and saved by
transformers in bf16 (torch_dtype bfloat16), with expected.safetensors
holding a prompt, transformers' bf16 logits on it and the 40 tokens its
greedy `generate` continues it with, the whole model in bf16 (KV cache on).
"""
import argparse
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

MODELS = {
    # name: (vocab, positions, width, layers, heads, std)
    "tiny": (96, 16, 32, 2, 4, 0.3),
    "wide": (64, 24, 48, 1, 3, 0.6),
}

# Run in bf16 throughout; (vocab, positions, width, layers, heads, std).
BF16_MODEL = (128, 48, 64, 2, 4, 0.3)
BF16_NEW_TOKENS = 40


def make_bf16_fixture():
    vocab, positions, width, layers, heads, std = BF16_MODEL
    config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=width, n_layer=layers,
                        n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(16)
    model = GPT2LMHeadModel(config)
    # Layer-norm scales near one keep the logits spread wide, so that the
    # greedy path wanders instead of repeating one token.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, std)
            if "ln" in name and name.endswith("weight"):
                p.add_(1.0)
    model = model.to(torch.bfloat16).eval()
    out = os.path.join(FIXTURES, "hf_gpt2_bf16")
    model.save_pretrained(out, safe_serialization=True)
    prompt = torch.randint(0, vocab, (1, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(prompt).logits
        generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                   max_new_tokens=BF16_NEW_TOKENS, min_new_tokens=BF16_NEW_TOKENS,
                                   use_cache=True, pad_token_id=0, output_scores=True,
                                   return_dict_in_generate=True)
    new = generated.sequences[0, prompt.shape[1]:]
    assert logits.dtype == torch.bfloat16 and new.numel() == BF16_NEW_TOKENS
    # The gap between the best two logits at each step: where it is one
    # rounding step of bf16, another summation order may pick the other.
    best = [s[0].float().topk(2) for s in generated.scores]
    top2 = torch.stack([b.values for b in best])
    margins = (top2[:, 0] - top2[:, 1]).contiguous()
    runner_up = torch.stack([b.indices[1] for b in best]).contiguous()
    save_file({"ids": prompt.contiguous(), "logits": logits.contiguous(), "greedy": new.contiguous(),
               "margins": margins, "top": top2[:, 0].contiguous(), "runner_up": runner_up},
              os.path.join(out, "expected.safetensors"))
    print(f"bf16: logits spread {logits.float().std().item():.3f}, greedy {new.tolist()}, "
          f"margins {[round(m, 4) for m in margins.tolist()]}")


def build(name):
    vocab, positions, width, layers, heads, std = MODELS[name]
    config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=width, n_layer=layers,
                        n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(len(name) * 1000 + layers)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    model.eval()
    return model


def ids_for(name):
    vocab, positions = MODELS[name][0], MODELS[name][1]
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, vocab, (2, positions - 2), generator=g)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check")
    ap.add_argument("--check-with-tokenizer")
    ap.add_argument("--check-bf16")
    ap.add_argument("--only", choices=[*MODELS, "bf16"])
    args = ap.parse_args()
    if args.only == "bf16":
        make_bf16_fixture()
        return
    if args.check_with_tokenizer:
        import json
        from transformers import AutoTokenizer, GenerationConfig, GPT2Tokenizer
        d = args.check_with_tokenizer
        model = GPT2LMHeadModel.from_pretrained(d)
        generation = GenerationConfig.from_pretrained(d)
        expected = json.load(open(os.path.join(d, "zeroformer_ids.json")))
        fast, slow = AutoTokenizer.from_pretrained(d), GPT2Tokenizer.from_pretrained(d)
        for tok in (fast, slow):
            ids = tok(expected["text"])["input_ids"]
            assert ids == expected["ids"], (type(tok).__name__, ids, expected["ids"])
            assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == generation.eos_token_id
        assert model.config.eos_token_id == generation.eos_token_id == generation.bos_token_id
        print(f"transformers loads {d}: the model, eos/bos {generation.eos_token_id}, and "
              f"{type(fast).__name__} and {type(slow).__name__} give zeroformer's {len(expected['ids'])} ids")
        return
    if args.check_bf16:
        # A bf16 folder written from the tiny fixture (`save_pretrained_as(dir,
        # DType::BF16)`): transformers reads bf16 weights, each the fixture's
        # rounded to nearest even, and their logits are the rounded model's.
        d = args.check_bf16
        model = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.bfloat16)
        assert model.config.torch_dtype == torch.bfloat16, model.config.torch_dtype
        reference = GPT2LMHeadModel.from_pretrained(os.path.join(FIXTURES, "hf_gpt2_tiny"))
        for (name, ours), (_, theirs) in zip(model.state_dict().items(), reference.state_dict().items()):
            assert ours.dtype == torch.bfloat16, (name, ours.dtype)
            assert torch.equal(ours, theirs.to(torch.bfloat16)), name
        expected = load_file(os.path.join(FIXTURES, "hf_gpt2_tiny", "expected.safetensors"))
        model, reference = model.float().eval(), reference.to(torch.bfloat16).float().eval()
        with torch.no_grad():
            diff = (model(expected["ids"]).logits - reference(expected["ids"]).logits).abs().max().item()
        print(f"transformers loads {d} in bf16: every weight the fixture's rounded, max |logits diff| = {diff:.3e}")
        assert diff == 0.0
        return
    if args.check:
        name = "tiny"
        model = GPT2LMHeadModel.from_pretrained(args.check)
        model.eval()
        expected = load_file(os.path.join(FIXTURES, f"hf_gpt2_{name}", "expected.safetensors"))
        with torch.no_grad():
            logits = model(expected["ids"]).logits
        diff = (logits - expected["logits"]).abs().max().item()
        print(f"transformers loads {args.check}: max |logits - fixture| = {diff:.3e}")
        assert diff < 1e-4
        return
    for name in [args.only] if args.only else MODELS:
        model = build(name)
        out = os.path.join(FIXTURES, f"hf_gpt2_{name}")
        model.save_pretrained(out, safe_serialization=True)
        ids = ids_for(name)
        result = model(ids, labels=ids)
        result.loss.backward()
        tensors = {"ids": ids.contiguous(), "logits": result.logits.detach().contiguous(),
                   "loss": result.loss.detach().reshape(1)}
        for pname, p in model.named_parameters():
            tensors["grad." + pname] = p.grad.detach().contiguous()
        save_file(tensors, os.path.join(out, "expected.safetensors"))
        print(f"{name}: loss {result.loss.item():.6f}, logits spread {result.logits.std().item():.3f}")
    if not args.only:
        make_bf16_fixture()


if __name__ == "__main__":
    main()
