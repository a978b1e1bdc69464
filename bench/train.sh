#!/usr/bin/env bash
# `make bench`: training tokens/s, peak RSS and loss of this crate against the seed's Python stack
# (transformers Trainer + peft), full and LoRA, same machine, same run (bench/train_bench.py).
# Environment: STEPS (optimizer steps, default 3), MODEL (0.6b | 1.7b | demo | tiny), DTYPE (bf16 |
# fp32), THREADS (default: all cores), ONLY (full | lora), OUT (default runs/bench), OMP_WAIT_POLICY
# (default PASSIVE on both sides; `default` leaves it unset), LENGTHS (short long), DECODE=0 to skip
# bench/decode.sh's generation numbers (single-prompt decode of the 0.6B shape in bf16).
# Default: the recipe's Qwen3-0.6B shape in bf16, on CPUs with bf16 matrix units (AVX512-BF16 or
# AMX). Elsewhere libtorch has no fast bf16 matmul (measured 14x slower than fp32 on an AVX2 EPYC,
# for both sides) and a 0.6B step takes minutes, so the default becomes the `demo` shape (4 layers,
# hidden 256, Qwen3's full 151,936 vocabulary) in fp32; MODEL=0.6b DTYPE=fp32 forces the big one.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/qwen3-sft
[ -x "$BIN" ] || { echo "error: $BIN missing; run 'make build' (or 'make bench', which builds it)" >&2; exit 1; }
[ -e .cache/qwen3-tokenizer/tokenizer.json ] || { echo "error: no tokenizer; run 'make tokenizer'" >&2; exit 1; }
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then
  MODEL=${MODEL:-0.6b}; DTYPE=${DTYPE:-bf16}
else
  if [ -z "${MODEL:-}${DTYPE:-}" ]; then
    echo "note: this CPU has no AVX512-BF16/AMX: bf16 matmuls run on libtorch's slow fallback (both sides)," >&2
    echo "      so the default here is MODEL=demo DTYPE=fp32 (set MODEL=0.6b DTYPE=fp32 for the 0.6B shape)." >&2
  fi
  MODEL=${MODEL:-demo}; DTYPE=${DTYPE:-fp32}
fi
args=(--bin "$BIN" --steps "${STEPS:-3}" --model "$MODEL" --dtype "$DTYPE" --max-length 1024)
[ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
[ -n "${ONLY:-}" ] && args+=(--only "$ONLY")
# Both regimes (LENGTHS="short long" by default): the committed sample's rows as they are (median
# 274 tokens: small GEMMs, elementwise work and the head weigh most) and recipe-length samples (each
# row run together with the next ones and cut at 1024 tokens: GEMM-heavy, as the real data set).
for len in ${LENGTHS:-short long}; do
  echo "== $len samples"
  extra=(--out "${OUT:-runs/bench}/$len" --model-dir "${OUT:-runs/bench}/model-$MODEL")
  [ "$len" = long ] && extra+=(--long)
  .venv/bin/python bench/train_bench.py "${args[@]}" "${extra[@]}"
done
if [ "${DECODE:-1}" = 1 ]; then
  echo
  echo "generation (bench/decode.sh):"
  bench/decode.sh | tee "${OUT:-runs/bench}/decode.txt"
fi
