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
    from sppo.package_shims import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval

    from benchmarks import suites
    from benchmarks.answers import ModelAnswerer
    from benchmarks.scoring import lm_eval as le
    from sppo.files import read_json

    calls = []

    def fake_simple_evaluate(model, tasks, num_fewshot, model_args=None, limit=None, log_samples=False, **kw):
        (task,) = tasks
        # the model object, never an argument string (model_args only records the values)
        assert model == f"hf:{ck}" and not isinstance(model_args, str)
        calls.append((task, num_fewshot, limit, log_samples))
        metric = le.TASKS[task][0]
        return {"results": {task: {metric: 0.25 + 0.1 * len(calls), "alias": task}}, "configs": {task: {}},
                "versions": {task: 1.0}, "n-shot": {task: num_fewshot}, "config": {"model": model},
                "samples": {task: [{"doc_id": 0, "resps": [["x"]]}]}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_simple_evaluate)
    monkeypatch.setattr(suites.lm_eval, "hf_model", lambda job, device: f"hf:{job.path}")  # no weights to load
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    ctx = suites.RunContext(results_dir=tmp_path / "res", data=DataSource(tmp_path), lm_eval_tasks="v1")
    ctx.answer_settings.limit = 3
    target = suites.ModelTarget("Iter1", str(ck), str(ck), ModelAnswerer(str(ck)))
    r = suites.lm_eval.run(ctx, target).result
    assert [(t, n) for t, n, _, _ in calls] == [(t, shots) for t, (_, shots) in le.TASKS.items()]
    assert all(limit == 3 and samples for _, _, limit, samples in calls)
    merged = read_json(tmp_path / "res" / "lm_eval" / "Iter1" / "results.json")
    assert r.metrics == le.score_results(merged) and r.variant == "default"
    assert (tmp_path / "res" / "lm_eval" / "Iter1" / "samples_gsm8k.jsonl").exists()
    again = suites.lm_eval.run(ctx, target).result
    assert len(calls) == 6 and again.metrics == r.metrics


def test_pinned_files_are_the_official_copies(shared_data):
    """Every download is pinned to a full commit, and its SHA-256 is that of the official file (the copies in
    ../shared/data, taken from the same repositories)."""
    from benchmarks import data

    for (sub, name), pin in data.PINNED.items():
        assert len(pin.commit) == 40 and pin.url.startswith(f"https://raw.githubusercontent.com/{pin.repo}/{pin.commit}/")
        assert data._sha256(shared_data / sub / name) == pin.sha256, f"{sub}/{name}"
    assert {f for files in data.SUITE_FILES.values() for f in files} == set(data.PINNED)


def test_download_fetches_the_pinned_commit_and_refuses_other_bytes(tmp_path, monkeypatch):
    import hashlib
    from types import SimpleNamespace

    import httpx

    from benchmarks import data

    body = {"content": b'{"question_id": 81}\n'}
    urls = []

    def fake_get(url, **kw):
        urls.append(url)
        return SimpleNamespace(content=body["content"], raise_for_status=lambda: None)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(httpx, "get", fake_get)
    pin = data.Pinned("lm-sys/FastChat", "a" * 40, "x/question.jsonl",
                      hashlib.sha256(b'{"question_id": 81}\n').hexdigest())
    monkeypatch.setitem(data.PINNED, (data.MT_DIR, data.MT_QUESTIONS), pin)
    source = data.DataSource(None, cache=tmp_path / "cache")
    body["content"] = b"tampered\n"
    with pytest.raises(UserError, match="SHA-256"):
        source.file(data.MT_DIR, data.MT_QUESTIONS)
    assert not any((tmp_path / "cache").rglob("*"))  # nothing written, not even a partial file
    body["content"] = b'{"question_id": 81}\n'
    path = source.file(data.MT_DIR, data.MT_QUESTIONS)
    assert urls == [f"https://raw.githubusercontent.com/lm-sys/FastChat/{'a' * 40}/x/question.jsonl"] * 2
    assert path.read_text() == '{"question_id": 81}\n'


def test_data_digest_follows_the_content_not_the_directory(shared_data, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shared_data / "mt_bench", copy / "mt_bench")
    assert DataSource(copy).digest("mt_bench") == DataSource(shared_data).digest("mt_bench")
    assert DataSource(copy).digest("lm_eval") is None
    with open(copy / "mt_bench" / "judge_prompts.jsonl", "a") as f:
        f.write("\n")
    assert DataSource(copy).digest("mt_bench") != DataSource(shared_data).digest("mt_bench")
