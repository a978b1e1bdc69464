#!/usr/bin/env bash
# Installs the pinned Python reference implementations (transformers, peft, tiktoken, swanlab...)
# into .venv, once per version of the requirements file.
set -euo pipefail
cd "$(dirname "$0")/.."
req=tests/reference/requirements.txt
stamp=.venv/.pydeps-$(sha256sum "$req" | cut -c1-16)
[ -e "$stamp" ] && exit 0
.venv/bin/pip install -q --disable-pip-version-check -r "$req"
touch "$stamp"
