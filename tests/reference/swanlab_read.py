"""Reads a SwanLab run directory with the real SDK (swanlab==0.10.3), no network.

Usage: swanlab_read.py RUN_DIR
Prints one JSON object: every record as protobuf's MessageToDict gives it (doubles as repr()
strings, see exact_floats), the bytes the SDK's
DataStoreReader consumed next to the file size (its iterator stops silently at damage), the
config as `swanlab sync` loads it, and the sha256 of each media file.
"""

import glob
import hashlib
import json
import os
import sys

import yaml
from google.protobuf.json_format import MessageToDict
from swanlab.proto.swanlab.record.v1.record_pb2 import Record
from swanlab.sdk.internal.core_python.store import DataStoreReader
from swanlab.sdk.internal.run.components.config.helper import revert_config



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

def main(run_dir: str) -> None:
    files = glob.glob(os.path.join(run_dir, "run-*.swanlab"))
    assert len(files) == 1, f"expected exactly one run-*.swanlab in {run_dir}, found {files}"
    reader = DataStoreReader()
    reader.open(files[0])
    records = []
    for data in reader:
        rec = Record()
        rec.ParseFromString(data)
        records.append(exact_floats(MessageToDict(rec)))
    consumed = reader._fp.tell()
    reader.close()
    config_path = os.path.join(run_dir, "files", "config.yaml")
    config = None
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    media = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "media", "*", "*"))):
        with open(path, "rb") as f:
            data = f.read()
        media[os.path.relpath(path, run_dir)] = {"sha256": hashlib.sha256(data).hexdigest(), "text": data.decode("utf-8", "replace")}
    out = {
        "records": records,
        "consumed": consumed,
        "size": os.path.getsize(files[0]),
        "config": exact_floats(config),
        "config_values": exact_floats(revert_config(config)) if isinstance(config, dict) else None,
        "config_order": list(revert_config(config)) if isinstance(config, dict) else None,
        "media": media,
    }
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1])
