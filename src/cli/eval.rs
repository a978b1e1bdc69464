//! `qwen3-sft eval`: the mean cross-entropy of a model (and adapter) over the label tokens of a
//! data file, as the trainer's `eval/loss`.
use super::args::{self, ModelArgs, RowArgs};
use crate::config::DEFAULT_LOSS_CHUNK;
use crate::data::encode::{encode_file, Encoder, Template, MAX_LENGTH, SYSTEM_PROMPT};
use crate::train::eval::eval_loss;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL (or JSON array) file with question/think/answer rows or `messages` conversations
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Sample template: qwen3 or reference
    #[arg(long, default_value = "qwen3")]
    pub template: Template,
    /// Length limit samples are truncated at
    #[arg(long = "max-length", alias = "max_length", default_value_t = MAX_LENGTH)]
    pub max_length: usize,
    /// System prompt [default: the recipe's]
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub batch_size: i64,
    /// Print `{"loss", "tokens", "samples"}` as the last line
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    if args.batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    let resolved = args.model.resolve()?;
    let tok = args::tokenizer(&resolved)?;
    tok.check_fits(resolved.config.vocab_size, &args.model.model)?;
    let encoder = Encoder {
        system: Some(args.system.clone().unwrap_or(SYSTEM_PROMPT.into())),
        max_len: args.max_length,
        ..Encoder::new(&tok, args.template)
    };
    let data = encode_file(&encoder, &args.data, &args.rows.row_format(), "eval")?;
    let model = resolved.load()?.model;
    let (loss, tokens) = eval_loss(&model.net, &data, args.batch_size, DEFAULT_LOSS_CHUNK);
    if tokens == 0 {
        bail!(
            "{}: no label token to score (every sample was dropped)",
            args.data.display()
        );
    }
    if args.json {
        let v = serde_json::json!({"loss": loss, "tokens": tokens, "samples": data.len()});
        println!("{v}");
    } else {
        println!(
            "eval loss {loss:.6} over {tokens} label tokens in {} samples",
            data.len()
        );
    }
    Ok(())
}
