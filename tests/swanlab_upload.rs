//! The native cloud uploader against a recording loopback server: what it sends, and what a
//! failing or hanging server costs the training loop (the SDK comparisons are in swanlab_sdk.rs).

mod swanlab_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use qwen3_sft::log::swanlab::{FinishState, Run};
use serde_json::json;
use swanlab_support::server::{Fault, Server};
use swanlab_support::spec::*;
use swanlab_support::*;

#[test]
fn uploader_sends_the_run() {
    let server = Server::start();
    let log_dir = tmp_dir("upload-basic");
    let spec = spec();
    let run = Run::start_resolved(&cloud(&server, &log_dir), &spec["config"])
        .unwrap()
        .unwrap();
    log_spec(&run, &spec);
    run.finish(FinishState::Finished).unwrap();
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .all(|r| r.status < 300 || r.path.starts_with("/api/project/tester/")),
        "{reqs:#?}"
    );
    let login = &reqs[0];
    assert_eq!(
        (login.path.as_str(), login.header("authorization")),
        ("/api/login/api_key", Some(KEY))
    );
    assert!(
        reqs[1..]
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "the key went beyond the login request"
    );
    assert_eq!(accepted_scalars(&reqs), expected_scalars(&spec));
    let puts: BTreeSet<String> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/upload/"))
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    let texts: BTreeSet<String> = spec["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(puts, texts);
    let state = reqs.last().unwrap();
    assert_eq!(
        (state.method.as_str(), state.path.as_str()),
        (
            "PUT",
            "/api/project/tester/qwen3-sft-test/runs/exp-cuid/state"
        )
    );
    assert_eq!(state.json()["state"], "FINISHED");
}

#[test]
fn flaky_server_costs_the_caller_little() {
    let server = Server::start();
    let log_dir = tmp_dir("flaky");
    let spec = spec();
    let run = Run::start_resolved(&cloud(&server, &log_dir), &spec["config"])
        .unwrap()
        .unwrap();
    let t0 = Instant::now();
    // 3 s of HTTP 500, then 3 s where every request stalls until the window closes.
    server.fault(Fault {
        from: t0,
        until: t0 + Duration::from_secs(3),
        stall: false,
        setup_ok: true,
    });
    server.fault(Fault {
        from: t0 + Duration::from_secs(3),
        until: t0 + Duration::from_secs(6),
        stall: true,
        setup_ok: true,
    });
    let mut in_calls = Duration::ZERO;
    let mut worst = Duration::ZERO;
    let mut expected = BTreeMap::new();
    for step in 1..=25i64 {
        let values = [
            ("train/loss", 1.0 / step as f64),
            ("train/grad_norm", step as f64),
        ];
        let t = Instant::now();
        run.scalars(step, &values);
        run.console(&format!("step {step}"));
        let dt = t.elapsed();
        in_calls += dt;
        worst = worst.max(dt);
        for (k, v) in values {
            expected.insert((k.to_string(), step), wire(v));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let t = Instant::now();
    run.finish(FinishState::Finished).unwrap();
    let finish = t.elapsed();
    println!("flaky server: {in_calls:?} in 50 logging calls (worst {worst:?}), finish took {finish:?}, run lasted {:?}", t0.elapsed());
    // The calls only queue (about 1 ms for all 50 measured on 2 busy cores); one that waited on
    // the stalled server would sit out the rest of its 3 s window. The bound stays in seconds so
    // that a loaded machine's scheduling pauses do not reach it.
    assert!(in_calls < Duration::from_secs(1), "{in_calls:?}");
    assert!(finish < Duration::from_secs(5), "{finish:?}");
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.status == 500),
        "the fault window was missed"
    );
    assert_eq!(accepted_scalars(&reqs), expected);
    assert_eq!(reqs.last().unwrap().json()["state"], "FINISHED");
}

/// A cloud run whose server stalls every request from the start: `finish` returns within its
/// 2 s timeout (plus margin) and the run directory is left for `swanlab sync`.
fn dead_server_run(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let server = Server::start();
    let log_dir = tmp_dir(tag);
    let spec = spec();
    let mut s = cloud(&server, &log_dir);
    s.finish_timeout = Duration::from_secs(2);
    let run = Run::start_resolved(&s, &spec["config"]).unwrap().unwrap();
    let now = Instant::now();
    server.fault(Fault {
        from: now,
        until: now + Duration::from_secs(3600),
        stall: true,
        setup_ok: true,
    });
    log_spec(&run, &spec);
    let dir = run.dir().to_path_buf();
    let t = Instant::now();
    run.finish(FinishState::Finished).unwrap();
    let finish = t.elapsed();
    println!("dead server: finish returned after {finish:?}");
    assert!(finish < Duration::from_secs(4), "{finish:?}");
    (dir, log_dir)
}

