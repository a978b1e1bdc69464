"""Regenerates the committed SwanLab goldens with the real SDK (swanlab==0.10.3), no network.

Usage: swanlab_golden.py OUT_DIR
Writes
  offline.swanlab / offline.json      a run file from swanlab.init(mode="offline") + log + finish,
                                      and its records as MessageToDict gives them
                                      (doubles as repr() strings, see exact_floats);
  offline-config.yaml                 that run's files/config.yaml;
  blocks.swanlab / blocks.json        records written by the SDK's own DataStoreWriter that cross
                                      32 KiB blocks: FIRST/MIDDLE/LAST chunks and a zero-filled
                                      block tail (fewer than 7 bytes left).
`cargo test --test swanlab` decodes both with this crate's reader and re-encodes them with its
writer, byte for byte.
"""

import glob
import json
import os
import shutil
import sys
import tempfile

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from swanlab.proto.swanlab.record.v1.record_pb2 import Record
from swanlab.proto.swanlab.terminal.v1.log_pb2 import LogLevel, LogRecord
from swanlab.sdk.internal.core_python.store import (
    LEVELDBLOG_BLOCK_LEN,
    LEVELDBLOG_HEADER_LEN,
    DataStoreReader,
    DataStoreWriter,
)



def exact_floats(obj):
    """Doubles as repr() strings: JSON readers (serde_json by default) may round a float's last
    bit, and the tests compare values exactly."""
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: exact_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [exact_floats(v) for v in obj]
    return obj

def dump(path: str):
    reader = DataStoreReader()
    reader.open(path)
    out = []
    for data in reader:
        rec = Record()
        rec.ParseFromString(data)
        out.append(exact_floats(MessageToDict(rec)))
    assert reader._fp.tell() == os.path.getsize(path)
    reader.close()
    return out


def offline_run(out_dir: str) -> None:
    import swanlab

    log_dir = tempfile.mkdtemp(prefix="swanlab-golden-")
    try:
        swanlab.init(
            project="golden",
            experiment_name="golden-run",
            description="golden file for qwen3-sft",
            tags=["sft", "lora"],
            mode="offline",
            log_dir=log_dir,
            config={"learning_rate": 1e-4, "model": {"name": "Qwen/Qwen3-0.6B", "layers": 28}, "lora": True},
        )
        for step in range(1, 6):
            swanlab.log({"train/loss": 2.0 / step, "train/learning_rate": 1e-4 * (1 - step / 10)}, step=step)
        swanlab.log({"eval/loss": 0.75}, step=5)
        print("console line 1")
        swanlab.log({"Prediction": [swanlab.Text("Question: a\n\nLLM: b"), swanlab.Text("中文 answer")]}, step=5)
        swanlab.finish()
        run_dir = glob.glob(os.path.join(log_dir, "run-*"))[0]
        run_file = glob.glob(os.path.join(run_dir, "run-*.swanlab"))[0]
        shutil.copy(run_file, os.path.join(out_dir, "offline.swanlab"))
        shutil.copy(os.path.join(run_dir, "files", "config.yaml"), os.path.join(out_dir, "offline-config.yaml"))
        with open(os.path.join(out_dir, "offline.json"), "w", encoding="utf-8") as f:
            json.dump(dump(run_file), f, ensure_ascii=False, indent=1)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def log_record(num: int, line: str) -> bytes:
    ts = Timestamp(seconds=1_780_000_000 + num, nanos=123_000)
    rec = Record(num=num, timestamp=ts, log=LogRecord(line=line, level=LogLevel.LOG_LEVEL_INFO, timestamp=ts, epoch=num))
    return rec.SerializeToString()


def blocks(out_dir: str) -> None:
    path = os.path.join(out_dir, "blocks.swanlab")
    if os.path.exists(path):
        os.remove(path)
    w = DataStoreWriter()
    w.open(path)
    w.write(log_record(1, "small"))
    w.write(log_record(2, "x" * 70_000))  # FIRST, MIDDLE, LAST
    # Grow a record so the block ends with 3 bytes to spare: the next write zero-fills them.
    base = len(log_record(3, ""))
    room = LEVELDBLOG_BLOCK_LEN - w._index % LEVELDBLOG_BLOCK_LEN - LEVELDBLOG_HEADER_LEN - 3
    line = "y" * (room - base)
    while len(log_record(3, line)) > room:
        line = line[:-1]
    while len(log_record(3, line)) < room:
        line += "y"
    w.write(log_record(3, line))
    assert LEVELDBLOG_BLOCK_LEN - w._index % LEVELDBLOG_BLOCK_LEN == 3
    w.write(log_record(4, "after padding"))
    for i in range(5, 40):
        w.write(log_record(i, f"line {i} " + "z" * 1500))  # crosses a block boundary: FIRST + LAST
    w.close()
    with open(os.path.join(out_dir, "blocks.json"), "w", encoding="utf-8") as f:
        json.dump(dump(path), f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    offline_run(out)
    blocks(out)
