"""Benchmark data loading (local directory in the official formats; downloads refused offline), answer settings."""

from __future__ import annotations

import pytest

from benchmarks.scoring.mt_bench import TEMPERATURE_CONFIG as MT_BENCH_TEMPERATURE
from benchmarks.suites.mt_bench import mt_bench_temperature
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


def test_lm_eval_v1_settings_and_resume(tmp_path, monkeypatch):
    """The v1 plan (task names and few-shot counts of the Open LLM Leaderboard v1) through simple_evaluate, the
    harness's JSON kept per task and merged, scored by benchmarks.scoring.lm_eval; finished tasks are not rerun."""
    from sppo.compat import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval

    from benchmarks import suites
    from benchmarks.answers import ModelAnswerer
    from benchmarks.scoring import lm_eval as le
    from sppo.files import read_json

    calls = []

    def fake_simple_evaluate(model, tasks, num_fewshot, model_args=None, limit=None, log_samples=False, **kw):
        (task,) = tasks
        assert model == ("HFLM", str(ck)) and model_args is None  # the model object, never an argument string
        calls.append((task, num_fewshot, limit, log_samples))
        metric = le.TASKS[task][0]
        return {"results": {task: {metric: 0.25 + 0.1 * len(calls), "alias": task}}, "configs": {task: {}},
                "versions": {task: 1.0}, "n-shot": {task: num_fewshot}, "config": {"model": model},
                "samples": {task: [{"doc_id": 0, "resps": [["x"]]}]}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_simple_evaluate)
    monkeypatch.setattr(suites.lm_eval, "load_hf_model", lambda path, *a: ("HFLM", path))
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    ctx = suites.RunContext(results_dir=tmp_path / "res", data=DataSource(tmp_path), lm_eval_tasks="v1")
    ctx.answer_settings.limit = 3
    target = suites.ModelTarget("Iter1", str(ck), str(ck), ModelAnswerer(str(ck)))
    r = suites.lm_eval.run(ctx, target)
    assert [(t, n) for t, n, _, _ in calls] == [(t, shots) for t, (_, shots) in le.TASKS.items()]
    assert all(limit == 3 and samples for _, _, limit, samples in calls)
    merged = read_json(tmp_path / "res" / "lm_eval" / "Iter1" / "results.json")
    assert r.metrics == le.score_results(merged) and r.variant == "default"
    assert (tmp_path / "res" / "lm_eval" / "Iter1" / "samples_gsm8k.jsonl").exists()
    again = suites.lm_eval.run(ctx, target)
    assert len(calls) == 6 and again.metrics == r.metrics


def test_hub_downloads_pass_the_pinned_revision(tmp_path, monkeypatch):
    import huggingface_hub

    from benchmarks import data

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        src = tmp_path / "src.jsonl"
        src.write_text('{"question_id": 81}\n')
        return str(src)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setitem(data.HUB_REVISIONS, data.MT_HUB_SPACE, "0123abc")
    source = data.DataSource(None, cache=tmp_path / "cache")
    path = source.file(data.MT_DIR, data.MT_QUESTIONS,
                       data._hub_space_download(data.MT_HUB_SPACE, data.MT_HUB_FILES[data.MT_QUESTIONS]))
    assert calls == [{"repo_id": "lmsys/mt-bench", "filename": "data/mt_bench/question.jsonl", "repo_type": "space",
                      "revision": "0123abc"}]
    assert path.read_text() == '{"question_id": 81}\n'
