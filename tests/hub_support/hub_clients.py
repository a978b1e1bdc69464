"""The real hub clients on caches shared with qwen3-sft (tests/hub_support/interop.rs).

    hub_clients.py CLIENT ACTION KIND REPO [FILE]
      CLIENT  hf (huggingface_hub) | ms (modelscope)
      ACTION  offline: the client's snapshot_download (FILE: its single-file download) with
                       local_files_only=True, on a cache qwen3-sft filled;
              download: the same calls without local_files_only, against the endpoint in the
                        environment (HF_ENDPOINT, MODELSCOPE_DOMAIN: the tests' loopback server),
                        filling the client's cache; under HF_HUB_OFFLINE=1 huggingface_hub must
                        answer from the cache on its own
      KIND    model | dataset
    Caches and endpoints come from the environment the test sets (HF_HOME, HF_HUB_OFFLINE,
    MODELSCOPE_CACHE, HOME); `--cache-dir DIR` passes the cache directory as an argument instead.

Prints JSON: {"path": the directory or file the client returned, "files": {relative path:
sha256 of the bytes read through it}, "scan": huggingface_hub's scan_cache_dir of the cache (hf
only: repos, revisions, refs and warnings, so a layout it would call corrupt shows)}.
"""
import hashlib
import json
import os
import sys
from pathlib import Path


def digest_tree(path):
    p = Path(path)
    if p.is_file():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()}
    return {str(f.relative_to(p)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".")}


def hf(action, kind, repo, file, cache_dir):
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
    from huggingface_hub import constants
    offline = action == "offline"
    kw = dict(repo_type=kind, local_files_only=offline, cache_dir=cache_dir)
    if file:
        path = hf_hub_download(repo, file, **kw)
    else:
        path = snapshot_download(repo, **kw)
    report = scan_cache_dir(cache_dir or constants.HF_HUB_CACHE)
    scan = {"warnings": [str(w) for w in report.warnings],
            "repos": [{"id": r.repo_id, "type": r.repo_type, "refs": sorted(r.refs),
                       "revisions": [{"commit": v.commit_hash, "refs": sorted(v.refs),
                                      "files": sorted(f.file_name for f in v.files)} for v in r.revisions]}
                      for r in report.repos]}
    return {"path": str(path), "files": digest_tree(path), "scan": scan}


def ms(action, kind, repo, file, cache_dir):
    # No cloud-region probes (they would wait on an address no test machine has).
    os.environ.setdefault("MODELSCOPE_DOWNLOAD_INTRA_CLOUD", "false")
    offline = action == "offline"
    if file:
        from modelscope_hub.compat.file_download import dataset_file_download, model_file_download
        fn = dataset_file_download if kind == "dataset" else model_file_download
        path = fn(repo, file, cache_dir=cache_dir, local_files_only=offline)
    elif kind == "dataset":
        from modelscope_hub.compat.snapshot_download import dataset_snapshot_download
        path = dataset_snapshot_download(repo, cache_dir=cache_dir, local_files_only=offline)
    else:
        from modelscope import snapshot_download
        path = snapshot_download(repo, cache_dir=cache_dir, local_files_only=offline)
    return {"path": str(path), "files": digest_tree(path)}


def main():
    args = sys.argv[1:]
    cache_dir = None
    if "--cache-dir" in args:
        i = args.index("--cache-dir")
        cache_dir = args[i + 1]
        del args[i:i + 2]
    client, action, kind, repo = args[:4]
    file = args[4] if len(args) > 4 else None
    assert action in ("offline", "download"), action
    out = {"hf": hf, "ms": ms}[client](action, kind, repo, file, cache_dir)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
