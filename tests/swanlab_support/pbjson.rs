//! `google.protobuf.json_format.MessageToDict` for run-file records: lowerCamelCase names,
//! defaults omitted, 64-bit integers as strings, enums by name, timestamps as RFC 3339. The
//! goldens hold the SDK's own MessageToDict output, so equality checks field numbers and types.

use qwen3_sft::log::swanlab::proto::*;
use qwen3_sft::log::swanlab::time::to_json_string;
use serde_json::{json, Map, Value};

struct Obj(Map<String, Value>);

impl Obj {
    fn new() -> Obj {
        Obj(Map::new())
    }
    fn s(mut self, k: &str, v: &str) -> Obj {
        if !v.is_empty() {
            self.0.insert(k.into(), json!(v));
        }
        self
    }
    fn i64(mut self, k: &str, v: i64) -> Obj {
        if v != 0 {
            self.0.insert(k.into(), json!(v.to_string()));
        }
        self
    }
    fn b(mut self, k: &str, v: bool) -> Obj {
        if v {
            self.0.insert(k.into(), json!(true));
        }
        self
    }
    fn e(mut self, k: &str, v: i32, names: &[&str]) -> Obj {
        if v != 0 {
            let name = names.get(v as usize).map(|n| json!(n)).unwrap_or(json!(v));
            self.0.insert(k.into(), name);
        }
        self
    }
    fn ts(mut self, k: &str, v: &Option<Timestamp>) -> Obj {
        if let Some(t) = v {
            self.0.insert(k.into(), json!(to_json_string(t)));
        }
        self
    }
    fn v(mut self, k: &str, v: Option<Value>) -> Obj {
        if let Some(v) = v {
            self.0.insert(k.into(), v);
        }
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn double(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(x)
    }
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const COLUMN_TYPE: &[&str] = &[
    "COLUMN_TYPE_UNSPECIFIED",
    "COLUMN_TYPE_SCALAR",
    "COLUMN_TYPE_IMAGE",
    "COLUMN_TYPE_AUDIO",
    "COLUMN_TYPE_TEXT",
    "COLUMN_TYPE_VIDEO",
    "COLUMN_TYPE_ECHARTS",
    "COLUMN_TYPE_OBJECT3D",
    "COLUMN_TYPE_MOLECULE",
    "COLUMN_TYPE_HTML",
];
const CHART_TYPE: &[&str] = &[
    "CHART_TYPE_UNSPECIFIED",
    "CHART_TYPE_LINE",
    "CHART_TYPE_BAR",
    "CHART_TYPE_SCALAR",
    "CHART_TYPE_IMAGE",
    "CHART_TYPE_AUDIO",
    "CHART_TYPE_TEXT",
    "CHART_TYPE_VIDEO",
    "CHART_TYPE_ECHARTS",
    "CHART_TYPE_OBJECT3D",
    "CHART_TYPE_MOLECULE",
    "CHART_TYPE_HTML",
];

pub fn record(r: &Record) -> Value {
    let body = match &r.record_type {
        None => None,
        Some(RecordType::Start(s)) => Some((
            "start",
            Obj::new()
                .s("project", &s.project)
                .s("workspace", &s.workspace)
                .b("public", s.public)
                .s("name", &s.name)
                .s("description", &s.description)
                .v("tags", (!s.tags.is_empty()).then(|| json!(s.tags)))
                .s("group", &s.group)
                .s("jobType", &s.job_type)
                .s("color", &s.color)
                .s("id", &s.id)
                .e(
                    "resume",
                    s.resume,
                    &["RESUME_MODE_NEVER", "RESUME_MODE_ALLOW", "RESUME_MODE_MUST"],
                )
                .ts("startedAt", &s.started_at)
                .done(),
        )),
        Some(RecordType::Finish(f)) => Some((
            "finish",
            Obj::new()
                .e(
                    "state",
                    f.state,
                    &[
                        "RUN_STATE_RUNNING",
                        "RUN_STATE_FINISHED",
                        "RUN_STATE_CRASHED",
                        "RUN_STATE_ABORTED",
                    ],
                )
                .s("error", &f.error)
                .ts("finishedAt", &f.finished_at)
                .done(),
        )),
        Some(RecordType::Column(c)) => Some((
            "column",
            Obj::new()
                .e(
                    "columnClass",
                    c.column_class,
                    &[
                        "COLUMN_CLASS_UNSPECIFIED",
                        "COLUMN_CLASS_CUSTOM",
                        "COLUMN_CLASS_SYSTEM",
                    ],
                )
                .e("columnType", c.column_type, COLUMN_TYPE)
                .s("columnKey", &c.column_key)
                .s("columnName", &c.column_name)
                .s("sectionName", &c.section_name)
                .e(
                    "sectionType",
                    c.section_type,
                    &[
                        "SECTION_TYPE_UNSPECIFIED",
                        "SECTION_TYPE_PINNED",
                        "SECTION_TYPE_HIDDEN",
                        "SECTION_TYPE_PUBLIC",
                        "SECTION_TYPE_SYSTEM",
                    ],
                )
                .v(
                    "yRange",
                    c.y_range.map(|y| {
                        Obj::new()
                            .v("min", y.min.map(double))
                            .v("max", y.max.map(double))
                            .done()
                    }),
                )
                .s("chartIndex", &c.chart_index)
                .s("chartName", &c.chart_name)
                .e("chartType", c.chart_type, CHART_TYPE)
                .s("metricName", &c.metric_name)
                .v(
                    "metricColors",
                    c.metric_colors
                        .as_ref()
                        .map(|m| Obj::new().s("light", &m.light).s("dark", &m.dark).done()),
                )
                .v("xAxis", c.x_axis.as_ref().map(|x| json!(x)))
                .v("hidden", c.hidden.map(|h| json!(h)))
                .done(),
        )),
        Some(RecordType::Scalar(s)) => Some((
            "scalar",
            Obj::new()
                .s("key", &s.key)
                .i64("step", s.step)
                .e("type", s.r#type, COLUMN_TYPE)
                .ts("timestamp", &s.timestamp)
                .v(
                    "value",
                    s.value.map(|v| {
                        if v.number == 0.0 {
                            json!({})
                        } else {
                            json!({"number": double(v.number)})
                        }
                    }),
                )
                .done(),
        )),
        Some(RecordType::Media(m)) => Some((
            "media",
            Obj::new()
                .s("key", &m.key)
                .i64("step", m.step)
                .e("type", m.r#type, COLUMN_TYPE)
                .ts("timestamp", &m.timestamp)
                .v(
                    "value",
                    m.value.as_ref().map(|v| {
                        let items: Vec<Value> = v
                            .items
                            .iter()
                            .map(|i| {
                                Obj::new()
                                    .s("filename", &i.filename)
                                    .s("sha256", &i.sha256)
                                    .i64("size", i.size)
                                    .s("caption", &i.caption)
                                    .v("payload", i.payload.as_ref().map(|p| json!(b64(p))))
                                    .done()
                            })
                            .collect();
                        Obj::new()
                            .v("items", (!items.is_empty()).then(|| json!(items)))
                            .done()
                    }),
                )
                .done(),
        )),
        Some(RecordType::Log(l)) => Some((
            "log",
            Obj::new()
                .s("line", &l.line)
                .e("level", l.level, &["LOG_LEVEL_INFO", "LOG_LEVEL_ERROR"])
                .ts("timestamp", &l.timestamp)
                .i64("epoch", l.epoch)
                .done(),
        )),
        Some(RecordType::Save(s)) => Some((
            "save",
            Obj::new()
                .s("name", &s.name)
                .s("sourcePath", &s.source_path)
                .s("targetPath", &s.target_path)
                .e(
                    "policy",
                    s.policy,
                    &["SAVE_POLICY_NOW", "SAVE_POLICY_END", "SAVE_POLICY_LIVE"],
                )
                .e(
                    "type",
                    s.r#type,
                    &[
                        "SAVE_TYPE_CUSTOM",
                        "SAVE_TYPE_CONFIG",
                        "SAVE_TYPE_METADATA",
                        "SAVE_TYPE_REQUIREMENTS",
                        "SAVE_TYPE_CONDA",
                    ],
                )
                .v("payload", s.payload.as_ref().map(|p| json!(b64(p))))
                .done(),
        )),
    };
    let mut o = Obj::new().i64("num", r.num).ts("timestamp", &r.timestamp);
    if let Some((k, v)) = body {
        o.0.insert(k.into(), v);
    }
    o.done()
}

/// Equality of a reference value (doubles as Python `repr` strings, parsed here exactly) and a
/// value built by [`record`] (doubles as numbers).
pub fn same(reference: &Value, ours: &Value) -> bool {
    match (reference, ours) {
        (Value::String(s), Value::Number(n)) => s.parse::<f64>().ok() == n.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        (a, b) => a == b,
    }
}
