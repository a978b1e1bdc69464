//! `qwen3-sft data stats`: token-length distribution of a data file per template, before choosing
//! `max_length` (the reference truncates silently at 2048).
use super::args::RowArgs;
use crate::data::encode::{check_template, Template, MAX_LENGTH};
use crate::data::format::Sample;
use crate::data::rows::{read_rows_as, Row};
use crate::data::stats::measure;
use crate::data::tokenizer::QwenTokenizer;
use anyhow::{bail, Context, Result};
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
    /// Data file (JSONL or a JSON array) with question/think/answer rows or `messages` conversations
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Template to measure (qwen3 or reference); both when absent (qwen3 only for conversations)
    #[arg(long)]
    pub template: Option<Template>,
    /// Length limit the trainer truncates at
    #[arg(long = "max-length", alias = "max_length", default_value_t = MAX_LENGTH)]
    pub max_length: usize,
    /// tokenizer.json, or a directory holding one (a model directory, or `make tokenizer`'s)
    #[arg(long, default_value = ".cache/qwen3-tokenizer")]
    pub tokenizer: PathBuf,
    /// Drop invalid rows (missing or non-string fields, bad messages) instead of failing
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
    let (rows, skipped) = read_rows_as(&args.data, &args.rows.row_format(), args.skip_invalid)?;
    let conversations = matches!(rows[0].sample(), Sample::Messages(_));
    let templates = match (args.template, conversations) {
        (Some(t), _) => vec![t],
        (None, true) => vec![Template::Qwen3],
        (None, false) => vec![Template::Reference, Template::Qwen3],
    };
    for &t in &templates {
        check_template(t, &rows).with_context(|| args.data.display().to_string())?;
    }
    let tok = QwenTokenizer::load(&args.tokenizer)?;
    let skipped = match skipped {
        0 => String::new(),
        n => format!(", {n} invalid skipped"),
    };
    println!(
        "{}: {}{skipped} (lengths in tokens, nearest-rank percentiles)",
        args.data.display(),
        counts(&rows),
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

/// What the rows hold: `N rows (R with reasoning, P without: ...)`, or for conversations also
/// their assistant turns, each of which is a sample's loss region.
fn counts(rows: &[Row]) -> String {
    let turns: usize = rows.iter().map(|r| r.sample().assistant_turns()).sum();
    let plain: usize = rows
        .iter()
        .map(|r| r.sample().turns_without_reasoning())
        .sum();
    let kinds = format!(
        "{} with reasoning, {plain} without: Qwen3's non-thinking layout",
        turns - plain
    );
    match rows[0].sample() {
        Sample::Turn { .. } => format!("{} rows ({kinds})", rows.len()),
        Sample::Messages(_) => {
            let multi = rows
                .iter()
                .filter(|r| r.sample().assistant_turns() > 1)
                .count();
            format!(
                "{} conversations ({multi} multi-turn), {turns} assistant turns ({kinds})",
                rows.len()
            )
        }
    }
}
