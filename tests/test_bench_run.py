"""`sppo-bench --all` end to end on two tiny checkpoints against a fake OpenAI-compatible judge on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
from benchmarks.cli import main as bench
from benchmarks.report import collect
from benchmarks.scoring import alpaca_eval as ae
from benchmarks.scoring import arena_hard as ah
from benchmarks.scoring import mt_bench as mt
from benchmarks.inputs import read_jsonl_lines
from benchmarks.store import ResultsStore
from sppo.files import read_json, read_jsonl

SUITES = ("alpaca_eval", "arena_hard", "mt_bench")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny random Llama checkpoints with the embedded model's tokenizer (chat template included)."""
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpts"))


def args_for(server, checkpoints, shared_data, results, *extra):
    return bench_args(server, checkpoints, shared_data, results, *extra)


def metrics_of(store, model):
    return {(r.suite, r.variant): r.metrics for r in store.results(model)}


def rescore(results: Path, model: str, n: int, shared_data: Path) -> dict:
    """The scoring cores applied to the judgment files the run wrote."""
    ann_path = results / "alpaca_eval" / model / "annotations.json"
    alpaca = ae.score_annotations(read_json(ann_path), source=str(ann_path),
                                  lc_unavailable_reason="x")[model]
    jdir = results / "arena_hard" / "model_judgment" / "fake-judge"
    rows, lines = [], []
    for f in sorted(jdir.glob("*.jsonl")):
        r, ln = read_jsonl_lines(f)
        rows += r
        lines += ln
    answers = {f.stem: read_jsonl(f) for f in (results / "arena_hard" / "model_answer").glob("*.jsonl")}
    qids = {str(q["question_id"]) for q in read_jsonl(shared_data / "arena_hard_v0.1" / "question.jsonl")[:n]}
    arena = ah.score_judgments(rows, answers=answers, question_ids=qids)[model]
    mrows = [r for r in read_jsonl(results / "mt_bench" / "model_judgment" / "fake-judge_single.jsonl")
             if r["model"] == model]
    questions = read_jsonl(shared_data / "mt_bench" / "question.jsonl")[:n]
    mtb = mt.score_judgments(mrows, questions=questions)[model]
    mtb.pop("judge")
    return {"alpaca_eval": alpaca, "arena_hard": arena, "mt_bench": mtb}


