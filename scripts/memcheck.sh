#!/usr/bin/env bash
# Measured peak RSS of real training steps (random weights, bf16 or DTYPE, CPU) against what
# `qwen3-sft train --dry-run` predicts for the same configuration. Usage:
#   scripts/memcheck.sh [CASES...]   e.g. 0.6b:full 0.6b:lora 1.7b:lora 1.7b:full 8b:qlora
# (`qlora`: LoRA on an NF4 base; SETS adds `--set` overrides to every case, e.g.
# SETS="train.optim=adamw8bit")
# Each case runs 1 optimizer step of 1 micro-batch of MAXLEN tokens (default 128) and prints
# predicted, measured and their ratio. Output: a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/qwen3-sft}
MAXLEN=${MAXLEN:-128}
CASES=${*:-0.6b:full 0.6b:lora 1.7b:lora}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# rows long enough to fill MAXLEN tokens after truncation
head -40 data/sample/r1_data_example.jsonl > "$tmp/train.jsonl"
echo "| model | method | dtype | tokens | predicted (dry-run) | measured peak RSS | measured / predicted |"
echo "|---|---|---|---|---|---|---|"
for c in $CASES; do
  size=${c%%:*}; method=${c##*:}; quant=none
  extra=(); for s in ${SETS:-}; do extra+=(--set "$s"); done
  if [ "$method" = qlora ]; then method=lora; quant=nf4; extra+=(--set train.gradient_checkpointing=true); fi
  sets=(--set "model.path=random:$size" --set "model.dtype=${DTYPE:-bf16}" --set model.device=cpu
        --set "data.train_file=$tmp/train.jsonl" --set data.val_file=
        --set "data.tokenizer=${TOKENIZER:-.cache/qwen3-tokenizer}" --set "data.max_length=$MAXLEN"
        --set "train.method=$method" --set "train.output_dir=$tmp/run-$c" --set train.max_steps=1
        --set train.batch_size=1 --set train.grad_accum=1 --set train.save_steps=100000
        --set train.eval_generate=0 --set swanlab.mode=disabled --set train.shuffle=false
        --set "model.quantization=$quant" ${extra[@]+"${extra[@]}"})
  pred=$($BIN train --config configs/demo-cpu.toml "${sets[@]}" --dry-run | awk '/total \(peak\)/ {print $(NF-1)}')
  /usr/bin/time -v -o "$tmp/time-$c" $BIN train --config configs/demo-cpu.toml "${sets[@]}" > "$tmp/log-$c" 2>&1 \
    || { cat "$tmp/log-$c" >&2; exit 1; }
  kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$tmp/time-$c")
  meas=$(awk -v kb="$kb" 'BEGIN {printf "%.2f", kb * 1024 / 1e9}')
  ratio=$(awk -v m="$meas" -v p="$pred" 'BEGIN {printf "%.2f", m / p}')
  label=$method; [ "$quant" = nf4 ] && label="QLoRA (NF4)"; [ -n "${SETS:-}" ] && label="$label, $SETS"
  echo "| Qwen3-$size | $label | ${DTYPE:-bf16} | $MAXLEN | $pred GB | $meas GB | $ratio |"
done
