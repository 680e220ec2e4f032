"""`sppo-bench` on 2 real processes (torchrun, gloo on CPU; and two one-process "nodes"): the answers, judgments and
results equal those of one process, only rank 0 talks to the judge endpoint, the ranks share the work.

What is compared bit for bit, and why it can be: answers are cut into chunks that do not depend on the number of
processes, each sampled with its own seed, so a chunk's tokens are the same whichever rank made it (one thread per
process); the endpoint judge sees the same requests; the local judge's chunks are fixed the same way. lm-eval's
accuracies are compared exactly and their standard errors to the last bits: lm-eval deals the documents to the
ranks itself (document i to rank i mod N), batches each rank's share (so a log-likelihood may differ in the last
bits from one process's, which could move an accuracy only on an exact tie) and sums the gathered items in
another order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
from sppo.files import read_json, read_jsonl
from test_distributed import ENV as DIST_ENV
from test_distributed import TESTS, launch_two_nodes, torchrun

ENV = {**DIST_ENV, "BENCH_KEY": "sk-x"}
VOLATILE = {"answer_id", "tstamp"}  # FastChat/Arena-Hard answer fields that are fresh on every run


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpts"))


def bench(launcher: list[str], args: list[str], timeout=900) -> subprocess.CompletedProcess:
    r = subprocess.run([*launcher, "-m", "benchmarks.cli", *args], env=ENV, capture_output=True, text=True,
                       timeout=timeout, cwd=TESTS.parent)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


ONE = [sys.executable]


def artifacts(results: Path) -> dict[str, object]:
    """Every answer, judgment and result file of a results store (volatile fields and paths left out)."""
    out: dict[str, object] = {}
    for f in sorted(results.rglob("*")):
        rel = str(f.relative_to(results))
        if f.suffix == ".jsonl" and "lm_eval" not in rel:
            out[rel] = [{k: v for k, v in row.items() if k not in VOLATILE} for row in read_jsonl(f)]
        elif f.suffix == ".json" and "lm_eval" not in rel:
            out[rel] = _without_paths(read_json(f))
    return out


def _without_paths(obj):
    """Results records name their own files (under each run's results directory) and when they were written; the
    rest must be equal."""
    if isinstance(obj, dict):
        return {k: _without_paths(v) for k, v in obj.items()
                if k not in {"annotations", "model_outputs", "judgments", "answers", "results_json", "created_at"}}
    if isinstance(obj, list):
        return [_without_paths(v) for v in obj]
    return obj


def lm_eval_scores(results: Path) -> dict:
    return {f.parent.name: read_json(f)["results"] for f in sorted((results / "lm_eval").glob("*/results.json"))}


@pytest.mark.slow
def test_two_ranks_answer_judge_and_score_as_one_process(checkpoints, shared_data, tmp_path):
    """--all with best-of-2 against the fake endpoint judge, on 1 process and on 2 ranks: identical answers,
    judgments and results; the same number of judge requests (rank 0 alone talks to the endpoint); the answer
    chunks and lm-eval's documents shared by both ranks; rank 1 quiet."""
    extra = ("--all", "--best-of", "2", "--ranker", "python:bench_fake_judge:LongestRanker")
    patient = ["--judge-timeout", "60"]  # no retry on a busy machine: the judge's usage counts are compared too
    counts, runs = {}, {}
    with FakeJudgeServer() as server:  # one endpoint: the judgments' keys name its URL
        for name, launcher in (("one", ONE), ("two", torchrun())):
            before = server.count()
            runs[name] = bench(launcher, [*bench_args(server, checkpoints, shared_data, tmp_path / name, *extra,
                                                      limit=9), *patient])
            counts[name] = server.count() - before
    one, two = artifacts(tmp_path / "one"), artifacts(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) > 10
    for key in one:
        assert one[key] == two[key], key
    scores = [lm_eval_scores(tmp_path / name) for name in ("one", "two")]
    assert scores[0].keys() == scores[1].keys() == {"tiny1", "tiny2"}
    for model, tasks in scores[0].items():
        for task, metrics in tasks.items():
            other = scores[1][model][task]
            for metric, value in metrics.items():  # the accuracies exactly; their standard errors, computed from
                if "stderr" in metric:              # the gathered items, to the last bits
                    assert other[metric] == pytest.approx(value, rel=1e-12), (model, metric)
                else:
                    assert other[metric] == value, (model, metric)
    assert counts["one"] == counts["two"] > 0
    log = runs["two"].stderr
    # 9 answers in chunks of 4, 4 and 1: rank 0 makes the first and the third, rank 1 the second
    assert "answers: chunk 1/1 on rank 1 (4 items)" in log and "answers: chunk 2/2 on rank 0 (1 items)" in log
    assert "INFO" not in "\n".join(x for x in log.splitlines() if x.startswith("[rank 1]"))
    assert not list((tmp_path / "two").glob(".chunks/*"))  # rank 0 merged and removed every chunk


@pytest.mark.slow
def test_two_nodes_with_a_local_judge_as_one_process(checkpoints, shared_data, tmp_path):
    """Two one-process "nodes" (scripts/slurm/launch-node.sh twice: torchrun --nnodes 2, --node_rank 0 and 1, one
    shared results directory): with the local judge, the AlpacaEval and MT-Bench answers, judgments and results equal one
    process's; the node of rank 1 answers and judges its chunks; nothing is written twice."""
    data = ["--alpaca-eval", "--mt-bench", str(checkpoints[0]), "--limit", "5", "--max-new-tokens", "6",
            "--judge", f"local:{checkpoints[1]}", "--judge-max-new-tokens", "4", "--data-dir", str(shared_data),
            "--generation-backend", "hf", "--batch-size", "4"]
    bench(ONE, [*data, "--results-dir", str(tmp_path / "one")])
    nodes = launch_two_nodes("benchmarks.cli", [*data, "--results-dir", str(tmp_path / "two")])
    assert [rc for rc, _, _ in nodes] == [0, 0], nodes[0][2][-3000:] + nodes[1][2][-3000:]
    outs = [(out, err) for _, out, err in nodes]
    one, two = artifacts(tmp_path / "one"), artifacts(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        assert one[key] == two[key], key
    log0, log1 = outs[0][1], outs[1][1]
    assert "answers: chunk 1/1 on rank 1 (1 items)" in log0  # 5 answers: 4 on rank 0, 1 on rank 1
    assert "judge text: chunk 1/1 on rank 1 (2 items)" in log0  # MT-Bench's 10 judgments: 8 and 2
    assert "results:" in outs[0][0] and "results:" not in outs[1][0]  # the summary: rank 0 only
    assert not [x for x in log1.splitlines() if "INFO" in x and x.startswith("[rank 1]")]
