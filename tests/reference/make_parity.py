"""Writes the parity goldens: tiny random Qwen3 models saved by transformers, and for a fixed
right-padded batch their logits, per-token losses and every parameter's gradient (fp32 and bf16).

Run by `make parity` with the pinned requirements (tests/reference/requirements.txt); the Rust
test `tests/parity.rs` loads the same model directories and compares.
Usage: python make_parity.py OUT_DIR
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

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


def batch(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = [12, 9, 5]
    T = max(lengths)
    ids = torch.full((len(lengths), T), 0, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(1, vocab, (n,), generator=g)
        mask[b, :n] = 1
        prompt = 2 + b  # first tokens are prompt: no loss
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
    out_dir = Path(out_dir)
    for i, (name, kw) in enumerate(MODELS.items()):
        torch.manual_seed(100 + i)
        cfg = Qwen3Config(**kw, attn_implementation="sdpa")
        model = Qwen3ForCausalLM(cfg).float()
        # norms at one would hide a wrong norm weight: give them random values too
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
        mdir = out_dir / name
        model.save_pretrained(mdir)
        ids, mask, labels = batch(kw["vocab_size"], 7 + i)
        gold = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        for dtype, tag in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]:
            m = Qwen3ForCausalLM.from_pretrained(mdir, dtype=dtype, attn_implementation="sdpa")
            m.train()  # no dropout in Qwen3; train mode as the trainer uses it
            for k, v in run(m, ids, mask, labels).items():
                gold[f"{tag}.{k}"] = v
        save_file(gold, str(mdir / "golden.safetensors"))
        print(f"wrote {mdir}")


if __name__ == "__main__":
    main(sys.argv[1])
