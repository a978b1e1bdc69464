//! `metrics.jsonl` and the loss plot end to end: a logged run, a resume that drops the steps
//! after the checkpoint, and the PNG drawn from the file, decoded and read back: both curves in
//! their colours, inside the plot area, their heights following the logged losses.

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
    let eval = series(m.path(), "eval/loss").unwrap();
    check_curves(&png, &train, &eval);
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

/// Train and eval curve colours of src/log/plot.rs.
const TRAIN_RGB: [u8; 3] = [31, 119, 180];
const EVAL_RGB: [u8; 3] = [214, 39, 40];

/// The decoded PNG: rows of RGB pixels.
struct Image {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Image {
    fn load(path: &Path) -> Image {
        let t = tch::vision::image::load(path).unwrap(); // [3, h, w] u8 (stb_image in libtch)
        let (h, w) = (t.size()[1] as usize, t.size()[2] as usize);
        let hwc = t.permute([1, 2, 0]).contiguous();
        let mut rgb = vec![0u8; w * h * 3];
        hwc.copy_data(&mut rgb, w * h * 3);
        Image { w, h, rgb }
    }

    /// For each column holding colour `c`: the middle row of its lowest run of such pixels
    /// (where a line crosses the column; the legend's samples sit higher up).
    fn lowest_run(&self, c: [u8; 3]) -> Vec<(usize, f64)> {
        let is = |x: usize, y: usize| self.rgb[(y * self.w + x) * 3..][..3] == c;
        (0..self.w)
            .filter_map(|x| {
                let bottom = (0..self.h).rev().find(|&y| is(x, y))?;
                let top = (0..=bottom).rev().take_while(|&y| is(x, y)).last()?;
                Some((x, (top + bottom) as f64 / 2.0))
            })
            .collect()
    }
}

/// Linear interpolation of a step-sorted series at `step`.
fn at(series: &[(i64, f64)], step: f64) -> f64 {
    let i = series
        .partition_point(|p| (p.0 as f64) < step)
        .clamp(1, series.len() - 1);
    let ((s0, v0), (s1, v1)) = (series[i - 1], series[i]);
    let t = ((step - s0 as f64) / (s1 - s0) as f64).clamp(0.0, 1.0);
    v0 + t * (v1 - v0)
}

/// Least-squares `row = a + b * loss` over `(loss, row)` points: (a, b).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let b = sxy / sxx;
    (my - b * mx, b)
}

/// Reads both curves back from the picture. The train line spans the x axis (its first and last
/// steps are the axis ends), so its leftmost and rightmost pixels give the step of each column;
/// where each curve crosses a column (the legend's samples sit above the curves, which end low)
/// must then lie on a line `row = a + b * loss` with `b < 0`: higher loss, higher up.
fn check_curves(png: &Path, train: &[(i64, f64)], eval: &[(i64, f64)]) {
    let img = Image::load(png);
    let train_px = img.lowest_run(TRAIN_RGB);
    let eval_px = img.lowest_run(EVAL_RGB);
    assert!(
        train_px.len() > 500 && eval_px.len() > 400,
        "curve pixels in {} columns (train) and {} (eval) of {}: nothing drawn?",
        train_px.len(),
        eval_px.len(),
        img.w
    );
    let (left, right) = (train_px[0].0, train_px[train_px.len() - 1].0);
    // The plot area: 20 px margin plus the 70 px y label area on the left, 20 px on the right.
    assert!(
        (85..=95).contains(&left) && (975..=985).contains(&right),
        "train curve spans columns {left}..={right}"
    );
    let rows = train_px.iter().chain(&eval_px).map(|p| p.1);
    let (top, bottom) = (
        rows.clone().fold(f64::MAX, f64::min),
        rows.fold(0.0, f64::max),
    );
    assert!(
        top > 40.0 && bottom < 530.0,
        "curves span rows {top}..={bottom}"
    );
    let (s0, s1) = (train[0].0 as f64, train[train.len() - 1].0 as f64);
    let step = |x: usize| s0 + (x - left) as f64 / (right - left) as f64 * (s1 - s0);
    // (logged loss at the column's step, row of the curve there), within the series' steps.
    let points = |px: &[(usize, f64)], data: &[(i64, f64)]| -> Vec<(f64, f64)> {
        let (e0, e1) = (data[0].0 as f64, data[data.len() - 1].0 as f64);
        px.iter()
            .filter(|&&(x, _)| (e0..=e1).contains(&step(x)))
            .map(|&(x, y)| (at(data, step(x)), y))
            .collect()
    };
    let (train_pts, eval_pts) = (points(&train_px, train), points(&eval_px, eval));
    // One y axis for both: the train curve's fit must place the eval curve too. Rendering is
    // deterministic; the residuals come from the 2 px lines, their joins and the eval markers.
    let (a, b) = fit(&train_pts);
    assert!(
        b < -100.0,
        "{b:.1} px per unit of loss (higher loss must be higher up)"
    );
    for (name, pts, tol) in [("train", &train_pts, 4.0), ("eval", &eval_pts, 6.0)] {
        let worst = pts
            .iter()
            .map(|(loss, row)| (row - (a + b * loss)).abs())
            .fold(0.0, f64::max);
        println!(
            "{name}: {} columns, row = {a:.1} {b:+.1} * loss, worst residual {worst:.2} px",
            pts.len()
        );
        assert!(
            worst <= tol,
            "{name}: a column is {worst:.2} px off its logged loss"
        );
    }
}
