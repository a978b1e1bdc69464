//! Training: the one module that joins model, data and logging. `trainer` holds the loop; the
//! other files are its parts (loss head, layer recomputation, the optimizer (AdamW or AdamW8bit),
//! checkpoints, memory budget, progress display, evaluation loss and answer quality (`predict`),
//! what a run loads first).
pub mod adamw8bit;
pub mod adamw_kernel;
pub mod checkpoint;
pub mod dist;
pub mod eval;
pub mod loss;
pub mod memory;
pub mod optim;
pub mod optimizer;
pub mod predict;
pub mod progress;
pub mod recompute;
pub mod setup;
pub mod trainer;

pub use trainer::{train, Outcome, Resume, Start, Trainer};
