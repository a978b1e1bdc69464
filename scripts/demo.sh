#!/usr/bin/env bash
# `make demo`: offline, on the CPU. A small random-init Qwen3 (the real Qwen3 tokenizer) learns
# the R1 answer layout from the committed sample: answer quality on the validation split before
# and after full fine-tuning (eval --generate: trl's think format, BLEU/ROUGE), the loss plot,
# and one streamed answer. BIN is the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/qwen3-sft}
Q=${DEMO_Q:-孩子发烧到38.5度，需要马上吃退烧药吗？}
OUT=runs/demo
TOKENS=${DEMO_MAX_NEW_TOKENS:-384}
start=$(date +%s)
mkdir -p "$OUT"
quality() { # model, answers file: the validation split answered, one JSON line
  "$BIN" eval --model "$1" --tokenizer .cache/qwen3-tokenizer --data data/demo/val.jsonl \
    --generate --answers "$2" --overwrite --max-new-tokens "$TOKENS" --batch-size 18 \
    --dtype fp32 --device cpu --json | tail -1
}
echo "== 1/5 split the committed sample into data/demo/{train,val}.jsonl (the seed's shuffle)"
"$BIN" split --input data/sample/r1_data_example.jsonl --output_dir data/demo --train_ratio 0.85 --seed 42 --overwrite
echo "== 2/5 the untrained model answers the 18 validation questions"
before=$(quality random:demo "$OUT/answers-before.jsonl")
echo "== 3/5 full fine-tuning (configs/demo-cpu.toml) -> $OUT/full"
"$BIN" train --config configs/demo-cpu.toml --overwrite
echo "== 4/5 the trained model answers them again"
after=$(quality "$OUT/full/final" "$OUT/answers-after.jsonl")
echo "== 5/5 one answer, streamed (sampled as Qwen3 recommends for thinking: temperature 0.6, top-p 0.95, top-k 20)"
"$BIN" generate --model "$OUT/full/final" --prompt "$Q" --max-new-tokens "$TOKENS" --seed 1
row() { # label, JSON line
  "${PY:-.venv/bin/python}" - "$1" "$2" <<'PY'
import json, sys
m = json.loads(sys.argv[2])
print(f"| {sys.argv[1]:<7} | {m['loss']:9.3f} | {100 * m['format_rate']:10.1f}% | {100 * m['closed_rate']:9.1f}% | {m['bleu4']:6.2f} | {m['rougeL']:7.2f} |")
PY
}
echo
echo "validation split (18 questions), answers of up to $TOKENS tokens:"
echo "| model   | eval loss | R1 format   | closed     | BLEU-4 | ROUGE-L |"
echo "|---------|-----------|-------------|------------|--------|---------|"
row before "$before"
row after "$after"
echo
echo "done in $(( $(date +%s) - start )) s. Outputs:"
echo "  $OUT/full/metrics.jsonl, $OUT/full/loss.png   losses, eval/format_rate etc. per evaluation, the plot"
echo "  $OUT/full/final/                             the model (HF format: transformers, vLLM, llama.cpp's converter)"
echo "  $OUT/answers-before.jsonl, answers-after.jsonl   every answer with its judgement and scores"
echo "  swanlog/                                        the SwanLab run (offline; swanlab sync uploads it)"
