#!/usr/bin/env python3
"""Reference values from PyTorch for tests/pytorch_parity.rs.

Run by hand (needs torch): python3 scripts/make_fixtures.py [NAME ...]
(all fixtures, or only those named, e.g. sliding_window_attention).
Writes tests/fixtures/*.json: every input, output and gradient of a few
composite cases, as {"name": {"shape": [...], "data": [...]}}. Inputs are
generated here and read back by the Rust test, so the crate is checked on
exactly the numbers PyTorch saw.
"""
import json
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
torch.manual_seed(1234)
torch.set_num_threads(1)


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32).requires_grad_()


def save(name, tensors):
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({k: enc(v) for k, v in tensors.items()}, indent=None) + "\n")
    print("wrote", path)


def mlp():
    # Two layers, tanh-GELU between them, cross-entropy with an ignored target.
    x, w1, b1, w2, b2 = leaf(8, 5), leaf(5, 16), leaf(16), leaf(16, 3), leaf(3)
    targets = torch.tensor([0, 2, 1, 1, -100, 0, 2, 1])
    h = torch.nn.functional.gelu(x @ w1 + b1, approximate="tanh")
    logits = h @ w2 + b2
    loss = torch.nn.functional.cross_entropy(logits, targets)
    loss.backward()
    save("mlp", {
        "x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2,
        "targets": targets.float(), "logits": logits, "loss": loss,
        "dx": x.grad, "dw1": w1.grad, "db1": b1.grad, "dw2": w2.grad, "db2": b2.grad,
    })


def layer_norm():
    x, w, b = leaf(4, 3, 7), leaf(7), leaf(7)
    g = torch.randn(4, 3, 7)
    y = torch.nn.functional.layer_norm(x, (7,), w, b, eps=1e-5)
    y.backward(g)
    save("layer_norm", {"x": x, "w": w, "b": b, "g": g, "y": y, "dx": x.grad, "dw": w.grad, "db": b.grad})


def softmax_cross_entropy():
    logits = (torch.randn(6, 5) * 3).requires_grad_()
    targets = torch.tensor([4, 0, -100, 2, 3, 1])
    g = torch.randn(6, 5)
    p = torch.softmax(logits, dim=-1)
    lp = torch.log_softmax(logits, dim=-1)
    loss = torch.nn.functional.cross_entropy(logits, targets)
    # One backward through all three, weighted, so each rule contributes.
    ((p * g).sum() + (lp * g).sum() * 0.5 + loss).backward()
    save("softmax_cross_entropy", {
        "logits": logits, "targets": targets.float(), "g": g,
        "softmax": p, "log_softmax": lp, "loss": loss, "dlogits": logits.grad,
    })


def batched_matmul():
    a, b = leaf(2, 1, 3, 4), leaf(3, 4, 5)
    g = torch.randn(2, 3, 3, 5)
    c = a @ b
    c.backward(g)
    save("batched_matmul", {"a": a, "b": b, "g": g, "c": c, "da": a.grad, "db": b.grad})


def gelu_exact():
    x = torch.linspace(-5, 5, 41).requires_grad_()
    y = torch.nn.functional.gelu(x)
    y.sum().backward()
    save("gelu_exact", {"x": x, "y": y, "dx": x.grad})


def optim():
    # Five steps of each optimizer on loss = sum((x @ w + b - y)^2), from the
    # same start; AdamW with nanoGPT's groups (decay on w only) and clipping.
    x, y = torch.randn(6, 3), torch.randn(6, 4)
    w0, b0 = torch.randn(3, 4), torch.randn(4)
    out = {"x": x, "y": y, "w0": w0, "b0": b0}

    def run(make, clip=None):
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        opt = make(w, b)
        norms = []
        for _ in range(5):
            opt.zero_grad()
            ((x @ w + b - y) ** 2).sum().backward()
            if clip is not None:
                norms.append(torch.nn.utils.clip_grad_norm_([w, b], clip))
            opt.step()
        return w, b, torch.tensor(norms)

    w, b, _ = run(lambda w, b: torch.optim.SGD([w, b], lr=0.01, momentum=0.9, weight_decay=0.01))
    out.update(sgd_w=w, sgd_b=b)
    w, b, _ = run(lambda w, b: torch.optim.Adam([w, b], lr=0.05, weight_decay=0.01))
    out.update(adam_w=w, adam_b=b)
    w, b, norms = run(lambda w, b: torch.optim.AdamW(
        [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
        lr=0.05, betas=(0.9, 0.99)), clip=1.0)
    out.update(adamw_w=w, adamw_b=b, adamw_norms=norms)
    save("optim", out)


def rms_norm():
    x, w = leaf(4, 3, 8), leaf(8)
    g = torch.randn(4, 3, 8)
    y = torch.nn.functional.rms_norm(x, (8,), w, eps=1e-6)
    y.backward(g)
    save("rms_norm", {"x": x, "w": w, "g": g, "y": y, "dx": x.grad, "dw": w.grad})


def masked_attention():
    # Cross-attention (3 queries over 5 keys) with key padding, and causal
    # self-attention with right padding; SDPA's bool mask is True = attend.
    F = torch.nn.functional
    q, k, v = leaf(2, 2, 3, 4), leaf(2, 2, 5, 4), leaf(2, 2, 5, 4)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    g = torch.randn(2, 2, 3, 4)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=~pad[:, None, None, :])
    y.backward(g)
    out = {"q": q, "k": k, "v": v, "pad": pad.float(), "g": g, "y": y,
           "dq": q.grad, "dk": k.grad, "dv": v.grad}
    sq, sk, sv = leaf(2, 2, 5, 4), leaf(2, 2, 5, 4), leaf(2, 2, 5, 4)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    sg = torch.randn(2, 2, 5, 4)
    sy = F.scaled_dot_product_attention(sq, sk, sv, attn_mask=causal & ~pad[:, None, None, :])
    sy.backward(sg)
    out.update(sq=sq, sk=sk, sv=sv, sg=sg, sy=sy, dsq=sq.grad, dsk=sk.grad, dsv=sv.grad)
    save("masked_attention", out)


