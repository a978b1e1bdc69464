//! Hub downloads against a small HTTP server on 127.0.0.1 that serves the ModelScope URL layout
//! (and the Hugging Face `resolve` layout with its metadata headers): a tiny model and the data set
//! file land in the caches, a cut transfer resumes with `Range`, a refused connection and a silent
//! host fail fast with one-line errors, tokens go in headers and nowhere else. The caches against
//! the real `huggingface_hub` and `modelscope` clients, both ways, are in hub_support/interop.rs.

use qwen3_sft::data::download::fetch_dataset;
use qwen3_sft::hub::{resolve_model_with, HubConfig, Secret, Source};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
#[path = "hub_support/interop.rs"]
mod interop;
#[path = "hub_support/server.rs"]
mod server;
use server::{files, serve, Mode, COMMIT};

const TOKEN: &str = "ms-secret-token-123";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3-sft-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(port: u16, root: &Path) -> HubConfig {
    HubConfig {
        modelscope_endpoint: format!("http://127.0.0.1:{port}"),
        modelscope_token: None,
        modelscope_cache: root.join("ms"),
        modelscope_hub_cache: root.join("ms-new"),
        hf_endpoint: format!("http://127.0.0.1:{port}"),
        hf_token: None,
        hf_cache: root.join("hf"),
        hf_offline: false,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        progress: false,
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_model(dir: &Path) {
    for (name, bytes) in files() {
        if name != "r1_data_example.jsonl" {
            assert_eq!(std::fs::read(dir.join(&name)).unwrap(), bytes, "{name}");
        }
    }
}

fn no_partials(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        assert!(
            !p.to_string_lossy().ends_with(".incomplete"),
            "left over: {}",
            p.display()
        );
    }
}

#[test]
fn modelscope_model_lands_in_the_classic_cache_and_is_reused_offline() {
    let srv = serve(Mode::Normal);
    let root = tmp("ms_model");
    let mut cfg = config(srv.port, &root);
    cfg.modelscope_token = Some(Secret::new(TOKEN));
    let dir = resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap();
    assert_eq!(
        dir,
        root.join("ms/models/Qwen/Qwen3-0___6B"),
        "dots become ___ as in the SDK"
    );
    assert_model(&dir);
    no_partials(&dir);
    let log = srv.log.lock().unwrap().clone();
    let first = &log[0];
    assert_eq!(
        first.target,
        "/api/v1/models/Qwen/Qwen3-0.6B/repo?Revision=master&FilePath=config.json"
    );
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        first.headers.get("cookie").map(String::as_str),
        Some(format!("m_session_id={TOKEN}").as_str())
    );
    assert!(
        log.iter()
            .any(|r| r.target.ends_with("FilePath=vocab.json")),
        "optional files are asked for"
    );
    assert_eq!(
        log.iter()
            .filter(|r| r.target.ends_with("00001-of-00002.safetensors"))
            .count(),
        1,
        "shards deduplicated"
    );
    // Cached: no network needed any more (the endpoint now refuses connections).
    let cfg = config(closed_port(), &root);
    assert_eq!(
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap(),
        dir
    );
    // A local directory wins over everything.
    let d = dir.to_str().unwrap();
    assert_eq!(resolve_model_with(d, Source::Hf, &cfg).unwrap(), dir);
}

