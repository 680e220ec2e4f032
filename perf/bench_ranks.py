"""Data parallelism: the generation stage, and sppo-bench's answers, on 2 ranks x 1 thread against 1 rank x 1 thread.

ours       `torchrun --nproc_per_node 2 -m perf.dp_ranks`: the prompts' chunks spread over 2 ranks
           (`sppo.chunks.run_chunked`), each rank with its own copy of the model and one torch thread.
reference  the same stage in one process with one thread (what an 8-GPU run did before: generation on rank 0
           while the other ranks waited).

Same prompts, K, fixed-length answers (min_new_tokens = max_new_tokens) and chunk size on both sides, so the
work is identical; the timed part is the stage itself (chunks generated, written, merged), not process start or
model load. Figure: prompts/s of the stage, 2 ranks over 1 (the speed-up), and the peak RSS of one rank.

sppo-bench answers: one answer job of `benchmarks.parallel` (what `sppo-bench` runs for each suite), greedy
fixed-length answers, on 2 ranks against 1 process; answers/s of the job. One launch (`perf.dp_ranks`) times both
parts, so a round is two launches (1 rank, 2 ranks), in alternating order.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from perf.fixtures import tiny_llama
from perf.timing import case, interleaved, paired_ratio, rates, summary

TARGET = 1.7  # 2 ranks x 1 thread >= 1.7x the throughput of 1 rank x 1 thread
ROOT = Path(__file__).resolve().parents[1]


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _launch(ranks: int, work: Path, model: str, n: int, answers: int, k: int, max_new: int, chunk: int) -> dict:
    """perf.dp_ranks on `ranks` processes (the generation stage, then the answer job); its result file."""
    launcher = ([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(ranks), "--master_port",
                 _port()] if ranks > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = work / f"dp{ranks}.json"
    args = ["--model", model, "--prompts", str(n), "--answers", str(answers), "--k", str(k),
            "--max-new-tokens", str(max_new),
            "--chunk-size", str(chunk), "--work", str(work / f"ranks{ranks}"), "--out", str(out)]
    proc = subprocess.run([*launcher, "-m", "perf.dp_ranks", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"{ranks}-rank run of perf.dp_ranks failed: {proc.stderr[-1500:]}")
    result = json.loads(out.read_text())
    assert result["processes"] == ranks and result["generate"]["rows"] == n and result["answers"]["rows"] == answers
    return result


def _row(name: str, results: dict[int, list[dict]], n: int, unit: str, settings: dict, note: str) -> dict:
    one = rates(n, [r["seconds"] for r in results[1]])  # items per second of stage time
    two = rates(n, [r["seconds"] for r in results[2]])
    ratio = paired_ratio(two, one)  # the speed-up of 2 ranks
    rss = {r: [x["peak_rss_mb"] for x in results[r]] for r in (1, 2)}
    return case(name, unit, two, one, ratio, higher_is_better=True, target=f">= {TARGET:g}x",
                target_met=ratio["median"] >= TARGET, settings=settings,
                notes=[note, "peak RSS: the largest rank"],
                peak_rss_mb={"ours": summary(rss[2]), "reference": summary(rss[1]),
                             "ratio": paired_ratio(rss[2], rss[1])})


def run(opts: dict) -> dict:
    work = Path(opts["work"])
    quick = opts["quick"]
    model = str(tiny_llama(work / "tiny_llama")) if quick else "embedded"
    # 12 prompts x K for the generation stage; 16 answers, since the answer job's fixed cost (its chunks' files and
    # merge) would weigh too much on a shorter one (12 answers: 1.44x [1.19-2] where 16 gave 1.89x [1.88-2.04])
    n, answers, k, max_new, chunk = (8, 8, 2, 4, 1) if quick else (12, 16, 4, 24, 2)
    gen: dict[int, list[dict]] = {1: [], 2: []}
    ans: dict[int, list[dict]] = {1: [], 2: []}

    def variant(ranks):
        def both():
            result = _launch(ranks, work, model, n, answers, k, max_new, chunk)
            gen[ranks].append(result["generate"])
            ans[ranks].append(result["answers"])
        return both

    interleaved({"one_rank": variant(1), "two_ranks": variant(2)}, opts["repeats"], warmup=0)
    which = "tiny" if quick else "embedded"
    return {"cases": [
        _row("ranks/generation stage, 2 ranks x 1 thread vs 1 rank x 1 thread", gen, n, "prompts/s",
             {"model": which, "prompts": n, "k": k, "max_new_tokens": max_new, "chunk_size": chunk,
              "threads_per_rank": 1}, "reference way: the same stage on 1 rank"),
        _row("ranks/sppo-bench answers, 2 ranks x 1 thread vs 1 rank x 1 thread", ans, answers, "answers/s",
             {"model": which, "answers": answers, "max_new_tokens": max_new, "greedy": True, "threads_per_rank": 1,
              "chunking": "benchmarks.answers (at least 8 chunks)"},
             "reference way: the same answer job on 1 process (sppo-bench answered on one process before)")]}