def banded(tq, tk, past, window):
    """SDPA's bool mask (True = attend) for queries at past..past+tq over
    tk keys: causal, and each query sees the last `window` positions."""
    i = torch.arange(past, past + tq)[:, None]
    j = torch.arange(tk)[None, :]
    return (j <= i) & (j > i - window)


def sliding_window_attention():
    # An explicit banded mask through SDPA: self-attention over 20
    # positions with a window of 5, the same over two sequences with key
    # padding, and 3 new queries behind 17 cached positions (window 7).
    torch.manual_seed(4321)
    F = torch.nn.functional
    out = {}
    pad = torch.zeros(2, 20, dtype=torch.bool)
    pad[1, 14:] = True
    cases = [("", 1, 20, 20, 0, 5, None), ("pad_", 2, 20, 20, 0, 5, pad), ("past_", 1, 3, 20, 17, 7, None)]
    for prefix, b, tq, tk, past, window, padding in cases:
        q, k, v = leaf(b, 2, tq, 8), leaf(b, 2, tk, 8), leaf(b, 2, tk, 8)
        g = torch.randn(b, 2, tq, 8)
        mask = banded(tq, tk, past, window)[None, None]
        if padding is not None:
            mask = mask & ~padding[:, None, None, :]
            out[prefix + "pad"] = padding.float()
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y.backward(g)
        out.update({prefix + n: t for n, t in
                    dict(q=q, k=k, v=v, g=g, y=y, dq=q.grad, dk=k.grad, dv=v.grad).items()})
    save("sliding_window_attention", out)


def moe_feed_forward():
    # A Mixture-of-Experts feed-forward written from the papers' formulas:
    # softmax router, top-k experts (gates as they are for k = 1, Switch;
    # renormalised for k = 2, Mixtral), GELU (tanh) experts without biases,
    # the Switch load-balancing loss E * sum_e f_e P_e (f_e: the share of
    # the n tokens' choices that went to e) and ST-MoE's router z-loss
    # mean(logsumexp(logits)^2). The loss backpropagated is
    # sum(y * g) + 0.01 * balance + 0.001 * z.
    # Inputs are drawn in float32 (what the Rust test reads) and the
    # reference runs in float64, so the fixture holds the exact answer for
    # those inputs, not another float32 summation order's.
    torch.manual_seed(2468)
    F = torch.nn.functional

    def leaf64(*shape, std=1.0):
        return (torch.randn(*shape) * std).double().requires_grad_()

    c, hidden, experts, n = 8, 16, 4, 12
    out = {}
    for k in (1, 2):
        p = f"k{k}_"
        x = leaf64(n, c)
        router = leaf64(experts, c)
        fc = [leaf64(hidden, c, std=0.5) for _ in range(experts)]
        proj = [leaf64(c, hidden, std=0.5) for _ in range(experts)]
        g = torch.randn(n, c).double()
        logits = x @ router.T
        probs = logits.softmax(-1)
        top, choice = probs.topk(k, -1)
        gates = top if k == 1 else top / top.sum(-1, keepdim=True)
        y = torch.zeros(n, c, dtype=torch.float64)
        for e in range(experts):
            token, slot = (choice == e).nonzero(as_tuple=True)
            h = F.gelu(x[token] @ fc[e].T, approximate="tanh") @ proj[e].T
            y = y.index_add(0, token, h * gates[token, slot][:, None])
        counts = torch.stack([(choice == e).sum() for e in range(experts)]).float()
        balance = experts * (counts / n * probs.mean(0)).sum()
        z = (torch.logsumexp(logits, -1) ** 2).mean()
        ((y * g).sum() + 0.01 * balance + 0.001 * z).backward()
        out.update({p + "x": x, p + "router": router, p + "g": g, p + "y": y,
                    p + "balance": balance.reshape(1), p + "z": z.reshape(1), p + "counts": counts,
                    p + "dx": x.grad, p + "drouter": router.grad})
        for e in range(experts):
            out.update({f"{p}fc{e}": fc[e], f"{p}proj{e}": proj[e],
                        f"{p}dfc{e}": fc[e].grad, f"{p}dproj{e}": proj[e].grad})
    save("moe_feed_forward", out)


