#!/bin/bash
# A one-node SLURM cluster on this machine, to try the sbatch scripts of this directory (and to test them):
# munge with a key of its own, slurmctld and slurmd, every file under one directory, nothing system-wide.
#
#   scripts/slurm/local_cluster.sh start     # a few seconds; prints the line that points sbatch/srun at it
#   eval "$(scripts/slurm/local_cluster.sh env)"
#   GPUS_PER_NODE=2 sbatch --nodes 1 --gres=none scripts/slurm/sppo-train.sbatch run.iterations=1
#   scripts/slurm/local_cluster.sh status    # the daemons, the node, the queue
#   scripts/slurm/local_cluster.sh stop      # cancels the jobs, stops the daemons
#
# Needs root (slurmd starts jobs) and Debian's packages: apt-get install slurm-wlm munge (SLURM 22.05).
# The node is this host with its real CPUs and memory (`slurmd -C`); one partition, `local`.
# Environment: SPPO_SLURM_DIR (default /tmp/sppo-slurm): configuration, keys, state and logs;
# SLURMCTLD_PORT, SLURMD_PORT (default: the first free ports from 6817 and 6818).
# Exit status: 0 done, 1 failed, 3 SLURM cannot run here (not root, packages missing): the reason on stderr.
set -euo pipefail

DIR="${SPPO_SLURM_DIR:-/tmp/sppo-slurm}"
CONF="$DIR/slurm.conf"

die() { echo "local_cluster: $*" >&2; exit 1; }
cannot() { echo "local_cluster: cannot run SLURM here: $*" >&2; exit 3; }

pid_of() {  # the pid recorded in $1 if that process runs, else nothing
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

running() { [[ -n "$(pid_of "$DIR/slurmctld.pid")" && -n "$(pid_of "$DIR/slurmd.pid")" ]]; }

free_port() {  # the first port from $1 on that nothing listens to
    local port="$1"
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}

check_host() {
    [[ "$(id -u)" == 0 ]] || cannot "slurmd must run as root (this is user $(id -un))"
    local tool
    for tool in munged munge slurmctld slurmd sbatch srun scontrol sinfo squeue scancel; do
        command -v "$tool" >/dev/null || cannot "$tool not found (apt-get install slurm-wlm munge)"
    done
}

start_munge() {
    mkdir -p "$DIR/munge"
    chmod 711 "$DIR" "$DIR/munge"  # munged wants its socket's directory searchable by all, writable by it only
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
        chmod 400 "$DIR/munge/munge.key"
    fi
    [[ -n "$(pid_of "$DIR/munge/munged.pid")" ]] && return
    # --force: start even where a parent directory is closed to other users (only they could not submit jobs)
    munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start (see $DIR/munge/munged.log)"
}

write_conf() {
    local node host ctld_port slurmd_port
    node="$(slurmd -C | head -n 1)"  # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. ... RealMemory=..
    host="${node%% *}"
    host="${host#NodeName=}"
    ctld_port="${SLURMCTLD_PORT:-$(free_port 6817)}"
    slurmd_port="${SLURMD_PORT:-$(free_port $((ctld_port + 1)))}"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat > "$CONF" <<EOF
# written by scripts/slurm/local_cluster.sh: a one-node cluster on $host
ClusterName=sppo-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
KillWait=30
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {  # until the node takes jobs (at most 30 s)
    local state=""
    for _ in $(seq 150); do
        state="$(SLURM_CONF="$CONF" sinfo -h -o %T 2>/dev/null | head -n 1 || true)"
        [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]] && return
        sleep 0.2
    done
    die "the node did not come up (state '${state:-none}'; see $DIR/log/)"
}

start() {
    check_host
    if running; then
        echo "local_cluster: already running ($CONF)" >&2
    else
        mkdir -p "$DIR"
        start_munge
        write_conf
        slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
        slurmd -f "$CONF" || die "slurmd did not start (see $DIR/log/slurmd.log)"
        wait_idle
    fi
    echo "export SLURM_CONF=$CONF"
}

stop_pid() {  # stop the daemon of pid file $1 (TERM, then KILL after 10 s)
    local pid
    pid="$(pid_of "$1")"
    [[ -z "$pid" ]] && return
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

cancel_jobs() {  # every job of this cluster, and wait (at most 60 s) until none is left
    local jobs
    running || return 0
    jobs="$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null || true)"
    [[ -z "$jobs" ]] && return
    # shellcheck disable=SC2086 - job ids, one word each
    SLURM_CONF="$CONF" scancel $jobs 2>/dev/null || true
    for _ in $(seq 300); do
        [[ -z "$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null || true)" ]] && return
        sleep 0.2
    done
    echo "local_cluster: jobs still running after 60 s; stopping the daemons anyway" >&2
}

stop() {
    if [[ -z "$(pid_of "$DIR/slurmctld.pid")$(pid_of "$DIR/slurmd.pid")$(pid_of "$DIR/munge/munged.pid")" ]]; then
        echo "local_cluster: not running ($DIR)" >&2
        return
    fi
    cancel_jobs
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    stop_pid "$DIR/munge/munged.pid"
    echo "local_cluster: stopped ($DIR)" >&2
}

status() {
    local name
    for name in munge/munged slurmctld slurmd; do
        if [[ -n "$(pid_of "$DIR/$name.pid")" ]]; then echo "${name#munge/}: running (pid $(pid_of "$DIR/$name.pid"))"
        else echo "${name#munge/}: stopped"; fi
    done
    running || return 3
    SLURM_CONF="$CONF" sinfo
    SLURM_CONF="$CONF" squeue
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
