//! The loss plot: train and eval loss against step from `metrics.jsonl`, drawn with `plotters`
//! into a PNG. Text uses the DejaVu Sans font shipped in `assets/fonts/` (registered through
//! plotters' `ab_glyph` backend), so the plot renders the same on machines without fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::metrics;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if register_font("sans-serif", style, FONT).is_err() {
                eprintln!("plot: the embedded DejaVu Sans font failed to load");
            }
        }
    });
}

/// Draws `train/loss` and `eval/loss` against `step` from `metrics_jsonl` into `out_png`
/// (written under a temporary name, then renamed).
pub fn plot_losses(metrics_jsonl: &Path, out_png: &Path) -> Result<()> {
    let train = metrics::series(metrics_jsonl, "train/loss")?;
    let eval = metrics::series(metrics_jsonl, "eval/loss")?;
    if train.is_empty() && eval.is_empty() {
        bail!(
            "{} has no train/loss or eval/loss values to plot",
            metrics_jsonl.display()
        );
    }
    register();
    let all = train.iter().chain(&eval);
    let (x0, x1) = all.clone().fold((i64::MAX, i64::MIN), |(a, b), (s, _)| {
        (a.min(*s), b.max(*s))
    });
    let (y0, y1) = all.fold((f64::MAX, f64::MIN), |(a, b), (_, v)| {
        (a.min(*v), b.max(*v))
    });
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let (x1, y0, y1) = (x1.max(x0 + 1), (y0 - pad).max(0.0f64.min(y0)), y1 + pad);

    let file_name = out_png
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // BitMapBackend picks the encoder from the extension, so the temporary name ends in .png.
    let tmp = out_png.with_file_name(format!(".{file_name}.{}.tmp.png", std::process::id()));
    draw(&tmp, &train, &eval, (x0, x1), (y0, y1))
        .with_context(|| format!("drawing {}", out_png.display()))?;
    std::fs::rename(&tmp, out_png).with_context(|| format!("writing {}", out_png.display()))
}

type Range<T> = (T, T);

fn draw(
    path: &Path,
    train: &[(i64, f64)],
    eval: &[(i64, f64)],
    x: Range<i64>,
    y: Range<f64>,
) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Loss", ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    let train_color = RGBColor(31, 119, 180);
    let eval_color = RGBColor(214, 39, 40);
    if !train.is_empty() {
        chart
            .draw_series(LineSeries::new(
                train.iter().copied(),
                train_color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("train loss")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], train_color.stroke_width(2))
            });
    }
    if !eval.is_empty() {
        chart
            .draw_series(LineSeries::new(
                eval.iter().copied(),
                eval_color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("eval loss")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], eval_color.stroke_width(2))
            });
        chart
            .draw_series(eval.iter().map(|p| Circle::new(*p, 4, eval_color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