def swiglu():
    F = torch.nn.functional
    x, w_gate, w_up, w_down = leaf(3, 6), leaf(5, 6), leaf(5, 6), leaf(6, 5)
    g = torch.randn(3, 6)
    y = F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
    y.backward(g)
    save("swiglu", {"x": x, "w_gate": w_gate, "w_up": w_up, "w_down": w_down, "g": g, "y": y,
                    "dx": x.grad, "dw_gate": w_gate.grad, "dw_up": w_up.grad, "dw_down": w_down.grad})


def bf16_matmul():
    # PyTorch's CPU products of bf16 tensors (f32 sums rounded to bf16):
    # a plain product, a Linear's (weight transposed, bias, odd depth), a
    # batch against a shared matrix, and the gradients of the first through
    # a cast to f32. Values are stored as the f32 the bf16 hold exactly.
    gen = torch.Generator().manual_seed(43)

    def bf(*shape):
        return torch.randn(*shape, generator=gen).bfloat16()

    a, b = bf(24, 50).requires_grad_(), bf(50, 30).requires_grad_()
    x, w, bias = bf(50, 33), bf(20, 33), bf(20)
    p, q = bf(3, 9, 16), bf(16, 11)
    g = torch.randn(24, 30, generator=gen)
    c = a @ b
    (c.float() * g).sum().backward()
    out = {"a": a, "b": b, "c": c, "g": g, "da": a.grad, "db": b.grad,
           "x": x, "w": w, "bias": bias, "linear": torch.nn.functional.linear(x, w, bias),
           "p": p, "q": q, "batched": p @ q}
    save("bf16_matmul", {k: v.float() for k, v in out.items()})


def params(prefix, module):
    return {f"{prefix}{n}": p for n, p in module.named_parameters()}


def transformer_layers():
    # torch.nn.Transformer{Encoder,Decoder}Layer lay out their weights as
    # zeroformer's layers do (a fused in_proj of q, k, v rows). Training mode
    # with dropout 0 keeps PyTorch off its fast path, which zeroes padded rows.
    enc = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    x = leaf(2, 5, 8)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    g = torch.randn(2, 5, 8)
    y = enc(x, src_key_padding_mask=pad)
    y.backward(g)
    out = params("enc.", enc)
    out.update({"x": x, "pad": pad.float(), "g": g, "enc_y": y, "enc_dx": x.grad,
                "enc_d_in_proj": enc.self_attn.in_proj_weight.grad})
    dec = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True,
                                           activation="gelu")
    tgt, memory = leaf(2, 4, 8), leaf(2, 5, 8)
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)
    dg = torch.randn(2, 4, 8)
    dy = dec(tgt, memory, tgt_mask=causal, memory_key_padding_mask=pad)
    dy.backward(dg)
    out.update(params("dec.", dec))
    out.update({"tgt": tgt, "memory": memory, "dg": dg, "dec_y": dy, "dec_dtgt": tgt.grad,
                "dec_dmemory": memory.grad,
                "dec_d_cross_in_proj": dec.multihead_attn.in_proj_weight.grad})
    save("transformer_layers", out)


if __name__ == "__main__":
    import sys

    OUT.mkdir(parents=True, exist_ok=True)
    print("torch", torch.__version__)
    # In this order: each draws from the one seeded stream after the last.
    seeded = [mlp, layer_norm, softmax_cross_entropy, batched_matmul, gelu_exact, optim, rms_norm,
              masked_attention, swiglu, transformer_layers]
    # Each seeds its own stream.
    independent = [sliding_window_attention, moe_feed_forward, bf16_matmul]
    wanted = set(sys.argv[1:])
    if wanted and not wanted <= {f.__name__ for f in seeded + independent}:
        sys.exit(f"unknown fixture in {sorted(wanted)}")
    if not wanted or wanted & {f.__name__ for f in seeded}:
        # The seeded ones only make sense together.
        for f in seeded:
            f()
    for f in independent:
        if not wanted or f.__name__ in wanted:
            f()
