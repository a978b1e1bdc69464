//! `qwen3-sft eval`: the mean cross-entropy of a model (and adapter) over the label tokens of a
//! data file, as the trainer's `eval/loss`; with `--generate`, also answer quality (`infer::quality`):
//! the first `--limit` questions answered (decoded as the model's generation config says, seed 0 unless `--seed`), R1 format
//! adherence, BLEU-4 and ROUGE of the answers (LLaMA-Factory's `eval_bleu_rouge.py`), every
//! answer written to `--answers` (JSON Lines).
use super::args::{self, ModelArgs, RowArgs, SamplingArgs, Thinking};
use crate::config::DEFAULT_LOSS_CHUNK;
use crate::data::encode::{encode_file, Encoder, Template, MAX_LENGTH, SYSTEM_PROMPT};
use crate::data::rows::read_rows_as;
use crate::infer::quality::{answer_all, Question, Totals};
use crate::model::Model;
use crate::train::eval::eval_loss;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
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
    /// Print one JSON object as the last line: `loss`, `tokens`, `samples`, and with --generate
    /// `format_rate`, `closed_rate`, `bleu4`, `rouge1`, `rouge2`, `rougeL`, ...
    #[arg(long)]
    pub json: bool,
    /// Also answer the questions and score the answers
    #[arg(long)]
    pub generate: bool,
    /// Questions answered with --generate [default: all]
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where --generate writes every answer (JSON Lines)
    #[arg(long, default_value = "answers.jsonl")]
    pub answers: PathBuf,
    /// Replace an existing --answers file
    #[arg(long)]
    pub overwrite: bool,
    /// Qwen3's thinking mode for --generate (`off` pre-fills an empty think block)
    #[arg(long, value_enum, default_value_t = Thinking::On)]
    pub thinking: Thinking,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    if args.batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    if args.generate {
        crate::output::check_apart(&args.answers, &[("--data", &args.data)])?;
        if args.answers.exists() && !args.overwrite {
            bail!(
                "--answers {} exists: pass --overwrite to replace it, or choose another path",
                args.answers.display()
            );
        }
    }
    let resolved = args.model.resolve()?;
    let tok = args::tokenizer(&resolved)?;
    tok.check_fits(resolved.config.vocab_size, &args.model.model)?;
    let system = args.system.clone().unwrap_or(SYSTEM_PROMPT.into());
    let encoder = Encoder {
        system: Some(system.clone()),
        max_len: args.max_length,
        ..Encoder::new(&tok, args.template)
    };
    let data = encode_file(&encoder, &args.data, &args.rows.row_format(), "eval")?;
    let mut opts = args.sampling.options(
        &args::generation_config(&resolved)?,
        resolved.config.max_position_embeddings,
    )?;
    // an evaluation is reproducible: the same seed unless one is given
    opts.seed = args.sampling.seed.unwrap_or(0);
    let model = resolved.load()?.model;
    let (loss, tokens) = eval_loss(&model.net, &data, args.batch_size, DEFAULT_LOSS_CHUNK);
    if tokens == 0 {
        bail!(
            "{}: no label token to score (every sample was dropped)",
            args.data.display()
        );
    }
    let mut report = Map::new();
    report.insert("loss".into(), json!(loss));
    report.insert("tokens".into(), json!(tokens));
    report.insert("samples".into(), json!(data.len()));
    if !args.json {
        println!(
            "eval loss {loss:.6} over {tokens} label tokens in {} samples",
            data.len()
        );
    }
    if args.generate {
        let quality = generate(args, &model, &tok, &system, &opts)?;
        report.insert("loss_samples".into(), json!(data.len()));
        report.extend(quality); // `samples` now counts the answers
    }
    if args.json {
        println!("{}", Value::Object(report));
    }
    Ok(())
}

/// Answers, writes `--answers`, prints the summary; returns its values for `--json`.
fn generate(
    args: &EvalArgs,
    model: &Model,
    tok: &crate::data::tokenizer::QwenTokenizer,
    system: &str,
    opts: &crate::infer::GenOptions,
) -> Result<Map<String, Value>> {
    let (rows, _) = read_rows_as(&args.data, &args.rows.row_format(), false)?;
    let limit = args.limit.unwrap_or(rows.len()).min(rows.len());
    let system = Some(system).filter(|s| !s.is_empty());
    let questions: Vec<Question> = rows[..limit]
        .iter()
        .map(|r| Question::of(r, system))
        .collect();
    let thinking = args.thinking == Thinking::On;
    let batch = args.batch_size as usize;
    let answers = answer_all(model, tok, &questions, thinking, opts, batch)?;
    let mut lines = String::new();
    for a in &answers {
        lines.push_str(&serde_json::to_string(a)?);
        lines.push('\n');
    }
    crate::output::write_file(&args.answers, lines.as_bytes(), args.overwrite)?;
    let summary = Totals::of(&answers).summary();
    if !args.json {
        let v = |k: &str| summary.iter().find(|(n, _)| *n == k).map_or(0.0, |p| p.1);
        println!(
            "{} answers ({}): format {:.1}% (think block closed {:.1}%), BLEU-4 {:.2}, ROUGE-1 {:.2}, ROUGE-2 {:.2}, ROUGE-L {:.2}, mean {:.0} think / {:.0} answer tokens",
            answers.len(),
            args.answers.display(),
            100.0 * v("format_rate"),
            100.0 * v("closed_rate"),
            v("bleu4"),
            v("rouge1"),
            v("rouge2"),
            v("rougeL"),
            v("think_tokens"),
            v("answer_tokens"),
        );
    }
    let mut m = Map::new();
    for (k, v) in summary {
        m.insert(k.into(), json!(v));
    }
    m.insert("samples".into(), json!(answers.len()));
    m.insert("seed".into(), json!(opts.seed));
    Ok(m)
}
