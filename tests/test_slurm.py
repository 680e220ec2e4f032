"""The sbatch scripts of scripts/slurm/ on a real SLURM cluster: one node, this machine, started by
scripts/slurm/local_cluster.sh (Debian's slurm-wlm 22.05 and munge; `.ci/run` installs them). Without root or the
packages every test here that needs the cluster is skipped, with the reason; the module leaves no daemon running.

- `sbatch --wait --nodes 1 --gres=none scripts/slurm/sppo-train.sbatch ...` with GPUS_PER_NODE=2: srun starts
  launch-node.sh, which starts 2 ranks with torchrun, as on a real cluster; a small embedded iteration finishes;
  `sppo-bench.sbatch` then benchmarks it against a local judge endpoint that logs every request.
- Preemption: `scancel --signal=TERM` mid-training, then `scontrol requeue`: the job saves its state, stops,
  runs again (same job id, same log), resumes, and ends with the files of an uninterrupted job, byte for byte
  (manifests apart from their times).
- The launch lines the scripts generate for N nodes (SLURM's own hostlist expansion, srun replaced by a stub)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_distributed import ENV, TESTS, _free_port
from test_pipeline import prompt_file, tiny  # noqa: F401 (fixtures)

ROOT = TESTS.parent
SLURM = ROOT / "scripts" / "slurm"


# ----------------------------------------------------------------------------------------------- the cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node cluster: the environment that points sbatch, srun and scontrol at it."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SPPO_SLURM_DIR": str(state)}
    script = str(SLURM / "local_cluster.sh")
    started = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode == 3:
        pytest.skip(started.stderr.strip() or "SLURM cannot run here")
    try:
        assert started.returncode == 0, started.stderr
        yield {**ENV, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        stopped = subprocess.run(["bash", script, "stop"], env=env, capture_output=True, text=True, timeout=180)
        daemons = [state / "slurmctld.pid", state / "slurmd.pid", state / "munge" / "munged.pid"]
        alive = [p.name for p in daemons if p.exists() and _alive(int(p.read_text().strip() or 0))]
        assert stopped.returncode == 0 and not alive, f"left running: {alive}\n{stopped.stderr}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def scontrol_job(env: dict, job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True,
                         timeout=30).stdout
    return dict(x.split("=", 1) for x in out.split() if "=" in x)


END_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def wait_job(env: dict, job: str, states=END_STATES, timeout=900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = scontrol_job(env, job).get("JobState", "")
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job} still {state} after {timeout} s")


def requeue(env: dict, job: str, timeout: float = 120) -> None:
    """`scontrol requeue` a job that has ended, once SLURM has finished completing it (until then the request is
    refused), and wait until SLURM shows the new attempt: right after the request `scontrol show job` may still say
    FAILED, which a wait for the end would take for the second attempt's end. SLURM holds a requeued job back for a
    while before it is eligible again; it is let start at once."""
    deadline = time.monotonic() + timeout
    # the first attempt's processes are gone and the node idle (no step still completing on it) before it runs again
    while (nodes := subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True,
                                   timeout=30).stdout.split()) != ["idle"] * len(nodes) or not nodes:
        assert time.monotonic() < deadline, f"nodes not idle: {nodes}"
        time.sleep(0.2)
    while (r := subprocess.run(["scontrol", "requeue", job], env=env, capture_output=True, text=True,
                               timeout=30)).returncode != 0:
        assert time.monotonic() < deadline, f"scontrol requeue {job}: {r.stderr}"
        time.sleep(0.5)
    while int((info := scontrol_job(env, job)).get("Restarts", "0")) < 1 or info.get("JobState") in END_STATES:
        assert time.monotonic() < deadline, f"job {job} not requeued: {info.get('JobState')}"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True, timeout=30)


def job_env(cluster: dict, **extra) -> dict:
    return {**cluster, "GPUS_PER_NODE": "2", "SPPO_PYTHON": sys.executable, "MASTER_PORT": str(_free_port()),
            **extra}


def sbatch(env: dict, script: str, log: Path, *args: str, wait: bool = True) -> str:
    """Submit from the repository root (as the scripts expect); the job id. `wait`: until the job has completed
    (polled twice a second: `sbatch --wait` polls at growing intervals, up to half a minute late)."""
    cmd = ["sbatch", "--parsable", "--nodes", "1", "--gres=none", "--output", str(log), str(SLURM / script), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    if wait:
        state = wait_job(env, job)
        assert state == "COMPLETED", f"job {job} {state}:\n" + (log.read_text()[-4000:] if log.exists() else "")
    return job


# ----------------------------------------------------------------------------------------------- the scripts run
@pytest.mark.slow
def test_sbatch_trains_an_embedded_iteration_on_2_ranks_and_benchmarks_it(cluster, tmp_path, shared_data):
    from bench_fake_judge import FakeJudgeServer

    run = tmp_path / "run"
    sbatch(job_env(cluster), "sppo-train.sbatch", tmp_path / "train.out", f"run.output_dir={run}",
           "run.iterations=1", "prompts.limit=4", "generation.k=2", "generation.max_new_tokens=8",
           "ranking.kind=python:sppo_doubles:LengthRanker", "ranking.model=none",
           "training.per_device_train_batch_size=2")
    log = (tmp_path / "train.out").read_text()
    assert "1 node(s) x 2 processes" in log
    manifest = json.loads((run / "checkpoints" / "Iter1" / "sppo_manifest.json").read_text())
    assert manifest["hyperparameters"]["num_devices"] == 2
    assert (run / "checkpoints" / "Iter1" / "model.safetensors").stat().st_size > 10**8  # SmolLM2-135M's weights
    for stage in ("generate", "rank", "reference"):
        assert json.loads((run / "iter1" / stage / "manifest.json").read_text())["processes"] == 2
    assert "iteration 1 rank: chunk 1/2 on rank 1" in log  # rank 1 made chunks too
    with FakeJudgeServer() as judge:
        sbatch(job_env(cluster, BENCH_KEY="sk-x"), "sppo-bench.sbatch", tmp_path / "bench.out", "--alpaca-eval",
               "Iter1", "--run-dir", str(run), "--limit", "8", "--max-new-tokens", "8", "--judge-base-url",
               judge.url, "--judge-model", "fake-judge", "--judge-api-key-env", "BENCH_KEY", "--data-dir",
               str(shared_data), "--generation-backend", "hf", "--batch-size", "4", "--judge-timeout", "120")
        bodies = [json.dumps(b, sort_keys=True) for b in judge.requests]
    assert len(bodies) == 8 and len(set(bodies)) == 8  # one request per answer, each sent once
    result = json.loads(next((run / "results").rglob("alpaca_eval.json")).read_text())
    assert result["suite"] == "alpaca_eval"
    assert "answers: chunk 1/1 on rank 1" in (tmp_path / "bench.out").read_text()


def _comparable(path: Path):
    """A file's content as compared between two runs: bytes, or for a manifest its JSON without its times."""
    if path.name not in ("manifest.json", "sppo_manifest.json"):
        return path.read_bytes()

    def timeless(obj):
        if isinstance(obj, dict):
            return {k: timeless(v) for k, v in obj.items() if k not in ("finished_at", "created_at", "seconds")}
        return [timeless(v) for v in obj] if isinstance(obj, list) else obj

    return timeless(json.loads(path.read_text()))


