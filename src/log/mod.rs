//! Experiment logging: SwanLab run files and cloud upload (`swanlab`), the local `metrics.jsonl`
//! log (`metrics`) and the loss plot (`plot`).
pub mod metrics;
pub mod plot;
pub mod swanlab;

pub use plot::plot_losses;
