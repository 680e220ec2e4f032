"""Issue 14 in `sppo-bench`: judge failures are loud and lose nothing; the judge's identity keys every artifact;
stale answers are never reused; Ctrl-C / SIGTERM stop judging at once; concurrent runs share a store safely.
All against the fake OpenAI-compatible judge server (fault injection)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest

from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
from benchmarks.cli import main as bench
from benchmarks.judge import JudgeCache, JudgeRequest, OpenAIJudge
from benchmarks.store import ResultsStore
from sppo.files import read_json, read_jsonl

SECRET = "sk-fail-SECRET-77665544"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpts"))


def _files_contain(root, needle: bytes) -> list:
    return [f for f in root.rglob("*") if f.is_file() and needle in f.read_bytes()]


def test_failing_judge_exits_nonzero_records_nothing_and_scrubs_the_key(ckpts, shared_data, tmp_path, monkeypatch,
                                                                        capsys, caplog):
    monkeypatch.setenv("BENCH_KEY", SECRET)
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        argv = bench_args(server, ckpts[:1], shared_data, results, "--alpaca-eval", "--mt-bench")
        server.always = 401  # wrong key; the error body echoes the request headers, Authorization included
        capsys.readouterr()
        assert bench(argv) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2, err  # one line per failed suite, no other output (progress bars) on stderr
        assert err[0].startswith("error: alpaca_eval on tiny1: 2 judge requests failed (first: HTTP 401")
        assert err[1].startswith("error: mt_bench on tiny1: 4 judge requests failed (first: HTTP 401")
        assert all("invalid key" in line and "[REDACTED]" in line and SECRET not in line for line in err)
        assert SECRET not in caplog.text and "HTTP 401" in caplog.text  # 4xx failures are logged, scrubbed
        assert _files_contain(results, SECRET.encode()) == []
        store = ResultsStore(results)
        assert store.read("tiny1", "alpaca_eval") is None and store.read("tiny1", "mt_bench") is None
        ann = results / "alpaca_eval" / "tiny1" / "annotations.json"
        assert not ann.exists() or read_json(ann) == []
        # the key is fixed: a plain rerun (no --rerun) retries exactly the 6 failed requests
        server.always = None
        before = server.count()
        assert bench(argv) == 0
        assert server.count() == before + 2 + 4
        assert store.read("tiny1", "mt_bench").metrics["n_scores"] == 4


def test_empty_reply_is_a_failure_and_only_it_is_retried(ckpts, shared_data, tmp_path, capsys):
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        argv = bench_args(server, ckpts[:1], shared_data, results, "--mt-bench") + ["--judge-concurrency", "1"]
        server.faults = ["empty"]  # the first request gets `"content": null`
        capsys.readouterr()
        assert bench(argv) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and "mt_bench on tiny1: 1 judge request failed (first: empty reply" in err[0]
        rows = read_jsonl(results / "mt_bench" / "model_judgment" / "fake-judge_single.jsonl")
        assert len(rows) == 3 and all(r["score"] != -1 for r in rows)
        before = server.count()
        assert bench(argv) == 0
        assert server.count() == before + 1
        assert ResultsStore(results).read("tiny1", "mt_bench").metrics["n_scores"] == 4


def test_other_endpoint_same_model_name_is_another_judge(ckpts, shared_data, tmp_path):
    results = tmp_path / "results"
    with FakeJudgeServer() as a, FakeJudgeServer() as b:
        assert bench(bench_args(a, ckpts[:1], shared_data, results, "--alpaca-eval", "--mt-bench",
                                "--arena-hard")) == 0
        assert a.count() == 2 + 4 + 4
        assert bench(bench_args(b, ckpts[:1], shared_data, results, "--alpaca-eval", "--mt-bench",
                                "--arena-hard")) == 0
        assert b.count() == 2 + 4 + 4  # nothing of endpoint a is reused for endpoint b
        for suite in ("alpaca_eval", "mt_bench", "arena_hard"):
            r = ResultsStore(results).read("tiny1", suite)
            assert r.judge["base_url"] == b.url and r.settings["run_key"]["judge"]["base_url"] == b.url


def test_changed_generation_or_judge_recomputes_exactly_the_affected_artifacts(ckpts, shared_data, tmp_path, capsys):
    results = tmp_path / "results"
    suites = ("--alpaca-eval", "--mt-bench", "--arena-hard")
    with FakeJudgeServer() as server:
        assert bench(bench_args(server, ckpts[:1], shared_data, results, *suites, max_new_tokens=8)) == 0
        first = {f: read_jsonl(f) for f in (results / "mt_bench" / "model_answer").glob("*.jsonl")}
        n1 = server.count()
        capsys.readouterr()
        assert bench(bench_args(server, ckpts[:1], shared_data, results, *suites, max_new_tokens=4)) == 0
        out = capsys.readouterr().out
        assert out.count("reused 0 answers, 0/") == 3, out  # new answers, so every judgment is new too
        assert server.count() == 2 * n1
        for f, rows in first.items():
            assert {r["sppo_key"] for r in read_jsonl(f)}.isdisjoint({r["sppo_key"] for r in rows})
        for suite in ("alpaca_eval", "mt_bench", "arena_hard"):
            assert ResultsStore(results).read("tiny1", suite).settings["generation"]["max_new_tokens"] == 4
        # the same command again: all kept; with --rerun: recomputed from the reused answers and judgments
        assert bench(bench_args(server, ckpts[:1], shared_data, results, *suites, max_new_tokens=4)) == 0
        assert "up to date, kept: tiny1/alpaca_eval, tiny1/arena_hard, tiny1/mt_bench" in capsys.readouterr().out
        assert bench(bench_args(server, ckpts[:1], shared_data, results, *suites, "--rerun", max_new_tokens=4)) == 0
        out = capsys.readouterr().out
        assert "reused 2 answers, 2/2 judgments" in out and "reused 2 answers, 4/4 judgments" in out
        assert server.count() == 2 * n1
        # another judge model: answers reused, every judgment asked of the new judge
        assert bench(bench_args(server, ckpts[:1], shared_data, results, *suites, max_new_tokens=4,
                                model="fake-judge-2")) == 0
        assert server.count() == 3 * n1
        assert {b["model"] for b in server.requests[-n1:]} == {"fake-judge-2"}
        assert capsys.readouterr().out.count("reused 2 answers, 0/") == 3


@pytest.fixture
def sigint_raises():
    """Ctrl-C as an interactive user has it: a shell starts background jobs with SIGINT ignored, and Python then
    keeps ignoring it, so a test suite run with `&` would never see the KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupt_stops_sending_at_once_and_keeps_received_replies(tmp_path, sigint_raises):
    requests = [JudgeRequest.make([{"role": "user", "content": f"question {i}"}], 10) for i in range(40)]
    with FakeJudgeServer() as server:
        server.delay = 0.2
        judge = OpenAIJudge("fake-judge", base_url=server.url, api_key_env=None, max_concurrency=2, timeout=5,
                            cache=JudgeCache(tmp_path / "cache.sqlite3"))
        sent_at = []

        def interrupt_after_two_replies():
            deadline = time.monotonic() + 60
            while len(judge.cache) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            sent_at.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_after_two_replies, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            judge.complete(requests)
        assert time.monotonic() - sent_at[0] < 2.0  # old code: sent all 40 (about 4 s) before giving up
        time.sleep(0.5)
        sent, cached = server.count(), len(judge.cache)
        assert 2 <= cached <= sent <= 10
        server.delay = 0.0
        again = OpenAIJudge("fake-judge", base_url=server.url, api_key_env=None, cache=judge.cache)
        replies = again.complete(requests)
        assert all(r.ok for r in replies) and again.stats.cache_hits == cached
        assert server.count() == sent + 40 - cached


