"""Writes the parity references: tiny random Qwen3 models saved by transformers, and for a fixed
right-padded batch their logits, per-token losses and every parameter's gradient (fp32 and bf16).

The models carry signal: weights drawn with std INIT_STD (transformers' default 0.02 gives
near-uniform logits, loss ~ ln V, so a broken forward would move the loss by less than a
tolerance), norm weights random, and the batch sampled from the fp32 model itself, so its loss
sits well below ln V (printed for each model) and depends on every layer.

`make parity` writes the committed goldens (tests/golden/parity) with the pinned requirements
(tests/reference/requirements.txt); `tests/parity.rs` compares with them, and its live test runs
this script into a temporary directory and compares with that.
`--check DIR` instead recomputes DIR's goldens on its own models and batch with the live
transformers and prints the largest differences (as tests/parity.rs measures them): how far this
CPU's kernels (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) are from the ones that wrote DIR.
Usage: python make_parity.py OUT_DIR | python make_parity.py --check DIR
"""
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.utils import logging

INIT_STD = 0.25  # initializer_range: linear and embedding weights ~ N(0, 0.25^2)

MODELS = {
    # tied head, GQA (4 query heads share 2 KV heads), head_dim 24 != hidden/heads = 16
    "tied": dict(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=True,
                 rope_theta=1_000_000.0, max_position_embeddings=512),
    # untied head, MQA-like (one KV head), theta 10k
    "untied": dict(vocab_size=320, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=1, head_dim=12, tie_word_embeddings=False,
                   rope_theta=10_000.0, max_position_embeddings=512),
}
LENGTHS = [12, 9, 5]  # right-padded to 12; the first 2 + b tokens of row b are prompt (no loss)


@torch.no_grad()
def batch(model, vocab, seed):
    """Rows sampled from `model` (temperature 1) after one random first token."""
    g = torch.Generator().manual_seed(seed)
    T = max(LENGTHS)
    seq = torch.randint(1, vocab, (len(LENGTHS), 1), generator=g)
    while seq.size(1) < T:
        probs = F.softmax(model(input_ids=seq).logits[:, -1].float(), -1)
        seq = torch.cat([seq, torch.multinomial(probs, 1, generator=g)], 1)
    ids = torch.zeros_like(seq)
    mask = torch.zeros_like(seq)
    labels = torch.full_like(seq, -100)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = seq[b, :n]
        mask[b, :n] = 1
        prompt = 2 + b
        labels[b, prompt:n] = ids[b, prompt:n]
    return ids, mask, labels


def run(model, ids, mask, labels):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V) in model dtype
    lf = logits.float()
    shift_logits, shift_labels = lf[:, :-1], labels[:, 1:]
    tok = F.cross_entropy(shift_logits.reshape(-1, lf.size(-1)), shift_labels.reshape(-1),
                          ignore_index=-100, reduction="none").view(shift_labels.shape)
    n = (shift_labels != -100).sum()
    loss = tok.sum() / n
    loss.backward()
    out = {"logits": lf.detach().contiguous(), "token_loss": tok.detach().contiguous(),
           "loss": loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().float().contiguous()
    return out


def main(out_dir):
    logging.disable_progress_bar()
    out_dir = Path(out_dir)
    for i, (name, kw) in enumerate(MODELS.items()):
        torch.manual_seed(100 + i)
        cfg = Qwen3Config(**kw, initializer_range=INIT_STD, attn_implementation="sdpa")
        model = Qwen3ForCausalLM(cfg).float()
        # norms at one would hide a wrong norm weight: give them random values too
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
        mdir = out_dir / name
        model.save_pretrained(mdir)
        ids, mask, labels = batch(model.eval(), kw["vocab_size"], 7 + i)
        gold = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        losses = []
        for dtype, tag in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]:
            m = Qwen3ForCausalLM.from_pretrained(mdir, dtype=dtype, attn_implementation="sdpa")
            m.train()  # no dropout in Qwen3; train mode as the trainer uses it
            for k, v in run(m, ids, mask, labels).items():
                gold[f"{tag}.{k}"] = v
            losses.append(f"{tag} loss {gold[f'{tag}.loss'].item():.4f}")
        save_file(gold, str(mdir / "golden.safetensors"))
        print(f"wrote {mdir}: ln V = {math.log(kw['vocab_size']):.4f}, {', '.join(losses)}")


def rel(got, want):
    """Max abs difference relative to the reference's max abs value (tests/common rel_diff)."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-12)).item()


def check(gold_dir):
    logging.disable_progress_bar()
    for name in MODELS:
        mdir = Path(gold_dir) / name
        gold = load_file(str(mdir / "golden.safetensors"))
        ids, mask, labels = gold["input_ids"], gold["attention_mask"], gold["labels"]
        valid = mask.unsqueeze(-1).float()
        for dtype, tag in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]:
            m = Qwen3ForCausalLM.from_pretrained(mdir, dtype=dtype, attn_implementation="sdpa")
            m.train()
            out = run(m, ids, mask, labels)
            d = {"logits": rel(out["logits"] * valid, gold[f"{tag}.logits"] * valid),
                 "loss": rel(out["loss"], gold[f"{tag}.loss"]),
                 "token_loss": rel(out["token_loss"], gold[f"{tag}.token_loss"])}
            grads = {k: rel(v, gold[f"{tag}.{k}"]) for k, v in out.items() if k.startswith("grad.")}
            worst = max(grads, key=grads.get)
            print(f"{name} {tag}: " + ", ".join(f"{k} {v:.2e}" for k, v in d.items())
                  + f", worst gradient {grads[worst]:.2e} ({worst[5:]})")


if __name__ == "__main__":
    check(sys.argv[2]) if sys.argv[1] == "--check" else main(sys.argv[1])
