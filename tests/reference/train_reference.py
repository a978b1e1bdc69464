"""The seed's training stack run live for a few steps: transformers Trainer (+ peft for LoRA) on the
reference encoding (`process_func`), sequential order, logging every step.

Writes OUT/model (a tiny random Qwen3 with Qwen3's vocabulary), OUT/init_adapter (LoRA's initial
weights, so both sides start from the same adapter), and OUT/losses.json: one entry per optimizer
step with loss, grad_norm and learning_rate as the Trainer logs them. tests/train.rs runs the same
steps with qwen3-sft and compares.
Usage: python train_reference.py --tokenizer DIR --data FILE --out DIR --method full|lora [...]
"""
import argparse
import json
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", choices=["full", "lora"], required=True)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    out = Path(a.out)
    torch.manual_seed(a.seed)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                      rope_theta=1_000_000.0, max_position_embeddings=4096, attn_implementation="sdpa")
    model = Qwen3ForCausalLM(cfg).float()
    model.save_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    rows = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()][: a.samples]
    data = [process_func(r, tok, a.max_length) for r in rows]
    if a.method == "lora":
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
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", optim="adamw_torch",
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
