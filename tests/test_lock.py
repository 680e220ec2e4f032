"""One sppo-train per run directory: the flock on <run>/.lock, tried by two real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sppo.errors import UserError
from sppo.lock import acquire_run_lock
from sppo.run_dir import LOCK as LOCK_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]

# A process that takes the lock, says so on stdout, then sleeps until killed (or exits after `hold` seconds).
HOLDER = """
import sys, time
from sppo.lock import acquire_run_lock
acquire_run_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""
# A second process: try the lock, print the one-line error, exit 2 (what the CLIs do with a UserError).
TRY = """
import sys
from sppo.errors import UserError
from sppo.lock import acquire_run_lock
try:
    acquire_run_lock(sys.argv[1], rank=int(sys.argv[2]) if len(sys.argv) > 2 else None)
except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
print("locked")
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RANK": ""}


def _start_holder(run: Path, hold: float = 60.0) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), str(hold)], stdout=subprocess.PIPE, text=True,
                         env=_env())
    assert p.stdout.readline().strip() == "locked"
    return p


def _try(run: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY, str(run), *extra], capture_output=True, text=True,
                          env=_env(), timeout=60)


def test_second_process_refused_while_first_holds_then_free_after_kill(tmp_path):
    run = tmp_path / "run"
    holder = _start_holder(run)
    try:
        second = _try(run)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and str(run) in lines[0] and f"pid {holder.pid}" in lines[0], lines
        assert "Traceback" not in second.stderr
        # a rank other than 0 never takes the lock, so it is not refused
        assert _try(run, "1").returncode == 0
    finally:
        holder.send_signal(signal.SIGKILL)  # the OS releases a flock of a killed process
        holder.wait(timeout=30)
    assert _try(run).returncode == 0


def test_lock_released_when_the_holder_exits_normally(tmp_path):
    run = tmp_path / "run"
    holder = _start_holder(run, hold=0.2)
    assert holder.wait(timeout=30) == 0
    assert _try(run).returncode == 0


def test_same_process_may_ask_twice(tmp_path):
    run = tmp_path / "run"
    path = acquire_run_lock(run)
    assert path == (run / LOCK_NAME).resolve()
    assert acquire_run_lock(run) == path  # re-entrant within the holding process
    assert _try(run).returncode == 2


def test_rank_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    assert acquire_run_lock(tmp_path / "run") is None
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_run_dir_that_is_a_file(tmp_path):
    f = tmp_path / "run"
    f.write_text("not a directory")
    with pytest.raises(UserError, match="is a file"):
        acquire_run_lock(f)


def test_second_sppo_train_on_a_held_run_dir_is_refused(tmp_path, capsys):
    """The real CLI: while another process holds the run, sppo-train stops with one line and writes nothing."""
    from sppo.cli import main as train_main
    from perf.fixtures import make_tiny_checkpoint

    model = make_tiny_checkpoint(tmp_path / "model", seed=2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Explain why the sky is blue.", "split": "train_iteration_1"}\n')
    run = tmp_path / "run"
    holder = _start_holder(run)
    capsys.readouterr()  # the checkpoint writer's progress bar
    try:
        rc = train_main([f"run.output_dir={run}", "run.iterations=1", f"model.name={model}",
                         f"prompts.source={prompts}", "generation.backend=hf", "generation.k=2",
                         "generation.max_new_tokens=4", "ranking.kind=python:sppo_doubles:LengthRanker",
                         "ranking.model=none", "training.max_length=96", "training.max_prompt_length=48"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "another sppo-train" in err[0] and f"pid {holder.pid}" in err[0], err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # no config.yaml, no stage
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)


def test_lock_never_follows_a_symlink(tmp_path):
    """A link planted at <run>/.lock is refused with one line; the file it points to is left untouched."""
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        acquire_run_lock(run)
    assert victim.read_text() == "keep me\n"
    (run / LOCK_NAME).unlink()
    (run / LOCK_NAME).symlink_to(tmp_path / "missing")  # a dangling link is not created through either
    with pytest.raises(UserError, match="symbolic link"):
        acquire_run_lock(run)
    assert not (tmp_path / "missing").exists()


def test_run_dir_reached_through_a_symlink_is_locked_once(tmp_path):
    """The run directory itself may be a link (runs/latest): both names are the same lock."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "latest").symlink_to(run)
    assert acquire_run_lock(tmp_path / "latest") == acquire_run_lock(run)
