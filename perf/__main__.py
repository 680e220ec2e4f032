"""`python -m perf`: run the performance suite, write JSON + markdown, print the table.

    python -m perf [--quick] [--repeats N] [--stages generation,ranking,training,scoring,ranks] [--out DIR]
                   [--threads N] [--keep-work]
    python -m perf --stages e2e      the embedded end to end (sppo-train + sppo-bench), per-stage table
    python -m perf --stages report   the HTML report of a full-size results store, written and opened in Chromium
    python -m perf --stages attention --out perf/results/attention   a decoding step's attention (sppo.attention)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perf.report import render
from perf.worker import STAGES
from sppo.files import package_versions

# run only when named in --stages: e2e (the whole toolkit, ~8 minutes on a quiet 2-core machine), vllm (needs
# .venv-vllm, scripts/vllm_env.sh), report (the HTML report of a full-size store, in headless Chromium), attention
# (a decoding step's attention, sppo.attention: its figure is quoted in sppo/attention.py)
OPT_IN = ("e2e", "vllm", "report", "attention")
DEFAULT_STAGES = [s for s in STAGES if s not in OPT_IN]

ROOT = Path(__file__).resolve().parents[1]


def choose_threads(requested: int | None) -> tuple[int, str]:
    cores = os.cpu_count() or 1
    if requested:
        return requested, "--threads"
    load = os.getloadavg()[0]
    if load > cores:  # a shared machine: spinning OpenMP threads waiting on each other make timings erratic
        return 1, f"auto: load average {load:.1f} > {cores} cores, one thread per process"
    return cores, f"auto: all {cores} cores"


def versions() -> dict:
    """The package versions a report records."""
    return package_versions(("torch", "transformers", "llm-blender", "sppo-toolkit"))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_line() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores ({platform.platform()})"


def gpu_line() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return (f"{torch.cuda.get_device_name(0)} — but the stages run on the CPU (the suite has no GPU "
                    "variant yet); CUDA max allocated is reported per stage")
    except ImportError:
        pass
    return "none — no GPU on this machine, so the GPU run (a ~0.5–1B model in bf16) was not done"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m perf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models and sizes only (the smoke test)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per figure after one warm-up (default 5)")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)} (default: all but {','.join(OPT_IN)})")
    p.add_argument("--out", default=str(ROOT / "perf" / "results"), help="where latest.json / latest.md go")
    p.add_argument("--threads", type=int, help="torch threads per process (default: auto)")
    p.add_argument("--work", help="scratch directory for models and files (default: a temporary one)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown or not args.stages:
        p.error(f"--stages: unknown {unknown}; choose from {','.join(STAGES)}")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def run_quick(stage: str, work: Path, repeats: int, threads: int) -> dict:
    """--quick: the stage in this process."""
    from perf.worker import quiet, run_stage

    quiet()
    os.environ.update(OMP_NUM_THREADS=str(threads))
    return run_stage(stage, str(work), repeats, True, threads)


def run_in_worker(stage: str, work: Path, repeats: int, threads: int, out: Path) -> dict:
    """The stage in a fresh process (its peak RSS its own), its output in <out>/logs/<stage>.log."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    stage_json = work / f"{stage}.json"
    cmd = [sys.executable, "-m", "perf.worker", stage, "--work", str(work), "--repeats", str(repeats),
           "--out", str(stage_json), "--threads", str(threads)]
    with open(out / "logs" / f"{stage}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if stage_json.exists():
        return json.loads(stage_json.read_text())
    return {"stage": stage, "cases": [], "error": f"worker exited {rc} without results "
            f"(see {out / 'logs' / (stage + '.log')})"}


def write_results(results: dict, out: Path) -> str:
    """latest.json and latest.md (the table, then any stage's own table) under `out`; returns the markdown."""
    (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    md = render(results) + "".join(f"\n## {name}\n\n{s['report_md']}" for name, s in results["stages"].items()
                                   if s.get("report_md"))
    (out / "latest.md").write_text(md)
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sppo-perf-"))
    threads, reason = choose_threads(args.threads)
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_line(),
            "threads": threads, "threads_reason": reason, "load_average_start": round(os.getloadavg()[0], 2),
            "quick": args.quick, "repeats": args.repeats, "stages": args.stages, "git_commit": git_commit(),
            "versions": versions(), "gpu": gpu_line(),
            "stage_processes": ("one process for all stages (--quick): peak RSS is the process's peak so far"
                                if args.quick else "one fresh process per stage: peak RSS is the stage's own")}
    results = {"meta": meta, "stages": {}}
    t0 = time.perf_counter()
    try:
        for stage in args.stages:
            print(f"[perf] {stage} ...", file=sys.stderr, flush=True)
            res = (run_quick(stage, work, args.repeats, threads) if args.quick
                   else run_in_worker(stage, work, args.repeats, threads, out))
            results["stages"][stage] = res
            print(f"[perf] {stage}: {res.get('seconds', '?')} s"
                  + (f", error: {res['error']}" if res.get("error") else ""), file=sys.stderr, flush=True)
    finally:
        if not args.keep_work and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    meta["total_seconds"] = round(time.perf_counter() - t0, 1)
    meta["load_average_end"] = round(os.getloadavg()[0], 2)
    print(write_results(results, out))
    if not args.quick and set(args.stages) >= set(DEFAULT_STAGES):  # the run the READMEs quote
        from perf.readme import update_if_committed

        update_if_committed(out, "latest.json")
    return 0 if all(not s.get("error") for s in results["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
