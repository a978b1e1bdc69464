//! The Ollama `Modelfile` written beside an exported GGUF (`ollama create NAME -f Modelfile`):
//! `FROM` the file, Qwen3's chat template as an Ollama (Go `text/template`) TEMPLATE, the system
//! prompt the model was trained with, the stop tokens, and the sampling defaults of the model's
//! generation_config.json. Ollama does not read the GGUF's Jinja template, so the TEMPLATE
//! restates `qwen3_chat_template.jinja` (data/chat.rs) for what this project trains: a system
//! prompt, user turns, assistant turns whose reasoning is kept only after the last user turn,
//! and the generation prompt, with `<think>\n\n</think>\n\n` pre-filled when thinking is off
//! (`ollama run --think=false`, the template's `enable_thinking=False`). Tools are not rendered.
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The first line of every Modelfile this program writes (how `--overwrite` recognises one).
pub const HEADER: &str = "# Ollama Modelfile written by qwen3-sft export";

/// `Modelfile` in the directory of `gguf`.
pub fn path_beside(gguf: &Path) -> PathBuf {
    gguf.with_file_name("Modelfile")
}

/// Whether `path` is a Modelfile this program wrote.
pub fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(HEADER))
}

/// Qwen3's chat template in Ollama's template language (see the module header).
pub const TEMPLATE: &str = r#"{{- $lastUser := -1 }}
{{- range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{{ $lastUser = $i }}{{ end }}{{ end }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|im_start|>user
{{ $m.Content }}<|im_end|>
{{ else if eq $m.Role "assistant" }}<|im_start|>assistant
{{ if and (gt $i $lastUser) (or $last $m.Thinking) }}<think>
{{ $m.Thinking }}
</think>

{{ end }}{{ $m.Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne $m.Role "assistant") $last }}<|im_start|>assistant
{{ if and $.IsThinkSet (not $.Think) }}<think>

</think>

{{ end }}
{{- end }}
{{- end }}"#;

/// A Modelfile string literal: triple-quoted, which Ollama takes verbatim.
fn quoted(s: &str) -> String {
    format!("\"\"\"{s}\"\"\"")
}

/// The Modelfile for `gguf` (named relative to the Modelfile's directory) with `system` as its
/// SYSTEM prompt and the sampling defaults in `gen` (generation_config.json).
pub fn render(gguf: &Path, system: &str, gen: &Json) -> String {
    let file = gguf
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut s = format!("{HEADER}: `ollama create NAME -f Modelfile`\nFROM ./{file}\n\n");
    s += &format!("TEMPLATE {}\n\n", quoted(TEMPLATE));
    if !system.is_empty() {
        s += &format!("SYSTEM {}\n\n", quoted(system));
    }
    for stop in ["<|im_start|>", "<|im_end|>", "<|endoftext|>"] {
        s += &format!("PARAMETER stop \"{stop}\"\n");
    }
    for (key, param) in [
        ("temperature", "temperature"),
        ("top_k", "top_k"),
        ("top_p", "top_p"),
        ("repetition_penalty", "repeat_penalty"),
    ] {
        if let Some(v) = gen.get(key).filter(|v| v.is_number()) {
            s += &format!("PARAMETER {param} {v}\n");
        }
    }
    s
}
