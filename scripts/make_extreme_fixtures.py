#!/usr/bin/env python3
"""Reference values at the extremes for tests/extremes.rs.

Run by hand (needs torch): python3 scripts/make_extreme_fixtures.py
Writes tests/fixtures/extremes.json in the format of make_fixtures.py. The
references are computed in float64 from the same float32 inputs the Rust
test reads, then rounded to float32: at saturation and near underflow a
float32 reference carries its own rounding error, float64 does not.
"""
import json
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
F = torch.nn.functional
torch.manual_seed(4321)


def enc(t):
    t = t.detach().to(torch.float32)
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


def grad_of(f, *inputs, g=None):
    """f's output and the gradient of sum(output * g) for each input, in float64."""
    xs = [x.detach().double().requires_grad_() for x in inputs]
    y = f(*xs)
    (y * (torch.ones_like(y) if g is None else g.double())).sum().backward()
    return (y, *[x.grad for x in xs])


def elementwise(out):
    # Saturation, underflow and the neighbourhood of zero.
    x = torch.tensor([-50, -30, -20, -12, -10, -9, -8, -7, -6, -5.5, -5, -4.5, -4, -3, -2, -1,
                      -1e-3, 0, 1e-3, 1, 2, 3, 4, 4.5, 5, 5.5, 6, 7, 8, 9, 10, 12, 20, 30, 50],
                     dtype=torch.float32)
    out["x"] = x
    cases = {
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "gelu": F.gelu,
        "sigmoid": torch.sigmoid,
        "silu": F.silu,
        "tanh": torch.tanh,
    }
    for name, f in cases.items():
        y, dx = grad_of(f, x)
        out[f"{name}_y"], out[f"{name}_dx"] = y, dx
    # exp over its whole finite range, down to subnormal results.
    e = torch.tensor([-100, -90, -87.5, -87, -50, -1, 0, 1, 50, 80, 88], dtype=torch.float32)
    y, dx = grad_of(torch.exp, e)
    out.update(exp_x=e, exp_y=y, exp_dx=dx)


def softmax_family(out):
    logits = torch.tensor([[1e4, 0, -1e4, 1], [50, 50, 50, 50], [-1e4, -1e4, 0, -1e4],
                           [88, -88, 0, 20], [-200, -300, -250, -201], [1e-3, 0, -1e-3, 0]],
                          dtype=torch.float32)
    targets = torch.tensor([2, 0, 1, 1, 3, 0])
    g = torch.randn(6, 4)
    y, dl = grad_of(lambda t: torch.softmax(t, -1), logits, g=g)
    out.update(sm_logits=logits, sm_g=g, softmax_y=y, softmax_dlogits=dl)
    y, dl = grad_of(lambda t: torch.log_softmax(t, -1), logits, g=g)
    out.update(log_softmax_y=y, log_softmax_dlogits=dl)
    y, dl = grad_of(lambda t: F.cross_entropy(t, targets), logits)
    out.update(ce_targets=targets.float(), ce_loss=y, ce_dlogits=dl)


def layer_norm(out):
    # A constant row (variance 0: only eps keeps it finite), rows at 1e4 and
    # 1e-4 scale, and a row with one outlier.
    x = torch.tensor([[3, 3, 3, 3, 3, 3], [1e4, -1e4, 2e4, 0, 5e3, -3e4],
                      [1e-4, -1e-4, 2e-4, 0, 5e-5, -3e-4], [0, 0, 0, 0, 0, 1e3]],
                     dtype=torch.float32)
    w, b, g = torch.randn(6), torch.randn(6), torch.randn(4, 6)
    y, dx, dw, db = grad_of(lambda t, w, b: F.layer_norm(t, (6,), w, b, eps=1e-5), x, w, b, g=g)
    out.update(ln_x=x, ln_w=w, ln_b=b, ln_g=g, ln_y=y, ln_dx=dx, ln_dw=dw, ln_db=db)


def attention(out):
    # Causal attention whose scores reach the hundreds: one key dominates
    # each row, the others' weights underflow.
    q, k, v = torch.randn(1, 2, 6, 8) * 12, torch.randn(1, 2, 6, 8) * 12, torch.randn(1, 2, 6, 8)
    g = torch.randn(1, 2, 6, 8)
    y, dq, dk, dv = grad_of(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                            q, k, v, g=g)
    out.update(att_q=q, att_k=k, att_v=v, att_g=g, att_y=y, att_dq=dq, att_dk=dk, att_dv=dv)
    # dq and dk sum terms near 30 that cancel to near 0, below float32's
    # rounding floor there. Their tolerance is the textbook forward error
    # bound of that sum: with s = p (dO.v - dO.O), each difference is two
    # length-d dot products, so its error is at most (d + 1) eps times the
    # sum of the absolute products; dq and dk sum those times |k| or |q|.
    qd, kd, vd, gd = (t.double() for t in (q, k, v, g))
    d = q.shape[-1]
    scale = d ** -0.5
    scores = (qd @ kd.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
    p = torch.softmax(scores, -1)
    o = p @ vd
    eps = 2.0 ** -24
    # |dO|.|v_j| + |dO|.|O|, per query i and key j
    slack = (gd.abs() @ vd.abs().transpose(-1, -2)) + (gd.abs() * o.abs()).sum(-1, keepdim=True)
    ds_error = (d + 1) * eps * p * slack
    out.update(att_dq_bound=scale * ds_error @ kd.abs() + eps * dq.abs(),
               att_dk_bound=scale * ds_error.transpose(-1, -2) @ qd.abs() + eps * dk.abs())


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    print("torch", torch.__version__)
    out = {}
    elementwise(out)
    softmax_family(out)
    layer_norm(out)
    attention(out)
    path = OUT / "extremes.json"
    path.write_text(json.dumps({k: enc(v) for k, v in out.items()}) + "\n")
    print("wrote", path)
