"""Generation references from transformers/peft for tests/generate.rs (pinned: requirements.txt).

Modes:
  make OUT_DIR                 tiny random Qwen3 models (tied, untied), a peft LoRA adapter with
                               nonzero B, and goldens: greedy `generate` tokens (single prompt and a
                               left-padded batch of different lengths, eos ids inside the vocabulary
                               chosen so that one row stops early), per-step logits, and the
                               temperature/top-k/top-p warpers on random logits.
  check GOLDEN_DIR OUT_DIR     recomputes every golden output from the committed model directories
                               and inputs with the live libraries (the live test compares ours to it).
  merged BASE ADAPTER MERGED IN OUT
                               transformers on our merged directory, peft on base + adapter (logits
                               for IN's input_ids/attention_mask) and peft's `merge_and_unload`
                               weights, written to OUT.
"""
import json
import sys
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM
from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

NEW_TOKENS = 48
MODELS = {
    # tied head, GQA 4/2, head_dim 24 != hidden/heads
    "tied": dict(vocab_size=400, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=True,
                 rope_theta=1_000_000.0, max_position_embeddings=512, initializer_range=0.1),
    # untied head, one KV head, theta 10k
    "untied": dict(vocab_size=352, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=1, head_dim=12, tie_word_embeddings=False,
                   rope_theta=10_000.0, max_position_embeddings=512, initializer_range=0.1),
}
BATCH_LENGTHS = [11, 4, 8]
SINGLE_LENGTH = 7
PAD = 0
# (temperature, top_k (0 = off), top_p) for the warper golden
WARP_SETTINGS = [(1.0, 5, 1.0), (0.7, 0, 0.9), (0.6, 20, 0.95), (1.3, 3, 0.5), (1.0, 0, 0.3)]


def load(mdir, adapter=None):
    m = Qwen3ForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="sdpa").eval()
    if adapter is not None:
        m = PeftModel.from_pretrained(m, adapter).eval()
    return m


def greedy(model, ids, mask, eos, pad):
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS,
                             eos_token_id=eos, pad_token_id=pad, output_logits=True,
                             return_dict_in_generate=True)
    tokens = out.sequences[:, ids.shape[1]:].contiguous()
    logits = torch.stack(out.logits, 1).float().contiguous()  # (B, steps, V)
    return tokens, logits


def margin(tokens, logits, eos, pad):
    """Smallest top-1 minus top-2 logit along the emitted greedy path (a near tie could flip)."""
    worst = float("inf")
    for b in range(tokens.shape[0]):
        for s in range(tokens.shape[1]):
            top = logits[b, s].topk(2).values
            worst = min(worst, float(top[0] - top[1]))
            if eos is not None and int(tokens[b, s]) in eos:
                break
    return worst


