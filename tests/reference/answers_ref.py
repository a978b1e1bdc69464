"""The live reference of `eval --generate` (tests/eval.rs): format adherence by trl's own
`think_format_reward` (trl/rewards/format_rewards.py) plus a non-empty answer after `</think>`, and
BLEU-4 / ROUGE-1/2/L of each answer against the reference answer as LLaMA-Factory's
scripts/eval_bleu_rouge.py computes them (score_ref.py: jieba, nltk, rouge-chinese).

Usage (JSON on stdout):
  python answers_ref.py answers FILE   FILE is eval --generate's answers.jsonl; every judgement is
      recomputed from its `text` (the assistant turn) and `reference_answer`:
      {"samples": [{"format_ok", "closed", "answer", "bleu4", "rouge1", "rouge2", "rougeL"}],
       "summary": {"format_rate", "closed_rate", "bleu4", "rouge1", "rouge2", "rougeL", "samples"}}
  python answers_ref.py format < ["text", ...]   -> [format_ok, ...]
"""
import json
import sys
from pathlib import Path

from trl.rewards import think_format_reward

sys.path.insert(0, str(Path(__file__).parent))
from score_ref import metrics  # noqa: E402


def answer_of(text):
    """The answer after the first </think> (none while a think block is open), stripped."""
    t = text.lstrip()
    if "</think>" in t:
        return t.split("</think>", 1)[1].strip()
    return "" if t.startswith("<think>") else t.strip()


def format_ok(texts):
    rewards = think_format_reward([[{"content": t}] for t in texts])
    return [r == 1.0 and "</think>" in t and t.split("</think>", 1)[1].strip() != ""
            for r, t in zip(rewards, texts)]


def answers(path):
    rows = [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]
    texts = [r["text"] for r in rows]
    samples = []
    for r, ok in zip(rows, format_ok(texts)):
        answer = answer_of(r["text"])
        m = metrics(answer, r["reference_answer"])
        samples.append({"format_ok": ok, "closed": "</think>" in r["text"], "answer": answer,
                        "bleu4": m["bleu-4"], "rouge1": m["rouge-1"], "rouge2": m["rouge-2"],
                        "rougeL": m["rouge-l"]})
    n = len(samples)
    summary = {k: sum(s[k] for s in samples) / n for k in ("bleu4", "rouge1", "rouge2", "rougeL")}
    summary["format_rate"] = sum(s["format_ok"] for s in samples) / n
    summary["closed_rate"] = sum(s["closed"] for s in samples) / n
    summary["samples"] = n
    return {"samples": samples, "summary": summary}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "answers":
        out = answers(sys.argv[2])
    elif mode == "format":
        out = format_ok(json.load(sys.stdin))
    else:
        sys.exit(f"unknown mode {mode}")
    json.dump(out, sys.stdout, ensure_ascii=False)
