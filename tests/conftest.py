"""Shared fixtures. Tests never touch the network: the Hub is switched off for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("SPPO_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only reference data beside the checkout (../shared/data)."""
    d = _shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"reference data not found at {d}")
    return d


# The files that take longest (vLLM engines, a SLURM cluster, several ranks, the compat venv), longest first: under
# the README's `pytest -n 2 --dist loadfile --no-loadscope-reorder` the two processes take them first and share the
# many short files at the end, rather than one process finishing a heavy file while the other waits. Ordered by
# their time in a full run on 2 cores (pytest --durations); files not named keep their order after these.
LONGEST_FIRST = ("test_vllm_bench.py", "test_vllm_generate.py", "test_distributed.py", "test_rank_failures.py",
                 "test_slurm.py", "test_bench_distributed.py", "test_release_compat.py", "test_bench_run.py",
                 "test_perf_smoke.py", "test_pipeline.py", "test_learning.py", "test_kill_resume.py",
                 "test_untrusted.py", "test_hardening.py")


def pytest_collection_modifyitems(config, items):
    import torch

    order = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(order)))  # stable: a file's tests keep their order

    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_net = pytest.mark.skip(reason="needs network (set SPPO_TEST_NETWORK=1 to run)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "network" in item.keywords and os.environ.get("SPPO_TEST_NETWORK") != "1":
            item.add_marker(skip_net)
