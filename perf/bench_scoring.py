"""Scoring: the four suites' figures for three iterations from cached judgments, and judge calls on a rerun.

1. `sppo-bench --alpaca-eval --arena-hard --mt-bench Iter1 Iter2 Iter3` (benchmarks.run_cmd, the real runner) on
   three tiny random checkpoints, judged by a fake OpenAI-compatible judge on 127.0.0.1 (tests/bench_fake_judge.py), with
   `--limit` items per benchmark. Judge calls are counted by the server:
   - first run: every judgment is a call;
   - the same command again: results up to date, 0 calls expected;
   - store records, judgment files and annotations deleted, `--rerun`: everything recomputed from the on-disk
     judge cache (benchmarks.judge.JudgeCache), 0 calls expected.
2. Scoring seconds: `sppo-bench score` (benchmarks.score_cmd) on the files the runner wrote - AlpacaEval 2
   annotations (one file per iteration), the Arena-Hard judgment directory (all three, 100 bootstrap rounds), the
   MT-Bench judgment file - and on lm-eval v0.4.1 results files for the three iterations. The lm-eval files are
   written here (the six Open LLM Leaderboard v1 tasks with made-up accuracies): running the real v1 tasks needs
   the Hub, and the offline tiny task's results are not in the v1 format `score lm-eval` reads.
   Timed per suite and in total, median of the repeats after a warm-up.

There is no reference-way ratio here: the reference scripts have no common runner to compare against. lm-eval
involves no judge.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from pathlib import Path

from tests.bench_fake_judge import FakeJudgeServer
from perf.fixtures import tiny_llama
from perf.timing import case, interleaved

JUDGE = "perf-judge"
KEY_ENV = "PERF_FAKE_JUDGE_KEY"  # the fake server ignores it; the runner insists on a variable name
MODELS = ("Iter1", "Iter2", "Iter3")


def shared_data_dir() -> Path:
    env = os.environ.get("SPPO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _bench(argv: list[str]) -> tuple[int, str]:
    from benchmarks.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(argv)
    return rc, out.getvalue()


def write_lm_eval_results(directory: Path) -> list[Path]:
    """An lm-eval v0.4.1 results JSON per iteration with the six v1 tasks (made-up accuracies)."""
    from benchmarks.scoring.lm_eval import TASKS

    paths = []
    for n, model in enumerate(MODELS):
        results = {task: {key: 0.3 + 0.05 * n + 0.01 * i, key.replace(",", "_stderr,"): 0.01, "alias": task}
                   for i, (task, (key, _)) in enumerate(TASKS.items())}
        data = {"results": results, "groups": {}, "n-shot": {t: shots for t, (_, shots) in TASKS.items()},
                "config": {"model": "hf", "model_args": f"pretrained=/checkpoints/{model}"}, "versions": {}}
        path = directory / model / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        paths.append(path)
    return paths


SUITES = ("alpaca_eval", "arena_hard", "mt_bench")  # the judged suites the runner is timed on


def wipe_judgments(results: Path) -> None:
    """Store records, annotations and judgment files gone: a rerun recomputes them from the judge cache alone."""
    from benchmarks.store import ResultsStore

    store = ResultsStore(results)
    for model in MODELS:
        for suite in SUITES:
            store.path(model, suite).unlink(missing_ok=True)
        (results / "alpaca_eval" / model / "annotations.json").unlink(missing_ok=True)
    shutil.rmtree(results / "arena_hard" / "model_judgment", ignore_errors=True)
    shutil.rmtree(results / "mt_bench" / "model_judgment", ignore_errors=True)


def run_benchmarks(ckpts: list[Path], data: Path, results: Path, limit: int) -> dict:
    """The runner three times (first run, up to date, recompute from the cache): exit code, judge calls and
    seconds of each."""
    os.environ.setdefault(KEY_ENV, "not-a-secret")
    runner = {}
    with FakeJudgeServer() as judge:
        argv = ["--alpaca-eval", "--arena-hard", "--mt-bench", *map(str, ckpts), "--limit", str(limit),
                "--max-new-tokens", "8", "--judge-base-url", judge.url, "--judge-model", JUDGE,
                "--judge-api-key-env", KEY_ENV, "--judge-backoff", "0.01", "--data-dir", str(data),
                "--results-dir", str(results), "--generation-backend", "hf", "--batch-size", "8"]
        for label, extra in (("first_run", []), ("rerun_up_to_date", []), ("rerun_recompute_from_cache", ["--rerun"])):
            if label == "rerun_recompute_from_cache":
                wipe_judgments(results)
            before = judge.count()
            t0 = time.perf_counter()
            rc, out = _bench(argv + extra)
            runner[label] = {"exit_code": rc, "judge_calls": judge.count() - before,
                             "seconds": round(time.perf_counter() - t0, 3)}
            if rc != 0:
                raise RuntimeError(f"sppo-bench {label} exited {rc}: {out.strip()[-300:]}")
    return runner


def score_commands(results: Path, data: Path, lm_paths: list[Path], rounds: int) -> dict[str, list[list[str]]]:
    """The `sppo-bench score` command lines of each suite on the files the runner wrote."""
    jdir = results / "arena_hard" / "model_judgment" / JUDGE
    return {
        "alpaca_eval": [["score", "alpaca-eval", str(results / "alpaca_eval" / m / "annotations.json"), "--no-lc"]
                        for m in MODELS],
        "arena_hard": [["score", "arena-hard", str(jdir), "--questions",
                        str(data / "arena_hard_v0.1" / "question.jsonl"), "--answers",
                        str(results / "arena_hard" / "model_answer"), "--num-rounds", str(rounds)]],
        "mt_bench": [["score", "mt-bench", str(results / "mt_bench" / "model_judgment" / f"{JUDGE}_single.jsonl"),
                      "--questions", str(data / "mt_bench" / "question.jsonl")]],
        "lm_eval": [["score", "lm-eval", str(p), "--model", m] for p, m in zip(lm_paths, MODELS)],
    }


def scorer(command_lines: list[list[str]]):
    """A timed function running the given `sppo-bench score` commands."""
    def go():
        for argv in command_lines:
            rc, _ = _bench(argv)
            if rc != 0:
                raise RuntimeError(f"sppo-bench {' '.join(argv[:2])} exited {rc}")
    return go


def result_cases(times: dict, repeats: int, runner: dict, settings: dict) -> list[dict]:
    total = [sum(times[s][i] for s in times) for i in range(repeats)]
    rerun_calls = runner["rerun_up_to_date"]["judge_calls"] + runner["rerun_recompute_from_cache"]["judge_calls"]
    return [case("scoring/all four suites x 3 iterations", "s", total, None, None, higher_is_better=False,
                 settings=settings, per_suite={s: case(f"scoring/{s}", "s", times[s], None, None, False)["ours"]
                                               for s in times},
                 notes=["lm-eval scored from written v1 results files (no judge involved)"]),
            {"name": "scoring/judge calls on rerun", "metric": "calls", "higher_is_better": False,
             "ours": {"median": rerun_calls, "min": rerun_calls, "max": rerun_calls, "n": 1},
             "reference": None, "ratio": None, "target": "0", "target_met": rerun_calls == 0,
             "settings": settings, "runner": runner, "notes": [
                 "calls counted by the fake judge server; first_run is the cost the cache saves on reruns"]}]


def run(opts: dict) -> dict:
    work = Path(opts["work"]) / "scoring"
    quick = opts["quick"]
    data = shared_data_dir()
    if not data.is_dir():
        raise RuntimeError(f"reference benchmark data not found at {data} (set SPPO_SHARED_DATA)")
    ckpts = [tiny_llama(work / "checkpoints" / m, seed=i, hidden_size=32, layers=1) for i, m in enumerate(MODELS)]
    results = work / "results"
    shutil.rmtree(results, ignore_errors=True)
    limit = 1 if quick else 3
    runner = run_benchmarks(ckpts, data, results, limit)
    rounds = 10 if quick else 100  # Arena-Hard bootstrap rounds (the official 100 in the default suite)
    commands = score_commands(results, data, write_lm_eval_results(work / "lm_eval"), rounds)
    times = interleaved({s: scorer(lines) for s, lines in commands.items()}, opts["repeats"])
    settings = {"iterations": list(MODELS), "limit_per_benchmark": limit, "judge": f"fake ({JUDGE}, 127.0.0.1)",
                "arena_hard_bootstrap_rounds": rounds}
    return {"cases": result_cases(times, opts["repeats"], runner, settings), "runner": runner}
