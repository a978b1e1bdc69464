//! The reference's end-of-training check: answers to the first validation questions, logged to
//! SwanLab as "Prediction" texts `Question: ...\n\nLLM: ...` (greedy, so reproducible).
use crate::config::RunConfig;
use crate::data::encode::SYSTEM_PROMPT;
use crate::data::rows::read_rows_as;
use crate::data::tokenizer::{QwenTokenizer, ENDOFTEXT, IM_END};
use crate::infer::text::chat_prompt_ids;
use crate::infer::{generate, GenOptions};
use crate::log::swanlab::Run;
use crate::model::Model;
use anyhow::Result;

pub fn log_predictions(
    model: &Model,
    tok: &QwenTokenizer,
    cfg: &RunConfig,
    run: &Run,
    step: i64,
) -> Result<()> {
    let n = cfg.train.predictions;
    let Some(val) = cfg.data.val_file.as_ref().filter(|_| n > 0) else {
        return Ok(());
    };
    let (rows, _) = read_rows_as(val, &cfg.data.row_format(), false)?;
    let system = cfg.data.system_prompt.as_deref().unwrap_or(SYSTEM_PROMPT);
    let eos = [IM_END as i64, ENDOFTEXT as i64];
    let opts = GenOptions::greedy(cfg.train.prediction_max_new_tokens.get() as usize, &eos);
    let mut texts = vec![];
    for r in rows.iter().take(n) {
        // A conversation is answered as it stands before its last assistant turn.
        let prompt = chat_prompt_ids(tok, &r.prompt(Some(system).filter(|s| !s.is_empty())), None)?;
        let out = generate(model, &[prompt], &opts)?;
        let ids: Vec<u32> = out[0].token_ids.iter().map(|&t| t as u32).collect();
        let answer = tok.decode(&ids, true)?;
        println!("Question: {}\nLLM: {answer}\n", r.question());
        texts.push(format!("Question: {}\n\nLLM: {answer}", r.question()));
    }
    run.texts("Prediction", step, &texts);
    Ok(())
}
