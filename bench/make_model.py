"""Writes the random Qwen3-shaped model both sides of the training benchmark start from, so their
losses are comparable: OUT/ (config.json + model.safetensors in bf16, `save_pretrained`) and
OUT/lora-init/ (peft's initial adapter for r 8 / alpha 32 / dropout 0.1 on the seven projections:
A kaiming-uniform, B zero), which this crate loads with `lora.adapter` and the peer loads into
its fresh `get_peft_model` wrapper. Shapes are this crate's `random:<preset>` presets.
Usage: python bench/make_model.py OUT [0.6b|1.7b|demo|tiny] [SEED]
"""
import sys
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

# (hidden, intermediate, layers, heads, kv heads, head_dim), as src/model/config.rs::preset
PRESETS = {
    "tiny": (64, 192, 2, 4, 2, 32),
    "demo": (256, 768, 4, 8, 4, 32),
    "0.6b": (1024, 3072, 28, 16, 8, 128),
    "1.7b": (2048, 6144, 28, 16, 8, 128),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    out = Path(sys.argv[1])
    preset = sys.argv[2] if len(sys.argv) > 2 else "0.6b"
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    c, i, l, h, kv, d = PRESETS[preset]
    cfg = Qwen3Config(vocab_size=151936, hidden_size=c, intermediate_size=i, num_hidden_layers=l,
                      num_attention_heads=h, num_key_value_heads=kv, head_dim=d, tie_word_embeddings=True,
                      rope_theta=1_000_000.0, max_position_embeddings=40960, rms_norm_eps=1e-6,
                      bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
    torch.manual_seed(seed)
    # Built on the meta device would skip init; build in bf16 directly (normal(0, 0.02), norms 1).
    torch.set_default_dtype(torch.bfloat16)
    model = Qwen3ForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(out)
    from peft import LoraConfig, TaskType, get_peft_model
    lcfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=32, lora_dropout=0.1, target_modules=TARGETS)
    torch.manual_seed(seed + 1)
    get_peft_model(model, lcfg).save_pretrained(out / "lora-init")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} (random Qwen3 {preset}: {n / 1e9:.3f} B parameters, bf16) and {out / 'lora-init'}")


if __name__ == "__main__":
    main()
