//! `files/config.yaml` and the config profile upload, mirroring
//! `sdk/internal/run/components/config/{parse,writer}.py`: each top-level hyperparameter becomes
//! `{key: {desc: "", sort: <insertion index>, value: ...}}`, dumped like PyYAML's
//! `safe_dump(allow_unicode=True, default_flow_style=False)` (block style, sorted keys), so that
//! `yaml.safe_load` in `swanlab sync` reads back exactly the logged values.

use serde_json::{Map, Value};

/// `format_config(parse(...))`: the `{key: {desc, sort, value}}` mapping, keys sorted as PyYAML
/// writes them and as the SDK uploads them after reading the YAML back.
pub fn format_config(hyperparams: &Map<String, Value>) -> Value {
    let mut out: Vec<(String, Value)> = hyperparams
        .iter()
        .enumerate()
        .map(|(sort, (key, value))| {
            // `Config._set_value` runs `parse()` on each top-level value, and `parse(None)` is `{}`.
            let value = if value.is_null() {
                Value::Object(Map::new())
            } else {
                sorted(value)
            };
            let entry = serde_json::json!({"desc": "", "sort": sort, "value": value});
            (key.clone(), entry)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(out.into_iter().collect())
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut items: Vec<_> = m.iter().map(|(k, v)| (k.clone(), sorted(v))).collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(items.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Block-style YAML for a JSON mapping.
pub fn to_yaml(v: &Map<String, Value>) -> String {
    let mut out = String::new();
    if v.is_empty() {
        out.push_str("{}\n");
    } else {
        emit_map(&mut out, v, 0, false);
    }
    out
}

fn emit_map(out: &mut String, map: &Map<String, Value>, indent: usize, first_inline: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if !(first_inline && i == 0) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&string_scalar(key));
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                emit_map(out, m, indent + 2, false);
            }
            // PyYAML does not indent a sequence under a mapping key.
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit_seq(out, a, indent, false);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize, first_inline: bool) {
    for (i, item) in items.iter().enumerate() {
        if !(first_inline && i == 0) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map(out, m, indent + 2, true),
            Value::Array(a) if !a.is_empty() => emit_seq(out, a, indent + 2, true),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(py_float).unwrap_or_else(|| n.to_string()),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_scalar(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A float as YAML 1.1 (PyYAML) resolves it: the mantissa needs a '.', the exponent a sign.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    let s = serde_json::Number::from_f64(f)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let (mant, exp) = match s.split_once('e') {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (s.clone(), None),
    };
    let mant = if mant.contains('.') {
        mant
    } else {
        format!("{mant}.0")
    };
    match exp {
        Some(e) if e.starts_with('-') || e.starts_with('+') => format!("{mant}e{e}"),
        Some(e) => format!("{mant}e+{e}"),
        None => mant,
    }
}

/// Plain when PyYAML would read it back as the same string, else double-quoted.
fn string_scalar(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let lower = s.to_ascii_lowercase();
    let reserved = [
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", "-.inf", "+.inf",
        ".nan",
    ];
    let first = s.chars().next().unwrap_or(' ');
    let plain = !reserved.contains(&lower.as_str())
        && (first.is_alphabetic() || first == '_' || first == '/')
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.chars()
            .all(|c| !c.is_control() && !"#{}[],&*!|>'\"%@`\u{feff}".contains(c))
        && !looks_like_sexagesimal(s);
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// YAML 1.1 reads `a:1` style values only with digits; letters first are safe, but keep
/// anything with a ':' quoted to avoid mapping/time ambiguities.
fn looks_like_sexagesimal(s: &str) -> bool {
    s.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_matches_pyyaml() {
        let hp = json!({"lr": 0.0001, "model": {"name": "Qwen3", "layers": 28}, "tags": ["a", "b"], "none": null});
        let cfg = format_config(hp.as_object().unwrap());
        let yaml = to_yaml(cfg.as_object().unwrap());
        // The SDK's own config.yaml for the same input (see tests/golden/swanlab/).
        let want = "lr:\n  desc: ''\n  sort: 0\n  value: 0.0001\nmodel:\n  desc: ''\n  sort: 1\n  value:\n    layers: 28\n    name: Qwen3\nnone:\n  desc: ''\n  sort: 3\n  value: {}\ntags:\n  desc: ''\n  sort: 2\n  value:\n  - a\n  - b\n";
        assert_eq!(yaml, want);
    }

    #[test]
    fn floats_and_strings_are_unambiguous() {
        assert_eq!(py_float(1e-10), "1.0e-10");
        assert_eq!(py_float(1e20), "1.0e+20");
        assert_eq!(py_float(2.5), "2.5");
        assert_eq!(py_float(3.0), "3.0");
        assert_eq!(string_scalar("yes"), "\"yes\"");
        assert_eq!(string_scalar("1.5"), "\"1.5\"");
        assert_eq!(string_scalar("a: b"), "\"a: b\"");
        assert_eq!(string_scalar("Qwen/Qwen3-0.6B"), "Qwen/Qwen3-0.6B");
        assert_eq!(string_scalar("中文"), "中文");
        let nested = json!({"x": [[1, 2], {"a": 1, "b": [true]}, "s"]});
        let y = to_yaml(nested.as_object().unwrap());
        assert_eq!(y, "x:\n- - 1\n  - 2\n- a: 1\n  b:\n  - true\n- s\n");
    }
}
