//! Answer quality on a validation set (`eval --generate`, the trainer's `eval_generate`): each
//! question answered with the official template, the completion judged for R1 format (trl's
//! `rewards/format_rewards.py::think_format_reward` plus a non-empty answer) and its answer scored
//! against the reference answer with BLEU-4 and ROUGE-1/2/L as LLaMA-Factory's
//! `scripts/eval_bleu_rouge.py` computes them (`score`). The per-sample records are the rows of
//! `answers.jsonl`; [`Totals`] are plain sums so that ranks can add theirs.
use super::generate::{generate, GenOptions, Generated, Stop};
use super::score::{Scorer, Scores};
use super::text::{chat_prompt_ids, split_think};
use crate::data::chat::{split_reasoning, Message};
use crate::data::format::Sample;
use crate::data::rows::Row;
use crate::data::tokenizer::{QwenTokenizer, END_THINK};
use crate::model::Model;
use anyhow::Result;
use serde::Serialize;

/// What Qwen3's template pre-fills as the assistant's reasoning when thinking is off.
pub const EMPTY_THINK: &str = "<think>\n\n</think>\n\n";

/// One validation question: the messages the model answers, the question shown beside the
/// answer, and the reference reasoning and answer (a conversation's last assistant turn).
pub struct Question {
    pub prompt: Vec<Message>,
    pub question: String,
    pub think: String,
    pub answer: String,
}

impl Question {
    /// `row` as the model is asked it; `system` applies to question/think/answer rows.
    pub fn of(row: &Row, system: Option<&str>) -> Question {
        let (think, answer) = match row.sample() {
            Sample::Turn { think, answer, .. } => (think.clone(), answer.clone()),
            Sample::Messages(m) => {
                let last = m.iter().rev().find(|m| m.role == "assistant");
                let (t, a) = last.map_or(("", ""), split_reasoning);
                (t.to_string(), a.to_string())
            }
        };
        Question {
            prompt: row.prompt(system),
            question: row.question().to_string(),
            think,
            answer,
        }
    }
}

/// One line of `answers.jsonl`.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub question: String,
    pub reference_think: String,
    pub reference_answer: String,
    pub think: String,
    pub answer: String,
    /// The assistant turn as the model wrote it (with the pre-filled block when thinking is off).
    pub text: String,
    /// A `</think>` was generated (before the token cap or the end of the sequence).
    pub closed: bool,
    /// trl's think format and a non-empty answer after it.
    pub format_ok: bool,
    pub think_tokens: usize,
    pub answer_tokens: usize,
    pub new_tokens: usize,
    pub stop: Stop,
    pub bleu4: f64,
    pub rouge1: f64,
    pub rouge2: f64,
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
}

/// trl's `think_format_reward` pattern `^<think>(?!.*<think>)(.*?)</think>.*$` under `re.match`
/// with DOTALL: the text opens with `<think>`, never opens another, and closes one. (The `regex`
/// crate has no look-ahead; this is the same language.)
pub fn think_format(text: &str) -> bool {
    match text.strip_prefix("<think>") {
        Some(rest) => !rest.contains("<think>") && rest.contains("</think>"),
        None => false,
    }
}

/// The R1 format the recipe trains: trl's think format with an answer after the block.
pub fn format_ok(text: &str) -> bool {
    think_format(text)
        && text
            .split_once("</think>")
            .is_some_and(|(_, a)| !a.trim().is_empty())
}

/// Tokens of the reasoning (up to `</think>`, the tag itself included) and of the answer (after
/// it, without the eos) in generated ids; unclosed, everything is reasoning if thinking started.
fn token_split(ids: &[i64], eos: &[i64], starts_thinking: bool) -> (usize, usize) {
    let body = match ids.last() {
        Some(t) if eos.contains(t) => &ids[..ids.len() - 1],
        _ => ids,
    };
    match body.iter().position(|&t| t == END_THINK as i64) {
        Some(i) => (i + 1, body.len() - i - 1),
        None if starts_thinking => (body.len(), 0),
        None => (0, body.len()),
    }
}

