#!/usr/bin/env bash
# CPU decode speed, single prompt, Qwen3-0.6B-shaped bf16 model with random weights: this crate vs
# transformers' generate, and both as a fraction of the bandwidth floor (bench/decode.py).
# Usage: bench/decode.sh [NEW_TOKENS=48] [PROMPT_LEN=16] [REPS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example decode_bench
exec .venv/bin/python bench/decode.py target/release/examples/decode_bench "${1:-48}" "${2:-16}" "${3:-2}"
