//! What the tool must never do to a user's work, run as a user would (the binary on a tiny
//! random model with the real Qwen3 tokenizer): outputs that replace nothing they did not write,
//! signals that leave a checkpoint to resume exactly, and bad values that get a one-line error.
//! `QWEN3_SFT_BIN` runs the same checks against another build (e.g. an earlier version).
mod common;
use common::{root, tokenizer_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let exe = std::env::var("QWEN3_SFT_BIN").unwrap_or(env!("CARGO_BIN_EXE_qwen3-sft").into());
    Command::new(exe)
}

/// A scratch directory, removed when the test that made it passes (kept for a look when it fails).
struct Tmp(PathBuf);

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Tmp {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("qwen3-sft-safety-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

/// A config for `random:tiny` on the first 12 sample rows; `out` is the run directory.
fn config(dir: &Path, out: &Path, extra: &str) -> PathBuf {
    let rows: Vec<String> =
        std::fs::read_to_string(root().join("data/sample/r1_data_example.jsonl"))
            .unwrap()
            .lines()
            .take(12)
            .map(String::from)
            .collect();
    std::fs::write(dir.join("train.jsonl"), rows.join("\n") + "\n").unwrap();
    let text = format!(
        "[model]\npath = \"random:tiny\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n\
         [data]\ntrain_file = \"{}\"\ntokenizer = \"{}\"\nmax_length = 96\n\
         [train]\nmethod = \"full\"\noutput_dir = \"{}\"\nmax_steps = 6\nbatch_size = 1\ngrad_accum = 2\n\
         lr = 1e-3\nlogging_steps = 1\nsave_steps = 3\npredictions = 0\nshuffle = true\n\
         [lora]\nr = 4\nalpha = 8\ndropout = 0.1\n[swanlab]\nmode = \"disabled\"\n{extra}",
        dir.join("train.jsonl").display(),
        tokenizer_dir().display(),
        out.display()
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(c: &mut Command) -> Output {
    c.output().expect("running qwen3-sft")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(c: &mut Command) -> Output {
    let o = run(c);
    assert!(o.status.success(), "failed: {}", stderr(&o));
    o
}

fn fails_with(c: &mut Command, needle: &str) -> String {
    let o = run(c);
    let e = stderr(&o);
    assert!(
        !o.status.success(),
        "succeeded, expected an error with `{needle}`"
    );
    assert!(e.contains(needle), "expected `{needle}` in: {e}");
    let panic = ["panicked", "Exception raised from", "RUST_BACKTRACE"];
    assert!(
        !panic.iter().any(|p| e.contains(p)),
        "a panic, not an error: {e}"
    );
    e
}

fn train(cfg: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("train").arg("--config").arg(cfg).args(args);
    c
}

#[test]
fn train_never_mixes_runs() {
    let d = tmp("mix");
    let out = d.join("run");
    let cfg = config(&d, &out, "");
    ok(&mut train(&cfg, &["--set", "train.max_steps=3"]));
    assert!(out.join("checkpoint-3").is_dir());
    fails_with(&mut train(&cfg, &[]), "--resume continues it");
    assert!(
        out.join("checkpoint-3").is_dir(),
        "the earlier run was touched"
    );
    ok(&mut train(
        &cfg,
        &[
            "--overwrite",
            "--set",
            "train.max_steps=2",
            "--set",
            "train.save_steps=2",
        ],
    ));
    assert!(
        !out.join("checkpoint-3").exists(),
        "--overwrite kept the old run's checkpoint"
    );
    assert!(out.join("checkpoint-2").is_dir());
    // a directory holding files no run wrote is never used
    let foreign = d.join("notes");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.txt"), "mine").unwrap();
    let set = format!("train.output_dir={}", foreign.display());
    fails_with(
        &mut train(&cfg, &["--overwrite", "--set", &set]),
        "which no training run wrote",
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("thesis.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn merge_and_split_never_overwrite_inputs() {
    let d = tmp("merge");
    let cfg = config(&d, &d.join("m"), "");
    ok(&mut train(&cfg, &["--set", "train.max_steps=1"]));
    let base = d.join("m/final");
    let lora_out = format!("train.output_dir={}", d.join("a").display());
    let base_path = format!("model.path=\"{}\"", base.display());
    ok(&mut train(
        &cfg,
        &[
            "--set",
            "train.method=lora",
            "--set",
            &lora_out,
            "--set",
            &base_path,
            "--set",
            "train.max_steps=1",
        ],
    ));
    let adapter = d.join("a/final");
    let merge = |out: &Path, extra: &[&str]| {
        let mut c = bin();
        c.args(["merge", "--device", "cpu", "--model"])
            .arg(&base)
            .arg("--adapter")
            .arg(&adapter);
        c.arg("--output").arg(out).args(extra);
        c
    };
    // the parent of the base model, the adapter's run, an unrelated folder: refused, untouched
    fails_with(
        &mut merge(&d.join("m"), &["--overwrite"]),
        "would overwrite the base model",
    );
    fails_with(
        &mut merge(&d.join("a"), &["--overwrite"]),
        "would overwrite the adapter",
    );
    std::fs::create_dir_all(d.join("other")).unwrap();
    std::fs::write(d.join("other/keep.txt"), "x").unwrap();
    fails_with(
        &mut merge(&d.join("other"), &["--overwrite"]),
        "was not written by qwen3-sft merge",
    );
    assert!(
        base.join("model.safetensors").is_file()
            && adapter.join("adapter_model.safetensors").is_file()
    );
    assert!(d.join("other/keep.txt").is_file() && d.join("m/checkpoint-1").is_dir());
    // its own earlier merge: only with --overwrite
    ok(&mut merge(&d.join("merged"), &[]));
    fails_with(&mut merge(&d.join("merged"), &[]), "pass --overwrite");
    ok(&mut merge(&d.join("merged"), &["--overwrite"]));
    // split into the directory of its own input
    let input = d.join("train.jsonl");
    let before = std::fs::read(&input).unwrap();
    let mut c = bin();
    c.args(["split", "--input"])
        .arg(&input)
        .arg("--output_dir")
        .arg(&*d)
        .args(["--train_ratio", "0.5"]);
    fails_with(&mut c, "would overwrite the input");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "split changed its input"
    );
}

#[test]
fn bad_values_get_one_line_errors() {
    let d = tmp("values");
    let cfg = config(&d, &d.join("run"), "");
    let cases: &[(&str, &str)] = &[
        ("train.epochs=nan", "[train] epochs: NaN"),
        ("train.epochs=inf", "[train] epochs: inf"),
        ("train.output_dir=\"\"", "train.output_dir is empty"),
        ("train.batch_size=0", "[train] batch_size"),
        ("lora.dropout=1.0", "[lora] dropout"),
        ("train.method=\"lorra\"", "[train] method"),
        ("train.optim=\"adam8bit\"", "[train] optim"),
        ("model.dtype=\"fp16\"", "[model] dtype"),
        ("model.device=\"tpu\"", "[model] device"),
        ("data.max_length=100000", "max_position_embeddings"),
        ("train.lr=1e-3\nevil=1", "spans lines"),
    ];
    for (set, needle) in cases {
        let e = fails_with(&mut train(&cfg, &["--set", set]), needle);
        assert_eq!(e.trim().lines().count(), 1, "{set}: not one line: {e}");
    }
    let mut c = bin();
    c.args([
        "eval",
        "--device",
        "cpu",
        "--model",
        "random:tiny",
        "--batch-size",
        "0",
        "--data",
    ])
    .arg(d.join("train.jsonl"));
    fails_with(&mut c, "--batch-size");
}

/// Kills a run at `after` seconds with `signal`, resumes it, and returns its train/loss values.
fn interrupted_losses(d: &Path, signal: &str, after: f64) -> Vec<(i64, f64)> {
    let out = d.join("run");
    let cfg = config(d, &out, "");
    let mut child = train(&cfg, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs_f64(after));
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    if out.join("final").exists() {
        return losses(&out); // finished before the signal
    }
    let code = status.code();
    match signal {
        "KILL" => assert_eq!(code, None, "SIGKILL: {status:?}"),
        _ => assert_eq!(code, Some(130), "SIG{signal}: a checkpoint and exit 130"),
    }
    let resumed = run(&mut train(&cfg, &["--resume"]));
    if !resumed.status.success() {
        // killed before its first checkpoint: nothing to resume, a fresh start over it is refused
        // only when an earlier run is there
        let e = stderr(&resumed);
        assert!(
            e.contains("no complete checkpoint"),
            "{signal} at {after:.1}s: resume failed: {e}"
        );
        ok(&mut train(&cfg, &["--overwrite"]));
    }
    let temps: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    assert!(temps.is_empty(), "{signal} at {after:.1}s left {temps:?}");
    losses(&out)
}

fn losses(out: &Path) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some((v["step"].as_i64()?, v.get("train/loss")?.as_f64()?))
        })
        .collect()
}

/// Signals at random points of a short run (SIGINT, SIGTERM, SIGHUP, SIGKILL, during and between
/// saves), each followed by `--resume`: the losses equal an uninterrupted run's, no temporary
/// directory is left. `QWEN3_SFT_KILL_POINTS` sets how many (default 4).
#[test]
fn signals_at_random_points_resume_exactly() {
    let d = tmp("signals-ref");
    let reference = {
        let cfg = config(&d, &d.join("run"), "");
        let t = std::time::Instant::now();
        ok(&mut train(&cfg, &[]));
        (losses(&d.join("run")), t.elapsed().as_secs_f64())
    };
    let (want, seconds) = reference;
    assert_eq!(want.len(), 6);
    let points: usize = std::env::var("QWEN3_SFT_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut seed = 0x2545F4914F6CDD1Du64 ^ std::process::id() as u64;
    for i in 0..points {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let signal = ["INT", "TERM", "HUP", "KILL"][i % 4];
        let after = 1.0 + (seed % 1000) as f64 / 1000.0 * seconds * 0.9;
        let d = tmp(&format!("signals-{i}"));
        let got = interrupted_losses(&d, signal, after);
        let steps: Vec<i64> = got.iter().map(|x| x.0).collect();
        assert_eq!(
            steps,
            (1..=6).collect::<Vec<_>>(),
            "SIG{signal} at {after:.1}s: steps {steps:?}"
        );
        for ((s, a), (_, b)) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs(),
                "SIG{signal} at {after:.1}s, step {s}: {a} vs {b}"
            );
        }
        eprintln!("SIG{signal} at {after:.2}s of {seconds:.1}s: resumed, losses equal");
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn resume_refuses_another_run_and_says_what_changed() {
    let d = tmp("resume");
    let out = d.join("run");
    let cfg = config(&d, &out, "");
    ok(&mut train(&cfg, &["--set", "train.max_steps=3"]));
    let e = fails_with(
        &mut train(&cfg, &["--resume", "--set", "train.method=lora"]),
        "train.method full, this run has lora",
    );
    assert!(e.contains("checkpoint-3"), "{e}");
    let other = d.join("other.jsonl");
    let rows = std::fs::read_to_string(d.join("train.jsonl")).unwrap();
    std::fs::write(&other, rows.lines().rev().collect::<Vec<_>>().join("\n")).unwrap();
    let set = format!("data.train_file={}", other.display());
    let e = fails_with(
        &mut train(&cfg, &["--resume", "--set", &set]),
        "training data sha256",
    );
    assert!(
        e.contains("train.jsonl") && e.contains("other.jsonl"),
        "{e}"
    );
    fails_with(
        &mut train(&cfg, &["--resume", "--set", "model.path=random:demo"]),
        "model.path random:tiny, this run has random:demo",
    );
    let o = ok(&mut train(
        &cfg,
        &["--resume", "--set", "train.max_steps=4"],
    ));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("now ends at step 4 (it was to end at 3)"),
        "{said}"
    );
    let state = std::fs::read_to_string(out.join("checkpoint-4/trainer_state.json")).unwrap();
    assert!(
        state.contains("\"max_steps\": 4"),
        "stale trainer_state.json: {state}"
    );
}

/// A model directory from a 1-step run, with `edit` applied to its config.json.
fn model_dir(d: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let base = d.join("m/final");
    if !base.exists() {
        let cfg = config(d, &d.join("m"), "");
        ok(&mut train(&cfg, &["--set", "train.max_steps=1"]));
    }
    let dir = d.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&base).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
    dir
}

#[test]
fn bad_models_and_devices_get_one_line_errors() {
    let d = tmp("models");
    let data = d.join("train.jsonl");
    let eval = |model: &Path, extra: &[&str]| {
        let mut c = bin();
        c.args(["eval", "--model"])
            .arg(model)
            .arg("--data")
            .arg(&data)
            .args(extra);
        if !extra.contains(&"--device") {
            c.args(["--device", "cpu"]);
        }
        c
    };
    let negative = model_dir(&d, "negative", |v| v["hidden_size"] = (-64).into());
    fails_with(&mut eval(&negative, &[]), "`hidden_size` is -64");
    let small = model_dir(&d, "small-vocab", |v| v["vocab_size"] = 1000.into());
    fails_with(
        &mut eval(&small, &[]),
        "has vocab_size 1000 but its tokenizer has 151669 ids",
    );
    let cfg = config(&d, &d.join("run"), "");
    let set = format!("model.path=\"{}\"", small.display());
    fails_with(&mut train(&cfg, &["--set", &set]), "has vocab_size 1000");
    // an integer tensor where a weight belongs
    let ints = model_dir(&d, "int-weights", |_| {});
    let file = ints.join("model.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(&file).unwrap();
    tensors[0].1 = tensors[0].1.to_kind(tch::Kind::Int64);
    let named: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::Tensor::write_safetensors(&named, &file).unwrap();
    fails_with(&mut eval(&ints, &[]), "not a floating-point weight");
    // devices this machine does not have
    let good = model_dir(&d, "good", |_| {});
    if !tch::Cuda::is_available() {
        fails_with(
            &mut eval(&good, &["--device", "cuda:0"]),
            "libtorch sees no CUDA GPU",
        );
        fails_with(
            &mut train(&cfg, &["--set", "model.device=\"cuda:1\""]),
            "libtorch sees no CUDA GPU",
        );
    }
    fails_with(
        &mut eval(&good, &["--max-length", "8"]),
        "no label token to score",
    );
    let mut c = bin();
    c.args(["generate", "--device", "cpu", "--prompt", "hi", "--model"])
        .arg(&good);
    fails_with(
        c.args(["--max-new-tokens", "100000"]),
        "exceeds the model's max_position_embeddings",
    );
}

/// A second signal while the first one's checkpoint is being written waits for it: exit 130, a
/// complete checkpoint that resumes, no temporary directory left. The save is caught by watching
/// for its `.checkpoint-N.tmp-PID` directory (tried a few times if a save is too quick to catch).
#[test]
fn second_signal_during_a_save_waits_for_it() {
    let d = tmp("second-signal");
    let out = d.join("run");
    let cfg = config(&d, &out, "");
    for attempt in 0..5 {
        let _ = std::fs::remove_dir_all(&out);
        let child = train(
            &cfg,
            &[
                "--set",
                "train.max_steps=10000",
                "--set",
                "train.save_steps=10000",
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let kill = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
        };
        let metrics = out.join("metrics.jsonl");
        while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        kill("-TERM");
        let t = std::time::Instant::now();
        let saving = loop {
            let tmp = std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".tmp-"));
            if tmp || t.elapsed().as_secs() > 60 {
                break tmp;
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        };
        if saving {
            kill("-INT");
        }
        let o = child.wait_with_output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        if !saving || !e.contains("a checkpoint is being written") {
            eprintln!("attempt {attempt}: the save was over before the second signal; again");
            continue;
        }
        assert_eq!(o.status.code(), Some(130), "{e}");
        assert!(
            !e.contains("panicked") && !e.contains("Exception raised"),
            "{e}"
        );
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp-")), "left {names:?}");
        let step: u64 = names
            .iter()
            .find_map(|n| n.strip_prefix("checkpoint-")?.parse().ok())
            .unwrap_or_else(|| panic!("no checkpoint in {names:?}: {e}"));
        let more = format!("train.max_steps={}", step + 1);
        ok(&mut train(&cfg, &["--resume", "--set", &more]));
        assert!(out.join("final").exists());
        return;
    }
    panic!("in 5 attempts no second signal was seen to wait for the save it arrived in");
}