/// Judges and scores one generation for `q`; `prefill` is what the prompt already holds of the
/// assistant turn ("" or [`EMPTY_THINK`]).
pub fn judge(
    tok: &QwenTokenizer,
    scorer: &Scorer,
    q: &Question,
    g: &Generated,
    prefill: &str,
    eos: &[i64],
) -> Result<Answer> {
    let ids: Vec<u32> = g.token_ids.iter().map(|&t| t as u32).collect();
    let text = format!("{prefill}{}", tok.decode(&ids, true)?);
    let (think, answer) = split_think(&text);
    let s: Scores = scorer.score(&answer, &q.answer);
    let thinks = text.trim_start().starts_with("<think>") && prefill.is_empty();
    let (think_tokens, answer_tokens) = token_split(&g.token_ids, eos, thinks);
    Ok(Answer {
        question: q.question.clone(),
        reference_think: q.think.clone(),
        reference_answer: q.answer.clone(),
        closed: text.contains("</think>"),
        format_ok: format_ok(&text),
        think,
        answer,
        text,
        think_tokens,
        answer_tokens,
        new_tokens: g.token_ids.len(),
        stop: g.stop,
        bleu4: s.bleu4,
        rouge1: s.rouge1,
        rouge2: s.rouge2,
        rouge_l: s.rouge_l,
    })
}

/// Answers `questions` in batches of `batch` and judges every answer.
pub fn answer_all(
    model: &Model,
    tok: &QwenTokenizer,
    questions: &[Question],
    thinking: bool,
    opts: &GenOptions,
    batch: usize,
) -> Result<Vec<Answer>> {
    let scorer = Scorer::new();
    let prefill = if thinking { "" } else { EMPTY_THINK };
    let mut out = Vec::with_capacity(questions.len());
    for chunk in questions.chunks(batch.max(1)) {
        let prompts = chunk
            .iter()
            .map(|q| chat_prompt_ids(tok, &q.prompt, (!thinking).then_some(false)))
            .collect::<Result<Vec<_>>>()?;
        for (q, g) in chunk.iter().zip(generate(model, &prompts, opts)?) {
            out.push(judge(tok, &scorer, q, &g, prefill, &opts.eos)?);
        }
    }
    Ok(out)
}

/// Sums over answers (so ranks can add theirs): count, format, closed, the four scores, tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals(pub [f64; 9]);

impl Totals {
    pub fn of(answers: &[Answer]) -> Totals {
        let mut t = [0.0; 9];
        for a in answers {
            let row = [
                1.0,
                a.format_ok as u8 as f64,
                a.closed as u8 as f64,
                a.bleu4,
                a.rouge1,
                a.rouge2,
                a.rouge_l,
                a.think_tokens as f64,
                a.answer_tokens as f64,
            ];
            t.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        Totals(t)
    }

    /// The report: rates as fractions, scores in percent (LLaMA-Factory's scale), mean lengths
    /// in tokens. Keys are `eval --generate --json`'s.
    pub fn summary(&self) -> Vec<(&'static str, f64)> {
        let t = &self.0;
        let n = t[0].max(1.0);
        vec![
            ("format_rate", t[1] / n),
            ("closed_rate", t[2] / n),
            ("bleu4", t[3] / n),
            ("rouge1", t[4] / n),
            ("rouge2", t[5] / n),
            ("rougeL", t[6] / n),
            ("think_tokens", t[7] / n),
            ("answer_tokens", t[8] / n),
            ("samples", t[0]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_trls() {
        // trl's own docstring examples, and the cases its look-ahead decides
        assert!(think_format("<think>\nreasoning\n</think>\nanswer"));
        assert!(!think_format("<think>\nreasoning\nanswer"));
        assert!(!think_format(" <think>a</think>b"));
        assert!(!think_format("<think>a</think><think>b</think>c"));
        assert!(think_format("<think>a</think>b</think>"));
        assert!(think_format("<think></think>"));
        assert!(!format_ok("<think></think>\n "));
        assert!(format_ok("<think>\n\n</think>\n\nanswer"));
    }

    #[test]
    fn tokens_split_at_the_closing_tag() {
        let e = END_THINK as i64;
        assert_eq!(token_split(&[1, 2, e, 3, 4, 9], &[9], true), (3, 2));
        assert_eq!(token_split(&[1, 2, 3], &[9], true), (3, 0));
        assert_eq!(token_split(&[1, 2, 9], &[9], false), (0, 2));
    }
}
