"""Answer-quality metrics as LLaMA-Factory's scripts/eval_bleu_rouge.py computes them: for each
sample, ROUGE-1/2/L F from rouge_chinese.Rouge().get_scores over the jieba.cut words of predict and
label joined with spaces (all 0 when either has no word), BLEU-4 from nltk's sentence_bleu over the
characters of predict against the characters of label with SmoothingFunction().method3, each
`round(value * 100, 4)`; the mean is sum / count per metric. The live reference of tests/score.rs.

Usage (JSON on stdin, JSON on stdout):
  python score_ref.py score     < [{"predict": P, "label": L}, ...]
      -> {"samples": [{"bleu-4", "rouge-1", "rouge-2", "rouge-l"}, ...], "mean": {...}}
  python score_ref.py segment   < ["text", ...]          -> [["word", ...], ...]  (jieba.cut, HMM on)
  python score_ref.py golden DIR   reads DIR/cases.json ([{"name", "predict", "label"}]) and writes
      DIR/expected.json (versions, per-sample metrics, mean, and the segmentation of every text).
"""
import json
import logging
import sys
from importlib.metadata import version
from pathlib import Path

import jieba
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

jieba.setLogLevel(logging.CRITICAL)
jieba.initialize()

KEYS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")


def metrics(predict, label):
    """One sample, as eval_bleu_rouge.py's compute_metrics does it."""
    hyp_words = list(jieba.cut(predict))
    ref_words = list(jieba.cut(label))
    hyp_text, ref_text = " ".join(hyp_words), " ".join(ref_words)
    # BLEU on characters (list(str)), one reference.
    bleu = sentence_bleu([list(label)], list(predict), smoothing_function=SmoothingFunction().method3)
    if not hyp_text.split() or not ref_text.split():
        rouge = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    else:
        first = Rouge().get_scores(hyp_text, ref_text)[0]
        rouge = {k: v["f"] for k, v in first.items()}
    out = {k: round(v * 100, 4) for k, v in rouge.items()}
    out["bleu-4"] = round(bleu * 100, 4)
    return {k: float(out[k]) for k in KEYS}


def score(pairs):
    samples = [metrics(p["predict"], p["label"]) for p in pairs]
    mean = {k: sum(s[k] for s in samples) / len(samples) for k in KEYS} if samples else {}
    return {"samples": samples, "mean": mean}


def segment(texts):
    return [list(jieba.cut(t)) for t in texts]


def golden(folder):
    folder = Path(folder)
    cases = json.loads((folder / "cases.json").read_text(encoding="utf-8"))
    texts = sorted({t for c in cases for t in (c["predict"], c["label"])})
    out = {
        "generator": "tests/reference/score_ref.py golden",
        "versions": {p: version(p) for p in ("jieba", "nltk", "rouge-chinese")},
        "python": sys.version.split()[0],
        **score(cases),
        "segments": [{"text": t, "words": w} for t, w in zip(texts, segment(texts))],
    }
    text = json.dumps(out, ensure_ascii=False, indent=1)
    (folder / "expected.json").write_text(text + "\n", encoding="utf-8")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "score"
    if mode == "golden":
        return golden(sys.argv[2])
    data = json.load(sys.stdin)
    result = {"score": score, "segment": segment}[mode](data)
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
