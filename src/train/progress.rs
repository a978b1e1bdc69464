//! What a person watching a run sees: the progress bar (step, loss, learning rate, tokens/s,
//! memory) and the logged values printed above it, plus the window of steps a logged value
//! averages over.
use super::memory;
use indicatif::{ProgressBar, ProgressStyle};

/// The steps since the last `train/*` log line.
#[derive(Default)]
pub struct LogWindow {
    losses: Vec<f64>,
    tokens: i64,
    seconds: f64,
    /// Of the window's last step, as the Trainer logs them.
    pub grad_norm: f64,
    pub lr: f64,
}

impl LogWindow {
    pub fn add(&mut self, loss: f64, tokens: i64, seconds: f64, grad_norm: f64, lr: f64) {
        self.losses.push(loss);
        self.tokens += tokens;
        self.seconds += seconds;
        self.grad_norm = grad_norm;
        self.lr = lr;
    }
    pub fn mean_loss(&self) -> f64 {
        self.losses.iter().sum::<f64>() / self.losses.len().max(1) as f64
    }
    pub fn tokens_per_sec(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }
}

pub struct Progress {
    bar: ProgressBar,
    /// A rank other than 0 of a distributed job: no bar, no lines.
    quiet: bool,
}

impl Progress {
    pub fn new(total: i64, pos: i64, quiet: bool) -> Progress {
        if quiet {
            return Progress {
                bar: ProgressBar::hidden(),
                quiet,
            };
        }
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_position(pos as u64);
        Progress { bar, quiet }
    }

    pub fn stepped(&self, step: i64, loss: f64, lr: f64, tokens_per_sec: f64) {
        self.bar.set_position(step as u64);
        self.bar.set_message(format!(
            "loss {loss:.4} lr {lr:.2e} {tokens_per_sec:.0} tok/s {}",
            memory::rss_string()
        ));
    }

    /// `step N: key value, ...` above the bar in a terminal, or plainly on stdout when the bar is
    /// hidden (a pipe or a file), where indicatif would drop it.
    pub fn say(&self, step: i64, values: &[(&str, f64)]) {
        if self.quiet {
            return;
        }
        let line = values
            .iter()
            .map(|(k, v)| format!("{k} {v:.4e}"))
            .collect::<Vec<_>>()
            .join(", ");
        let line = format!("step {step}: {line}");
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
