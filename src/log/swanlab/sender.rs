//! Turns run-file records into SwanLab API requests, mirroring the SDK's
//! `core_python/transport/sender/{__init__,media,utils}.py`, `core_python/api/upload.py` and
//! `core_python/utils.py` (project get-or-create, experiment creation): the same endpoints, body
//! shapes and batch sizes, so the server cannot tell this uploader from the Python SDK.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::api::{ApiError, Client};
use super::proto::{ColumnType, LogLevel, Record, RecordType, StartRecord};
use super::time;

/// Identifiers the server hands out at start.
pub(crate) struct Remote {
    pub username: String,
    pub project: String,
    pub project_id: String,
    pub experiment_id: String,
    pub url: String,
}

/// `prepare_experiment_start`: project get-or-create, then experiment creation.
pub(crate) fn create_experiment(
    client: &mut Client,
    start: &StartRecord,
    web_host: &str,
) -> Result<Remote, ApiError> {
    let ws = if start.workspace.is_empty() {
        client.username.clone()
    } else {
        start.workspace.clone()
    };
    let get_path = format!("/project/{ws}/{}", start.project);
    let project = match client.call(Method::GET, &get_path, None, 5) {
        Ok((_, p)) => p,
        Err(e) if e.status == Some(404) => {
            let body = json!({"name": start.project, "visibility": if start.public { "PUBLIC" } else { "PRIVATE" }});
            client.call(Method::POST, &format!("/projects/{ws}"), Some(&body), 5)?;
            client.call(Method::GET, &get_path, None, 5)?.1
        }
        Err(e) => return Err(e),
    };
    let field = |ptr: &str| {
        project
            .pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (Some(username), Some(name), Some(project_id)) =
        (field("/group/username"), field("/name"), field("/cuid"))
    else {
        return Err(ApiError::protocol(
            "project response lacks group.username, name or cuid",
        ));
    };
    let version = project.get("version").and_then(Value::as_i64);
    if version != Some(1) {
        // The SDK falls back to a deprecated sender for these servers; this client does not.
        return Err(ApiError::protocol(format!(
            "project protocol version {version:?} is not supported (need 1)"
        )));
    }
    let mut body = Map::new();
    body.insert("name".into(), json!(start.name));
    if !start.description.is_empty() {
        body.insert("description".into(), json!(start.description));
    }
    body.insert("createdAt".into(), json!(time::isoformat_z(&time::now())));
    body.insert("colors".into(), json!([start.color, start.color]));
    if !start.tags.is_empty() {
        body.insert(
            "labels".into(),
            Value::Array(start.tags.iter().map(|t| json!({"name": t})).collect()),
        );
    }
    body.insert("cuid".into(), json!(start.id));
    let path = format!("/project/{username}/{name}/experiment");
    let (_, exp) = client.call(Method::POST, &path, Some(&Value::Object(body)), 5)?;
    let Some(experiment_id) = exp.get("cuid").and_then(Value::as_str).map(str::to_string) else {
        return Err(ApiError::protocol("experiment response lacks cuid"));
    };
    let slug = exp
        .get("slug")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&experiment_id);
    let project_path = field("/path").unwrap_or_else(|| format!("/{username}/{name}"));
    let url = format!("{web_host}{}", run_path(&format!("{project_path}/{slug}")));
    Ok(Remote {
        username,
        project: name,
        project_id,
        experiment_id,
        url,
    })
}

/// `helper.fmt_run_path`: `/user/project/id` to the web route `/@user/project/runs/id`.
fn run_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [user, project, id, ..] => {
            let user = if user.starts_with('@') {
                user.to_string()
            } else {
                format!("@{user}")
            };
            format!("/{user}/{project}/runs/{id}")
        }
        _ => path.to_string(),
    }
}

/// Record kind names as the SDK's `WhichOneof("record_type")` reports them.
pub(crate) fn kind(r: &Record) -> &'static str {
    match &r.record_type {
        Some(RecordType::Start(_)) => "start",
        Some(RecordType::Finish(_)) => "finish",
        Some(RecordType::Column(_)) => "column",
        Some(RecordType::Scalar(_)) => "scalar",
        Some(RecordType::Media(_)) => "media",
        Some(RecordType::Log(_)) => "log",
        Some(RecordType::Save(_)) => "save",
        None => "none",
    }
}

pub(crate) struct Sender<'a> {
    pub client: &'a mut Client,
    pub remote: &'a Remote,
    pub config: &'a Value,
    pub run_dir: &'a PathBuf,
}

