//! Inference: generation with a KV cache (greedy and sampling) on the training model code,
//! merging an adapter into its base, exporting to GGUF for llama.cpp and Ollama (`export`, on
//! `gguf`, `gguf_vocab` and `modelfile`), and answer quality (`quality`: R1 format adherence,
//! BLEU and ROUGE from `score` and `rouge`). The `generate`, `chat`, `eval`, `merge` and `export`
//! commands use them; the trainer's evaluations answer validation questions through `quality`.
pub mod config;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod gguf_vocab;
pub mod merge;
pub mod modelfile;
pub mod quality;
pub mod quantize;
pub mod rouge;
pub mod sampling;
pub mod score;
pub mod text;

pub use config::GenerationConfig;
pub use generate::{generate, generate_stream, GenOptions, Generated, Stop};
pub use merge::merge_adapter;
pub use quantize::quantize_model;
pub use sampling::SamplingParams;
pub use text::{prompt_ids, split_think, Completion};
