"""Benchmark data loading (local directory in the official formats; downloads refused offline), answer settings."""

from __future__ import annotations

import pytest

from benchmarks.answers import MT_BENCH_TEMPERATURE, mt_bench_temperature
from benchmarks.data import DataSource, packaged_alpaca_prompt
from sppo.errors import UserError


def test_loads_shared_data(shared_data):
    src = DataSource(shared_data)
    a = src.alpaca_eval()
    assert len(a.examples) == 805 and "{instruction}" in a.prompt_template
    assert a.prompt_template == packaged_alpaca_prompt()  # the package ships the same prompt
    h = src.arena_hard()
    assert len(h.questions) == 500 and len(h.baseline_answers) == 500
    assert h.judge_config["number_of_judgment_attempts"] == 2 and h.judge_config["regex_pattern"]
    m = src.mt_bench()
    assert len(m.questions) == 80 and {"single-v1", "single-math-v1-multi-turn"} <= set(m.judge_prompts)
    assert all(q["question_id"] in m.references for q in m.questions if q["category"] in ("math", "reasoning"))


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match="mt_bench/question.jsonl"):
        DataSource(tmp_path).mt_bench()


def test_no_download_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--data-dir"):
        DataSource(None, cache=tmp_path).arena_hard()


def test_fastchat_temperatures():
    assert mt_bench_temperature("writing") == 0.7 and mt_bench_temperature("math") == 0.0
    assert mt_bench_temperature("stem") == 0.1 and mt_bench_temperature("unknown") == 0.7
    assert set(MT_BENCH_TEMPERATURE) >= {"writing", "roleplay", "extraction", "math", "coding", "reasoning", "stem",
                                         "humanities"}
