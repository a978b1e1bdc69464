//! The run-file format against goldens the real SDK wrote (`tests/golden/swanlab/`, regenerate
//! with `make swanlab-golden`): this crate decodes them to the SDK's own MessageToDict output and
//! re-encodes them to the identical bytes (framing, CRC-32, protobuf encoding). No Python needed.

mod swanlab_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prost::Message;
use qwen3_sft::log::swanlab::store::{StoreReader, StoreWriter};
use qwen3_sft::log::swanlab::{FinishState, Run};
use serde_json::{json, Value};
use swanlab_support::*;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/swanlab")
        .join(name)
}

/// Decodes an SDK-written file with this crate, compares with the SDK's own decoding, then
/// re-encodes every record with this crate's writer and demands the identical bytes.
fn check_golden(stem: &str) {
    let bytes = std::fs::read(golden(&format!("{stem}.swanlab"))).unwrap();
    let want: Vec<Value> =
        serde_json::from_slice(&std::fs::read(golden(&format!("{stem}.json"))).unwrap()).unwrap();
    let records = read_records(&golden(&format!("{stem}.swanlab")));
    assert_eq!(records.len(), want.len());
    for (i, (r, w)) in records.iter().zip(&want).enumerate() {
        let ours = pbjson::record(r);
        assert!(
            pbjson::same(w, &ours),
            "record {i} of {stem}: SDK {w}, ours {ours}"
        );
    }
    let mut writer = StoreWriter::new(Vec::new()).unwrap();
    for r in &records {
        writer.write(&r.encode_to_vec()).unwrap();
    }
    assert!(
        writer.into_inner() == bytes,
        "re-encoding {stem} did not reproduce the SDK's bytes"
    );
}

#[test]
fn golden_offline_run_round_trips_byte_for_byte() {
    check_golden("offline");
}

#[test]
fn golden_block_boundaries_round_trip_byte_for_byte() {
    check_golden("blocks");
    // The golden covers every chunk type and a zero-filled block tail.
    let bytes = std::fs::read(golden("blocks.swanlab")).unwrap();
    let mut kinds = BTreeSet::new();
    let mut i = 7;
    while i < bytes.len() {
        let left = 32768 - i % 32768;
        if left < 7 {
            assert!(bytes[i..i + left].iter().all(|b| *b == 0));
            kinds.insert(0);
            i += left;
            continue;
        }
        let len = u16::from_le_bytes([bytes[i + 4], bytes[i + 5]]) as usize;
        kinds.insert(bytes[i + 6]);
        i += 7 + len;
    }
    assert_eq!(kinds, BTreeSet::from([0, 1, 2, 3, 4]));
}

#[test]
fn corrupt_byte_is_detected() {
    let mut bytes = std::fs::read(golden("offline.swanlab")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let mut r = StoreReader::from_bytes(bytes).unwrap();
    let err = loop {
        match r.next_record() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("corruption went unnoticed"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn config_yaml_matches_the_sdk_bytes() {
    // The hyperparameters of tests/reference/swanlab_golden.py's offline run.
    let hp = json!({"learning_rate": 1e-4, "model": {"name": "Qwen/Qwen3-0.6B", "layers": 28}, "lora": true});
    let log_dir = tmp_dir("config-golden");
    let run = Run::start_resolved(&offline(&log_dir), &hp)
        .unwrap()
        .unwrap();
    let yaml = std::fs::read_to_string(run.dir().join("files/config.yaml")).unwrap();
    run.finish(FinishState::Finished).unwrap();
    assert_eq!(
        yaml,
        std::fs::read_to_string(golden("offline-config.yaml")).unwrap()
    );
}
