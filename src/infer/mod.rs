//! Inference: generation with a KV cache (greedy and sampling) on the training model code,
//! merging an adapter into its base, and answer quality (`quality`: R1 format adherence, BLEU and
//! ROUGE from `score` and `rouge`). The `generate`, `chat`, `eval` and `merge` commands use them;
//! the trainer's evaluations answer validation questions through `quality`.
pub mod config;
pub mod generate;
pub mod merge;
pub mod quality;
pub mod rouge;
pub mod sampling;
pub mod score;
pub mod text;

pub use config::GenerationConfig;
pub use generate::{generate, generate_stream, GenOptions, Generated, Stop};
pub use merge::merge_adapter;
pub use sampling::SamplingParams;
pub use text::{prompt_ids, split_think, Completion};
