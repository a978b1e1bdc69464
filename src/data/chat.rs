//! Qwen3's official chat template, rendered natively. It mirrors the Jinja template the Qwen3
//! checkpoints ship (`qwen3_chat_template.jinja` beside this file, byte-identical to trl 1.16.0's
//! `trl/chat_templates/qwen3.jinja`), as transformers' `apply_chat_template` renders it; the live
//! test in `tests/encode.rs` compares the two on the same conversations.
//!
//! Supported: system, user, assistant (with `reasoning_content` or `<think>` inside the content)
//! and tool messages. Not supported: `tools` definitions and assistant `tool_calls`, which this
//! project never trains on. Unknown roles are an error, where the Jinja template drops them silently.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The Jinja source as the Qwen3 checkpoints ship it; written next to derived tokenizers.
pub const QWEN3_CHAT_TEMPLATE: &str = include_str!("qwen3_chat_template.jinja");

/// One chat message, in the shape transformers' `apply_chat_template` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// The assistant's reasoning (the `<think>` block); `None` means "parse it from `content`".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            reasoning_content: None,
        }
    }
    pub fn system(content: &str) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: &str) -> Self {
        Self::new("user", content)
    }
    /// An assistant turn with its reasoning kept apart, as the data set stores it.
    pub fn assistant(reasoning: &str, content: &str) -> Self {
        Message {
            reasoning_content: Some(reasoning.into()),
            ..Self::new("assistant", content)
        }
    }
}

/// `<|im_start|>assistant\n`: the generation prompt.
pub const GENERATION_PROMPT: &str = "<|im_start|>assistant\n";
/// What `enable_thinking=False` appends to the generation prompt: an empty reasoning block.
pub const EMPTY_THINK: &str = "<think>\n\n</think>\n\n";

/// Renders `messages` as `tokenizer.apply_chat_template(messages, tokenize=False,
/// add_generation_prompt=..., enable_thinking=...)` does with Qwen3's template. `enable_thinking`
/// `None` leaves the flag undefined (the template's default: thinking on).
pub fn render(
    messages: &[Message],
    add_generation_prompt: bool,
    enable_thinking: Option<bool>,
) -> Result<String> {
    let Some(first) = messages.first() else {
        bail!("a chat needs at least one message");
    };
    let mut out = String::new();
    if first.role == "system" {
        push_turn(&mut out, "system", &first.content);
    }
    // The last real user query (tool responses travel as user turns and do not count): assistant
    // turns after it keep their reasoning, earlier ones lose it.
    let is_tool_response =
        |c: &str| c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
    let last_query = messages
        .iter()
        .rposition(|m| m.role == "user" && !is_tool_response(&m.content))
        .unwrap_or(messages.len() - 1);
    let last = messages.len() - 1;
    for (i, m) in messages.iter().enumerate() {
        match m.role.as_str() {
            "user" => push_turn(&mut out, "user", &m.content),
            "system" if i > 0 => push_turn(&mut out, "system", &m.content),
            "system" => {}
            "assistant" => {
                let (reasoning, content) = split_reasoning(m);
                out.push_str("<|im_start|>assistant\n");
                if i > last_query && (i == last || !reasoning.is_empty()) {
                    out.push_str("<think>\n");
                    out.push_str(reasoning.trim_matches('\n'));
                    out.push_str("\n</think>\n\n");
                    out.push_str(content.trim_start_matches('\n'));
                } else {
                    out.push_str(content);
                }
                out.push_str("<|im_end|>\n");
            }
            "tool" => {
                // Consecutive tool results share one user turn.
                if i == 0 || messages[i - 1].role != "tool" {
                    out.push_str("<|im_start|>user");
                }
                out.push_str("\n<tool_response>\n");
                out.push_str(&m.content);
                out.push_str("\n</tool_response>");
                if i == last || messages[i + 1].role != "tool" {
                    out.push_str("<|im_end|>\n");
                }
            }
            other => bail!(
                "message {i}: unknown role {other:?} (expected system, user, assistant or tool)"
            ),
        }
    }
    if add_generation_prompt {
        out.push_str(GENERATION_PROMPT);
        if enable_thinking == Some(false) {
            out.push_str(EMPTY_THINK);
        }
    }
    Ok(out)
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

/// The template's reasoning extraction: `reasoning_content` when given, else the text between
/// `<think>` and the first `</think>` of the content, whose remainder (after the last `</think>`)
/// becomes the answer. Python's `split(...)[0]` / `[-1]` and `strip('\n')` semantics.
pub fn split_reasoning(m: &Message) -> (&str, &str) {
    if let Some(r) = &m.reasoning_content {
        return (r, &m.content);
    }
    let c = m.content.as_str();
    if !c.contains("</think>") {
        return ("", c);
    }
    let before = c
        .split("</think>")
        .next()
        .unwrap_or("")
        .trim_end_matches('\n');
    let reasoning = before
        .split("<think>")
        .last()
        .unwrap_or("")
        .trim_start_matches('\n');
    let content = c
        .split("</think>")
        .last()
        .unwrap_or("")
        .trim_start_matches('\n');
    (reasoning, content)
}

/// Whether a reasoning renders as Qwen3's empty block (the template strips its newlines).
pub fn no_reasoning(think: &str) -> bool {
    think.trim_matches('\n').is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_turn_matches_the_documented_layout() {
        let m = [
            Message::system("S"),
            Message::user("Q"),
            Message::assistant("\nR\n\n", "\nA"),
        ];
        let got = render(&m, false, None).unwrap();
        let want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nR\n</think>\n\nA<|im_end|>\n";
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_role_is_an_error() {
        let err = render(&[Message::new("bot", "x")], false, None).unwrap_err();
        assert!(err.to_string().contains("unknown role \"bot\""), "{err}");
    }
}
