"""Logs a run with the real SDK (swanlab==0.10.3) in online mode, to record its HTTP trace.

Usage: SWANLAB_API_HOST=http://127.0.0.1:PORT SWANLAB_API_KEY=... swanlab_sdk_run.py SPEC_JSON
The spec (written by tests/swanlab_upload.rs) holds project, name, description, tags, config,
console lines, per-step scalars and a list of texts; the Rust test logs the same through the
native uploader and compares the two traces.
"""

import json
import sys

import swanlab


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    swanlab.init(
        project=spec["project"],
        name=spec["name"],
        description=spec["description"],
        tags=spec["tags"],
        config=spec["config"],
        mode="online",
    )
    for line in spec["console"]:
        print(line, flush=True)
    for s in spec["steps"]:
        swanlab.log(s["values"], step=s["step"])
    texts = [swanlab.Text(t) for t in spec["texts"]]
    swanlab.log({spec["text_key"]: texts}, step=spec["text_step"])
    swanlab.finish()


if __name__ == "__main__":
    main(sys.argv[1])
