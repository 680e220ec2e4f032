"""Multi-process runs with real processes on CPU (gloo, 2 ranks): every rank works, nothing deadlocks, a
half-finished run resumes, 2 ranks give the results of 1 process.

Launchers: `torchrun --nproc_per_node 2` and `accelerate launch --multi_gpu --num_processes 2` (both start two
real ranks here; `accelerate launch --cpu --num_processes 2` would start only one)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from safetensors.torch import load_file

from sppo.files import read_jsonl

from test_pipeline import overrides, prompt_file, tiny  # noqa: F401 (fixtures)

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}


def torchrun(*args: str) -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()), *args]


def accelerate_launch(*args: str) -> list[str]:
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *args]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=600):
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, cwd=TESTS.parent)


# ------------------------------------------------------------------------------------- sppo.distributed
def _json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_rank0_decides_for_every_rank(tmp_path):
    marker = tmp_path / "exists"
    marker.write_text("")
    r = run(torchrun(str(TESTS / "dist_probe.py"), "decide", str(marker)), timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    # rank 1 would have answered False on its own: it follows rank 0
    assert sorted((x["rank"], x["decided"]) for x in _json_lines(r.stdout)) == [(0, True), (1, True)]


def test_a_waiting_rank_says_where_and_for_whom(tmp_path):
    r = run(torchrun(str(TESTS / "dist_probe.py"), "slow-rank"), timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_json_lines(r.stdout)) == 2
    assert "rank 0 has waited" in r.stderr and "'probe stage' for rank(s) 1" in r.stderr


def test_an_error_on_rank0_reaches_every_rank(tmp_path):
    r = run(torchrun(str(TESTS / "dist_probe.py"), "error"), timeout=180)
    assert r.returncode != 0
    # both ranks: one line each, naming the rank, no hang
    assert sorted(re.findall(r"error: rank (\d): probe: rank 0 found a bad file", r.stderr)) == ["0", "1"]


# ------------------------------------------------------------------------------------- the pipeline
# `tiny` (a tiny chat model) and `prompt_file` (8 prompts in split 1) come from test_pipeline.


def _args(tmp_path, tiny, prompt_file, out: str, **extra) -> list[str]:
    o = {"run.chunk_size": 2, "training.per_device_train_batch_size": 2, "run.output_dir": str(tmp_path / out)}
    o.update(extra)
    return overrides(tmp_path, tiny, prompt_file, iterations=1, **o)


# 8 prompts with run.chunk_size 2: generation in 4 chunks of 2 (a small stage keeps up to 24 sequences together,
# here capped by the chunk size), ranking and the reference pass in 8 chunks of 1 (MIN_CHUNKS): half on each rank
PER_RANK_CHUNKS = [("generate", 2), ("rank", 4), ("reference", 4)]

STAGE_FILES = [("generate", "responses.jsonl"), ("rank", "comparisons.jsonl"), ("dataset", "sppo.jsonl"),
               ("reference", "logps.jsonl")]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["deepspeed_zero3", "none"])
def test_two_ranks_match_one_process_with_accumulation(tmp_path, tiny, prompt_file, mode):
    """torchrun, 2 ranks, DeepSpeed ZeRO-3 or DDP (`none`): both ranks generate, rank and score their chunks; the
    merged files equal those of one process with the same seeds; training with per-device batch 2 on 2 ranks
    follows the loss trajectory of one process with accumulation 2 (same examples per step, gradients averaged
    over the ranks) and saves the same weights."""
    two = run(torchrun("-m", "sppo.cli", *_args(tmp_path, tiny, prompt_file, "two",
                                                  **{"training.distributed": mode})))
    assert two.returncode == 0, two.stderr[-3000:]
    for stage, per_rank in PER_RANK_CHUNKS:
        assert f"iteration 1 {stage}: chunk {per_rank}/{per_rank} on rank 1" in two.stderr
        assert f"iteration 1 {stage}: chunk {per_rank}/{per_rank} on rank 0" in two.stderr
    one = run([sys.executable, "-m", "sppo.cli", *_args(tmp_path, tiny, prompt_file, "one", **{
        "training.distributed": mode, "training.gradient_accumulation_steps": 2})])
    assert one.returncode == 0, one.stderr[-3000:]
    for stage, name in STAGE_FILES:
        assert read_jsonl(tmp_path / "two" / "iter1" / stage / name) == \
            read_jsonl(tmp_path / "one" / "iter1" / stage / name), stage
    losses = [[r["loss"] for r in read_jsonl(tmp_path / d / "iter1" / "train" / "log.jsonl")] for d in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) == 6
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    manifest = json.loads((tmp_path / "two" / "checkpoints" / "Iter1" / "sppo_manifest.json").read_text())
    hp = manifest["hyperparameters"]
    assert (hp["num_devices"], hp["per_device_train_batch_size"], hp["gradient_accumulation_steps"],
            hp["total_train_batch_size"], hp["distributed_type"]) == (2, 2, 1, 4, {"none": "multi_process"}.get(mode, mode))
    assert json.loads((tmp_path / "two" / "iter1" / "generate" / "manifest.json").read_text())["processes"] == 2
    weights = [load_file(tmp_path / d / "checkpoints" / "Iter1" / "model.safetensors") for d in ("one", "two")]
    for name, w in weights[0].items():
        torch.testing.assert_close(weights[1][name], w, rtol=1e-4, atol=1e-6, msg=name)


def launch_two_nodes(module: str, args: list[str], timeout=900) -> list[tuple[int, str, str]]:
    """Two one-process "nodes" on this machine through scripts/slurm/launch-node.sh (as srun starts it on each
    node: torchrun --nnodes 2 --node_rank 0|1 --nproc_per_node 1, static rendezvous on 127.0.0.1); returns each
    node's (exit status, stdout, stderr)."""
    port = str(_free_port())
    nodes = []
    for node in (0, 1):
        env = {**ENV, "SLURM_NNODES": "2", "SLURM_NODEID": str(node), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "GPUS_PER_NODE": "1", "SPPO_PYTHON": sys.executable}
        nodes.append(subprocess.Popen(["bash", str(TESTS.parent / "scripts" / "slurm" / "launch-node.sh"), module,
                                       *args], env=env, cwd=TESTS.parent, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=timeout) for p in nodes]
    return [(p.returncode, out, err) for p, (out, err) in zip(nodes, outs)]