#[test]
fn modelscope_dataset_file_and_split_without_input() {
    let srv = serve(Mode::Normal);
    let root = tmp("ms_data");
    let cfg = config(srv.port, &root);
    let p = fetch_dataset(
        "krisfu/delicate_medical_r1_data",
        "r1_data_example.jsonl",
        Source::Modelscope,
        &cfg,
    )
    .unwrap();
    assert_eq!(
        p,
        root.join("ms/datasets/krisfu/delicate_medical_r1_data/r1_data_example.jsonl")
    );
    assert_eq!(std::fs::read(&p).unwrap(), files()["r1_data_example.jsonl"]);
    let t = srv.log.lock().unwrap()[0].target.clone();
    assert_eq!(t, "/api/v1/datasets/krisfu/delicate_medical_r1_data/repo?Source=SDK&Revision=master&FilePath=r1_data_example.jsonl");
    // The command line, configured by the SDK's variables (a bare host gets https://, so pass http://).
    let out_dir = root.join("split");
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
        .args(["split", "--output_dir"])
        .arg(&out_dir)
        .env(
            "MODELSCOPE_DOMAIN",
            format!("http://127.0.0.1:{}", srv.port),
        )
        .env("MODELSCOPE_CACHE", root.join("cli-cache"))
        .env_remove("MODELSCOPE_ENDPOINT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("train: 17 rows"));
    assert!(root
        .join("cli-cache/datasets/krisfu/delicate_medical_r1_data/r1_data_example.jsonl")
        .is_file());
}

#[test]
fn a_cut_transfer_resumes_with_range() {
    let srv = serve(Mode::CutOnce);
    let root = tmp("resume");
    let cfg = config(srv.port, &root);
    let e = format!(
        "{:#}",
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap_err()
    );
    assert!(
        e.contains("model-00001-of-00002.safetensors")
            && e.contains("run the command again to resume"),
        "{e}"
    );
    let part = root.join("ms/models/Qwen/Qwen3-0___6B/model-00001-of-00002.safetensors.incomplete");
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        150_000,
        "the received half is kept"
    );
    let dir = resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap();
    assert_model(&dir);
    no_partials(&dir);
    let log = srv.log.lock().unwrap().clone();
    let ranged: Vec<_> = log.iter().filter_map(|r| r.headers.get("range")).collect();
    assert_eq!(
        ranged,
        ["bytes=150000-"],
        "only the cut file is resumed, from where it stopped"
    );
}

#[test]
fn a_server_ignoring_range_restarts_the_file() {
    let srv = serve(Mode::NoRange);
    let root = tmp("norange");
    let cfg = config(srv.port, &root);
    let dir = root.join("ms/models/Qwen/Qwen3-0___6B");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model-00002-of-00002.safetensors.incomplete"),
        vec![0xAAu8; 1000],
    )
    .unwrap();
    assert_eq!(
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap(),
        dir
    );
    assert_model(&dir);
}

#[test]
fn a_file_being_downloaded_elsewhere_is_left_alone() {
    let srv = serve(Mode::Normal);
    let root = tmp("locked");
    let cfg = config(srv.port, &root);
    let dir = root.join("ms/models/Qwen/Qwen3-0___6B");
    std::fs::create_dir_all(&dir).unwrap();
    let part = dir.join("config.json.incomplete");
    let held = std::fs::File::create(&part).unwrap();
    held.lock().unwrap(); // what a concurrent download holds
    let e = format!(
        "{:#}",
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap_err()
    );
    assert!(e.contains("another process is downloading"), "{e}");
    assert!(part.exists(), "the other download's file was removed");
    drop(held);
    assert_eq!(
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap(),
        dir
    );
    assert_model(&dir);
}

