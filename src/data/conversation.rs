//! A `messages` conversation as trl trains it on Qwen3 (`assistant_only_loss=True`): rendered with
//! trl's `qwen3_training.jinja`, the loss on each `{% generation %}` span, i.e. on every assistant
//! turn from its `<think>` through `<|im_end|>\n`. That template differs from the official one
//! (`data::chat::render`) on purpose, and so does this: every assistant turn keeps its reasoning
//! block, also turns before the last user query, whose reasoning the official template drops at
//! inference. Dropping it here would train those turns to answer without `<think>`; trl keeps
//! it so that each rendering is a prefix of the next (LLaMA-Factory's default keeps it too).
//!
//! One deliberate difference from trl, the same the single-turn rows have (`data::encode`): a
//! turn without reasoning is Qwen3's non-thinking layout, its empty `<think>\n\n</think>\n\n`
//! counted as prompt without loss (LLaMA-Factory's #7905), so the model never learns to skip
//! thinking by itself. `tests/reference/data_ref.py` computes the same from transformers'
//! rendering of trl's template and its generation spans.

use super::chat::{no_reasoning, split_reasoning, Message, EMPTY_THINK};
use anyhow::{bail, Result};

/// A run of text and whether its tokens carry loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub loss: bool,
}

fn push(out: &mut Vec<Segment>, text: &str, loss: bool) {
    match out.last_mut() {
        Some(last) if last.loss == loss => last.text.push_str(text),
        _ => out.push(Segment {
            text: text.to_string(),
            loss,
        }),
    }
}

/// The conversation as `qwen3_training.jinja` renders it (no tools, no generation prompt), cut
/// into prompt and loss segments; adjacent segments of one kind are joined.
pub fn training_segments(messages: &[Message]) -> Result<Vec<Segment>> {
    let Some(first) = messages.first() else {
        bail!("a conversation needs at least one message");
    };
    let mut out = Vec::new();
    if first.role == "system" {
        push(
            &mut out,
            &format!("<|im_start|>system\n{}<|im_end|>\n", first.content),
            false,
        );
    }
    for (i, m) in messages.iter().enumerate() {
        match m.role.as_str() {
            "user" => push(&mut out, &format!("<|im_start|>user\n{}<|im_end|>\n", m.content), false),
            "system" if i > 0 => push(
                &mut out,
                &format!("<|im_start|>system\n{}<|im_end|>\n", m.content),
                false,
            ),
            "system" => {}
            "assistant" => {
                let (reasoning, content) = split_reasoning(m);
                let content = content.trim_start_matches('\n');
                push(&mut out, "<|im_start|>assistant\n", false);
                if no_reasoning(reasoning) {
                    push(&mut out, EMPTY_THINK, false);
                    push(&mut out, &format!("{content}<|im_end|>\n"), true);
                } else {
                    let r = reasoning.trim_matches('\n');
                    let turn = format!("<think>\n{r}\n</think>\n\n{content}<|im_end|>\n");
                    push(&mut out, &turn, true);
                }
            }
            other => bail!(
                "message {i}: role {other:?} cannot be trained on (expected system, user or assistant)"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_assistant_turn_keeps_its_reasoning_and_carries_loss() {
        let m = [
            Message::user("q1"),
            Message::assistant("r1", "a1"),
            Message::user("q2"),
            Message::new("assistant", "a2"),
        ];
        let s = training_segments(&m).unwrap();
        let loss: Vec<&str> = s
            .iter()
            .filter(|s| s.loss)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(
            loss,
            ["<think>\nr1\n</think>\n\na1<|im_end|>\n", "a2<|im_end|>\n"]
        );
        assert!(s[2]
            .text
            .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }
}
