"""The peer side of the training benchmark: the seed's stack (transformers Trainer, the seed's
`process_func`, DataCollatorForSeq2Seq, peft for LoRA), a few optimizer steps on a saved model,
samples in file order. Writes OUT/peer.json: per optimizer step the wall time (a callback from
on_step_begin to on_step_end: forward, backward, clipping, AdamW; data collation and model loading
are outside), the tokens of its micro-batches and the loss the Trainer logs.
Usage: python bench/train_peer.py --model DIR --tokenizer DIR --data FILE --out DIR --method full|lora
       [--steps 3] [--max-length 1024] [--batch-size 1] [--grad-accum 4] [--lr 1e-4] [--device cpu|cuda] [--dtype bf16|fp32]
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, TrainerCallback, TrainingArguments

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The seed's encoding and file-order Trainer, shared with the test reference the trainer parity runs
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/reference"))
from train_reference import Sequential, process_func  # noqa: E402


class StepTimer(TrainerCallback):
    def __init__(self, sync, progress=None):
        self.sync, self.progress, self.t0, self.steps, self.losses = sync, progress, None, [], {}

    def on_step_begin(self, args, state, control, **kw):
        self.sync()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.sync()
        self.steps.append(time.perf_counter() - self.t0)
        if self.progress:  # one line per step, read by bench/train_bench.py's CPU-time poller
            with open(self.progress, "a") as f:
                f.write(json.dumps({"step": state.global_step}) + "\n")

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses[state.global_step] = {"loss": logs["loss"], "grad_norm": float(logs.get("grad_norm", "nan"))}


def main():
    ap = argparse.ArgumentParser()
    for k in ("--model", "--tokenizer", "--data", "--out"):
        ap.add_argument(k, required=True)
    ap.add_argument("--method", choices=["full", "lora"], required=True)
    ap.add_argument("--adapter-init", help="peft adapter to start from (the one this crate loads too)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="the seed loads bf16")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    t_load = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    rows = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()]
    n = a.steps * a.batch_size * a.grad_accum
    rows = (rows * (n // len(rows) + 1))[:n]  # only what the steps consume, in file order
    data = [process_func(r, tok, a.max_length) for r in rows]
    # The seed: bf16 weights, gradient checkpointing, input grads enabled for it.
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16 if a.dtype == "bf16" else torch.float32)
    model.enable_input_require_grads()
    if a.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file
        lcfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=32, lora_dropout=0.1, target_modules=TARGETS)
        model = get_peft_model(model, lcfg)
        if a.adapter_init:
            res = set_peft_model_state_dict(model, load_file(os.path.join(a.adapter_init, "adapter_model.safetensors")))
            assert not res.unexpected_keys, res.unexpected_keys
    args = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum, learning_rate=a.lr, max_steps=a.steps,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", optim="adamw_torch",
        seed=42, use_cpu=not cuda, gradient_checkpointing=True, remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    (out / "steps.jsonl").unlink(missing_ok=True)
    timer = StepTimer(sync, out / "steps.jsonl")
    trainer = Sequential(model=model, args=args, train_dataset=data, callbacks=[timer],
                         data_collator=DataCollatorForSeq2Seq(tokenizer=tok, padding=True))
    load_s = time.perf_counter() - t_load
    trainer.train()
    per = a.batch_size * a.grad_accum
    steps = []
    for i, secs in enumerate(timer.steps):
        window = data[i * per:(i + 1) * per]
        steps.append({"step": i + 1, "seconds": secs, "tokens": sum(len(d["input_ids"]) for d in window),
                      **timer.losses.get(i + 1, {})})
    opt_state = trainer.optimizer.state
    moment = next((s["exp_avg"].dtype for s in opt_state.values() if "exp_avg" in s), None)
    res = {"impl": "transformers+peft" if a.method == "lora" else "transformers", "method": a.method,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "load_s": load_s,
           "optim_state_dtype": str(moment), "steps": steps}
    if cuda:
        res["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        res["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
    (out / "peer.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
