//! `metrics.jsonl` and the loss plot end to end: a logged run, a resume that drops the steps
//! after the checkpoint, and the PNG drawn from the file.

use std::path::Path;

use qwen3_sft::log::metrics::{series, MetricsLog};
use qwen3_sft::log::plot_losses;

fn out_dir(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn train_loss(step: i64) -> f64 {
    2.2 * (-(step as f64) / 300.0).exp() + 0.6 + 0.05 * ((step as f64) / 7.0).sin()
}

#[test]
fn metrics_resume_and_plot() {
    let dir = out_dir("metrics-plot");
    let mut m = MetricsLog::create(&dir).unwrap();
    for step in (10..=600).step_by(10) {
        let row = [
            ("epoch", step as f64 / 541.0),
            ("train/loss", train_loss(step)),
            ("train/grad_norm", 1.2),
            ("train/learning_rate", 1e-4),
        ];
        m.log(step, &row).unwrap();
        if step % 100 == 0 {
            m.log(
                step,
                &[
                    ("epoch", step as f64 / 541.0),
                    ("eval/loss", train_loss(step) + 0.15),
                ],
            )
            .unwrap();
        }
    }
    drop(m);
    // Resume from the step-400 checkpoint: rows after it are logged again by the resumed run.
    let mut m = MetricsLog::resume(&dir, 400).unwrap();
    assert_eq!(
        series(m.path(), "train/loss").unwrap().last().unwrap().0,
        400
    );
    for step in (410..=1080).step_by(10) {
        m.log(
            step,
            &[
                ("epoch", step as f64 / 541.0),
                ("train/loss", train_loss(step)),
            ],
        )
        .unwrap();
        if step % 100 == 0 {
            m.log(step, &[("eval/loss", train_loss(step) + 0.15)])
                .unwrap();
        }
    }
    let train = series(m.path(), "train/loss").unwrap();
    let steps: Vec<i64> = train.iter().map(|p| p.0).collect();
    assert_eq!(
        steps,
        (10..=1080).step_by(10).collect::<Vec<_>>(),
        "each step exactly once after the resume"
    );
    assert_eq!(series(m.path(), "eval/loss").unwrap().len(), 10);

    let png = dir.join("loss.png");
    plot_losses(m.path(), &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1000, 600));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "{\"step\":1,\"train/grad_norm\":1.0}\n").unwrap();
    let err = plot_losses(&empty, &dir.join("none.png")).unwrap_err();
    assert!(
        err.to_string().contains("no train/loss or eval/loss"),
        "{err}"
    );
}
