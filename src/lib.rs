//! qwen3-sft: fine-tune Qwen3 models (full-parameter and LoRA) on libtorch.
pub mod cli;
pub mod config;
pub mod data;
pub mod host;
pub mod hub;
pub mod infer;
pub mod log;
pub mod model;
pub mod output;
pub mod train;