#[test]
fn dead_server_bounds_finish() {
    dead_server_run("dead");
}

#[test]
#[ignore = "live reference (make test)"]
fn swanlab_sync_recovers_a_dead_server_run() {
    let py = python("swanlab_sync_recovers_a_dead_server_run");
    let (dir, log_dir) = dead_server_run("dead-sync");
    let healthy = Server::start();
    let out = swanlab_sync(&py, &healthy, &dir, &log_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        accepted_scalars(&healthy.requests()),
        expected_scalars(&spec())
    );
}

/// Child side of `api_key_never_leaks`: one cloud run against `SWANLAB_TEST_CHILD_API_HOST`.
#[test]
#[ignore = "helper process for api_key_never_leaks"]
fn key_child_run() {
    let (Ok(host), Ok(dir)) = (
        std::env::var("SWANLAB_TEST_CHILD_API_HOST"),
        std::env::var("SWANLAB_TEST_CHILD_LOG_DIR"),
    ) else {
        return;
    };
    let toml = format!("mode = \"cloud\"\nexperiment = \"exp\"\nlog_dir = {dir:?}");
    let mut s = settings(
        &toml,
        &[("SWANLAB_API_HOST", &host), ("SWANLAB_API_KEY", KEY)],
    );
    let ms = |var: &str, default: u64| {
        let v = std::env::var(var).ok().and_then(|v| v.parse().ok());
        Duration::from_millis(v.unwrap_or(default))
    };
    s.start_timeout = ms("SWANLAB_TEST_CHILD_START_MS", 3000);
    s.finish_timeout = ms("SWANLAB_TEST_CHILD_FINISH_MS", 3000);
    let run = Run::start_resolved(&s, &json!({"lr": 1e-4}))
        .unwrap()
        .unwrap();
    run.scalars(1, &[("train/loss", 1.0)]);
    if let Err(e) = run.finish(FinishState::Crashed("boom".into())) {
        eprintln!("finish error: {e:#}");
    }
}

#[test]
fn api_key_never_leaks_and_the_url_is_printed() {
    for scenario in ["healthy", "rejected", "failing", "late"] {
        let server = Server::start();
        match scenario {
            "rejected" => server.login_status(401),
            "failing" | "late" => {
                // "late": login fails for 1.5 s, so the run starts before its URL is known.
                let now = Instant::now();
                let secs = if scenario == "late" { 1.5 } else { 3600.0 };
                server.fault(Fault {
                    from: now,
                    until: now + Duration::from_secs_f64(secs),
                    stall: false,
                    setup_ok: false,
                });
            }
            _ => {}
        }
        let (start_ms, finish_ms) = if scenario == "late" {
            ("200", "10000")
        } else {
            ("3000", "3000")
        };
        let log_dir = tmp_dir(&format!("key-{scenario}"));
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "key_child_run",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SWANLAB_TEST_CHILD_API_HOST", server.url())
            .env("SWANLAB_TEST_CHILD_START_MS", start_ms)
            .env("SWANLAB_TEST_CHILD_FINISH_MS", finish_ms)
            .env("SWANLAB_TEST_CHILD_LOG_DIR", &log_dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains(KEY),
            "{scenario}: the API key was printed:\n{text}"
        );
        let mut stack = vec![log_dir.clone()];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(
                    !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                    "{scenario}: key written to {}",
                    p.display()
                );
            }
        }
        let dir = run_dir(&log_dir);
        match scenario {
            "healthy" => assert!(
                text.contains(&format!(
                    "View run exp at {}/@tester/qwen3-sft-medical/runs/exp-slug",
                    server.url()
                )),
                "{text}"
            ),
            "rejected" => assert!(
                text.contains("HTTP 401") && text.contains("swanlab sync"),
                "{text}"
            ),
            "late" => {
                let url = format!("{}/@tester/qwen3-sft-medical/runs/exp-slug", server.url());
                // Timing-dependent: on a loaded machine the late server can still answer inside the
                // start wait, and then the URL is printed the ordinary way.
                if text.contains("still connecting") {
                    assert!(
                        text.contains(&format!("connected; view run exp at {url}")),
                        "{text}"
                    );
                } else {
                    assert!(text.contains(&format!("View run exp at {url}")), "{text}");
                }
                let reqs = server.requests();
                assert_eq!(reqs.last().unwrap().json()["state"], "CRASHED", "{reqs:#?}");
            }
            _ => assert!(
                text.contains(&format!(
                    "swanlab sync -h {} {}",
                    server.url(),
                    dir.display()
                )),
                "{text}"
            ),
        }
    }
}
