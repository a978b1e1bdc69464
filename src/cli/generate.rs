//! `qwen3-sft generate`: answers questions with a model directory (optionally plus a LoRA adapter,
//! applied unmerged as `PeftModel.from_pretrained` does), as the reference's inference.py and
//! inference_lora.py: official template with the system prompt, `generate`, decode with special
//! tokens skipped. Streams to a terminal, or prints one JSON object per prompt with `--json`.
//! The model/sampling flags are shared with `chat` (`cli::args`).
use super::args::{self, ModelArgs, PromptArgs, RowArgs, SamplingArgs};
use crate::data::tokenizer::QwenTokenizer;
use crate::infer::text::{chat_prompt_ids, prompt_ids, Completion, StreamPrinter};
use crate::infer::{generate, generate_stream, Generated};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The question to answer
    #[arg(long, required_unless_present_any = ["data", "prompt_ids"], conflicts_with_all = ["data", "prompt_ids"])]
    pub prompt: Option<String>,
    /// Data file (question/think/answer rows or `messages` conversations): answer its first
    /// --limit questions (a conversation as it stands before its last assistant turn)
    #[arg(long, conflicts_with = "prompt_ids")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Questions taken from --data (the reference predicts the first 3 validation samples)
    #[arg(long, default_value_t = 3)]
    pub limit: usize,
    /// Raw prompt token ids, comma-separated, used as is (no template); repeat for a batch
    #[arg(long)]
    pub prompt_ids: Vec<String>,
    #[command(flatten)]
    pub template: PromptArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Prompts generated together (left-padded); streaming output is one at a time
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Recompute the whole sequence each step instead of using the KV cache (slow; for checking)
    #[arg(long)]
    pub no_cache: bool,
    /// One JSON object per prompt: prompt, think, answer, text, token_ids, tokens_per_sec, ...
    #[arg(long)]
    pub json: bool,
}

struct Prompt {
    label: String,
    ids: Vec<i64>,
}

fn prompts(args: &GenerateArgs, tok: Option<&QwenTokenizer>) -> Result<Vec<Prompt>> {
    let think = (!args.template.thinking()).then_some(false);
    let question = |q: &str| -> Result<Prompt> {
        let tok = tok.expect("loaded for text prompts");
        Ok(Prompt {
            label: q.to_string(),
            ids: prompt_ids(tok, Some(&args.template.system), q, think)?,
        })
    };
    if let Some(q) = &args.prompt {
        return Ok(vec![question(q)?]);
    }
    if let Some(path) = &args.data {
        let (rows, _) = crate::data::rows::read_rows_as(path, &args.rows.row_format(), false)?;
        let tok = tok.expect("loaded for text prompts");
        let system = Some(args.template.system.as_str()).filter(|s| !s.is_empty());
        return rows
            .iter()
            .take(args.limit)
            .map(|r| {
                Ok(Prompt {
                    label: r.question().to_string(),
                    ids: chat_prompt_ids(tok, &r.prompt(system), think)?,
                })
            })
            .collect();
    }
    args.prompt_ids
        .iter()
        .map(|s| {
            let ids = s
                .split(',')
                .map(|t| t.trim().parse::<i64>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| {
                    format!("--prompt-ids {s:?}: expected comma-separated integers")
                })?;
            Ok(Prompt {
                label: s.clone(),
                ids,
            })
        })
        .collect()
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let resolved = args.model.resolve()?;
    // Raw ids need no tokenizer; text in and out does.
    let tok = if args.prompt_ids.is_empty() {
        Some(args::tokenizer(&resolved)?)
    } else {
        args::tokenizer(&resolved).ok()
    };
    let prompts = prompts(args, tok.as_ref())?;
    let mut opts = args.sampling.options(
        &args::generation_config(&resolved)?,
        resolved.config.max_position_embeddings,
    )?;
    opts.use_cache = !args.no_cache;
    let model = resolved.load()?.model;
    let batch = if args.json { args.batch_size } else { 1 };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    for chunk in prompts.chunks(batch) {
        let ids: Vec<Vec<i64>> = chunk.iter().map(|p| p.ids.clone()).collect();
        if args.json {
            for (p, g) in chunk.iter().zip(generate(&model, &ids, &opts)?) {
                println!("{}", json_line(p, &g, tok.as_ref(), opts.seed)?);
            }
            continue;
        }
        let p = &chunk[0];
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", p.label)?;
        let g = match &tok {
            Some(tok) => {
                let mut printer = StreamPrinter::new(tok, &mut out, color);
                let mut failed = None;
                let g = generate_stream(&model, &ids, &opts, &mut |_, id| {
                    failed = printer.push(id).err();
                    failed.is_none()
                })?;
                printer.finish()?;
                if let Some(e) = failed {
                    return Err(e.context("printing the completion"));
                }
                g
            }
            None => {
                let g = generate(&model, &ids, &opts)?;
                writeln!(out, "{:?}", g[0].token_ids)?;
                g
            }
        };
        let g = &g[0];
        eprintln!(
            "[{} tokens, {:.1} tokens/s, prefill {:.2} s, stop: {:?}]\n",
            g.token_ids.len(),
            g.tokens_per_sec(),
            g.prefill_seconds,
            g.stop
        );
    }
    Ok(())
}

fn json_line(p: &Prompt, g: &Generated, tok: Option<&QwenTokenizer>, seed: u64) -> Result<String> {
    let c = match tok {
        Some(t) => Completion::decode(t, &g.token_ids)?,
        None => Completion {
            text: String::new(),
            think: String::new(),
            answer: String::new(),
        },
    };
    let v = json!({
        "prompt": p.label, "think": c.think, "answer": c.answer, "text": c.text,
        "token_ids": g.token_ids, "tokens_per_sec": g.tokens_per_sec(),
        "prompt_tokens": g.prompt_len, "stop": g.stop, "seconds": g.seconds,
        "prefill_seconds": g.prefill_seconds, "seed": seed,
    });
    Ok(serde_json::to_string(&v)?)
}
