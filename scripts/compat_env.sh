#!/usr/bin/env bash
# Build .venv-compat/: transformers 4.42.4 (the version the reference SPPO code pins, the generation many serving
# and evaluation stacks still run) with the tokenizer packages it needs and the CPU build of torch, to load the
# toolkit's checkpoints the way those stacks do (tests/test_release_compat.py). Built once; a rerun returns at once.
#   bash scripts/compat_env.sh          # prints the environment's python
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SPPO_COMPAT_VENV:-.venv-compat}
PY=${PYTHON:-python3}
STAMP="$VENV/.sppo-compat-ok"
PACKAGES=(transformers==4.42.4 "tokenizers>=0.19,<0.20" "huggingface-hub>=0.23.2,<0.25" sentencepiece protobuf
          "numpy<2" safetensors jinja2 torch==2.13.0)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${PACKAGES[*]}" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PACKAGES[@]}" >&2
    "$VENV/bin/python" -c "import transformers, tokenizers, torch; assert transformers.__version__ == '4.42.4'"
    printf '%s' "${PACKAGES[*]}" > "$STAMP"
fi
echo "$VENV/bin/python"