def _files(run: Path) -> dict[str, object]:
    return {str(p.relative_to(run)): _comparable(p) for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.slow
def test_scancel_term_mid_training_then_requeue_ends_as_an_uninterrupted_job(cluster, tmp_path, tiny, prompt_file):
    from test_distributed import _args

    # both jobs write the same run directory (its path is recorded in the manifests): the first is moved away; 200
    # epochs of the tiny model give the TERM seconds to arrive mid-training (30 took under one: a CI run missed it)
    args = _args(tmp_path, tiny, prompt_file, "run", **{"training.num_train_epochs": 200, "training.save_steps": 0,
                                                        "training.learning_rate": 1e-4})
    env = job_env(cluster)
    sbatch(env, "sppo-train.sbatch", tmp_path / "whole.out", *args)
    (tmp_path / "run").rename(tmp_path / "whole")
    job = sbatch(env, "sppo-train.sbatch", tmp_path / "cut.out", *args, wait=False)
    train_log = tmp_path / "run" / "iter1" / "train" / "log.jsonl"
    deadline = time.monotonic() + 600
    while not (train_log.exists() and len(train_log.read_text().splitlines()) >= 10):
        assert time.monotonic() < deadline and scontrol_job(env, job).get("JobState") in ("PENDING", "RUNNING")
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=TERM", job], env=env, check=True, timeout=30)
    assert wait_job(env, job) == "FAILED"  # stopped: the ranks exit 130 after saving
    snapshots = list((tmp_path / "run" / "iter1" / "train" / "state").glob("step-*"))
    assert len(snapshots) == 1 and not (tmp_path / "run" / "checkpoints" / "Iter1").exists()
    requeue(env, job)
    assert wait_job(env, job) == "COMPLETED", ((tmp_path / "cut.out").read_text()[-4000:], scontrol_job(env, job))
    log = (tmp_path / "cut.out").read_text()  # --open-mode=append: both attempts
    assert "interrupted: finished stages are kept" in log and "(requeued 1 times)" in log
    assert f"resuming training from {snapshots[0]}" in log
    whole, cut = _files(tmp_path / "whole"), _files(tmp_path / "run")
    assert whole.keys() == cut.keys() and "checkpoints/Iter1/model.safetensors" in whole
    for name in whole:
        assert whole[name] == cut[name], name


# ----------------------------------------------------------------------------------------------- launch lines
_SRUN_STUB = """#!/bin/bash
# srun for one step of one task per node: runs the command once per node with SLURM_NODEID set
while [[ "$1" == -* ]]; do shift; done
for ((node = 0; node < SLURM_NNODES; node++)); do SLURM_NODEID=$node "$@"; done
"""


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="needs scontrol (apt-get install slurm-wlm)")
@pytest.mark.parametrize("script,module", [("sppo-train.sbatch", "sppo.cli"), ("sppo-bench.sbatch", "benchmarks.cli")])
def test_launch_lines_for_4_nodes(tmp_path, script, module):
    """The batch script of a 4-node job (nodes gpu-[07-10], expanded by SLURM's own scontrol): one torchrun per
    node with --nnodes 4, --node_rank 0..3 from SLURM_NODEID, the first node as the rendezvous, GPUS_PER_NODE
    processes, and the arguments passed through unchanged, one by one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(_SRUN_STUB)
    (bin_dir / "srun").chmod(0o755)
    python = bin_dir / "python"  # SPPO_PYTHON: prints the command line it was given, as JSON
    python.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    python.chmod(0o755)
    conf = tmp_path / "slurm.conf"  # enough for scontrol to expand a hostlist (no daemon needed)
    conf.write_text("ClusterName=lines\nSlurmctldHost=localhost\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_CONF": str(conf),
           "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "gpu-[07-10]", "SLURM_NNODES": "4",
           "SLURM_SUBMIT_DIR": str(ROOT), "GPUS_PER_NODE": "8", "SPPO_PYTHON": str(python)}
    env.pop("MASTER_PORT", None)
    args = ["--config", "paper", "run.output_dir=/shared/runs/a b", "--x=$(touch /tmp/never)"]
    r = subprocess.run(["bash", str(SLURM / script), *args], env=env, capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("[")]
    assert lines == [["-m", "torch.distributed.run", "--nnodes", "4", "--node_rank", str(node), "--nproc_per_node",
                      "8", "--master_addr", "gpu-07", "--master_port", "29500", "-m", module, *args]
                     for node in range(4)]
    assert "4 node(s) x 8 processes, rendezvous gpu-07:29500" in r.stdout


_STUBS = {  # the SLURM commands job.sh calls, each logging its arguments to $STUB_LOG
    "srun": """#!/bin/bash
