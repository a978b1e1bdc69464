//! `qwen3-sft generate`: answers questions with a model directory (optionally plus a LoRA adapter,
//! applied unmerged as `PeftModel.from_pretrained` does), as the reference's inference.py and
//! inference_lora.py: official template with the system prompt, `generate`, decode with special
//! tokens skipped. Streams to a terminal, or prints one JSON object per prompt with `--json`.
//! The model/sampling flags are shared with `chat`.
use super::config::GenerationConfig;
use super::generate::{generate, generate_stream, GenOptions, Generated};
use super::text::{prompt_ids, Completion, StreamPrinter};
use crate::data::encode::SYSTEM_PROMPT;
use crate::data::tokenizer::QwenTokenizer;
use crate::model::{parse_device, parse_dtype, read_adapter_config, Config, Model};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tch::Kind;

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// HF model directory (config.json, *.safetensors; tokenizer.json and generation_config.json when present)
    #[arg(long)]
    pub model: PathBuf,
    /// peft LoRA adapter directory applied on top of --model (unmerged)
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// tokenizer.json, or a directory holding one, when the model directory has none
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// fp32, bf16, or auto (the dtype the checkpoint is stored in)
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// auto (CUDA when available), cpu, cuda, cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Model> {
        let cfg = Config::from_file(&self.model.join("config.json")).with_context(|| {
            format!("--model {} is not a model directory", self.model.display())
        })?;
        let kind = resolve_dtype(&self.dtype, &cfg)?;
        let device = parse_device(&self.device)?;
        let Some(adapter) = &self.adapter else {
            return Model::load(&self.model, kind, device, None);
        };
        let (lora, _) = read_adapter_config(adapter)
            .with_context(|| format!("--adapter {}", adapter.display()))?;
        let model = Model::load(&self.model, kind, device, Some(&lora))?;
        model.load_adapter_weights(adapter)?;
        Ok(model)
    }

    /// `--tokenizer`, else the model directory's, else the adapter directory's.
    pub fn tokenizer(&self) -> Result<QwenTokenizer> {
        if let Some(t) = &self.tokenizer {
            return QwenTokenizer::load(t).context("--tokenizer");
        }
        let dirs = std::iter::once(&self.model).chain(self.adapter.as_ref());
        match dirs.into_iter().find(|d| d.join("tokenizer.json").is_file()) {
            Some(d) => QwenTokenizer::load(d),
            None => bail!(
                "{} has no tokenizer.json: pass --tokenizer DIR (e.g. .cache/qwen3-tokenizer, made by `make tokenizer`)",
                self.model.display()
            ),
        }
    }

    pub fn generation_config(&self) -> Result<GenerationConfig> {
        GenerationConfig::from_model_dir(&self.model)
    }
}

/// `auto` is the checkpoint's stored dtype (fp32 when config.json names none).
pub fn resolve_dtype(arg: &str, cfg: &Config) -> Result<Kind> {
    match (arg, cfg.stored_dtype.as_deref()) {
        ("auto", Some(stored)) => parse_dtype(stored).context("the dtype in config.json"),
        ("auto", None) => Ok(Kind::Float),
        (s, _) => parse_dtype(s).context("--dtype"),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Argmax decoding (overrides the model's generation_config.json)
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    pub greedy: bool,
    /// Sampling temperature (turns sampling on) [default: generation_config.json, else 1.0]
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep the K most likely tokens, 0 = off (turns sampling on) [default: generation_config.json, else 50]
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Keep the smallest set with probability mass P (turns sampling on) [default: generation_config.json, else 1.0]
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sampling seed [default: random, printed with --json]
    #[arg(long)]
    pub seed: Option<u64>,
    /// [default: generation_config.json's, else 2048]
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
}

impl SamplingArgs {
    pub fn options(&self, cfg: &GenerationConfig) -> Result<GenOptions> {
        let mut o = GenOptions::from_config(cfg);
        let s = &mut o.sampling;
        if self.greedy {
            s.do_sample = false;
        } else if self.temperature.is_some() || self.top_k.is_some() || self.top_p.is_some() {
            s.do_sample = true;
        }
        s.temperature = self.temperature.unwrap_or(s.temperature);
        s.top_k = self.top_k.unwrap_or(s.top_k);
        s.top_p = self.top_p.unwrap_or(s.top_p);
        s.validate().context("sampling flags")?;
        o.max_new_tokens = self.max_new_tokens.unwrap_or(o.max_new_tokens);
        if o.max_new_tokens == 0 {
            bail!("--max-new-tokens must be at least 1");
        }
        o.seed = match self.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::getrandom(&mut b).context("drawing a random seed")?;
                u64::from_le_bytes(b)
            }
        };
        Ok(o)
    }
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The question to answer
    #[arg(long, required_unless_present_any = ["data", "prompt_ids"], conflicts_with_all = ["data", "prompt_ids"])]
    pub prompt: Option<String>,
    /// Data file (JSON Lines with `question`): answer its first --limit questions
    #[arg(long, conflicts_with = "prompt_ids")]
    pub data: Option<PathBuf>,
    /// Questions taken from --data (the reference predicts the first 3 validation samples)
    #[arg(long, default_value_t = 3)]
    pub limit: usize,
    /// Raw prompt token ids, comma-separated, used as is (no template); repeat for a batch
    #[arg(long)]
    pub prompt_ids: Vec<String>,
    /// System prompt; "" for none [default: the reference's medical-expert prompt]
    #[arg(long, default_value = SYSTEM_PROMPT, hide_default_value = true)]
    pub system: String,
    /// Pre-fill an empty <think> block (Qwen3's enable_thinking=False)
    #[arg(long)]
    pub no_think: bool,
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
    let think = args.no_think.then_some(false);
    let question = |q: &str| -> Result<Prompt> {
        let tok = tok.expect("loaded for text prompts");
        Ok(Prompt {
            label: q.to_string(),
            ids: prompt_ids(tok, Some(&args.system), q, think)?,
        })
    };
    if let Some(q) = &args.prompt {
        return Ok(vec![question(q)?]);
    }
    if let Some(path) = &args.data {
        let (rows, _) = crate::data::rows::read_rows(path, false)?;
        return rows
            .iter()
            .take(args.limit)
            .map(|r| question(r.question()))
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

pub fn run_generate(args: &GenerateArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // Raw ids need no tokenizer; text in and out does.
    let tok = if args.prompt_ids.is_empty() {
        Some(args.model.tokenizer()?)
    } else {
        args.model.tokenizer().ok()
    };
    let prompts = prompts(args, tok.as_ref())?;
    let mut opts = args.sampling.options(&args.model.generation_config()?)?;
    opts.use_cache = !args.no_cache;
    let model = args.model.load()?;
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