impl Sender<'_> {
    /// Sends one group of records of the same kind (at most 10,000, the SDK's `record_batch`).
    pub fn send(&mut self, kind: &str, records: &[Record]) -> Result<(), ApiError> {
        match kind {
            "column" => self.columns(records),
            "scalar" => self.metrics("scalar", records.iter().filter_map(scalar_metric).collect()),
            "log" => self.metrics("log", records.iter().filter_map(log_metric).collect()),
            "media" => self.media(records),
            "save" => self.profile(),
            _ => Ok(()), // start/finish are lifecycle records, not uploads
        }
    }

    fn columns(&mut self, records: &[Record]) -> Result<(), ApiError> {
        let series: Vec<Value> = records
            .iter()
            .filter_map(|r| match &r.record_type {
                Some(RecordType::Column(c)) => {
                    let kind = if c.column_type == ColumnType::Text as i32 {
                        "TEXT"
                    } else {
                        "FLOAT"
                    };
                    let mut col = json!({"key": c.column_key, "type": kind});
                    if !c.section_name.is_empty() {
                        col["sectionName"] = json!(c.section_name);
                    }
                    Some(col)
                }
                _ => None,
            })
            .collect();
        let path = format!(
            "/projects/{}/{}/series",
            self.remote.username, self.remote.project
        );
        for chunk in series.chunks(3000) {
            self.client
                .call(Method::POST, &path, Some(&json!({"series": chunk})), 0)?;
        }
        Ok(())
    }

    fn metrics(&mut self, kind: &str, metrics: Vec<Value>) -> Result<(), ApiError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let body = json!({
            "type": kind,
            "projectId": self.remote.project_id,
            "experimentId": self.remote.experiment_id,
            "metrics": metrics,
        });
        self.client
            .call(Method::POST, "/house/metrics", Some(&body), 0)
            .map(|_| ())
    }

    /// `PUT .../profile {"config": ...}`: the config as `files/config.yaml` holds it.
    fn profile(&mut self) -> Result<(), ApiError> {
        let path = format!(
            "/project/{}/{}/runs/{}/profile",
            self.remote.username, self.remote.project, self.remote.experiment_id
        );
        self.client
            .call(Method::PUT, &path, Some(&json!({"config": self.config})), 0)
            .map(|_| ())
    }

    /// Presigned PUTs of every file, then one media metrics request (`upload_media`).
    fn media(&mut self, records: &[Record]) -> Result<(), ApiError> {
        let mut paths = Vec::new();
        let mut metrics = Vec::new();
        for r in records {
            let Some(RecordType::Media(m)) = &r.record_type else {
                continue;
            };
            let items = m
                .value
                .as_ref()
                .map(|v| v.items.as_slice())
                .unwrap_or_default();
            let dir = if m.r#type == ColumnType::Text as i32 {
                "text"
            } else {
                continue;
            };
            let data: Vec<String> = items
                .iter()
                .map(|i| format!("media/{dir}/{}", i.filename))
                .collect();
            // As the SDK: captions are listed only for the items that have one.
            let more: Vec<Value> = items
                .iter()
                .filter(|i| !i.caption.is_empty())
                .map(|i| json!({"caption": i.caption}))
                .collect();
            let ts = m.timestamp.unwrap_or_default();
            paths.extend(data.iter().cloned());
            metrics.push(json!({"key": m.key, "index": m.step, "data": data, "more": more, "create_time": time::to_json_string(&ts)}));
        }
        if paths.is_empty() {
            return Ok(());
        }
        let body = json!({"experimentId": self.remote.experiment_id, "paths": paths});
        let (_, resp) =
            self.client
                .call(Method::POST, "/resources/presigned/put", Some(&body), 0)?;
        let urls: Vec<&str> = resp
            .get("urls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if urls.len() != paths.len() {
            return Err(ApiError::protocol(format!(
                "presigned response has {} urls for {} paths",
                urls.len(),
                paths.len()
            )));
        }
        for (url, path) in urls.iter().zip(&paths) {
            let file = self.run_dir.join(path);
            let bytes = std::fs::read(&file)
                .map_err(|e| ApiError::protocol(format!("reading {}: {e}", file.display())))?;
            self.client.put_object(url, bytes, "text/plain")?;
        }
        self.metrics("media", metrics)
    }
}

fn scalar_metric(r: &Record) -> Option<Value> {
    let Some(RecordType::Scalar(s)) = &r.record_type else {
        return None;
    };
    let number = s.value.map(|v| v.number).unwrap_or(0.0);
    // JSON has no NaN/Inf: the SDK sends the string "nan" for every non-finite value.
    let data = if number.is_finite() {
        json!(number)
    } else {
        json!("nan")
    };
    Some(
        json!({"key": s.key, "index": s.step, "data": data, "create_time": time::to_json_string(&s.timestamp?)}),
    )
}

fn log_metric(r: &Record) -> Option<Value> {
    let Some(RecordType::Log(l)) = &r.record_type else {
        return None;
    };
    let level = if l.level == LogLevel::Error as i32 {
        "ERROR"
    } else {
        "INFO"
    };
    Some(
        json!({"level": level, "epoch": l.epoch, "message": l.line, "create_time": time::to_json_string(&l.timestamp?)}),
    )
}

/// `stop_experiment`: the final state, after every record went out.
pub(crate) fn stop_experiment(
    client: &mut Client,
    remote: &Remote,
    state: &str,
) -> Result<(), ApiError> {
    let path = format!(
        "/project/{}/{}/runs/{}/state",
        remote.username, remote.project, remote.experiment_id
    );
    let body =
        json!({"state": state, "finishedAt": time::isoformat_z(&time::now()), "from": "sdk"});
    client.call(Method::PUT, &path, Some(&body), 5).map(|_| ())
}

/// `send_experiment_heartbeat`.
pub(crate) fn heartbeat(client: &mut Client, remote: &Remote) -> Result<(), ApiError> {
    let path = format!("/house/experiments/{}/heartbeat", remote.experiment_id);
    client
        .call(Method::POST, &path, Some(&json!({"flagId": "123456"})), 5)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn web_route() {
        assert_eq!(super::run_path("/tester/p/slug1"), "/@tester/p/runs/slug1");
        assert_eq!(super::run_path("@u/p/x"), "/@u/p/runs/x");
    }
}
