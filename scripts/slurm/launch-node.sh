#!/bin/bash
# One node's share of a multi-node SPPO job: srun runs this once per node (see sppo-train.sbatch and
# sppo-bench.sbatch); it starts GPUS_PER_NODE ranks of sppo-train or sppo-bench with torchrun's static rendezvous.
#
#   launch-node.sh sppo.cli|benchmarks.cli [ARGUMENTS...]
#
# From the environment: SLURM_NNODES and SLURM_NODEID (set by srun), MASTER_ADDR and MASTER_PORT (the first node,
# set by the sbatch script), GPUS_PER_NODE (default 8), SPPO_PYTHON (default .venv/bin/python). The arguments go
# to the command unchanged, one by one; nothing here is evaluated as a command string.
set -euo pipefail

module="${1:-}"
case "$module" in
    sppo.cli|benchmarks.cli) shift ;;
    *) echo "error: launch-node.sh: first argument must be sppo.cli or benchmarks.cli, got '$module'" >&2; exit 2 ;;
esac
for var in SLURM_NNODES SLURM_NODEID MASTER_ADDR MASTER_PORT; do
    if [[ -z "${!var:-}" ]]; then
        echo "error: launch-node.sh: $var is not set (run it through srun from an sbatch script)" >&2
        exit 2
    fi
done
python="${SPPO_PYTHON:-.venv/bin/python}"

launcher=("$python" -m torch.distributed.run
          --nnodes "$SLURM_NNODES" --node_rank "$SLURM_NODEID" --nproc_per_node "${GPUS_PER_NODE:-8}"
          --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
exec "${launcher[@]}" -m "$module" "$@"
