# qwen3-sft: every target that builds depends on `setup` (libtorch from the torch==2.13.0 wheel).
SHELL := /bin/bash
PY    := .venv/bin/python
BIN   := target/release/qwen3-sft
CARGO ?= cargo

.PHONY: setup pydeps build test parity clippy fmt golden-data

setup:
	@scripts/setup.sh

pydeps: setup
	@scripts/pydeps.sh

build: setup
	$(CARGO) build --release

$(BIN): setup
	$(CARGO) build --release

# The test command (README, .ci/run): live reference checks are mandatory here.
test: setup pydeps
	QWEN3_SFT_LIVE=1 $(CARGO) test -- --test-threads=2

# Regenerate the parity goldens with the live transformers, then compare.
parity: setup pydeps
	$(PY) tests/reference/make_parity.py tests/golden/parity
	$(CARGO) test --test parity

# Regenerate the tokenizer, chat template and encoding goldens (tests/golden/data) with the live
# tiktoken, transformers and trl, on a Qwen3 tokenizer derived offline; then compare.
golden-data: setup pydeps
	$(CARGO) run -q -- derive-tokenizer --out .cache/qwen3-tokenizer
	$(PY) tests/reference/data_ref.py golden .cache/qwen3-tokenizer tests/golden/data
	$(CARGO) test --test tokenizer --test encode

clippy: setup
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt
