//! Python's `json.dumps(obj, ensure_ascii=False)` output for a `serde_json::Value` (CPython
//! `Lib/json/encoder.py` with the default separators `", "` and `": "`, floats as `float.__repr__`).
//! The split writes rows this way so that `train.jsonl`/`val.jsonl` equal the Python reference's
//! files byte for byte, not merely as JSON.

use serde_json::{Map, Value};
use std::fmt::Write;

/// One value as `json.dumps(v, ensure_ascii=False)` writes it.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// A JSON object (a data row) as `json.dumps(row, ensure_ascii=False)` writes it.
pub fn map_to_string(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(m, &mut out);
    out
}

fn write_map(map: &Map<String, Value>, out: &mut String) {
    out.push('{');
    for (i, (k, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(k, out);
        out.push_str(": ");
        write_value(item, out);
    }
    out.push('}');
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // serde_json keeps integers (no '.', no exponent) as i64/u64, like Python's int; anything
            // else was a float in Python too.
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                out.push_str(&float_repr(n.as_f64().unwrap_or(f64::NAN)));
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(map, out),
    }
}

/// `py_encode_basestring`: only `"`, `\`, and control characters below U+0020 are escaped (with
/// the short forms where JSON has them, else `\u00xx` in lowercase hex); everything else, DEL and
/// U+2028 included, is written as is.
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `float.__repr__` (CPython `PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0)`): the shortest
/// digits that round-trip, positional when the decimal exponent is in `-4 < decpt <= 16`, else
/// scientific with a signed, at least two-digit exponent. JSON spells the non-finite values
/// `NaN`/`Infinity`/`-Infinity`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` also prints the shortest round-trip digits: "d.ddde[-]x".
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let decpt = exp + 1; // digits are 0.d1d2... * 10^decpt
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let n = digits.len() as i32;
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let e = decpt - 1;
        let esign = if e < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", e.abs())
    } else if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python_repr() {
        // Each pair is (value, repr(value)) from CPython 3.11.
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1.2345678901234568e+29, "1.2345678901234568e+29"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn strings_like_python() {
        let v = serde_json::json!({"a": "x\"\\\n\t\u{1}\u{7f}\u{2028}é中", "b": [1, 2.5, null, true], "c": {}});
        assert_eq!(
            to_string(&v),
            "{\"a\": \"x\\\"\\\\\\n\\t\\u0001\u{7f}\u{2028}é中\", \"b\": [1, 2.5, null, true], \"c\": {}}"
        );
    }
}
