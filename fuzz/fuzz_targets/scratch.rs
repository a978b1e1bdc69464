//! One scratch file per fuzzing process: the parsers under test read paths, as users give them.
use std::path::PathBuf;

pub fn write(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3-sft-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}
