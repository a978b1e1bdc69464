//! Evaluation loss: the mean cross-entropy over every label token of a data set (sum over tokens /
//! number of label tokens, as transformers reports with `num_items_in_batch`), in file order,
//! padded batches, no grad. The trainer's `eval/loss` and `qwen3-sft eval` are this function.
use super::dataset::{Encoded, Setup};
use super::loss;
use crate::data::batch::collate;
use crate::model::qwen3::Qwen3;
use anyhow::Result;
use std::path::PathBuf;

/// `(mean loss, label tokens)`; batches are formed in file order, so the result does not depend
/// on `batch_size` beyond floating-point summation order.
pub fn eval_loss(net: &Qwen3, data: &[Encoded], batch_size: i64, chunk: i64) -> (f64, i64) {
    let device = net.embed_tokens.device();
    let (mut sum, mut count) = (0.0, 0i64);
    tch::no_grad(|| {
        for idx in data.chunks(batch_size.max(1) as usize) {
            let samples: Vec<(&[i64], &[i64])> = idx
                .iter()
                .map(|e| (e.input_ids.as_slice(), e.labels.as_slice()))
                .collect();
            let b = collate(&samples, device);
            let hidden = net.forward(&b.ids, b.padding.as_ref(), None, false);
            let shifted = loss::shift_labels(&b.labels);
            sum += loss::ce_sum(&hidden, net.head_weight(), &shifted, chunk).double_value(&[]);
            count += b.label_tokens;
        }
    });
    (sum / count.max(1) as f64, count)
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// HF model directory or hub id.
    #[arg(long)]
    pub model: String,
    /// A peft LoRA adapter directory applied on top of the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// JSONL (or JSON array) file with question/think/answer rows.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "qwen3")]
    pub template: String,
    #[arg(long, default_value_t = 2048)]
    pub max_length: usize,
    /// System prompt (default: the recipe's).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub batch_size: i64,
    #[arg(long, default_value = "fp32")]
    pub dtype: String,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// tokenizer.json (or its directory) when the model directory has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print `{"loss", "tokens", "samples"}` as the last line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let setup = Setup::for_eval(args)?;
    let data = setup.encode_file(&args.data, "eval")?;
    let model = setup.load_model(None)?;
    let (loss, tokens) = eval_loss(&model.net, &data, args.batch_size, loss::DEFAULT_CHUNK);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"loss": loss, "tokens": tokens, "samples": data.len()})
        );
    } else {
        println!(
            "eval loss {loss:.6} over {tokens} label tokens in {} samples",
            data.len()
        );
    }
    Ok(())
}
