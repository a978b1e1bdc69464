//! `qwen3-sft encode`: how a data file encodes with a sample template: lengths, truncation, and
//! samples shown with their loss region between ⟦ ⟧.
use super::args::RowArgs;
use crate::data::encode::{check_template, Encoder, Template, IGNORE_INDEX, MAX_LENGTH};
use crate::data::rows::read_rows_as;
use crate::data::tokenizer::QwenTokenizer;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// Data file: JSON Lines (or a JSON array) of question/think/answer rows or `messages` conversations
    pub data: PathBuf,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Model directory (or tokenizer directory / tokenizer.json)
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Sample template: qwen3 or reference
    #[arg(long, default_value = "qwen3")]
    pub template: Template,
    /// Length limit samples are truncated at
    #[arg(long = "max-length", alias = "max-len", alias = "max_length", default_value_t = MAX_LENGTH)]
    pub max_length: usize,
    /// Print this many encoded samples, the loss region between ⟦ ⟧
    #[arg(long, default_value_t = 1)]
    pub show: usize,
}

pub fn run(args: &EncodeArgs) -> Result<()> {
    let tok = QwenTokenizer::load(&args.tokenizer)?;
    let (rows, _) = read_rows_as(&args.data, &args.rows.row_format(), false)?;
    check_template(args.template, &rows).with_context(|| args.data.display().to_string())?;
    let enc = Encoder {
        max_len: args.max_length,
        ..Encoder::new(&tok, args.template)
    };
    let (mut total, mut longest, mut truncated, mut label_tokens) =
        (0usize, 0usize, 0usize, 0usize);
    for (i, row) in rows.iter().enumerate() {
        let e = enc
            .encode_sample(row.sample())
            .with_context(|| format!("{} line {}", args.data.display(), row.line()))?;
        total += e.input_ids.len();
        longest = longest.max(e.full_len);
        truncated += e.truncated() as usize;
        label_tokens += e.label_tokens();
        if i < args.show {
            let (n, l) = (e.input_ids.len(), e.label_tokens());
            println!("--- line {} ({n} tokens, {l} with loss)", row.line());
            println!("{}", marked(&tok, &e.input_ids, &e.labels)?);
        }
    }
    let n = rows.len().max(1) as f64;
    println!(
        "{} rows, template {:?}: mean {:.1} tokens, longest {longest} before truncation, {truncated} truncated at {}, mean {:.1} loss tokens",
        rows.len(), args.template, total as f64 / n, args.max_length, label_tokens as f64 / n
    );
    Ok(())
}

/// The decoded sample with `⟦` `⟧` around each run of tokens that carries loss.
fn marked(tok: &QwenTokenizer, ids: &[i64], labels: &[i64]) -> Result<String> {
    let mut out = String::new();
    let mut start = 0;
    while start < ids.len() {
        let loss = labels[start] != IGNORE_INDEX;
        let end = (start..ids.len())
            .find(|&j| (labels[j] != IGNORE_INDEX) != loss)
            .unwrap_or(ids.len());
        let run: Vec<u32> = ids[start..end].iter().map(|&t| t as u32).collect();
        let text = tok.decode(&run, false)?;
        if loss {
            out.push_str(&format!("⟦{text}⟧"));
        } else {
            out.push_str(&text);
        }
        start = end;
    }
    Ok(out)
}
