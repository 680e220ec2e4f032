"""scripts/vllm_check.py without a GPU: its exit codes for bad input and a missing GPU, and its comparison."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "vllm_check.py"


@pytest.fixture(scope="module")
def vllm_check():
    spec = importlib.util.spec_from_file_location("vllm_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vllm_check"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["vllm_check"]


def test_a_missing_checkpoint_is_bad_input(vllm_check, tmp_path, capsys):
    assert vllm_check.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nothing'}: not a checkpoint directory (no config.json)"


def test_without_a_gpu_it_says_so_and_exits_1(vllm_check, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    (tmp_path / "config.json").write_text("{}")
    assert vllm_check.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "error: no CUDA GPU: vLLM needs one (--device cpu runs vLLM's CPU build)"


def test_tokens_are_compared_up_to_eos(vllm_check):
    assert vllm_check.before_eos([5, 6, 2, 0, 0], {2}) == [5, 6]
    assert vllm_check.Comparison("p", [5, 6, 7], [5, 6, 7]).first_difference is None
    assert vllm_check.Comparison("p", [5, 6, 7], [5, 9, 7]).first_difference == 1
    assert vllm_check.Comparison("p", [5, 6], [5, 6, 7]).first_difference == 2
