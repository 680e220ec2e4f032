"""A user's own benchmark in one file: `sppo-bench --suite FILE.yaml` runs the pairwise suite that
examples/pairwise-suite/suite.yaml defines on the judging engine every suite shares, against the logging fake judge
(tests/bench_fake_judge.py): answers, judgments, the score, the cache and resume, `sppo-bench table` and the card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_fake_judge import FakeJudgeServer
from benchmarks.cli import main as bench
from benchmarks.scoring import pairwise
from benchmarks.store import ResultsStore
from sppo.errors import UserError
from sppo.files import read_jsonl

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pairwise-suite" / "suite.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from perf.fixtures import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny1", seed=0)


def _argv(server, checkpoint, results, *extra):
    return ["--suite", str(EXAMPLE), str(checkpoint), "--limit", "3", "--max-new-tokens", "4",
            "--judge-base-url", server.url, "--judge-model", "fake-judge", "--judge-api-key-env", "BENCH_KEY",
            "--judge-backoff", "0.01", "--results-dir", str(results), "--generation-backend", "hf", *extra]


def test_a_suite_file_runs_on_the_engine_and_shows_in_table_and_card(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_KEY", "sk-x")
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        assert bench(_argv(server, checkpoint, results)) == 0
        assert len(server.requests) == 3 * 2  # three prompts, both positions; nothing else (no built-in suite)
        assert all("[[A]]" in r["messages"][0]["content"] for r in server.requests)
        out = capsys.readouterr().out
        assert "tiny1/everyday_help" in out and "win rate" in out
        assert out.splitlines()[-1].startswith("report: ") and "the report was not written" not in out
        assert 'id="table-everyday_help"' in (results / "report.html").read_text()  # the page shows its table too
        result = ResultsStore(results).read("tiny1", "everyday_help")
        rows = read_jsonl(results / "everyday_help" / "model_judgment" / "fake-judge" / "tiny1.jsonl")
        assert [r["id"] for r in rows] == ["p1", "p2", "p3"]
        assert [[g["model_position"] for g in r["games"]] for r in rows] == [["A", "B"]] * 3
        want = pairwise.score_games(rows, {"A": "a", "B": "b", "C": "tie"})
        assert {k: result.metrics[k] for k in want} == want and result.metrics["n_games"] == 6
        assert result.settings["kind"] == "pairwise" and result.settings["reused"]["judgments"] == 0

        assert bench(_argv(server, checkpoint, results)) == 0  # up to date: kept, no request
        assert len(server.requests) == 6 and "up to date, kept: tiny1/everyday_help" in capsys.readouterr().out
        assert bench(_argv(server, checkpoint, results, "--rerun")) == 0  # recomputed: every row reused by key
        assert len(server.requests) == 6
        assert ResultsStore(results).read("tiny1", "everyday_help").settings["reused"]["judgments"] == 3
    capsys.readouterr()
    assert bench(["table", "--results-dir", str(results)]) == 0
    table = capsys.readouterr().out
    assert "## Everyday help (pairwise vs reference answers)" in table
    assert f"{result.metrics['win_rate']:.2f}" in table and "Win Rate vs reference answers" in table


def test_the_card_shows_a_suite_of_your_own_but_not_in_the_model_index(tmp_path):
    from release.card import render_card, results_from_store
    from release.card.naming import ReleaseInfo
    from release.run import load_run
    from release_testutil import make_run

    from benchmarks.store import SuiteResult

    run = make_run(tmp_path)
    store = ResultsStore(run / "results")
    store.write(SuiteResult(model="Iter3", suite="everyday_help", metrics={
        "win_rate": 62.5, "n_wins": 3, "n_ties": 1, "n_losses": 2, "n_games": 6, "n_invalid": 0, "avg_length": 40},
        settings={"kind": "pairwise", "title": "Everyday help", "baseline_model": "reference answers"},
        judge={"backend": "openai", "model": "gpt-4o"}))
    iterations = load_run(run)
    release = ReleaseInfo(family="Fam")
    card = str(render_card(release, iterations, iterations[-1], results_from_store(store, iterations, release)))
    assert "## Everyday help\n" in card and "| Fam Iter 3 | 62.50 | 3 / 1 / 2 | 40 |" in card
    assert "everyday_help" not in card.split("---")[1]  # the metadata (model-index) holds leaderboard figures only


@pytest.mark.parametrize("text, words", [
    ("name: mt_bench\n", ["suite.yaml", "name", "none of"]),
    ("name: mine\nverdicts: {A: a, B: maybe}\n", ["suite.yaml", "verdicts", "'maybe'"]),
    ("name: mine\ngeneration: {max_new_tokens: 0}\n", ["suite.yaml", "generation.max_new_tokens", ">= 1"]),
    ("name: mine\nnonsense: 1\n", ["suite.yaml", "unknown key 'nonsense'"]),
])
def test_a_bad_suite_file_is_one_line(tmp_path, text, words):
    from benchmarks.suites.pairwise import load

    for name in ("prompts.jsonl", "baseline.jsonl", "judge.txt"):
        (tmp_path / name).write_text((EXAMPLE.parent / name).read_text())
    (tmp_path / "suite.yaml").write_text(text)
    with pytest.raises(UserError) as e:
        load(tmp_path / "suite.yaml")
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)


def test_the_example_files_hold_together():
    from benchmarks.suites.pairwise import load

    suite = load(EXAMPLE)
    assert len(suite.prompts) == len(suite.baseline) == 6 and suite.spec.labels == ("A", "B", "C")
    assert json.loads((EXAMPLE.parent / "prompts.jsonl").read_text().splitlines()[0])["id"] == "p1"