def test_sigterm_stops_the_bench_run_with_a_resume_hint(ckpts, shared_data, tmp_path, capsys):
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        argv = bench_args(server, ckpts[:1], shared_data, results, "--alpaca-eval", limit=10)
        argv += ["--judge-concurrency", "1"]
        server.delay = 0.3

        def terminate_after_two_requests():
            deadline = time.monotonic() + 120
            while server.count() < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=terminate_after_two_requests, daemon=True).start()
        start = time.monotonic()
        assert bench(argv) == 130
        assert time.monotonic() - start < 60
        assert "rerun the same command to resume" in capsys.readouterr().err
        time.sleep(0.5)
        sent = server.count()
        assert sent <= 4  # old code: the whole batch of 10
        server.delay = 0.0
        assert bench(argv) == 0
        assert server.count() <= 10 + 1  # received replies were kept; at most the one in flight is asked again
        assert ResultsStore(results).read("tiny1", "alpaca_eval").settings["n_instructions"] == 10


def _writer(path: str, model: str, rounds: int) -> None:
    from pathlib import Path

    from benchmarks.judging import SharedJsonlFile

    for i in range(rounds):
        rows = [{"question_id": q, "model": model, "turn": 1, "score": i} for q in range(i + 1)]
        SharedJsonlFile(Path(path), model).write(rows)


def test_two_processes_sharing_the_mt_bench_judgment_file_lose_nothing(tmp_path):
    path = tmp_path / "model_judgment" / "judge_single.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), m, 40)) for m in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = read_jsonl(path)
    for model in ("A", "B"):  # each process's last update holds 40 rows with score 39
        mine = [r for r in rows if r["model"] == model]
        assert len(mine) == 40 and {r["score"] for r in mine} == {39}


def test_log_lines_are_scrubbed(caplog):
    from sppo.scrub import ScrubFilter, register_secret

    register_secret(SECRET)
    logger = logging.getLogger("bench-scrub-test")
    handler = logging.StreamHandler(open(os.devnull, "w"))
    handler.addFilter(ScrubFilter())
    caplog.handler.addFilter(ScrubFilter())
    logger.warning("request failed: %s / Authorization: Bearer other-token-123 / %s", SECRET, "x")
    assert SECRET not in caplog.text and "other-token-123" not in caplog.text
    assert "request failed: [REDACTED]" in caplog.text
