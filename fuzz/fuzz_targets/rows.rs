//! The JSONL / JSON-array row reader (`data::rows::read_rows`): any bytes give rows or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qwen3_sft::data::rows::read_rows;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    // both readers: the extension decides (`.jsonl` is always JSON Lines)
    for name in ["rows.jsonl", "rows.json"] {
        let path = scratch::write(name, data);
        let _ = read_rows(&path, false);
        let _ = read_rows(&path, true);
    }
});
