//! The caches against the real clients (live, tests/hub_support/hub_clients.py): what this
//! project downloads, `huggingface_hub` and `modelscope` find offline; what they download from
//! the same loopback server, this project finds offline. Both ways, models and the data set
//! file, the cache roots set the way users set them (HF_HOME, MODELSCOPE_CACHE, or only HOME).
//!
//! Layouts (huggingface_hub 2.4 `file_download`/`_snapshot_download`, modelscope 1.40.2 with
//! modelscope_hub 0.5 `_download.DownloadManager`):
//! - Hugging Face: `{HF_HOME}/hub/{models|datasets}--{owner}--{name}/` with `refs/main` (the
//!   commit), `blobs/{etag}`, `snapshots/{commit}/{file}` -> `../../blobs/{etag}`;
//! - ModelScope writes `{cache}/{models|datasets}/{owner}--{name}/snapshots/master/{file}` and
//!   reads first the older `{cache}/{kind}s/{owner}/{name with . -> ___}` and
//!   `{cache}/hub/{kind}s/...`, `cache` being `MODELSCOPE_CACHE` or `~/.cache/modelscope`.

use super::server::{repo_files, serve, sha256_hex, Mode, COMMIT, DATASET, DATA_FILE, MODEL};
use super::{assert_model, closed_port, config, tmp};
use qwen3_sft::data::download::fetch_dataset;
use qwen3_sft::hub::{resolve_model_with, Source};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables both sides read; each run sets the ones it means and nothing leaks in from outside.
const HUB_VARS: [&str; 11] = [
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "HF_TOKEN",
    "XDG_CACHE_HOME",
    "MODELSCOPE_CACHE",
    "MODELSCOPE_DOMAIN",
    "MODELSCOPE_ENDPOINT",
    "MODELSCOPE_API_TOKEN",
    "MODELSCOPE_HOME",
];