#[test]
fn refused_connection_is_one_clear_line() {
    let root = tmp("refused");
    let port = closed_port();
    let cfg = config(port, &root);
    let t = Instant::now();
    let e = format!(
        "{:#}",
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Modelscope, &cfg).unwrap_err()
    );
    assert_eq!(
        e,
        format!("cannot reach 127.0.0.1:{port} (set MODELSCOPE_DOMAIN or use --source hf, or pass a local directory)")
    );
    let e = format!(
        "{:#}",
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Hf, &cfg).unwrap_err()
    );
    assert!(
        e.starts_with(&format!(
            "cannot reach 127.0.0.1:{port} (set HF_ENDPOINT or use --source modelscope"
        )),
        "{e}"
    );
    let e = format!(
        "{:#}",
        fetch_dataset(
            "krisfu/delicate_medical_r1_data",
            "r1_data_example.jsonl",
            Source::Modelscope,
            &cfg
        )
        .unwrap_err()
    );
    assert!(e.ends_with("or pass --input FILE)"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // The command line prints the same line and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
        .args(["download", "--model", "Qwen/Qwen3-0.6B"])
        .env("MODELSCOPE_DOMAIN", format!("http://127.0.0.1:{port}"))
        .env("MODELSCOPE_CACHE", root.join("cli"))
        .env_remove("MODELSCOPE_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("cannot reach 127.0.0.1:{port}"))
    );
}

#[test]
fn a_silent_host_times_out_instead_of_hanging() {
    let srv = serve(Mode::Silent);
    let root = tmp("silent");
    let mut cfg = config(srv.port, &root);
    cfg.read_timeout = Duration::from_millis(800);
    for source in [Source::Modelscope, Source::Hf] {
        let t = Instant::now();
        let e = format!(
            "{:#}",
            resolve_model_with("Qwen/Qwen3-0.6B", source, &cfg).unwrap_err()
        );
        assert!(
            e.contains(&format!(
                "127.0.0.1:{} did not answer within 0.8s",
                srv.port
            )),
            "{e}"
        );
        assert!(e.contains("QWEN3_SFT_READ_TIMEOUT"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[test]
fn hugging_face_layout_offline_mode_and_secrets() {
    let srv = serve(Mode::Normal);
    let root = tmp("hf");
    let mut cfg = config(srv.port, &root);
    cfg.hf_token = Some(Secret::new(TOKEN));
    let dir = resolve_model_with("Qwen/Qwen3-0.6B", Source::Hf, &cfg).unwrap();
    let repo = root.join("hf/models--Qwen--Qwen3-0.6B");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_model(&dir);
    let link = std::fs::read_link(dir.join("config.json")).unwrap();
    assert_eq!(link, Path::new("../../blobs/etag-config-json"));
    no_partials(&repo.join("blobs"));
    let log = srv.log.lock().unwrap().clone();
    assert_eq!(
        (log[0].method.as_str(), log[0].target.as_str()),
        ("HEAD", "/Qwen/Qwen3-0.6B/resolve/main/config.json")
    );
    assert!(log
        .iter()
        .all(|r| r.headers.get("authorization") == Some(&format!("Bearer {TOKEN}"))));
    // HF_HUB_OFFLINE: the cache answers; a repo not in it is a clear error, without network.
    cfg.hf_offline = true;
    cfg.hf_endpoint = format!("http://127.0.0.1:{}", closed_port());
    assert_eq!(
        resolve_model_with("Qwen/Qwen3-0.6B", Source::Hf, &cfg).unwrap(),
        dir
    );
    let e = format!(
        "{:#}",
        resolve_model_with("Qwen/Qwen3-1.7B", Source::Hf, &cfg).unwrap_err()
    );
    assert!(
        e.contains("HF_HUB_OFFLINE is set") && e.contains("config.json"),
        "{e}"
    );
    // The data set repository type.
    cfg.hf_offline = false;
    cfg.hf_endpoint = format!("http://127.0.0.1:{}", srv.port);
    let p = fetch_dataset(
        "krisfu/delicate_medical_r1_data",
        "r1_data_example.jsonl",
        Source::Hf,
        &cfg,
    )
    .unwrap();
    assert!(p.starts_with(
        root.join("hf/datasets--krisfu--delicate_medical_r1_data/snapshots")
            .join(COMMIT)
    ));
    // Tokens never show in Debug output or in errors.
    assert!(!format!("{cfg:?}").contains(TOKEN));
    let e = format!(
        "{:#}",
        resolve_model_with("nobody/missing", Source::Hf, &cfg).unwrap_err()
    );
    assert!(
        !e.contains(TOKEN) && e.contains("config.json not found"),
        "{e}"
    );
}

#[test]
fn names_that_are_neither_directories_nor_ids() {
    let cfg = config(closed_port(), &tmp("names"));
    for bad in ["./no/such/dir", "justaname", "a/b/c", "../x"] {
        let e = format!(
            "{:#}",
            resolve_model_with(bad, Source::Modelscope, &cfg).unwrap_err()
        );
        assert!(
            e.contains("neither an existing directory nor a hub id"),
            "{bad}: {e}"
        );
    }
}
