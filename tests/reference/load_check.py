"""Loads a model directory with transformers (and an adapter with peft) and writes its fp32 logits
for the given ids, to compare with qwen3-sft's own forward.
Usage: python load_check.py MODEL_DIR IDS_JSON OUT.safetensors [ADAPTER_DIR]
"""
import json
import sys
import warnings

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main():
    model_dir, ids, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if problems:
            sys.exit(f"transformers loading {model_dir}: {problems}")
        if len(sys.argv) > 4:
            from peft import PeftModel
            model = PeftModel.from_pretrained(model, sys.argv[4])
    bad = [str(w.message) for w in caught if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    if bad:
        sys.exit("load warnings: " + "; ".join(bad))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits.float()
    save_file({"logits": logits.contiguous()}, out)


if __name__ == "__main__":
    main()
