"""Live reference of tests/nf4.rs: bitsandbytes==0.50.2 on CPU quantizes weights to NF4 with
nested absmax (`quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)`),
dequantizes them (`dequantize_4bit`, bf16 and fp32), runs `bnb.nn.Linear4bit` (compute dtype bf16;
training mode, and eval mode under no_grad, which takes bnb's fused AVX512-BF16 kernel where the
CPU has one) and its 8-bit block-wise quantizer (`quantize_blockwise`, the dynamic maps).

Usage: nf4_ref.py OUT_DIR [--golden] -> OUT_DIR/<case>.safetensors (inputs and bnb's outputs);
--golden writes only the small cases tests/golden/nf4 holds (ragged, midpoints, tail, and the block-wise
quantizer on a 1/60 sample), which plain `cargo test` checks on any CPU.
"""

import copy
import sys
from pathlib import Path

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

NF4 = F.get_4bit_type("nf4", device="cpu")


def weight_cases():
    """Weights with signal, and the quantizer's edge cases."""
    g = torch.Generator().manual_seed(14)
    normal = torch.randn(160, 512, generator=g) * 0.02
    normal.view(-1)[torch.randint(0, normal.numel(), (40,), generator=g)] *= 60  # outliers
    normal[7] = 0  # a zero row: eight all-zero blocks
    # 3737 values: 58 full blocks and a partial one of 25, all zero (bnb clamps its absmax to
    # 1e-38); one full block of zeros; an odd count (padded code)
    ragged = torch.randn(37, 101, generator=g)
    ragged.view(-1)[-25:] = 0
    ragged.view(-1)[64:128] = 0
    # values on the f32 midpoints of the NF4 table and one ulp either side, in blocks whose
    # absmax is 1 or 2 (the scaling is exact, so the rounding rule is what is tested)
    mids = (NF4[:-1] + NF4[1:]) / 2
    vals = torch.cat([mids, torch.nextafter(mids, mids + 1), torch.nextafter(mids, mids - 1)])
    rows = []
    for scale, lead in [(1.0, 1.0), (1.0, -1.0), (2.0, 2.0), (2.0, -2.0)]:
        row = torch.zeros(64)
        row[0] = lead
        row[1 : 1 + 45] = vals * scale
        rows.append(row)
    # the partial-block path (division) on midpoints too: 64 * 4 + 46 values
    tail = torch.cat([torch.tensor([1.0]), vals])
    mid = torch.cat(rows + [tail]).view(1, -1)
    bf16 = (torch.randn(128, 192, generator=g) * 0.05).to(torch.bfloat16)
    # a partial block of 50 with values whose code depends on bnb dividing by its absmax there
    # (times the reciprocal, they fall on the other side of a midpoint)
    tail = torch.randn(1, 242, generator=g) * 0.2
    a, hard = max((divide_sensitive(a) for a in torch.linspace(0.5, 1, 300)), key=lambda c: len(c[1]))
    tail[0, 192] = a
    tail[0, 193 : 193 + len(hard)] = torch.tensor(hard)
    return {"normal": normal, "ragged": ragged, "midpoints": mid, "bf16": bf16, "tail": tail}


def divide_sensitive(a):
    """Values x near absmax `a` times an NF4 midpoint whose code differs between x / a and
    x * (1 / a)."""
    mids = (NF4[:-1] + NF4[1:]) / 2
    out = []
    for m in mids:
        x = m * a
        near = [x]
        for step in (1, -1):
            y = x
            for _ in range(4):
                y = torch.nextafter(y, y + step)
                near.append(y)
        for y in near:
            if torch.bucketize(y / a, mids) != torch.bucketize(y * (1 / a), mids):
                out.append(y.item())
    return a, out