@pytest.mark.slow
def test_two_nodes_train_as_one_process(tmp_path, tiny, prompt_file):
    """Two one-process nodes sharing one run directory: rank 1 (node 1) generates, ranks and scores its chunks,
    rank 0 (node 0) decides, merges and writes; the data stages equal one process's, the training log has every
    step once, and the checkpoint records 2 processes."""
    nodes = launch_two_nodes("sppo.cli", _args(tmp_path, tiny, prompt_file, "nodes"))
    assert [rc for rc, _, _ in nodes] == [0, 0], nodes[0][2][-3000:] + nodes[1][2][-3000:]
    for stage, per_rank in PER_RANK_CHUNKS:  # logged by rank 0, made by rank 1
        assert f"iteration 1 {stage}: chunk {per_rank}/{per_rank} on rank 1" in nodes[0][2]
    assert not [x for x in nodes[1][2].splitlines() if " INFO " in x]  # rank 1 logs warnings only
    one = run([sys.executable, "-m", "sppo.cli", *_args(tmp_path, tiny, prompt_file, "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    for stage, name in STAGE_FILES:
        assert read_jsonl(tmp_path / "nodes" / "iter1" / stage / name) == \
            read_jsonl(tmp_path / "one" / "iter1" / stage / name), stage
    steps = [r["step"] for r in read_jsonl(tmp_path / "nodes" / "iter1" / "train" / "log.jsonl")]
    assert steps == sorted(set(steps)) and steps
    manifest = json.loads((tmp_path / "nodes" / "checkpoints" / "Iter1" / "sppo_manifest.json").read_text())
    assert manifest["hyperparameters"]["num_devices"] == 2
    assert nodes[0][1].strip().endswith("Iter1") and not nodes[1][1].strip()  # the checkpoint, printed once


def _start(cmd):
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=TESTS.parent)


def _kill_when(proc, reached, sig, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not reached():
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    import psutil

    # the launcher starts its ranks in sessions of their own: signal the whole tree, as a job scheduler would
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in reversed(tree):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    proc.wait(timeout=120)
    psutil.wait_procs(tree[1:], timeout=120)


def _snapshots(run_dir: Path) -> list[Path]:
    state = run_dir / "iter1" / "train" / "state"
    return sorted(state.glob("step-*")) if state.is_dir() else []


@pytest.mark.slow
def test_accelerate_launch_two_ranks_killed_in_training_resume(tmp_path, tiny, prompt_file):
    """The case that deadlocked: a 2-rank run stopped after its data stages (here: kill -9 during training),
    rerun with the same command. It resumes from the last saved training state and finishes."""
    args = _args(tmp_path, tiny, prompt_file, "run", **{"training.save_steps": 1, "training.num_train_epochs": 40,
                                                         "training.logging_steps": 1})
    proc = _start(accelerate_launch("-m", "sppo.cli", *args))
    _kill_when(proc, lambda: len(_snapshots(tmp_path / "run")) >= 1, signal.SIGKILL)
    assert not (tmp_path / "run" / "checkpoints" / "Iter1").exists()
    assert (tmp_path / "run" / "iter1" / "reference" / "manifest.json").exists()
    rerun = run(accelerate_launch("-m", "sppo.cli", *args))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming training from" in rerun.stderr
    steps = [r["step"] for r in read_jsonl(tmp_path / "run" / "iter1" / "train" / "log.jsonl")]
    pairs = len(read_jsonl(tmp_path / "run" / "iter1" / "dataset" / "sppo.jsonl"))
    assert steps == list(range(1, 40 * -(-pairs // 4) + 1))  # global batch 2 x 2; no step logged twice
    assert (tmp_path / "run" / "checkpoints" / "Iter1" / "sppo_manifest.json").exists()
    assert not _snapshots(tmp_path / "run")  # the checkpoint supersedes the training states


@pytest.mark.slow
def test_sigterm_saves_state_and_the_rerun_ends_with_the_same_weights(tmp_path, tiny, prompt_file):
    """One process on CPU: SIGTERM mid-training saves the state; the rerun resumes from it and the final
    weights are bitwise those of an uninterrupted run."""
    from safetensors.torch import load_file

    common = {"training.save_steps": 0, "training.num_train_epochs": 60, "training.learning_rate": 1e-4}
    whole = run([sys.executable, "-m", "sppo.cli", *_args(tmp_path, tiny, prompt_file, "whole", **common)])
    assert whole.returncode == 0, whole.stderr[-3000:]
    args = _args(tmp_path, tiny, prompt_file, "cut", **common)
    log = tmp_path / "cut" / "iter1" / "train" / "log.jsonl"
    proc = _start([sys.executable, "-m", "sppo.cli", *args])
    _kill_when(proc, lambda: log.exists() and len(log.read_text().splitlines()) >= 5, signal.SIGTERM)
    assert proc.returncode == 130
    [snapshot] = _snapshots(tmp_path / "cut")
    stopped_at = int(snapshot.name.split("-")[1])
    assert 5 <= stopped_at < 60
    rerun = run([sys.executable, "-m", "sppo.cli", *args])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"step-{stopped_at:06d}" in rerun.stderr and "resuming training from" in rerun.stderr
    a = load_file(tmp_path / "whole" / "checkpoints" / "Iter1" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "Iter1" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = load_file(Path(tiny) / "model.safetensors")
    assert any(not torch.equal(a[k], before[k]) for k in a)  # training did change the weights


_QUIET_PROBE = """
import logging, warnings
from sppo.cli_util import setup_logging
setup_logging()
warnings.warn("a library's FutureWarning", FutureWarning)
ds = logging.getLogger("DeepSpeed")
ds.setLevel(logging.INFO)  # as DeepSpeed does at import
ds.addHandler(logging.StreamHandler())
ds.warning("a DeepSpeed warning")
logging.getLogger("sppo.probe").info("an info line")
logging.getLogger("sppo.probe").warning("a warning of ours")
"""


@pytest.mark.parametrize("rank", ["0", "1"])
def test_other_ranks_log_warnings_only_and_leave_library_warnings_to_rank0(rank):
    r = subprocess.run([sys.executable, "-c", _QUIET_PROBE], env={**ENV, "RANK": rank}, capture_output=True,
                       text=True, timeout=120, cwd=TESTS.parent)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    if rank == "0":
        assert "FutureWarning: a library's FutureWarning" in r.stderr and "a DeepSpeed warning" in lines
        assert any(x.endswith("an info line") for x in lines) and not any(x.startswith("[rank") for x in lines)
    else:
        assert "FutureWarning" not in r.stderr and "a DeepSpeed warning" not in r.stderr
        assert "an info line" not in r.stderr
        assert [x for x in lines if x.endswith("a warning of ours")][0].startswith("[rank 1] ")
