//! The run-config loader (`config::RunConfig::load`): TOML text plus `--set` overrides. The input's
//! last line is also tried as a `--set KEY=VALUE`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qwen3_sft::config::RunConfig;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::write("run.toml", data);
    let _ = RunConfig::load(&path, &[]);
    let text = String::from_utf8_lossy(data);
    if let Some(last) = text.lines().last() {
        let _ = RunConfig::load(&path, &[last.to_string()]);
    }
});