def quantize_case(w):
    packed, qs = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    out = {
        "w": w.contiguous(),
        "packed": packed,
        "absmax": qs.absmax,
        "nested_absmax": qs.state2.absmax,
        "nested_quant_map": qs.state2.code,
        "quant_map": qs.code,
        "offset": qs.offset.reshape(1),
        # the absmax bnb dequantizes with (nested dequantization plus offset)
        "absmax_f32": F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset,
    }
    for dtype, tag in [(torch.bfloat16, "bf16"), (torch.float32, "fp32")]:
        qd = copy.copy(qs)
        qd.dtype = dtype
        out[f"dequant_{tag}"] = F.dequantize_4bit(packed, qd)
    return out


def linear_case():
    g = torch.Generator().manual_seed(41)
    w = (torch.randn(160, 256, generator=g) * 0.03).to(torch.bfloat16)
    b = (torch.randn(160, generator=g) * 0.1).to(torch.bfloat16)
    x = torch.randn(3, 5, 256, generator=g)
    lin = bnb.nn.Linear4bit(256, 160, bias=True, compute_dtype=torch.bfloat16, quant_type="nf4")
    lin.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type="nf4", blocksize=64)
    lin.bias = torch.nn.Parameter(b.clone())
    lin = lin.to("cpu")
    lin.train()
    xg = x.clone().requires_grad_(True)
    y = lin(xg)
    gy = torch.randn(y.shape, generator=g)
    (y * gy).sum().backward()
    out = {"w": w, "b": b, "x": x, "y_train": y.detach(), "gy": gy, "gx": xg.grad}
    # the fused inference kernel repacks the weight in place: run it last
    lin.eval()
    with torch.no_grad():
        out["y_eval"] = lin(x)
    return out


def blockwise_case():
    """`quantize_blockwise` on values that sit on (and one ulp off) the points where bnb's CPU
    quantizer's grid index changes, and on the dynamic map's midpoints."""
    code = F.create_dynamic_map(signed=True)
    k = torch.arange(65536, dtype=torch.float64)
    edges = (-1 + (k - 0.5) / 32767.5).float()
    mids = (code[:-1] + code[1:]) / 2
    core = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    core = torch.cat([core, mids, torch.nextafter(mids, mids + 1), torch.nextafter(mids, mids - 1)])
    core = core.clamp(-1, 1)
    # blocks of 256 led by 1.0 so the scaling by the reciprocal absmax is exact
    n = core.numel() // 255 * 255
    blocks = torch.cat([torch.ones(n // 255, 1), core[:n].view(-1, 255)], 1).view(-1)
    g = torch.Generator().manual_seed(7)
    rand = torch.randn(100_003, generator=g) * torch.rand(100_003, generator=g) ** 4
    rand[256:512] = 0  # an all-zero block
    x = torch.cat([blocks, rand])
    q, qs = F.quantize_blockwise(x, code=code, blocksize=256)
    return {
        "x": x,
        "codes": q,
        "absmax": qs.absmax,
        "dequant": F.dequantize_blockwise(q, qs),
        "signed": code,
        "unsigned": F.create_dynamic_map(signed=False),
    }


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    small = sys.argv[2:] == ["--golden"]
    for name, w in weight_cases().items():
        if not small or name in ("ragged", "midpoints", "tail"):
            save_file(quantize_case(w), out / f"{name}.safetensors")
    block = blockwise_case()
    if small:
        # every 60th block of 256 (edges and random values both), and the maps
        x = block["x"]
        keep = torch.arange(0, x.numel() // 256, 60)
        x = x[: x.numel() // 256 * 256].view(-1, 256)[keep].reshape(-1)
        q, qs = F.quantize_blockwise(x, code=block["signed"], blocksize=256)
        block.update(x=x, codes=q, absmax=qs.absmax, dequant=F.dequantize_blockwise(q, qs))
    else:
        save_file(linear_case(), out / "linear.safetensors")
    save_file(block, out / "blockwise.safetensors")
    print(f"bitsandbytes {bnb.__version__}, torch {torch.__version__}: wrote {out}")


if __name__ == "__main__":
    main()
