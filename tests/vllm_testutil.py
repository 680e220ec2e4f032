"""What the vLLM tests share: the environment .venv-vllm (scripts/vllm_env.sh; skip with the reason where it is
missing), the environment variables of a small CPU engine, and processes run there with a readable failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
VENV = ROOT / ".venv-vllm"
STAMP = VENV / ".sppo-vllm-ok"  # written by scripts/vllm_env.sh once the environment imports vLLM and the toolkit
KV_CACHE_GIB = "1"  # each engine's key/value cache: the machine is shared, the embedded model needs little


def vllm_bin(name: str = "python") -> Path:
    """A program of .venv-vllm; skips the test (with the reason) where the environment was not built."""
    if not STAMP.is_file():
        pytest.skip(f"{VENV.name} is not built (bash scripts/vllm_env.sh: vLLM's CPU build, ~4 GB; "
                    ".ci/run builds it)")
    return VENV / "bin" / name


def vllm_environ(**extra: str) -> dict[str, str]:
    """The environment of a vLLM process: offline, a small key/value cache, the tests' modules importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "PYTEST_"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB,
                "VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])})
    env.update(extra)
    return env


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the judge server's, torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_vllm(cmd: list, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """Run `cmd` in the vLLM environment, in a session of its own; on a timeout the whole session (the engine's
    processes too) is killed. A non-zero exit fails the test with the end of its output."""
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=vllm_environ(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, cmd[:3]))}... did not finish in {timeout} s:\n{tail(err)}")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == 0, f"exit {proc.returncode}: {' '.join(map(str, cmd))}\n{tail(err)}\n{tail(out, 10)}"
    return result


def kill_session(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal every process of `proc`'s session (it was started with start_new_session)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def session_alive(pid: int) -> list[int]:
    """Processes still in the session `pid` led (an engine left behind by a killed run)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == pid:
                    alive.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return alive


def embedded_checkpoint() -> str:
    """The embedded SmolLM2-135M-Instruct as a checkpoint directory (converted once, shared by both venvs)."""
    from sppo.models import embedded_checkpoint as convert

    return str(convert())
