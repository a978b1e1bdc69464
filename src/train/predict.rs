//! Answer quality during training: the first `train.eval_generate` validation questions answered
//! at each evaluation (decoded as the model's generation config says, with the run's seed), scored as `eval --generate` scores them
//! (`infer::quality`), logged as `eval/format_rate`, `eval/closed_rate`, `eval/bleu4`,
//! `eval/rouge1`, `eval/rouge2`, `eval/rougeL`, and the texts as the reference's "Prediction" media
//! (`Question: ...\n\nLLM: ...`). In a distributed job each rank answers every `world`-th question
//! and the sums are added; rank 0 logs the texts of its share.
use super::dist::World;
use crate::config::RunConfig;
use crate::data::encode::SYSTEM_PROMPT;
use crate::data::rows::read_rows_as;
use crate::data::tokenizer::{QwenTokenizer, ENDOFTEXT, IM_END};
use crate::infer::quality::{answer_all, Answer, Question, Totals};
use crate::infer::{GenOptions, GenerationConfig};
use crate::log::swanlab::Run;
use crate::model::Model;
use anyhow::Result;
use std::path::Path;

/// Questions answered together (left-padded): decoding a small model is bound by reading its
/// weights, so a batch costs little more than one question.
const BATCH: usize = 16;

/// What one round of answering gives the trainer: values to log and the texts.
pub struct Predictions {
    pub values: Vec<(String, f64)>,
    pub texts: Vec<String>,
}

/// Answers this rank's share of the first `eval_generate` validation questions; `None` when the
/// run has no validation file or asks for no answers.
pub fn eval_generate(
    model: &Model,
    base_dir: Option<&Path>,
    tok: &QwenTokenizer,
    cfg: &RunConfig,
    world: &World,
) -> Result<Option<Predictions>> {
    let n = cfg.train.eval_generate;
    let Some(val) = cfg.data.val_file.as_ref().filter(|_| n > 0) else {
        return Ok(None);
    };
    let (rows, _) = read_rows_as(val, &cfg.data.row_format(), false)?;
    let system = cfg.data.system_prompt.as_deref().unwrap_or(SYSTEM_PROMPT);
    let system = Some(system).filter(|s| !s.is_empty());
    let questions: Vec<Question> = rows
        .iter()
        .take(n)
        .skip(world.rank)
        .step_by(world.size)
        .map(|r| Question::of(r, system))
        .collect();
    // decoding as the seed's `model.generate` does: the model's generation config (a Qwen3
    // release's for random presets), seeded by the run's seed, so reruns answer alike
    let gen = match base_dir {
        Some(d) => GenerationConfig::from_model_dir(d)?,
        None => GenerationConfig::qwen3(),
    };
    let mut opts = GenOptions::from_config(&gen);
    if opts.eos.is_empty() {
        opts.eos = vec![IM_END as i64, ENDOFTEXT as i64];
    }
    opts.max_new_tokens = cfg.train.eval_generate_max_new_tokens.get() as usize;
    opts.seed = cfg.train.seed as u64;
    let answers: Vec<Answer> = match questions.is_empty() {
        true => vec![],
        false => answer_all(model, tok, &questions, true, &opts, BATCH)?,
    };
    let totals = world.sum(&Totals::of(&answers).0)?;
    let totals = Totals(totals.try_into().expect("nine sums"));
    let values = totals
        .summary()
        .into_iter()
        .filter(|(k, _)| *k != "samples")
        .map(|(k, v)| (format!("eval/{k}"), v))
        .collect();
    let texts = answers
        .iter()
        .map(|a| format!("Question: {}\n\nLLM: {}", a.question, a.text))
        .collect();
    Ok(Some(Predictions { values, texts }))
}

/// Logs the texts as "Prediction" media and, at the end of training, prints them.
pub fn log_texts(p: &Predictions, run: Option<&Run>, step: i64, print: bool) {
    if print {
        for t in &p.texts {
            println!("{}\n", t.replacen("\n\nLLM: ", "\nLLM: ", 1));
        }
    }
    if let Some(run) = run {
        run.texts("Prediction", step, &p.texts);
    }
}
