"""The machine's matrix-multiply rate, the yardstick `make bench` reports training against: torch
`matmul` in the benchmark's dtype on its thread count, square 2048 and 4096 products and the 0.6B
shape's MLP linear (1024 tokens x 1024 -> 3072), best of 5 after a warm-up. Prints JSON:
{"dtype": ..., "threads": N, "tflops": best over the shapes, "shapes": {name: TFLOP/s}}.
Usage: python bench/gemm_rate.py [bf16|fp32] [THREADS]
"""
import json
import sys
import time

import torch


def rate(m, k, n, dtype, reps=5):
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e12


def main():
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[sys.argv[1] if len(sys.argv) > 1 else "bf16"]
    if len(sys.argv) > 2:
        torch.set_num_threads(int(sys.argv[2]))
    shapes = {"2048^3": (2048, 2048, 2048), "4096^3": (4096, 4096, 4096), "1024x1024x3072": (1024, 1024, 3072)}
    got = {name: round(rate(*s, dtype), 3) for name, s in shapes.items()}
    print(json.dumps({"dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
                      "tflops": max(got.values()), "shapes": got}))


if __name__ == "__main__":
    main()