def inputs(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    single = torch.randint(1, vocab, (1, SINGLE_LENGTH), generator=g)
    T = max(BATCH_LENGTHS)
    ids = torch.full((len(BATCH_LENGTHS), T), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(BATCH_LENGTHS):  # left padding, as generate wants for decoder-only models
        ids[b, T - n:] = torch.randint(1, vocab, (n,), generator=g)
        mask[b, T - n:] = 1
    return single, ids, mask


def outputs(mdir, gold, eos, adapter=None, prefix=""):
    m = load(mdir, adapter)
    out = {}
    single = gold["single.prompt"]
    tok, logits = greedy(m, single, torch.ones_like(single), eos, PAD)
    out[prefix + "single.tokens"], out[prefix + "single.logits"] = tok, logits[0]
    tok, logits = greedy(m, gold["batch.input_ids"], gold["batch.attention_mask"], eos, PAD)
    out[prefix + "batch.tokens"] = tok
    out[prefix + "margin"] = torch.tensor([min(margin(out[prefix + "single.tokens"], out[prefix + "single.logits"][None], eos, PAD),
                                               margin(tok, logits, eos, PAD))])
    with torch.no_grad():
        full = m(input_ids=gold["batch.input_ids"], attention_mask=gold["batch.attention_mask"]).logits
    out[prefix + "batch.logits"] = full.float().contiguous()
    return out


def pick_eos(tokens):
    """An eos id that row 1 of the batch first emits late, so that row stops early and the others go on."""
    row = tokens[1].tolist()
    first = {}
    for i, t in enumerate(row):
        first.setdefault(t, i)
    late = [t for t, i in first.items() if 10 <= i <= 30]
    assert late, f"no token first emitted between steps 10 and 30 in {row}"
    return late[0]


def warp_golden():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 64, generator=g) * 2.0
    out = {"warp.logits": logits, "warp.settings": torch.tensor(WARP_SETTINGS, dtype=torch.float64)}
    for i, (t, k, p) in enumerate(WARP_SETTINGS):
        s = logits.clone()
        if t != 1.0:
            s = TemperatureLogitsWarper(t)(None, s)
        if k > 0:
            s = TopKLogitsWarper(k)(None, s)
        if p < 1.0:
            s = TopPLogitsWarper(p)(None, s)
        out[f"warp.{i}.probs"] = s.softmax(-1).contiguous()
    return out


def make(out_dir):
    out_dir = Path(out_dir)
    for i, (name, kw) in enumerate(MODELS.items()):
        torch.manual_seed(200 + i)
        model = Qwen3ForCausalLM(Qwen3Config(**kw, attn_implementation="sdpa")).float().eval()
        with torch.no_grad():  # norms at one would hide a wrong norm weight
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
        single, ids, mask = inputs(kw["vocab_size"], 17 + i)
        tok, _ = greedy(model, ids, mask, None, PAD)
        eos = [pick_eos(tok), kw["vocab_size"] - 1]
        model.generation_config.eos_token_id = eos
        model.generation_config.pad_token_id = PAD
        mdir = out_dir / name
        model.save_pretrained(mdir)
        gold = {"single.prompt": single, "batch.input_ids": ids, "batch.attention_mask": mask,
                "eos": torch.tensor(eos)}
        gold.update(outputs(mdir, gold, eos))
        if name == "tied":
            adir = out_dir / "lora"
            peft_model = get_peft_model(load(mdir), LoraConfig(
                r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
            torch.manual_seed(7)
            with torch.no_grad():  # a fresh adapter (B = 0) would change nothing
                for n, p in peft_model.named_parameters():
                    if "lora_B" in n:
                        p.normal_(0.0, 0.05)
            peft_model.save_pretrained(adir)
            (adir / "README.md").unlink(missing_ok=True)  # peft's model card: noise in the goldens
            gold.update(outputs(mdir, gold, eos, adapter=adir, prefix="lora."))
        for k in [k for k in gold if k.endswith("margin")]:
            assert float(gold[k]) > 1e-3, f"{name}: greedy margin {float(gold[k])} too small, pick other seeds"
            print(f"{name} {k}: {float(gold[k]):.4f}")
        save_file({k: v.contiguous() for k, v in gold.items()}, str(mdir / "golden.safetensors"))
        print(f"wrote {mdir}: eos {eos}, batch tokens {gold['batch.tokens'].tolist()}")
    save_file(warp_golden(), str(out_dir / "sampling.safetensors"))


def check(golden_dir, out_dir):
    golden_dir, out_dir = Path(golden_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        mdir = golden_dir / name
        gold = load_file(str(mdir / "golden.safetensors"))
        eos = gold["eos"].tolist()
        out = outputs(mdir, gold, eos)
        if (golden_dir / "lora").is_dir() and name == "tied":
            out.update(outputs(mdir, gold, eos, adapter=golden_dir / "lora", prefix="lora."))
        save_file(out, str(out_dir / f"{name}.safetensors"))
    save_file(warp_golden(), str(out_dir / "sampling.safetensors"))


def merged(base, adapter, merged_dir, inp, out):
    x = load_file(inp)
    ids, mask = x["input_ids"], x["attention_mask"]
    res = {}
    with torch.no_grad():
        m = AutoModelForCausalLM.from_pretrained(merged_dir, dtype="auto", attn_implementation="sdpa").eval()
        res["merged.logits"] = m(input_ids=ids, attention_mask=mask).logits.float().contiguous()
        dtype = m.dtype
        p = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base, dtype=dtype, attn_implementation="sdpa"), adapter).eval()
        res["peft.logits"] = p(input_ids=ids, attention_mask=mask).logits.float().contiguous()
        for n, t in p.merge_and_unload().state_dict().items():
            res["peft_merged." + n] = t.float().clone().contiguous()  # clone: the tied head shares memory
    res["merged.dtype_bf16"] = torch.tensor([int(dtype == torch.bfloat16)])
    save_file(res, out)
    print(json.dumps({"merged_dtype": str(dtype), "tensors": len(res)}))


if __name__ == "__main__":
    mode = sys.argv[1]
    {"make": make, "check": check, "merged": merged}[mode](*sys.argv[2:])