fn isolated(mut cmd: Command, home: &Path, env: &[(&str, String)]) -> Command {
    for v in HUB_VARS {
        cmd.env_remove(v);
    }
    cmd.env("HOME", home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("DO_NOT_TRACK", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `hub_clients.py ARGS` under `env`, HOME at `home`; its JSON answer.
fn clients(test: &str, home: &Path, args: &[&str], env: &[(&str, String)]) -> Value {
    let mut cmd = Command::new(crate::common::python(test));
    cmd.arg(crate::common::root().join("tests/hub_support/hub_clients.py"))
        .args(args);
    let out = isolated(cmd, home, env).output().unwrap();
    assert!(
        out.status.success(),
        "{test}: hub_clients.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `qwen3-sft download --model MODEL --source SOURCE` under `env`: the directory it prints.
fn our_download(home: &Path, source: &str, env: &[(&str, String)]) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qwen3-sft"));
    cmd.args(["download", "--model", MODEL, "--source", source]);
    let out = isolated(cmd, home, env).output().unwrap();
    assert!(
        out.status.success(),
        "qwen3-sft download --source {source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// What the client read, file by file: the server's bytes.
fn assert_files(got: &Value, dataset: bool, what: &str) {
    let want: serde_json::Map<String, Value> = repo_files(dataset)
        .into_iter()
        .map(|(name, bytes)| (name, json!(sha256_hex(&bytes))))
        .collect();
    assert_eq!(got["files"], Value::Object(want), "{what}");
}

fn path(v: &Value) -> PathBuf {
    PathBuf::from(v["path"].as_str().unwrap())
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[test]
#[ignore = "live reference (make test)"]
fn huggingface_hub_uses_our_cache_offline() {
    let test = "huggingface_hub_uses_our_cache_offline";
    let srv = serve(Mode::Normal);
    let root = tmp("interop-hf-ours");
    let hf_home = root.join("hf-home");
    let mut cfg = config(srv.port, &root);
    cfg.hf_cache = hf_home.join("hub");
    let dir = resolve_model_with(MODEL, Source::Hf, &cfg).unwrap();
    let data = fetch_dataset(DATASET, DATA_FILE, Source::Hf, &cfg).unwrap();
    drop(srv);
    let closed = url(closed_port());
    let home = root.join("home");
    let env = [
        ("HF_HOME", hf_home.display().to_string()),
        ("HF_ENDPOINT", closed),
    ];
    let got = clients(test, &home, &["hf", "offline", "model", MODEL], &env);
    assert_eq!(path(&got), dir);
    assert_files(&got, false, "snapshot_download(local_files_only=True)");
    let scan = &got["scan"];
    assert_eq!(scan["warnings"], json!([]), "scan_cache_dir: {scan}");
    let model = scan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == MODEL && r["type"] == "model")
        .unwrap_or_else(|| panic!("scan_cache_dir misses the model: {scan}"));
    let names: Vec<String> = repo_files(false).into_iter().map(|f| f.0).collect();
    assert_eq!(
        model["revisions"],
        json!([{"commit": COMMIT, "refs": ["main"], "files": names}]),
        "{scan}"
    );
    // HF_HUB_OFFLINE=1 instead of the argument; single files; the data set repository type.
    let mut env_offline = env.to_vec();
    env_offline.push(("HF_HUB_OFFLINE", "1".into()));
    let got = clients(
        test,
        &home,
        &["hf", "download", "model", MODEL],
        &env_offline,
    );
    assert_eq!(path(&got), dir, "HF_HUB_OFFLINE=1");
    let got = clients(
        test,
        &home,
        &["hf", "offline", "model", MODEL, "config.json"],
        &env,
    );
    assert_eq!(path(&got), dir.join("config.json"));
    let got = clients(
        test,
        &home,
        &["hf", "offline", "dataset", DATASET, DATA_FILE],
        &env,
    );
    assert_eq!(path(&got), data);
    assert_files(
        &got,
        true,
        "hf_hub_download(repo_type='dataset', local_files_only=True)",
    );
}

#[test]
#[ignore = "live reference (make test)"]
fn modelscope_uses_our_cache_offline() {
    let test = "modelscope_uses_our_cache_offline";
    let srv = serve(Mode::Normal);
    let root = tmp("interop-ms-ours");
    let (cache, home) = (root.join("ms-cache"), root.join("home"));
    let endpoint = ("MODELSCOPE_DOMAIN", url(srv.port));
    // MODELSCOPE_CACHE set, and only HOME (the default cache under it).
    let dir = our_download(
        &home,
        "modelscope",
        &[
            ("MODELSCOPE_CACHE", cache.display().to_string()),
            endpoint.clone(),
        ],
    );
    let default_dir = our_download(&home, "modelscope", &[endpoint]);
    let mut cfg = config(srv.port, &root);
    (cfg.modelscope_cache, cfg.modelscope_hub_cache) = (cache.clone(), cache.clone());
    let data = fetch_dataset(DATASET, DATA_FILE, Source::Modelscope, &cfg).unwrap();
    drop(srv);
    let closed = [("MODELSCOPE_DOMAIN", url(closed_port()))];
    let c = cache.to_str().unwrap();
    let got = clients(
        test,
        &home,
        &["ms", "offline", "model", MODEL, "--cache-dir", c],
        &closed,
    );
    assert_eq!(
        path(&got),
        dir,
        "snapshot_download(cache_dir=ours, local_files_only=True)"
    );
    assert_files(&got, false, "modelscope snapshot_download");
    let got = clients(test, &home, &["ms", "offline", "model", MODEL], &closed);
    assert_eq!(path(&got), default_dir, "the default cache under HOME");
    assert_files(&got, false, "modelscope snapshot_download, default cache");
    let mut env = closed.to_vec();
    env.push(("MODELSCOPE_CACHE", c.to_string()));
    let got = clients(
        test,
        &home,
        &["ms", "offline", "dataset", DATASET, DATA_FILE],
        &env,
    );
    assert_eq!(
        path(&got),
        data,
        "dataset_file_download(local_files_only=True)"
    );
}

#[test]
#[ignore = "live reference (make test)"]
fn we_use_the_huggingface_hub_cache_offline() {
    let test = "we_use_the_huggingface_hub_cache_offline";
    let srv = serve(Mode::Normal);
    let root = tmp("interop-hf-theirs");
    let (hf_home, home) = (root.join("hf-home"), root.join("home"));
    let env = [
        ("HF_HOME", hf_home.display().to_string()),
        ("HF_ENDPOINT", url(srv.port)),
    ];
    let model = clients(test, &home, &["hf", "download", "model", MODEL], &env);
    assert_files(
        &model,
        false,
        "huggingface_hub snapshot_download from the loopback server",
    );
    let data = clients(
        test,
        &home,
        &["hf", "download", "dataset", DATASET, DATA_FILE],
        &env,
    );
    drop(srv);
    let offline = [
        ("HF_HOME", hf_home.display().to_string()),
        ("HF_HUB_OFFLINE", "1".to_string()),
        ("HF_ENDPOINT", url(closed_port())),
    ];
    let dir = our_download(&home, "hf", &offline);
    assert_eq!(dir, path(&model));
    assert_model(&dir);
    let mut cfg = config(closed_port(), &root);
    (cfg.hf_cache, cfg.hf_offline) = (hf_home.join("hub"), true);
    let p = fetch_dataset(DATASET, DATA_FILE, Source::Hf, &cfg).unwrap();
    assert_eq!(p, path(&data));
}

#[test]
#[ignore = "live reference (make test)"]
fn we_use_the_modelscope_cache_offline() {
    let test = "we_use_the_modelscope_cache_offline";
    let srv = serve(Mode::Normal);
    let root = tmp("interop-ms-theirs");
    let (cache, home) = (root.join("ms-cache"), root.join("home"));
    let c = ("MODELSCOPE_CACHE", cache.display().to_string());
    let endpoint = ("MODELSCOPE_DOMAIN", url(srv.port));
    let model = clients(
        test,
        &home,
        &["ms", "download", "model", MODEL],
        &[c.clone(), endpoint.clone()],
    );
    assert_files(
        &model,
        false,
        "modelscope snapshot_download from the loopback server",
    );
    let default = clients(
        test,
        &home,
        &["ms", "download", "model", MODEL],
        std::slice::from_ref(&endpoint),
    );
    let data = clients(
        test,
        &home,
        &["ms", "download", "dataset", DATASET, DATA_FILE],
        &[c.clone(), endpoint],
    );
    drop(srv);
    let closed = ("MODELSCOPE_DOMAIN", url(closed_port()));
    let dir = our_download(&home, "modelscope", &[c, closed.clone()]);
    assert_eq!(dir, path(&model), "MODELSCOPE_CACHE");
    assert_model(&dir);
    let dir = our_download(&home, "modelscope", &[closed]);
    assert_eq!(dir, path(&default), "the default cache under HOME");
    let mut cfg = config(closed_port(), &root);
    (cfg.modelscope_cache, cfg.modelscope_hub_cache) = (cache.clone(), cache);
    let p = fetch_dataset(DATASET, DATA_FILE, Source::Modelscope, &cfg).unwrap();
    assert_eq!(p, path(&data));
}
