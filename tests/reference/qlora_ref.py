"""The merge QLoRA users are told to do, live (transformers 5.23, peft, bitsandbytes 0.50.2): the base
loaded with QLoRA's BitsAndBytesConfig, every 4-bit weight dequantized to bf16 (`dequantize_4bit`), the
adapter applied by peft on that dense bf16 model and merged (`merge_and_unload`), saved with
`save_pretrained`. (Merging into the 4-bit weights would re-quantize and round the adapter away.)
Usage: python qlora_ref.py merge BASE_DIR ADAPTER_DIR OUT_DIR
"""
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from peft import PeftModel
from transformers import BitsAndBytesConfig, Qwen3ForCausalLM

BNB = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                         bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)


def merge(base, adapter, out):
    q = Qwen3ForCausalLM.from_pretrained(base, dtype=torch.bfloat16, quantization_config=BNB, device_map="cpu")
    dense = Qwen3ForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    qmods = dict(q.named_modules())
    with torch.no_grad():
        for name, mod in dense.named_modules():
            src = qmods.get(name)
            if isinstance(src, bnb.nn.Linear4bit):
                w = F.dequantize_4bit(src.weight.data, src.weight.quant_state).to(torch.bfloat16)
                mod.weight.copy_(w)
    merged = PeftModel.from_pretrained(dense, adapter).merge_and_unload()
    merged.save_pretrained(out)
    print(f"merged {adapter} into the dequantized {base} -> {out}")


if __name__ == "__main__":
    {"merge": merge}[sys.argv[1]](*sys.argv[2:5])
