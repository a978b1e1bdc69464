//! Text around generation: prompts rendered with Qwen3's official template (`data::chat`), the
//! generated ids decoded as the reference does (`skip_special_tokens=True`) and split into the
//! reasoning and the answer on `</think>`, and a terminal printer that streams tokens as they come
//! (mirrors transformers' `generation/streamers.py::TextStreamer`), the reasoning dimmed under a
//! "思考" (thinking) header.
use crate::data::chat::{self, Message};
use crate::data::encode::{Encoder, Template};
use crate::data::tokenizer::{QwenTokenizer, END_THINK, THINK};
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::io::Write;

/// The prompt ids for one question: an optional system turn ("" is none), the user turn and the
/// generation prompt, as [`Encoder::generation_prompt`] builds them for the trainer's predictions.
/// `enable_thinking: Some(false)` pre-fills an empty reasoning block, as Qwen3's template does.
pub fn prompt_ids(
    tok: &QwenTokenizer,
    system: Option<&str>,
    question: &str,
    enable_thinking: Option<bool>,
) -> Result<Vec<i64>> {
    let encoder = Encoder {
        system: system.filter(|s| !s.is_empty()).map(str::to_string),
        ..Encoder::new(tok, Template::Qwen3)
    };
    let ids = encoder.generation_prompt(question, enable_thinking)?;
    Ok(ids.into_iter().map(i64::from).collect())
}

/// The prompt ids for a whole conversation ending with a user turn.
pub fn chat_prompt_ids(
    tok: &QwenTokenizer,
    messages: &[Message],
    enable_thinking: Option<bool>,
) -> Result<Vec<i64>> {
    let text = chat::render(messages, true, enable_thinking)?;
    Ok(tok.encode(&text)?.into_iter().map(i64::from).collect())
}

/// A decoded completion: the full text and its two parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Completion {
    pub text: String,
    pub think: String,
    pub answer: String,
}

impl Completion {
    /// Decodes generated ids with special tokens skipped (`<think>`/`</think>` are not special and stay).
    pub fn decode(tok: &QwenTokenizer, ids: &[i64]) -> Result<Self> {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| u32::try_from(i).map_err(|_| anyhow!("token id {i} is negative")))
            .collect::<Result<_>>()?;
        let text = tok.decode(&ids, true)?;
        let (think, answer) = split_think(&text);
        Ok(Completion {
            think,
            answer,
            text,
        })
    }
}

/// Splits on the first `</think>`: the reasoning (without `<think>`) and the answer, both trimmed.
/// With no `</think>`, text that opened a `<think>` block is all reasoning (cut off mid-thought),
/// anything else is all answer.
pub fn split_think(text: &str) -> (String, String) {
    let t = text.trim_start();
    match t.find("</think>") {
        Some(i) => {
            let think = t[..i].strip_prefix("<think>").unwrap_or(&t[..i]);
            (
                think.trim().to_string(),
                t[i + "</think>".len()..].trim().to_string(),
            )
        }
        None => match t.strip_prefix("<think>") {
            Some(rest) => (rest.trim().to_string(), String::new()),
            None => (String::new(), t.trim().to_string()),
        },
    }
}

const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

type DecodeStream<'a> = tokenizers::DecodeStream<
    'a,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// Prints one completion token by token. Text is emitted only once its bytes form whole UTF-8
/// characters (a Chinese character often spans two byte-level tokens). `<think>` opens the dimmed
/// reasoning under a header, `</think>` closes it; each part is shown without its leading and
/// trailing whitespace (the template wraps both in newlines).
pub struct StreamPrinter<'a, W: Write> {
    out: W,
    decoder: DecodeStream<'a>,
    color: bool,
    in_think: bool,
    /// Nothing printed yet in the current part (reasoning or answer).
    at_start: bool,
    /// Trailing whitespace held back: printed only if more text follows in the same part.
    pending: String,
}

impl<'a, W: Write> StreamPrinter<'a, W> {
    pub fn new(tok: &'a QwenTokenizer, out: W, color: bool) -> Self {
        StreamPrinter {
            out,
            decoder: tok.inner().decode_stream(true),
            color,
            in_think: false,
            at_start: true,
            pending: String::new(),
        }
    }

    fn style(&mut self, s: &str) -> Result<()> {
        if self.color {
            self.out.write_all(s.as_bytes())?;
        }
        Ok(())
    }

    pub fn push(&mut self, id: i64) -> Result<()> {
        let id = u32::try_from(id).map_err(|_| anyhow!("token id {id} is negative"))?;
        if id == THINK && !self.in_think {
            self.style(BOLD)?;
            self.out.write_all("思考".as_bytes())?;
            self.style(RESET)?;
            self.out.write_all(b"\n")?;
            self.style(DIM)?;
            (self.in_think, self.at_start) = (true, true);
            self.pending.clear();
        } else if id == END_THINK && self.in_think {
            self.style(RESET)?;
            self.out.write_all(b"\n\n")?;
            (self.in_think, self.at_start) = (false, true);
            self.pending.clear();
        } else if let Some(piece) = self
            .decoder
            .step(id)
            .map_err(|e| anyhow!("decoding token {id}: {e}"))?
        {
            let text = std::mem::take(&mut self.pending) + &piece;
            let text = if self.at_start {
                text.trim_start()
            } else {
                &text
            };
            let shown = text.trim_end();
            self.pending = text[shown.len()..].to_string();
            self.at_start &= shown.is_empty();
            self.out.write_all(shown.as_bytes())?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Ends the completion: resets the style, ends the line.
    pub fn finish(&mut self) -> Result<()> {
        self.style(RESET)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split_think;

    #[test]
    fn split_on_end_think() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(split_think("<think>\nR\n</think>\n\nA"), s("R", "A"));
        assert_eq!(split_think("<think>R</think> \n A"), s("R", "A")); // the tutorial's layout
        assert_eq!(split_think("<think>\ncut off"), s("cut off", ""));
        assert_eq!(split_think("just an answer\n"), s("", "just an answer"));
        assert_eq!(split_think("<think>\n\n</think>\n\nA"), s("", "A"));
    }
}
