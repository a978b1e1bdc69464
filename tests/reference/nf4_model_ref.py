"""Live reference of tests/nf4.rs's model-file checks: how transformers 5.23 with bitsandbytes
0.50.2 saves a Qwen3 loaded in 4-bit NF4 with double quantization, and whether it loads ours.

Usage:
  nf4_model_ref.py make DIR   a tiny random bf16 Qwen3 (untied head) in DIR/base, the same
                              loaded with BitsAndBytesConfig(nf4, double quant, bf16 compute)
                              and saved in DIR/bnb, its logits on fixed ids in DIR/logits.safetensors
  nf4_model_ref.py check DIR  loads DIR/ours (written by the Rust test) the same way and prints
                              the largest logit difference to DIR/bnb's
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Qwen3Config, Qwen3ForCausalLM

IDS = torch.tensor([[3, 17, 250, 9, 101, 44, 7, 300]])
BNB = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_compute_dtype=torch.bfloat16,
    bnb_4bit_use_double_quant=True,
)


def logits(path):
    model = AutoModelForCausalLM.from_pretrained(path, device_map="cpu")
    model.train()  # bnb's dequantize + F.linear path (eval mode repacks for a fused kernel)
    with torch.no_grad():
        return model(IDS).logits.float()


def make(d):
    torch.manual_seed(3)
    cfg = Qwen3Config(
        vocab_size=320,
        hidden_size=128,
        intermediate_size=200,  # 128 * 200 / 64 = 400 blocks: two nested blocks, one partial
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        tie_word_embeddings=False,
    )
    Qwen3ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(d / "base")
    model = AutoModelForCausalLM.from_pretrained(d / "base", device_map="cpu", quantization_config=BNB)
    model.save_pretrained(d / "bnb")
    save_file({"logits": logits(d / "bnb")}, d / "logits.safetensors")
    print(f"wrote {d}/base, {d}/bnb")


def check(d):
    want = load_file(d / "logits.safetensors")["logits"]
    got = logits(d / "ours")
    print(f"max |ours - bnb| logits: {(got - want).abs().max().item():.3e} (max |logit| {want.abs().max().item():.3f})")


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](Path(sys.argv[2]))
