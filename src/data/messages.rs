//! Checking a `messages` row (trl's and LLaMA-Factory's conversational layout) once, when it is
//! read: an array of `{"role", "content", "reasoning_content"?}` objects, roles system, user or
//! assistant, string contents, at least one assistant turn. Qwen3's template would silently drop
//! an unknown role or render a non-string content as empty; here each is an error that names the
//! message and the field, so a bad row never trains on something other than what the file says.

use super::chat::Message;
use super::format::{kind, RowError};
use serde_json::{Map, Value};

/// The roles a training conversation may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

fn bad(msg: String) -> RowError {
    RowError::Messages(msg)
}

/// The conversation in `fields["messages"]`.
pub fn conversation(fields: &Map<String, Value>) -> Result<Vec<Message>, RowError> {
    let list = match fields.get("messages") {
        None => return Err(RowError::Missing("messages".into(), None)),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(bad(format!(
                "field `messages` is {}, expected an array of messages",
                kind(other)
            )))
        }
    };
    if list.is_empty() {
        return Err(bad("field `messages` is an empty array".into()));
    }
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(bad(
            "messages has no assistant turn (nothing to train on)".into()
        ));
    }
    Ok(messages)
}

fn message(i: usize, value: &Value) -> Result<Message, RowError> {
    let Value::Object(m) = value else {
        return Err(bad(format!(
            "messages[{i}] is {}, expected an object",
            kind(value)
        )));
    };
    let role = match m.get("role") {
        None => return Err(bad(format!("messages[{i}].role is missing"))),
        Some(Value::String(r)) => Role::parse(r).ok_or_else(|| {
            bad(format!(
                "messages[{i}].role {r:?} is not system, user or assistant"
            ))
        })?,
        Some(other) => {
            return Err(bad(format!(
                "messages[{i}].role is {}, expected a string",
                kind(other)
            )))
        }
    };
    let content = match m.get("content") {
        None => return Err(bad(format!("messages[{i}].content is missing"))),
        Some(Value::String(c)) => c.clone(),
        Some(other) => {
            return Err(bad(format!(
                "messages[{i}].content is {}, expected a string",
                kind(other)
            )))
        }
    };
    // null is "not given", as the template's `is string` test treats it.
    let reasoning_content = match m.get("reasoning_content") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if role == Role::Assistant => Some(r.clone()),
        Some(Value::String(_)) => {
            return Err(bad(format!(
            "messages[{i}].reasoning_content is set on a {} message (only assistant turns reason)",
            role.as_str()
        )))
        }
        Some(other) => {
            return Err(bad(format!(
                "messages[{i}].reasoning_content is {}, expected a string",
                kind(other)
            )))
        }
    };
    // Tool calls would need the template's tool rendering, which training here does not do.
    if m.get("tool_calls").is_some_and(|v| !v.is_null()) {
        return Err(bad(format!(
            "messages[{i}].tool_calls: tool calls are not supported in training data"
        )));
    }
    Ok(Message {
        role: role.as_str().to_string(),
        content,
        reasoning_content,
    })
}
