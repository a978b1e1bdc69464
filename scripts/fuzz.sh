#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz: libFuzzer + AddressSanitizer, nightly toolchain) of the three
# parsers that read user files: the JSONL row reader, the TOML config loader, the safetensors reader.
# Each target runs FUZZ_SECONDS (default 60) from a corpus seeded with committed files; the corpus
# grows in fuzz/corpus/ (ignored by git) across runs. A crash stops the run, leaves the input in
# fuzz/artifacts/TARGET/ and fails: turn it into a regression test (tests/fuzz_inputs.rs) and fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-rows config safetensors}
CARGO_FUZZ_VERSION=0.13.2

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain (cargo fuzz needs -Zsanitizer)"
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# Seeds: a few valid and edge rows, every committed config, small safetensors files of each dtype.
seed() { mkdir -p "fuzz/corpus/$1"; }
seed rows; seed config; seed safetensors
head -n 3 data/sample/r1_data_example.jsonl > fuzz/corpus/rows/sample.jsonl
printf '[{"question": "q", "think": "", "answer": "a"}]\n' > fuzz/corpus/rows/array.json
printf '\xef\xbb\xbf{"question": "q", "think": "t", "answer": "a", "extra": [1, {"x": null}]}\n\n{"question": 1}\n' > fuzz/corpus/rows/mixed.jsonl
for f in configs/*.toml; do cp "$f" "fuzz/corpus/config/$(basename "$f")"; done
.venv/bin/python - <<'PY'
import torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(0)
save_file({"a.weight": torch.randn(4, 3, generator=g).bfloat16(), "b": torch.arange(5, dtype=torch.int64),
           "c": torch.zeros(0, 2), "d": torch.tensor(1.5, dtype=torch.float16)},
          "fuzz/corpus/safetensors/mixed.safetensors", metadata={"format": "pt"})
save_file({"model.embed_tokens.weight": torch.randn(8, 4, generator=g)}, "fuzz/corpus/safetensors/f32.safetensors")
PY

# the fuzz binaries link libtorch without the main build's rpath (build.rs's link args are its own)
export LD_LIBRARY_PATH="$(realpath "${LIBTORCH:-.venv/libtorch}")/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd fuzz
echo "== building the fuzz targets (nightly, AddressSanitizer)"
cargo +nightly fuzz build --release
for t in $TARGETS; do
  echo "== fuzzing $t for ${SECS}s"
  log=../target/fuzz-$t.log
  # -rss_limit_mb: a header may declare a huge tensor; libtorch's copy of it must stay bounded.
  rc=0
  cargo +nightly fuzz run --release "$t" "corpus/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=4096 -timeout=20 >"$log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)" "$log" || true
  [ "$rc" -eq 0 ] || { echo "error: fuzzing $t failed (exit $rc); see target/fuzz-$t.log and fuzz/artifacts/$t/" >&2; exit 1; }
done
