"""The seed's training stack run live for a few steps: transformers Trainer (+ peft for LoRA) on the
reference encoding (`process_func`), sequential order, logging every step.

Starts from MODEL (made by `signal` below), writes OUT/init_adapter (LoRA's initial weights, so both
sides start from the same adapter) and OUT/losses.json: one entry per optimizer step with loss,
grad_norm and learning_rate as the Trainer logs them. tests/train.rs runs the same steps with
qwen3-sft and compares.
`--optim adamw_bnb_8bit` runs bitsandbytes' 8-bit AdamW as the Trainer sets it up (qwen3-sft's
`train.optim = "adamw8bit"`); the default is torch's AdamW. `signal ... HIDDEN INTERMEDIATE` makes a
wider signal model (default 32 and 64: every tensor but the embedding is under bnb's 4096-element
minimum for 8-bit state).
Usage: python train_reference.py --tokenizer DIR --data FILE --model MODEL --out DIR --method full|lora [...]
       python train_reference.py signal TOKENIZER_DIR DATA FIRST_ROW MODEL_OUT [HIDDEN INTERMEDIATE]
"""
import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import SequentialSampler
from transformers import (AutoTokenizer, DataCollatorForSeq2Seq, Qwen3Config, Qwen3ForCausalLM,
                          Trainer, TrainerCallback, TrainingArguments)

PROMPT = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"


def process_func(example, tokenizer, max_length):
    """The seed's encoding, verbatim in behaviour."""
    instruction = tokenizer(
        f"<|im_start|>system\n{PROMPT}<|im_end|>\n<|im_start|>user\n{example['question']}<|im_end|>\n<|im_start|>assistant\n",
        add_special_tokens=False,
    )
    response = tokenizer(f"<think>{example['think']}</think> \n {example['answer']}", add_special_tokens=False)
    input_ids = instruction["input_ids"] + response["input_ids"] + [tokenizer.pad_token_id]
    attention_mask = instruction["attention_mask"] + response["attention_mask"] + [1]
    labels = [-100] * len(instruction["input_ids"]) + response["input_ids"] + [tokenizer.pad_token_id]
    return {"input_ids": input_ids[:max_length], "attention_mask": attention_mask[:max_length],
            "labels": labels[:max_length]}


def signal_model(tok_dir, rows, out, steps=16, window=128, lr=3e-2, seed=42, hidden=32, intermediate=64):
    """A tiny Qwen3 with Qwen3's vocabulary (tied head, GQA 4/2) whose logits carry signal: a random
    init (std 0.02: loss ln V + 0.006, logits near uniform, so a broken forward barely moves the loss)
    pretrained for `steps` AdamW steps on `window`-token windows of the responses in `rows` (rows the
    tests then do not use), so it has learnt the corpus' token statistics and its loss on unseen rows
    sits well below ln V. Saved to `out` with the tokenizer's files; prints ln V and the first and
    last step's loss. `hidden` 64 for NF4 checks: bitsandbytes' AVX-512 CPU dequantization indexes
    the absmax per row, which equals bnb's flat layout only when in_features is a multiple of 64
    (as in every released Qwen3); its scalar and CUDA paths are flat, as ours."""
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                      rope_theta=1_000_000.0, max_position_embeddings=4096, attn_implementation="sdpa")
    model = Qwen3ForCausalLM(cfg).float()
    seqs = []
    for r in rows[:steps]:
        enc = process_func(r, tok, 4096)
        start = next(i for i, y in enumerate(enc["labels"]) if y != -100)
        seqs.append(torch.tensor(enc["input_ids"][start:start + window])[None])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for x in seqs:
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (Path(tok_dir) / f).exists():
            shutil.copy(Path(tok_dir) / f, Path(out) / f)
    print(json.dumps({"ln_V": math.log(cfg.vocab_size), "first_step_loss": losses[0],
                      "last_step_loss": losses[-1]}))
    return model


class Sequential(Trainer):
    """File order, as qwen3-sft's `train.shuffle = false` (also used by bench/train_peer.py)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


class Record(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.logs.append({"step": state.global_step, "loss": logs["loss"],
                              "grad_norm": float(logs.get("grad_norm", float("nan"))),
                              "learning_rate": logs.get("learning_rate")})


def main():
    if sys.argv[1:2] == ["signal"]:
        tok_dir, data, first, out = sys.argv[2:6]
        dims = {k: int(v) for k, v in zip(["hidden", "intermediate"], sys.argv[6:8])}
        rows = [json.loads(l) for l in open(data, encoding="utf-8") if l.strip()][int(first):]
        signal_model(tok_dir, rows, out, **dims)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", choices=["full", "lora", "qlora"], required=True)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--optim", choices=["adamw_torch", "adamw_bnb_8bit"], default="adamw_torch")
    a = ap.parse_args()
    out = Path(a.out)
    torch.manual_seed(a.seed)
    if a.method == "qlora":
        # QLoRA as the seed repository's 8B fork loads it: bf16, NF4 with double quantization
        from transformers import BitsAndBytesConfig
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
        model = Qwen3ForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa",
                                                 quantization_config=bnb, device_map="cpu")
    else:
        model = Qwen3ForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    rows = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()][: a.samples]
    data = [process_func(r, tok, a.max_length) for r in rows]
    if a.method in ("lora", "qlora"):
        from peft import LoraConfig, TaskType, get_peft_model
        lcfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=32, lora_dropout=0.0,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(model, lcfg)
        # B starts at zero in peft; give it values so the first steps exercise the whole branch
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        model.save_pretrained(out / "init_adapter")
    args = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum, learning_rate=a.lr, max_steps=a.steps,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", optim=a.optim,
        seed=a.seed, use_cpu=True, gradient_checkpointing=True, remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    rec = Record()
    trainer = Sequential(model=model, args=args, train_dataset=data, callbacks=[rec],
                         data_collator=DataCollatorForSeq2Seq(tokenizer=tok, padding=True))
    trainer.train()
    (out / "losses.json").write_text(json.dumps(rec.logs, indent=1))
    print(json.dumps(rec.logs))


if __name__ == "__main__":
    main()
