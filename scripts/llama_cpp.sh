#!/usr/bin/env bash
# llama.cpp for the GGUF export checks (tests/gguf.rs), from the llama-cpp-python source
# distribution (the only way llama.cpp reaches this machine: a registry package). `--source`
# (make test) only unpacks it: its vendor/llama.cpp carries convert_hf_to_gguf.py and the gguf-py
# it imports, linked as .cache/llama-cpp/llama.cpp. Without it (make gguf-test) it also builds
# llama-cpp-python from that source and installs it into .venv: about 11 minutes on 2 busy cores,
# so the wheel is cached in .cache/llama-cpp/ and reused while the version and flags are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
# CPU only, no multimodal library, no tools or tests: the checks use libllama through ctypes and
# the converter script, nothing else. GGML_NATIVE=OFF keeps the cached wheel valid on any x86-64.
FLAGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF"
key=$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-12)
dir=.cache/llama-cpp/$VERSION-$key
PY=.venv/bin/python
stamp=.venv/.llama-cpp-$key

mkdir -p "$dir"
if [ ! -d "$dir/src/vendor/llama.cpp" ]; then
  echo "== fetching the llama-cpp-python $VERSION source distribution"
  rm -rf "$dir/sdist" "$dir/src"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d "$dir/sdist" "llama-cpp-python==$VERSION"
  mkdir -p "$dir/src.tmp"
  tar -xzf "$dir"/sdist/llama_cpp_python-"$VERSION".tar.gz -C "$dir/src.tmp" --strip-components=1
  mv "$dir/src.tmp" "$dir/src"
fi
ln -sfn "$VERSION-$key/src/vendor/llama.cpp" .cache/llama-cpp/llama.cpp
[ "${1:-}" = --source ] && exit 0
if ! ls "$dir"/wheel/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "== building llama-cpp-python $VERSION (llama.cpp, CPU) from source: about 11 minutes on 2 cores, once"
  start=$(date +%s)
  rm -rf "$dir/wheel.tmp"
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} \
    "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$dir/wheel.tmp" "$dir/src"
  mv "$dir/wheel.tmp" "$dir/wheel"
  echo "== built in $(( $(date +%s) - start )) s"
fi
if [ ! -e "$stamp" ]; then
  # its dependencies (numpy, jinja2, diskcache, typing-extensions) from the registry
  "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$dir"/wheel/llama_cpp_python-*.whl
  "$PY" -m pip install -q --disable-pip-version-check diskcache typing-extensions jinja2
  touch "$stamp"
fi
