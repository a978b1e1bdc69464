#!/usr/bin/env bash
# GPU training benchmark: this crate against the seed's stack (transformers Trainer + peft) on one
# NVIDIA GPU, Qwen3-1.7B-shaped random model in bf16, full and LoRA, every sample 2048 tokens
# (batch 1 x grad-accum 4, gradient checkpointing). Prints tokens/s and peak GPU memory (nvidia-smi
# polled every 100 ms, minus what was in use before; the same measure for both sides) into
# runs/bench-gpu/results.md. Meant to finish in under 8 minutes with the build, on a machine with
# network access for the first install (torch wheel, crates).
#   bench/gpu.sh               install (scripts/setup.sh, pip deps, tokenizer), build, run
#   bench/gpu.sh --cpu-smoke   the same path on CPU with a tiny model, 1 step, fp32 (no GPU needed)
# Environment: STEPS (default 4; 1 in --cpu-smoke), OUT (default runs/bench-gpu), SKIP_INSTALL=1.
# On a machine with several GPUs it ends with our trainer on all of them (torchrun, ZeRO 0-2).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
phase() { echo "[$((SECONDS - t0)) s] $*"; }

smoke=0
[ "${1:-}" = "--cpu-smoke" ] && smoke=1
if [ $smoke = 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: no NVIDIA GPU visible (nvidia-smi -L failed); use --cpu-smoke to check the script on CPU" >&2
  exit 1
fi

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  phase "install: libtorch (scripts/setup.sh: torch 2.13.0 wheel into .venv), Python peers (bench/requirements.txt)"
  scripts/setup.sh
  .venv/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
fi
if [ $smoke = 0 ]; then
  .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: the venv torch sees no CUDA')"
fi

phase "build: cargo build --release"
cargo build --release 2>&1 | tail -n 2
make tokenizer

if [ $smoke = 1 ]; then
  args=(--device cpu --model tiny --dtype fp32 --steps "${STEPS:-1}" --out "${OUT:-runs/bench-gpu-smoke}")
else
  args=(--device cuda --model 1.7b --dtype bf16 --steps "${STEPS:-4}" --out "${OUT:-runs/bench-gpu}")
fi
phase "benchmark: ${args[*]} (the random model is written once by bench/make_model.py)"
.venv/bin/python bench/train_bench.py --bin target/release/qwen3-sft --long --max-length 2048 "${args[@]}"
# Several GPUs: our trainer alone on all of them (the peer has no like-for-like line here), full
# fine-tuning with the bench's config, ZeRO stages 0-2; each rank's tokens/s and memory, and the
# total. --cpu-smoke runs the same line on 2 CPU ranks (Gloo).
out_dir=${OUT:-runs/bench-gpu$([ $smoke = 1 ] && echo -smoke)}
ranks=$([ $smoke = 1 ] && echo 2 || nvidia-smi -L | wc -l)
cfg=$out_dir/ours-full$([ $smoke = 0 ] && echo -fp32moments).toml
if [ "$ranks" -gt 1 ] && [ -e "$cfg" ]; then
  for z in 0 1 2; do
    phase "multi-GPU: $ranks ranks under torchrun, full fine-tuning, ZeRO stage $z"
    echo "ZeRO stage $z on $ranks ranks:" >> "$out_dir/results.md"
    .venv/bin/torchrun --no-python --standalone --nproc-per-node "$ranks" target/release/qwen3-sft train \
      --config "$cfg" --overwrite --set "train.output_dir=$out_dir/multi-zero$z" --set "distributed.zero_stage=$z" \
      | grep -E "^(rank|all) " | tee -a "$out_dir/results.md"
  done
fi
phase "done"
