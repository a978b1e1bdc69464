//! The commands: one file per subcommand, each parsing its flags (clap lives here and in
//! `main.rs` only) into the library's typed arguments and printing what the library returns.
pub mod args;
pub mod chat;
pub mod data;
pub mod download;
pub mod encode;
pub mod eval;
pub mod export;
pub mod generate;
pub mod info;
pub mod merge;
pub mod quantize;
pub mod split;
pub mod tokenizer;
pub mod train;
