#!/usr/bin/env python3
"""PyTorch's layer norm and tanh-GELU, forward + backward, on the shapes of
`cargo bench --bench elementwise -- rows` (cpu-mini: 768 rows of 128, GELU on
512; gpt-mini: 8192 rows of 192, GELU on 768), 2 threads, median ms:

    python3 scripts/bench_rows_torch.py
"""
import torch
import torch.nn.functional as F

from bench_attention_torch import median_ms


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 2 threads")
    for preset, rows, width in [("cpu-mini", 768, 128), ("gpt-mini", 8192, 192)]:
        x = torch.randn(rows, width, requires_grad=True)
        w = torch.ones(width, requires_grad=True)
        g = torch.randn(rows, width)
        def ln_step():
            F.layer_norm(x, (width,), w, None, 1e-5).backward(g)
            x.grad = w.grad = None

        ln = median_ms(ln_step, 50)
        h = torch.randn(rows, 4 * width, requires_grad=True)
        gh = torch.randn(rows, 4 * width)
        def gelu_step():
            F.gelu(h, approximate="tanh").backward(gh)
            h.grad = None

        gelu = median_ms(gelu_step, 50)
        print(f"{preset}: layer_norm fwd+bwd {ln:.3f} ms, gelu fwd+bwd {gelu:.3f} ms")


if __name__ == "__main__":
    main()
