//! The native uploader against the real SDK (live, swanlab==0.10.3): the same endpoints, body
//! shapes and values as `swanlab.init` sends for an equivalent run, and `swanlab sync` of run
//! directories written by this crate, both against the recording loopback server.

mod swanlab_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use qwen3_sft::log::swanlab::{FinishState, Run};
use serde_json::{json, Value};
use swanlab_support::server::{Req, Server};
use swanlab_support::spec::*;
use swanlab_support::*;

/// A request reduced to what must match the SDK: endpoint (ids replaced), metric type, which
/// auth headers it carries, and the JSON shape of its body.
fn endpoint(r: &Req) -> String {
    let mut path = r.path.split('?').next().unwrap().to_string();
    if path.starts_with("/upload/") {
        path = "/upload/<file>".into();
    }
    let mut kind = format!("{} {path}", r.method);
    let body = r.json();
    if let Some(t) = body.get("type").and_then(Value::as_str) {
        kind += &format!(" type={t}");
    }
    if path.ends_with("/profile") {
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        kind += &format!(" {keys:?}");
    }
    kind
}

fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => {
            let mut kinds: Vec<Value> = a.iter().map(shape).collect();
            kinds.sort_by_key(|k| k.to_string());
            kinds.dedup();
            Value::Array(kinds)
        }
        Value::Number(n) if n.is_f64() => json!("float"),
        Value::Number(_) => json!("int"),
        Value::String(_) => json!("str"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

struct Trace {
    order: Vec<String>,
    shapes: BTreeMap<String, BTreeSet<String>>,
    headers: BTreeMap<String, BTreeSet<String>>,
}

fn trace(reqs: &[Req]) -> Trace {
    let mut t = Trace {
        order: Vec::new(),
        shapes: BTreeMap::new(),
        headers: BTreeMap::new(),
    };
    for r in reqs {
        let e = endpoint(r);
        // Hardware metadata and pip freeze are Python-process facts this crate does not collect.
        if e.contains("[\"metadata\"]")
            || e.contains("[\"requirements\"]")
            || e.contains("[\"conda\"]")
        {
            continue;
        }
        if !t.order.contains(&e) {
            t.order.push(e.clone());
        }
        t.shapes
            .entry(e.clone())
            .or_default()
            .insert(shape(&r.json()).to_string());
        let auth: Vec<String> = [
            "authorization",
            "cookie",
            "x-swanlab-sdk-version",
            "content-type",
        ]
        .iter()
        .filter_map(|h| {
            r.header(h).map(|v| {
                if *h == "content-type" {
                    format!("{h}={v}")
                } else {
                    h.to_string()
                }
            })
        })
        .collect();
        t.headers.entry(e).or_default().insert(auth.join(","));
    }
    t
}

#[test]
#[ignore = "live reference (make test)"]
fn uploader_matches_the_sdk_trace() {
    let py = python("uploader_matches_the_sdk_trace");
    let spec = spec();
    let work = tmp_dir("sdk-trace");
    let spec_file = work.join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();

    let sdk_server = Server::start();
    let out = Command::new(&py)
        .arg(reference("swanlab_sdk_run.py"))
        .arg(&spec_file)
        .env("SWANLAB_API_HOST", sdk_server.url())
        .env("SWANLAB_API_KEY", KEY)
        .env("SWANLAB_LOG_DIR", work.join("sdk-log"))
        .env("HOME", &work)
        .env("SWANLAB_ROOT", work.join(".swanlab"))
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdk_reqs = sdk_server.requests();

    let ours_server = Server::start();
    let run = Run::start_resolved(
        &cloud(&ours_server, &work.join("ours-log")),
        &spec["config"],
    )
    .unwrap()
    .unwrap();
    log_spec(&run, &spec);
    run.finish(FinishState::Finished).unwrap();
    let our_reqs = ours_server.requests();

    let (sdk, ours) = (trace(&sdk_reqs), trace(&our_reqs));
    assert_eq!(
        ours.order, sdk.order,
        "endpoint sequence differs from the SDK's"
    );
    // Each of our bodies and header sets has the shape of one the SDK sent to that endpoint (the
    // SDK also PUTs an empty config before `init(config=...)` fills it; we send the full one once).
    for (e, shapes) in &ours.shapes {
        assert!(
            shapes.is_subset(&sdk.shapes[e]),
            "{e}: our bodies {shapes:?}, the SDK's {:?}",
            sdk.shapes[e]
        );
        assert!(
            ours.headers[e].is_subset(&sdk.headers[e]),
            "{e}: our headers {:?}, the SDK's {:?}",
            ours.headers[e],
            sdk.headers[e]
        );
    }
    // Same values, not just shapes.
    assert_eq!(accepted_scalars(&our_reqs), accepted_scalars(&sdk_reqs));
    let pick = |reqs: &[Req], pred: &dyn Fn(&Req) -> bool| -> Vec<Value> {
        reqs.iter().filter(|r| pred(r)).map(Req::json).collect()
    };
    let is = |m: &'static str, p: &'static str| move |r: &Req| r.method == m && r.path.ends_with(p);
    let exp = |v: Vec<Value>| {
        let mut v = v[0].clone();
        v.as_object_mut().unwrap().remove("createdAt");
        v
    };
    assert_eq!(exp(pick(&our_reqs, &is("POST", "/experiment"))), {
        let mut v = exp(pick(&sdk_reqs, &is("POST", "/experiment")));
        // Colours are random on both sides; the run id is ours.
        v["colors"] = pick(&our_reqs, &is("POST", "/experiment"))[0]["colors"].clone();
        v["cuid"] = pick(&our_reqs, &is("POST", "/experiment"))[0]["cuid"].clone();
        v
    });
    let last_config = |reqs: &[Req]| {
        pick(reqs, &|r: &Req| {
            r.path.ends_with("/profile") && r.json().get("config").is_some()
        })
        .pop()
    };
    assert_eq!(last_config(&our_reqs), last_config(&sdk_reqs));
    let series = |reqs: &[Req]| -> BTreeSet<String> {
        pick(reqs, &is("POST", "/series"))
            .iter()
            .flat_map(|b| {
                b["series"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(series(&our_reqs), series(&sdk_reqs));
    let media = |reqs: &[Req]| -> Vec<Value> {
        pick(reqs, &|r: &Req| r.json()["type"] == "media")
            .iter()
            .flat_map(|b| {
                b["metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| json!([m["key"], m["index"], m["data"], m["more"]]))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(media(&our_reqs), media(&sdk_reqs));
    let lines = |reqs: &[Req]| -> Vec<String> {
        pick(reqs, &|r: &Req| r.json()["type"] == "log")
            .iter()
            .flat_map(|b| {
                b["metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["message"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|l| !l.starts_with("swanlab:"))
            .collect()
    };
    // The SDK also uploads its own (terminal-wrapped) banner lines; ours are exactly the logged ones.
    let logged: Vec<String> = spec["console"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines(&our_reqs), logged);
    assert_eq!(
        lines(&sdk_reqs)
            .into_iter()
            .filter(|l| logged.contains(l))
            .collect::<Vec<_>>(),
        logged
    );
    let state = |reqs: &[Req]| {
        pick(reqs, &is("PUT", "/state"))
            .iter()
            .map(|b| b["state"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(state(&our_reqs), state(&sdk_reqs));
}

#[test]
#[ignore = "live reference (make test)"]
fn swanlab_sync_uploads_our_runs() {
    let py = python("swanlab_sync_uploads_our_runs");
    let spec = spec();
    for (finish, state) in [
        (FinishState::Finished, "FINISHED"),
        (FinishState::Crashed("boom at step 12".into()), "CRASHED"),
    ] {
        let log_dir = tmp_dir(&format!("sync-{state}"));
        let settings = settings(
            &format!(
                "mode = \"offline\"\nlog_dir = {:?}",
                log_dir.display().to_string()
            ),
            &[],
        );
        let run = Run::start_resolved(&settings, &spec["config"])
            .unwrap()
            .unwrap();
        log_spec(&run, &spec);
        let dir = run.dir().to_path_buf();
        run.finish(finish).unwrap();
        let server = Server::start();
        let out = swanlab_sync(&py, &server, &dir, &log_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "swanlab sync failed: {stderr}");
        let reqs = server.requests();
        assert!(
            reqs.iter().all(|r| r.status < 300 || r.method == "GET"),
            "{reqs:#?}"
        );
        assert_eq!(accepted_scalars(&reqs), expected_scalars(&spec));
        let puts: BTreeSet<Vec<u8>> = reqs
            .iter()
            .filter(|r| r.path.starts_with("/upload/"))
            .map(|r| r.body.clone())
            .collect();
        assert_eq!(puts.len(), 3);
        let config = reqs
            .iter()
            .rev()
            .find(|r| r.path.ends_with("/profile"))
            .unwrap()
            .json();
        assert_eq!(
            config["config"]["lora"]["value"],
            json!({"alpha": 32, "r": 8})
        );
        assert_eq!(reqs.last().unwrap().json()["state"], state);
        if state == "CRASHED" {
            let errors: Vec<Value> = reqs
                .iter()
                .filter(|r| r.json()["type"] == "log")
                .flat_map(|r| r.json()["metrics"].as_array().unwrap().clone())
                .filter(|m| m["level"] == "ERROR")
                .collect();
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0]["message"], "boom at step 12");
        }
    }
}
