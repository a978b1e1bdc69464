//! The safetensors reader (`model::weights::for_each_tensor`): header, dtypes, shapes and offsets
//! from any bytes give tensors or an error; each tensor is read whole (a sum) to touch its bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qwen3_sft::model::weights::for_each_tensor;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::write("model.safetensors", data);
    let _ = for_each_tensor(&path, |_, t| {
        let _ = t.f_sum(tch::Kind::Double);
        Ok(())
    });
});
