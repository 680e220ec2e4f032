#!/usr/bin/env bash
# Regenerate tests/fixtures/reference_parity/ from the reference itself, in one command:
#   git clone https://github.com/uclaml/SPPO /tmp/SPPO && git -C /tmp/SPPO checkout 5e61c4e
#   bash scripts/reference_parity/run.sh /tmp/SPPO [VENV_DIR]
# Builds (or reuses) the reference's pinned stack in VENV_DIR (default .reference-venv, gitignored) with
# build_env.sh, then runs make_fixtures.py, which imports the reference's own modules from the checkout.
set -euo pipefail
REF=${1:?usage: run.sh SPPO_CHECKOUT [VENV_DIR]}
cd "$(dirname "$0")/../.."
VENV=${2:-.reference-venv}
bash scripts/reference_parity/build_env.sh "$VENV"
"$VENV/bin/python" scripts/reference_parity/make_fixtures.py --reference "$REF" --out tests/fixtures/reference_parity
