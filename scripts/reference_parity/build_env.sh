#!/usr/bin/env bash
# Build the reference's pinned stack (uclaml/SPPO 5e61c4e setup.py) in a separate venv, CPU only.
#   bash scripts/reference_parity/build_env.sh VENV_DIR
# Python 3.10 (the reference's torch 2.1.2 has no wheels for newer Pythons than 3.11; 3.10 is what its README uses).
# huggingface-hub 0.24.7 and pyarrow<15: the newest releases lack what the pinned stack imports
# (huggingface_hub.utils._errors in sppo/alignment/model_utils.py, pyarrow.PyExtensionType in datasets 2.14.6).
# deepspeed, bitsandbytes and vLLM are left out: nothing run here (tokenization, log-probs, losses) touches them.
set -euo pipefail
VENV=${1:?usage: build_env.sh VENV_DIR}
PY=${PYTHON310:-python3.10}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --no-input)
"${PIP[@]}" --upgrade "pip<25" "setuptools<70" wheel
# torch 2.1.2 from the package index (its manylinux wheel pulls the CUDA runtime libraries it links against;
# they load fine on a CPU-only machine).
"${PIP[@]}" "torch==2.1.2" "numpy==1.26.4"
"${PIP[@]}" "transformers==4.42.4" "trl==0.9.6" "accelerate==0.27.2" "peft==0.7.1" "datasets==2.14.6" \
    "huggingface-hub==0.24.7" "pyarrow<15" "sentencepiece>=0.1.99" "protobuf<=3.20.2" "safetensors>=0.3.3" \
    "jinja2>=3.0.0" "tqdm>=4.64.1" "numpy==1.26.4" "tokenizers<0.20" rich tyro pandas
# the real tokenizer files (only their data files are read: no dependencies needed)
"${PIP[@]}" --no-deps "mistral-common==1.12.0" "llama-models==0.3.0"
"$VENV/bin/python" -c "import torch, transformers, trl, accelerate, peft, datasets; print('refenv ok', torch.__version__, transformers.__version__, trl.__version__)"