echo "srun $*" >> "$STUB_LOG"
echo $$ > "$STUB_DIR/srun.pid"
trap 'echo "srun got TERM" >> "$STUB_LOG"; exit 130' TERM
while true; do sleep 0.1; done
""",
    "scancel": """#!/bin/bash
echo "scancel $*" >> "$STUB_LOG"
kill -TERM "$(cat "$STUB_DIR/srun.pid")"
""",
    "scontrol": """#!/bin/bash
echo "scontrol $*" >> "$STUB_LOG"
if [[ "$1 $2" == "show hostnames" ]]; then echo node-a; echo node-b; fi
""",
}


def test_usr1_before_the_time_limit_stops_the_ranks_and_requeues_the_job(tmp_path):
    """`#SBATCH --signal=B:USR1@300`: the batch script, on USR1, sends SIGTERM to the job's ranks (which save and
    stop), waits for the step to end, then requeues its own job. srun, scancel and scontrol are stubs here; the
    real cluster's stop and requeue are tested above."""
    for name, text in _STUBS.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log),
           "STUB_DIR": str(tmp_path), "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2",
           "SLURM_SUBMIT_DIR": str(ROOT)}
    batch = subprocess.Popen(["bash", str(SLURM / "sppo-train.sbatch"), "run.iterations=1"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "srun.pid").exists():
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.05)
    batch.send_signal(signal.SIGUSR1)
    out, err = batch.communicate(timeout=60)
    calls = log.read_text().splitlines()
    assert calls[0] == "scontrol show hostnames node-[a-b]"
    assert calls[1] == "srun --wait=60 --kill-on-bad-exit=1 scripts/slurm/launch-node.sh sppo.cli run.iterations=1"
    assert calls[2:] == ["scancel --signal=TERM 42", "srun got TERM", "scontrol requeue 42"], err
    assert "requeueing it; it resumes when it runs again" in err and batch.returncode == 130
