//! Encodes one data row (`question`, `think`, `answer`) into `input_ids` and `labels` for causal-LM
//! training, in one of two layouts:
//! - `reference`: the reference's `process_func` (seed tutorial, train.py), kept for reproduction:
//!   prompt `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n`,
//!   response `<think>{think}</think> \n {answer}`, then `<|endoftext|>`; prompt and response are
//!   tokenized separately, labels are -100 over the prompt.
//! - `qwen3`: Qwen3's own chat template (`data::chat`), the layout the served model sees: the
//!   assistant turn `<think>\n{think}\n</think>\n\n{answer}<|im_end|>\n` carries the loss, as trl's
//!   assistant-only loss masks it with `qwen3_training.jinja`. A row without reasoning trains
//!   Qwen3's non-thinking layout: the empty `<think>\n\n</think>\n\n` is part of the prompt (what
//!   `enable_thinking=False` renders) and carries no loss, as LLaMA-Factory does since its #7905, so
//!   a mixed data set teaches both modes and the model never learns to skip thinking on its own.
//!
//! A `messages` row (`data::format`) is encoded with `qwen3` only, as trl trains conversations
//! (`data::conversation`): loss on every assistant turn. `reference` is defined only for
//! question/think/answer rows, so such a file with it is an error before anything is encoded.
//!
//! Both truncate `input_ids` and `labels` to `max_len` (the reference's `MAX_LENGTH = 2048`).
//! `tests/reference/data_ref.py` encodes the same rows with tiktoken (templates rendered by
//! transformers) for the parity test.
use crate::data::chat::{self, Message};
use crate::data::conversation::{training_segments, Segment};
use crate::data::format::{RowFormat, Sample};
use crate::data::tokenizer::QwenTokenizer;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The reference's system prompt ("You are a medical expert; answer the user's question with reasoning").
pub const SYSTEM_PROMPT: &str = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。";
/// The reference's `MAX_LENGTH`.
pub const MAX_LENGTH: usize = 2048;
/// Label of tokens that carry no loss (`ignore_index` of the cross-entropy).
pub const IGNORE_INDEX: i64 = -100;

/// The sample layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The seed tutorial's `process_func` (ends with `<|endoftext|>`, `<think>` without newlines).
    #[serde(alias = "tutorial")]
    Reference,
    /// Qwen3's official chat template (ends with `<|im_end|>\n`), matching inference.
    Qwen3,
}

impl std::str::FromStr for Template {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reference" | "tutorial" => Ok(Template::Reference),
            "qwen3" => Ok(Template::Qwen3),
            _ => bail!("unknown template {s:?}: expected \"qwen3\" or \"reference\""),
        }
    }
}

/// Labels that score a token (position > 0 and not -100), i.e. the count after the shift.
pub fn label_count(labels: &[i64]) -> i64 {
    labels
        .iter()
        .skip(1)
        .filter(|&&l| l != IGNORE_INDEX)
        .count() as i64
}

/// One encoded sample; `labels[i]` is the target at position `i` before the causal shift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Encoded {
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
    /// Length before truncation to `max_len`.
    pub full_len: usize,
}

impl Encoded {
    /// Tokens that carry loss.
    pub fn label_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
    pub fn truncated(&self) -> bool {
        self.full_len > self.input_ids.len()
    }
}

/// Encodes rows with one template, system prompt and length limit.
pub struct Encoder<'a> {
    pub tok: &'a QwenTokenizer,
    pub template: Template,
    /// `None` renders no system turn.
    pub system: Option<String>,
    pub max_len: usize,
}

impl<'a> Encoder<'a> {
    /// The reference's settings: its system prompt and `MAX_LENGTH`.
    pub fn new(tok: &'a QwenTokenizer, template: Template) -> Self {
        Encoder {
            tok,
            template,
            system: Some(SYSTEM_PROMPT.to_string()),
            max_len: MAX_LENGTH,
        }
    }

    fn prompt_messages(&self, question: &str) -> Vec<Message> {
        let mut m = Vec::with_capacity(3);
        if let Some(s) = &self.system {
            m.push(Message::system(s));
        }
        m.push(Message::user(question));
        m
    }

    /// The prompt text (no loss) and the completion text (loss) of a row, before tokenization.
    /// For `reference` the trailing `<|endoftext|>` is appended as an id, not text, as the reference does.
    pub fn texts(&self, question: &str, think: &str, answer: &str) -> Result<(String, String)> {
        match self.template {
            Template::Reference => {
                let mut prompt = String::new();
                if let Some(s) = &self.system {
                    prompt.push_str(&format!("<|im_start|>system\n{s}<|im_end|>\n"));
                }
                prompt.push_str(&format!(
                    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
                ));
                Ok((prompt, format!("<think>{think}</think> \n {answer}")))
            }
            Template::Qwen3 => {
                let mut messages = self.prompt_messages(question);
                // no reasoning: the prompt ends with the empty think block (enable_thinking=False)
                let prompt = chat::render(&messages, true, no_reasoning(think).then_some(false))?;
                messages.push(Message::assistant(think, answer));
                let full = chat::render(&messages, false, None)?;
                // The template renders earlier turns the same with or without the final one.
                let Some(completion) = full.strip_prefix(prompt.as_str()) else {
                    bail!("chat template: the rendered prompt is not a prefix of the rendered conversation");
                };
                Ok((prompt, completion.to_string()))
            }
        }
    }

