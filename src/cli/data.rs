//! `qwen3-sft data stats`: token-length distribution of a data file per template, before choosing
//! `max_length` (the reference truncates silently at 2048).
use crate::data::encode::{no_reasoning, Template, MAX_LENGTH};
use crate::data::rows::read_rows;
use crate::data::stats::measure;
use crate::data::tokenizer::QwenTokenizer;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub cmd: DataCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCmd {
    /// Token-length distribution of a data file under one or both sample templates.
    Stats(StatsArgs),
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Data file (JSONL or a JSON array) with question/think/answer
    #[arg(long)]
    pub data: PathBuf,
    /// Template to measure (qwen3 or reference); both when absent
    #[arg(long)]
    pub template: Option<Template>,
    /// Length limit the trainer truncates at
    #[arg(long = "max-length", alias = "max_length", default_value_t = MAX_LENGTH)]
    pub max_length: usize,
    /// tokenizer.json, or a directory holding one (a model directory, or `make tokenizer`'s)
    #[arg(long, default_value = ".cache/qwen3-tokenizer")]
    pub tokenizer: PathBuf,
    /// Drop rows without string question/think/answer instead of failing
    #[arg(long = "skip-invalid", alias = "skip_invalid")]
    pub skip_invalid: bool,
}

pub fn run(args: &DataArgs) -> Result<()> {
    match &args.cmd {
        DataCmd::Stats(s) => stats(s),
    }
}

fn stats(args: &StatsArgs) -> Result<()> {
    if args.max_length == 0 {
        bail!("--max-length must be at least 1");
    }
    let (rows, skipped) = read_rows(&args.data, args.skip_invalid)?;
    let tok = QwenTokenizer::load(&args.tokenizer)?;
    let templates = match args.template {
        Some(t) => vec![t],
        None => vec![Template::Reference, Template::Qwen3],
    };
    let skipped = match skipped {
        0 => String::new(),
        n => format!(", {n} invalid skipped"),
    };
    let plain = rows.iter().filter(|r| no_reasoning(r.think())).count();
    println!(
        "{}: {} rows ({} with reasoning, {plain} without: Qwen3's non-thinking layout){skipped} (lengths in tokens, nearest-rank percentiles)",
        args.data.display(),
        rows.len(),
        rows.len() - plain,
    );
    for t in templates {
        let s = measure(&rows, &tok, t, args.max_length)
            .map_err(|e| e.context(format!("{}: template {t:?}", args.data.display())))?;
        let name = format!("{t:?}").to_lowercase();
        println!(
            "{name:>8}: min {} median {} p90 {} p99 {} max {} | over max_length {}: {} rows | \
             tokens kept {} of which label {}",
            s.min,
            s.median,
            s.p90,
            s.p99,
            s.max,
            args.max_length,
            s.over_max,
            s.tokens,
            s.label_tokens
        );
    }
    Ok(())
}
