"""Backward time of one LoRA up-projection (`h @ B^T`, fp32, r 8, 1024 tokens) in the two forms autograd can take:
`linear(h, B)` (B^T as a transposed view: lora_B's gradient becomes grad^T @ h) and `h @ B.t().contiguous()`
(h^T @ grad), the form src/model/lora.rs uses. 2 threads, best of 20. Usage: .venv/bin/python bench/lora_backward.py"""
import time

import torch

torch.set_num_threads(2)
T, r = 1024, 8
for out in (1024, 2048, 3072):
    h = torch.randn(1, T, r)
    g = torch.randn(1, T, out)
    for mode in ("linear", "contiguous B^T"):
        b = torch.randn(out, r, requires_grad=True)
        best = float("inf")
        for _ in range(20):
            hh = h.clone().requires_grad_()
            y = torch.nn.functional.linear(hh, b) if mode == "linear" else hh.matmul(b.t().contiguous())
            t = time.perf_counter()
            y.backward(g)
            best = min(best, time.perf_counter() - t)
        print(f"out {out}: {mode:>15} backward {best * 1e3:.2f} ms")