    /// `input_ids` and `labels` of one question/think/answer row.
    ///
    /// A row "without reasoning" is one whose `think` is empty once the template strips its newlines.
    pub fn encode(&self, question: &str, think: &str, answer: &str) -> Result<Encoded> {
        let (prompt, completion) = self.texts(question, think, answer)?;
        let mut segments = vec![
            Segment {
                text: prompt,
                loss: false,
            },
            Segment {
                text: completion,
                loss: true,
            },
        ];
        if self.template == Template::Reference {
            // The reference appends the id of `<|endoftext|>`; its text tokenizes to that id alone.
            segments.push(Segment {
                text: "<|endoftext|>".into(),
                loss: true,
            });
        }
        self.tokens(&segments)
    }

    /// `input_ids` and `labels` of a conversation: loss on every assistant turn (`qwen3` only; the
    /// conversation's own system message, `system` is not added).
    pub fn encode_messages(&self, messages: &[Message]) -> Result<Encoded> {
        if self.template == Template::Reference {
            bail!("{REFERENCE_ROWS}");
        }
        self.tokens(&training_segments(messages)?)
    }

    /// A row of either layout.
    pub fn encode_sample(&self, sample: &Sample) -> Result<Encoded> {
        match sample {
            Sample::Turn {
                question,
                think,
                answer,
            } => self.encode(question, think, answer),
            Sample::Messages(m) => self.encode_messages(m),
        }
    }

    /// Tokenizes each segment on its own (every boundary sits next to a special token, or after
    /// the empty think block, so this is how the whole text tokenizes) and truncates.
    fn tokens(&self, segments: &[Segment]) -> Result<Encoded> {
        if self.max_len == 0 {
            bail!("max_len must be at least 1");
        }
        let (mut input_ids, mut labels) = (Vec::new(), Vec::new());
        for s in segments {
            let what = if s.loss { "the response" } else { "the prompt" };
            let ids = self
                .tok
                .encode(&s.text)
                .with_context(|| format!("tokenizing {what}"))?;
            for t in ids {
                input_ids.push(t as i64);
                labels.push(if s.loss { t as i64 } else { IGNORE_INDEX });
            }
        }
        let full_len = input_ids.len();
        input_ids.truncate(self.max_len);
        labels.truncate(self.max_len);
        Ok(Encoded {
            input_ids,
            labels,
            full_len,
        })
    }

    /// The inference prompt for a question: Qwen3's template with the generation prompt (what the
    /// reference's `apply_chat_template(..., add_generation_prompt=True)` gives, for both layouts).
    /// `enable_thinking: Some(false)` pre-fills an empty `<think>` block.
    pub fn generation_prompt(
        &self,
        question: &str,
        enable_thinking: Option<bool>,
    ) -> Result<Vec<u32>> {
        let text = chat::render(&self.prompt_messages(question), true, enable_thinking)?;
        self.tok.encode(&text)
    }
}

pub use crate::data::chat::no_reasoning;

/// Why `reference` cannot encode a conversation.
pub const REFERENCE_ROWS: &str = "`messages` rows need template \"qwen3\": the \"reference\" template (the seed's process_func) is defined only for question/think/answer rows";

/// Fails when `template` cannot encode `rows` (the reference template and conversations), before
/// anything is encoded.
pub fn check_template(template: Template, rows: &[crate::data::rows::Row]) -> Result<()> {
    let messages = rows
        .iter()
        .any(|r| matches!(r.sample(), Sample::Messages(_)));
    if template == Template::Reference && messages {
        bail!("{REFERENCE_ROWS}");
    }
    Ok(())
}

/// Reads (as `fmt` says) and encodes a data file with `encoder`; reports truncated samples and
/// drops those left without a single label token (nothing to learn from them). `what` names the
/// set in the report.
pub fn encode_file(
    encoder: &Encoder,
    path: &std::path::Path,
    fmt: &RowFormat,
    what: &str,
) -> Result<Vec<Encoded>> {
    let (rows, _) = crate::data::rows::read_rows_as(path, fmt, false)?;
    check_template(encoder.template, &rows).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::with_capacity(rows.len());
    let (mut truncated, mut empty) = (0, 0);
    for r in &rows {
        let e = encoder
            .encode_sample(r.sample())
            .with_context(|| format!("{}:{}: cannot encode", path.display(), r.line()))?;
        truncated += e.truncated() as usize;
        if label_count(&e.labels) == 0 {
            empty += 1;
            continue;
        }
        out.push(e);
    }
    let dropped = match empty {
        0 => String::new(),
        n => format!(", {n} dropped with no label token left"),
    };
    println!(
        "{what}: {} samples from {} ({truncated} truncated to {} tokens{dropped})",
        out.len(),
        path.display(),
        encoder.max_len,
    );
    Ok(out)
}