def test_all_suites_end_to_end_then_cached(checkpoints, shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_KEY", "sk-bench-SECRET-42")
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        argv = args_for(server, checkpoints, shared_data, results, "--all")
        assert bench(argv) == 0
        first_calls = server.count()
        # 2 models x (2 AlpacaEval + 2 questions x 2 Arena-Hard games + 2 questions x 2 MT-Bench turns) requests;
        # the tiny models may sample one identical answer, whose judgment request is then a cache hit
        total = 2 * (2 + 4 + 4)
        out = capsys.readouterr().out
        assert f"judge fake-judge: {first_calls} calls, {total - first_calls} cache hits" in out
        # the report of the store, its path printed last; it reads every judged prompt of the suites' own files
        assert out.splitlines()[-1].startswith(f"report: {results / 'report.html'} (")
        report = collect(results)
        assert [(b.suite, len(b.items), b.columns) for b in report.browsers] == [
            (s, 2, ["tiny1", "tiny2"]) for s in SUITES]
        assert all(c.answer and c.notes and c.verdicts for b in report.browsers for item in b.items
                   for c in item.cells.values())
        assert all(h.get("Authorization") == "Bearer sk-bench-SECRET-42" for h in server.headers)
        store = ResultsStore(results)
        first = {m: metrics_of(store, m) for m in ("tiny1", "tiny2")}
        for model in ("tiny1", "tiny2"):
            assert set(first[model]) == {("alpaca_eval", "default"), ("arena_hard", "default"),
                                         ("mt_bench", "default"), ("lm_eval", "sppo-tiny-mc")}
            expected = rescore(results, model, 2, shared_data)
            for suite in SUITES:
                got, want = dict(first[model][suite, "default"]), json.loads(json.dumps(expected[suite]))
                if suite == "alpaca_eval":  # LC needs df_gamed.csv (not in the shared data): None, with a note
                    assert got.pop("notes")[0].startswith("length_controlled_winrate not computed")
                    want.pop("notes")
                    assert got["length_controlled_winrate"] is None
                assert got == want, suite
            r = store.read(model, "alpaca_eval")
            assert r.judge["model"] == "fake-judge" and r.judge["api_key_env"] == "BENCH_KEY"
            assert r.checkpoint["fingerprint"] and r.settings["limit"] == 2 and r.versions.get("alpaca-eval")
            lm = store.read(model, "lm_eval", "sppo-tiny-mc")
            harness = read_json(results / "lm_eval" / model / "results.json")
            assert lm.metrics["sppo_tiny_mc"] == harness["results"]["sppo_tiny_mc"]["acc_norm,none"] * 100
            assert (results / "lm_eval" / model / "samples_sppo_tiny_mc.jsonl").stat().st_size > 0
        # official file formats
        outputs = read_json(results / "alpaca_eval" / "tiny1" / "model_outputs.json")
        # the official fields, plus the key of what produced each answer (the official tools ignore extra fields)
        assert [set(o) for o in outputs] == [{"dataset", "instruction", "output", "generator", "sppo_key"}] * 2
        answer = read_jsonl(results / "arena_hard" / "model_answer" / "tiny1.jsonl")[0]
        assert isinstance(answer["choices"][0]["turns"][0]["token_len"], int)
        mt_answer = read_jsonl(results / "mt_bench" / "model_answer" / "tiny1.jsonl")[0]
        assert len(mt_answer["choices"][0]["turns"]) == 2
        judgment = read_jsonl(results / "arena_hard" / "model_judgment" / "fake-judge" / "tiny1.jsonl")[0]
        assert [set(g) for g in judgment["games"]] == [{"user_prompt", "judgment", "score"}] * 2
        assert judgment["judge"] == "fake-judge" and judgment["sppo_key"]
        for f in results.rglob("*"):
            if f.is_file() and f.suffix in {".json", ".jsonl", ".sqlite3"}:
                assert b"SECRET" not in f.read_bytes(), f

        # the same command again: everything is up to date, zero judge calls, identical results
        assert bench(argv) == 0
        assert server.count() == first_calls
        assert {m: metrics_of(store, m) for m in ("tiny1", "tiny2")} == first

        # recompute from scratch but keep the answers and the judge cache: still zero judge calls, same figures
        for model in ("tiny1", "tiny2"):
            for suite in SUITES:
                store.path(model, suite).unlink()
        shutil.rmtree(results / "arena_hard" / "model_judgment")
        shutil.rmtree(results / "mt_bench" / "model_judgment")
        for model in ("tiny1", "tiny2"):
            (results / "alpaca_eval" / model / "annotations.json").unlink()
        capsys.readouterr()
        assert bench(argv + ["--rerun"]) == 0
        assert server.count() == first_calls
        assert "0 calls, 20 cache hits" in capsys.readouterr().out
        assert {m: metrics_of(store, m) for m in ("tiny1", "tiny2")} == first

    # the card's tables and the plots
    assert bench(["table", "--results-dir", str(results), "--plots"]) == 0
    out = capsys.readouterr().out
    for title in ("AlpacaEval 2", "Arena-Hard v0.1", "Open LLM Leaderboard", "MT-Bench"):
        assert f"## {title}" in out
    assert "| tiny1 " in out and "| tiny2 " in out
    for suite in (*SUITES, "lm_eval"):
        assert (results / "plots" / f"{suite}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_judge_faults_retried_or_recorded_invalid(checkpoints, shared_data, tmp_path):
    results = tmp_path / "results"
    with FakeJudgeServer(timeout_sleep=1.5) as server:
        base = args_for(server, checkpoints[:1], shared_data, results, "--arena-hard")
        base[base.index("--limit") + 1] = "1"
        # 429, 500 and a timeout are retried; then the judge writes no verdict label in game 1 twice (official:
        # two attempts, the second asked to continue) -> that game has no verdict; game 2 is fine
        server.faults = [429, 500, "timeout", "no-verdict", "no-verdict", "no-verdict"]
        assert bench(base + ["--judge-concurrency", "1"]) == 0
        row = read_jsonl(results / "arena_hard" / "model_judgment" / "fake-judge" / "tiny1.jsonl")[0]
        assert row["games"][0]["score"] is None and row["games"][0]["judgment"].count("I cannot decide.") == 2
        assert row["games"][1]["score"] in ah.VERDICTS
        r = ResultsStore(results).read("tiny1", "arena_hard")
        assert r.metrics["n_invalid_games"] == 1 and r.judge["usage"]["retries"] == 3
        n = server.count()
        assert n == 3 + 1 + 1 + 2  # retried request, game 2, two continuations
        # a rerun re-asks the game without a verdict, but every reply is cached: no call, same record
        assert bench(base + ["--rerun"]) == 0
        assert server.count() == n
        assert read_jsonl(results / "arena_hard" / "model_judgment" / "fake-judge" / "tiny1.jsonl")[0] == row

        # MT-Bench with a judge that keeps failing: exit 1, nothing recorded, no judgment written
        mt_args = args_for(server, checkpoints[:1], shared_data, results, "--mt-bench") + ["--judge-max-retries", "1"]
        server.always = 500
        assert bench(mt_args) == 1
        jfile = results / "mt_bench" / "model_judgment" / "fake-judge_single.jsonl"
        assert not jfile.exists() or read_jsonl(jfile) == []
        assert ResultsStore(results).read("tiny1", "mt_bench") is None
        # the endpoint recovers: a plain rerun judges exactly the 4 failed requests
        server.always = None
        before = server.count()
        assert bench(mt_args) == 0
        assert server.count() == before + 4
        m = ResultsStore(results).read("tiny1", "mt_bench").metrics
        assert m["n_invalid"] == 0 and m["average"] is not None

        # AlpacaEval: a reply without the m/M logprobs has no preference (the official NaN): counted invalid
        server.faults = ["no-verdict"]
        alpaca_args = args_for(server, checkpoints[:1], shared_data, results, "--alpaca-eval")
        assert bench(alpaca_args + ["--judge-concurrency", "1"]) == 0
        ann = read_json(results / "alpaca_eval" / "tiny1" / "annotations.json")
        assert ann[0]["preference"] is None and ann[1]["preference"] is not None
        m = ResultsStore(results).read("tiny1", "alpaca_eval").metrics
        assert m["n_invalid"] == 1 and m["n_total"] == 1


def test_interrupted_run_resumes_without_rejudging(checkpoints, shared_data, tmp_path, monkeypatch):
    import benchmarks.judging as suites
    from benchmarks.judge import OpenAIJudge

    results = tmp_path / "results"
    monkeypatch.setattr(suites, "JUDGE_BATCH", 2)  # Arena-Hard: one question per batch; MT-Bench: 2 judgments
    original = OpenAIJudge.complete
    calls = {"n": 0}

    def interrupting(self, requests, progress=False):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, requests, progress)

    with FakeJudgeServer() as server:
        argv = args_for(server, checkpoints[:1], shared_data, results, "--arena-hard", "--mt-bench")
        argv[argv.index("--limit") + 1] = "3"
        monkeypatch.setattr(OpenAIJudge, "complete", interrupting)
        assert bench(argv) == 130  # Ctrl-C: finished judgments are kept
        jfile = results / "arena_hard" / "model_judgment" / "fake-judge" / "tiny1.jsonl"
        kept = read_jsonl(jfile)
        assert len(kept) == 1 and server.count() == 2
        (results / "judge_cache.sqlite3").unlink()  # so that re-judging would show as calls
        for extra in results.glob("judge_cache.sqlite3-*"):
            extra.unlink()
        monkeypatch.setattr(OpenAIJudge, "complete", original)
        assert bench(argv) == 0
        # the remaining 2 Arena-Hard questions (2 games each) and all 3 x 2 MT-Bench turns
        assert server.count() == 2 + 4 + 6
        rows = read_jsonl(jfile)
        assert len(rows) == 3 and rows[0] == kept[0]
        store = ResultsStore(results)
        assert store.read("tiny1", "arena_hard").metrics["n_judgments"] == 3
        assert store.read("tiny1", "mt_bench").metrics["n_scores"] == 6


@pytest.mark.slow
def test_embedded_default_offline(shared_data, tmp_path, capsys):
    """`sppo-bench --all Iter1 Iter2 Iter3` on a run's checkpoints with the in-process judge (embedded model)."""
    from sppo.models import embedded_checkpoint

    src = embedded_checkpoint()
    run = tmp_path / "run"
    for name in ("Iter1", "Iter2", "Iter3"):
        ck = run / "checkpoints" / name
        ck.mkdir(parents=True)
        for f in src.iterdir():
            (ck / f.name).symlink_to(f)
    argv = ["--all", "Iter1", "Iter2", "Iter3", "--run-dir", str(run), "--limit", "1", "--max-new-tokens", "8",
            "--judge-max-new-tokens", "16", "--data-dir", str(shared_data), "--generation-backend", "hf"]
    assert bench(argv) == 0
    store = ResultsStore(run / "results")
    assert store.models() == ["Iter1", "Iter2", "Iter3"]
    for model in store.models():
        got = {(r.suite, r.variant) for r in store.results(model)}
        assert got == {("alpaca_eval", "default"), ("arena_hard", "default"), ("mt_bench", "default"),
                       ("lm_eval", "sppo-tiny-mc")}
        assert store.read(model, "alpaca_eval").judge["model"] == "local:embedded"
    capsys.readouterr()
    assert bench(argv) == 0  # up to date
    assert "up to date" in capsys.readouterr().out
    assert bench(["table", "--run-dir", str(run), "--plots"]) == 0
    out = capsys.readouterr().out
    assert out.count("## ") == 4 and "| Iter3" in out
    # every table has numbers: where the small judge wrote no valid verdict, it was read from its logprobs
    for model in store.models():
        assert store.read(model, "arena_hard").metrics["score"] is not None
        assert store.read(model, "mt_bench").metrics["average"] is not None
    assert len(list((run / "results" / "plots").glob("*.png"))) == 4


def test_best_of_n_answers_the_rankers_favourite(checkpoints, shared_data, tmp_path):
    from bench_fake_judge import LongestRanker

    results = tmp_path / "results"
    LongestRanker.calls.clear()
    with FakeJudgeServer() as server:
        argv = args_for(server, checkpoints[:1], shared_data, results, "--alpaca-eval", "--best-of", "3",
                        "--ranker", "python:bench_fake_judge:LongestRanker")
        assert bench(argv) == 0
    store = ResultsStore(results)
    assert {(r.suite, r.variant) for r in store.results("tiny1")} == {("alpaca_eval", "default"),
                                                                      ("alpaca_eval", "best-of-3")}
    best = store.read("tiny1", "alpaca_eval", "best-of-3")
    assert best.settings["generation"]["best_of"] == 3
    outputs = read_json(results / "alpaca_eval.best-of-3" / "tiny1" / "model_outputs.json")
    candidates = [c for call in LongestRanker.calls for c in call]
    assert len(candidates) == 2 and all(len(c) == 3 for c in candidates)
    assert [o["output"] for o in outputs] == [max(c, key=len) for c in candidates]
    ann = read_json(results / "alpaca_eval.best-of-3" / "tiny1" / "annotations.json")
    assert best.metrics == json.loads(json.dumps(
        {**ae.score_annotations(ann, lc_unavailable_reason="x")["tiny1"], "notes": best.metrics["notes"]}))
