//! Device-to-host reads, counted. On CUDA every read of a tensor's value waits for all the work
//! queued before it, so a training step that reads per layer or per parameter leaves the GPU
//! idle between kernels. The training step reads through these functions only, and
//! `tests/host_sync.rs` counts the reads of each optimizer step (they must not grow with the
//! number of layers). The counter is per thread: the step runs on the caller's thread.
use std::cell::Cell;
use tch::Tensor;

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// Device-to-host reads made on this thread so far.
pub fn reads() -> u64 {
    READS.with(Cell::get)
}

fn count() {
    READS.with(|c| c.set(c.get() + 1));
}

/// The values of a small tensor (any shape, any float dtype) as f64, in one read.
pub fn values(t: &Tensor) -> Vec<f64> {
    count();
    let flat = t.detach().to_kind(tch::Kind::Double).reshape([-1]);
    Vec::<f64>::try_from(&flat.to_device(tch::Device::Cpu)).expect("a double tensor reads back")
}

/// A scalar's value, in one read.
pub fn scalar(t: &Tensor) -> f64 {
    values(t)[0]
}
