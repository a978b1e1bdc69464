//! Inference: generation with a KV cache (greedy and sampling) on the training model code, and
//! merging an adapter into its base (the `generate`, `chat` and `merge` commands use them). The trainer's end-of-training predictions call
//! `generate` with prompts from `text::prompt_ids` and decode them with `text::Completion`.
pub mod config;
pub mod generate;
pub mod merge;
pub mod sampling;
pub mod text;

pub use config::GenerationConfig;
pub use generate::{generate, generate_stream, GenOptions, Generated, Stop};
pub use merge::merge_adapter;
pub use sampling::SamplingParams;
pub use text::{prompt_ids, split_think, Completion};
