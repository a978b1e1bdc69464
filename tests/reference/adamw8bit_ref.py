"""Live reference of tests/adamw8bit.rs: bitsandbytes==0.50.2's AdamW8bit on CPU, 8 steps over
parameters of both state kinds (8-bit for >= 4096 elements, 32-bit below) in fp32 and bf16, sizes
that are and are not multiples of the 256-block, one group without weight decay, a learning rate
that changes every step, gradients with outliers and zeros.

Usage: adamw8bit_ref.py OUT_DIR -> OUT_DIR/adamw8bit.safetensors: `p0.<name>` (initial weights),
and for each step s (1-based) `g<s>.<name>` (its gradient), `p<s>.<name>` (weights after it) and
bnb's state after it: `state1<s>.<name>`, `state2<s>.<name>`, `absmax1<s>.<name>`,
`absmax2<s>.<name>` (8-bit ones only); `lr<s>` holds the step's learning rate.
"""

import sys
from pathlib import Path

import bitsandbytes as bnb
import torch
from safetensors.torch import save_file

STEPS = 8
# (name, shape, dtype, decays): 5390 and 4107 elements are not multiples of 256
PARAMS = [
    ("a.weight", (70, 77), torch.float32, True),
    ("b.weight", (48, 64), torch.float32, True),  # 3072 < 4096: 32-bit state
    ("c.weight", (96, 128), torch.bfloat16, True),
    ("d.weight", (37, 111), torch.bfloat16, True),
    ("e.norm.weight", (300,), torch.float32, False),  # 32-bit, no weight decay
    ("f.norm.weight", (40, 128), torch.bfloat16, False),  # 8-bit, no weight decay
    ("g.weight", (64, 64), torch.float32, True),  # exactly 4096: 8-bit (bnb's test is `numel < 4096`)
]
BETAS, EPS, WD = (0.9, 0.999), 1e-8, 0.1


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(8)
    params = {}
    for name, shape, dtype, _ in PARAMS:
        params[name] = torch.nn.Parameter((torch.randn(shape, generator=g) * 0.05).to(dtype))
    decay = [params[n] for n, _, _, d in PARAMS if d]
    plain = [params[n] for n, _, _, d in PARAMS if not d]
    groups = [{"params": decay, "weight_decay": WD}, {"params": plain, "weight_decay": 0.0}]
    opt = bnb.optim.AdamW8bit(groups, lr=1e-3, betas=BETAS, eps=EPS)
    rec = {f"p0.{n}": p.detach().clone() for n, p in params.items()}
    for s in range(1, STEPS + 1):
        lr = 1e-3 * (1 + 0.5 * ((s * 7) % 5))
        for group in opt.param_groups:
            group["lr"] = lr
        rec[f"lr{s}"] = torch.tensor([lr], dtype=torch.float64)
        for name, p in params.items():
            # magnitudes that vary by step, a few outliers, a run of exact zeros
            grad = torch.randn(p.shape, generator=g) * (0.01 * s)
            flat = grad.view(-1)
            flat[torch.randint(0, flat.numel(), (5,), generator=g)] *= 40
            flat[: min(300, flat.numel() // 4)] = 0
            p.grad = grad.to(p.dtype)
            rec[f"g{s}.{name}"] = p.grad.clone()
        opt.step()
        for name, p in params.items():
            rec[f"p{s}.{name}"] = p.detach().clone()
            st = opt.state[p]
            for key in ["state1", "state2", "absmax1", "absmax2"]:
                if key in st:
                    rec[f"{key}{s}.{name}"] = st[key].clone()
    save_file(rec, out / "adamw8bit.safetensors")
    print(f"bitsandbytes {bnb.__version__}: AdamW8bit, {STEPS} steps, wrote {out}")


if __name__ == "__main__":
    main()
