//! qwen3-sft: fine-tune Qwen3 models (full-parameter and LoRA) on libtorch.
pub mod model;
