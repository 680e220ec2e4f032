"""Runs one stage in its own process (so its peak RSS is its own) and writes the stage's JSON; `run_stage`
runs one in the calling process (--quick).

    python -m perf.worker STAGE --work DIR --repeats N [--quick] --out FILE
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
import warnings

STAGES = {
    "generation": "perf.bench_generation",
    "ranking": "perf.bench_ranking",
    "training": "perf.bench_training",
    "scoring": "perf.bench_scoring",
    "ranks": "perf.bench_ranks",
    "e2e": "perf.bench_e2e",
    "report": "perf.bench_report",
    "vllm": "perf.bench_vllm",  # opt-in: needs .venv-vllm (scripts/vllm_env.sh)
    "attention": "perf.bench_attention",  # opt-in: a decoding step's attention (sppo.attention)
}


def quiet() -> None:
    for key, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error"),
                       ("SPPO_LOG_LEVEL", "WARNING")):
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)


def run_stage(stage: str, work: str, repeats: int, quick: bool, threads: int | None) -> dict:
    """Run one stage in this process and return its results (errors are reported, not raised)."""
    from perf.timing import cpu_seconds, cuda_max_allocated_mb, peak_rss_mb

    if threads:
        import torch

        torch.set_num_threads(threads)
    opts = {"work": work, "repeats": repeats, "quick": quick, "threads": threads}
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    try:
        result = importlib.import_module(STAGES[stage]).run(opts)
        result["error"] = None
    except Exception as e:  # reported in the results, not hidden
        traceback.print_exc()
        result = {"cases": [], "error": f"{type(e).__name__}: {e}"}
    result.update(stage=stage, seconds=round(time.perf_counter() - t0, 3), cpu_seconds=round(cpu_seconds(), 1),
                  peak_rss_mb=round(peak_rss_mb(), 1), cuda_max_allocated_mb=cuda_max_allocated_mb())
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.worker")
    p.add_argument("stage", choices=sorted(STAGES))
    p.add_argument("--work", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    quiet()
    result = run_stage(args.stage, args.work, args.repeats, args.quick, args.threads)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
