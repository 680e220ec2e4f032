#!/bin/bash
# The body of sppo-train.sbatch and sppo-bench.sbatch: what the batch script of a job does on the first node.
#
#   job.sh sppo.cli|benchmarks.cli [ARGUMENTS...]
#
# The first node's address is the rendezvous (MASTER_ADDR, as the reference's recipes/launch.slurm takes it);
# srun starts launch-node.sh once per node (--ntasks-per-node=1), which starts GPUS_PER_NODE ranks with torchrun.
# A rank that fails ends the step (--kill-on-bad-exit; the others stop by themselves within seconds, naming it).
#
# Stopping and requeueing:
# - USR1 to this script (`#SBATCH --signal=B:USR1@300`: 5 minutes before the time limit; or
#   `scancel --batch --signal=USR1 JOB`): it sends SIGTERM to the ranks, which keep what they finished (sppo-train
#   saves its training state first) and exit, then requeues the job (`scontrol requeue`): it runs again with the
#   same arguments, job id and log, and resumes.
# - SIGTERM to the ranks (`scancel --signal=TERM JOB`, a preemption): the same stop, without the requeue; a
#   preemption with PreemptMode=REQUEUE, or `scontrol requeue JOB`, runs the job again, which resumes.
#
# Environment: GPUS_PER_NODE (default 8), MASTER_PORT (default 29500), SPPO_PYTHON (default .venv/bin/python),
# TORCH_ELASTIC_SHUTDOWN_TIMEOUT (default 240: how long torchrun lets its ranks save after SIGTERM).
set -euo pipefail

module="${1:-}"
case "$module" in
    sppo.cli|benchmarks.cli) shift ;;
    *) echo "error: job.sh: first argument must be sppo.cli or benchmarks.cli, got '$module'" >&2; exit 2 ;;
esac
if [[ -z "${SLURM_JOB_ID:-}" || -z "${SLURM_JOB_NODELIST:-}" ]]; then
    echo "error: job.sh: not inside a SLURM job (submit it with sbatch)" >&2
    exit 2
fi
cd "${SLURM_SUBMIT_DIR:-.}"
hosts="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"  # not `| head -n 1`: with pipefail a long list gets SIGPIPE
export MASTER_ADDR="${hosts%%$'\n'*}"
export MASTER_PORT="${MASTER_PORT:-29500}"
export GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1  # a hanging collective fails the job instead of stalling it
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-240}"
echo "job $SLURM_JOB_ID (requeued ${SLURM_RESTART_COUNT:-0} times): ${SLURM_NNODES:-1} node(s) x $GPUS_PER_NODE" \
     "processes, rendezvous $MASTER_ADDR:$MASTER_PORT"

requeue=0
near_time_limit() {
    requeue=1
    echo "job $SLURM_JOB_ID: USR1 (time limit near): stopping the ranks, then requeueing the job" >&2
    scancel --signal=TERM "$SLURM_JOB_ID" || true
}
trap near_time_limit USR1

# --wait=60: the other nodes get 60 s after the first one ends; --kill-on-bad-exit: one failed node ends the step.
# In the background, so that the trap runs while the step does (bash runs a trap only between commands).
set +e
srun --wait=60 --kill-on-bad-exit=1 scripts/slurm/launch-node.sh "$module" "$@" &
step=$!
wait "$step"
status=$?
while kill -0 "$step" 2>/dev/null; do  # a trapped signal ends `wait` early: wait again until the step is over
    wait "$step"
    status=$?
done
set -e
if (( requeue )); then  # SLURM ends this script once the job is requeued: say it first
    echo "job $SLURM_JOB_ID: requeueing it; it resumes when it runs again" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
