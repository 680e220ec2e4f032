"""Inference dtype: `auto` computes in bf16 where the device does so natively (a bf16 GPU, a CPU with AVX512-BF16
or AMX), else fp32; training never gets bf16 weights on a CPU from `auto`; the dtype used reaches the stage
manifest, the benchmark results key, the local judge's cache key and every rank's copy of the answerer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.answers import ModelAnswerer
from benchmarks.config import BenchConfig
from benchmarks.judge import LocalJudge
from benchmarks.judge.cache import cache_key
from benchmarks.judge.types import JudgeRequest
from perf.fixtures import tiny_llama
from sppo.errors import UserError
from sppo.generate import make_generator, weights_dtype
from sppo.models import cpu_computes_bf16, inference_dtype, resolve_dtype


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel reports them (an independent source for `cpu_computes_bf16`)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


NATIVE_BF16 = bool(_cpu_flags() & {"avx512_bf16", "amx_tile", "amx_bf16"}) if Path("/proc/cpuinfo").exists() \
    else None
AUTO = "bfloat16" if NATIVE_BF16 else "float32"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_llama(tmp_path_factory.mktemp("dtype") / "tiny"))


@pytest.mark.skipif(NATIVE_BF16 is None, reason="no /proc/cpuinfo to compare with")
def test_the_cpu_probe_agrees_with_the_kernels_flags():
    assert cpu_computes_bf16() == NATIVE_BF16


def test_auto_resolves_per_purpose_and_explicit_dtypes_pass_through():
    assert resolve_dtype("auto", "cpu") == torch.float32  # training on a CPU: fp32 weights, whatever the CPU
    assert resolve_dtype("auto", "cpu", inference=True) == getattr(torch, AUTO)
    assert inference_dtype("auto", "cpu") == AUTO
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(name, "cpu") == resolve_dtype(name, "cpu", inference=True) == getattr(torch, name)
    with pytest.raises(UserError, match="dtype: unknown value 'fp8'"):
        resolve_dtype("fp8", "cpu", inference=True)


def test_the_generator_computes_in_the_chosen_dtype(tiny):
    assert weights_dtype(make_generator("hf", tiny, dtype="auto")) == AUTO
    assert weights_dtype(make_generator("hf", tiny, dtype="float32")) == "float32"
    assert weights_dtype(object()) is None  # vLLM's engine chooses its own


def test_the_local_judge_names_its_dtype_in_every_cache_key(tiny):
    fp32 = LocalJudge.load(tiny, dtype="float32")
    bf16 = LocalJudge.load(tiny, dtype="bfloat16")
    assert fp32.identity()["dtype"] == "float32" and bf16.identity()["dtype"] == "bfloat16"
    assert fp32.info()["dtype"] == "float32"
    assert fp32.source == (tiny, 8, "float32")  # how a serving rank loads the same judge
    request = JudgeRequest(messages=({"role": "user", "content": "Which is better?"},), max_tokens=4)
    assert cache_key(fp32.identity(), request) != cache_key(bf16.identity(), request)


def test_bench_dtype_is_checked_and_part_of_the_results_key():
    cfg = BenchConfig(models=("embedded",), dtype="float32").validate()
    assert cfg.results_key("mt_bench")["dtype"] == "float32"
    assert BenchConfig(models=("embedded",)).validate().results_key("alpaca_eval")["dtype"] == AUTO
    with pytest.raises(UserError, match="dtype: unknown value 'half'"):
        BenchConfig(models=("embedded",), dtype="half").validate()


def test_every_rank_builds_the_answerer_in_the_same_dtype(tiny):
    spec = ModelAnswerer(tiny, backend="hf", dtype="float32").spec()
    assert spec.dtype == "float32"
    again = ModelAnswerer.from_spec(spec)
    assert again.dtype == "float32" and weights_dtype(again.generator) == "float32"
