"""The learning check as a newcomer runs it, timed: `sppo-train --config learning-check` (PreferShorter), then the same
with `ranking.kind=python:sppo.rankers:PreferLonger`, each in a fresh directory, one after the other.

For each: the printed figures (the run's learning_check/summary.json) and the verdict, wall time, CPU time (user +
system of the command's process tree) and peak memory (the largest RSS of its processes); both plots are copied.
Writes <out>/latest.json and latest.md (and the two logs and plots); written to perf/results/learning-check (the
default), the READMEs' learning-check figures are rendered from it (perf.readme).

    python -m perf.learning [--out DIR] [--threads N] [--keep-work] [--train KEY=VALUE ...]

Threads: torch's default (all cores) unless --threads sets OMP_NUM_THREADS, as a user would run it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "perf" / "results" / "learning-check"
RANKERS = {"PreferShorter": [], "PreferLonger": ["ranking.kind=python:sppo.rankers:PreferLonger"]}


def timed(argv: list[str], cwd: Path, log: Path, env: dict) -> dict:
    """Run `argv` (output to `log`); its wall seconds, CPU seconds and peak RSS (its process tree's)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def run_one(name: str, overrides: list[str], work: Path, out: Path, env: dict) -> dict:
    run_dir = work / name
    argv = [sys.executable, "-m", "sppo.cli", "--config", "learning-check", f"run.output_dir={run_dir}", *overrides]
    print(f"[perf learning] {name} ...", file=sys.stderr, flush=True)
    record = timed(argv, ROOT, out / f"{name}.log", env)
    print(f"[perf learning] {name}: {record['wall_seconds']:.0f} s, exit {record['rc']}", file=sys.stderr, flush=True)
    if record["rc"] != 0:
        raise RuntimeError(f"sppo-train --config learning-check {' '.join(overrides)} exited {record['rc']} "
                           f"(see {out / (name + '.log')})")
    shutil.copy(run_dir / "learning_check" / "learning_check.png", out / f"{name}.png")
    summary = json.loads((run_dir / "learning_check" / "summary.json").read_text())
    shown = [o for o in overrides if not o.startswith("run.output_dir=")]
    return {"overrides": "".join(f" {o}" for o in shown), "summary": summary, **record}


def main(argv: list[str] | None = None) -> int:
    from perf.__main__ import git_commit, machine_line
    from perf.readme import learning, update_if_committed

    p = argparse.ArgumentParser(prog="python -m perf.learning", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where latest.json / latest.md, logs and plots go")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both commands (default: torch's, all cores)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", help="one more config override")
    p.add_argument("--keep-work", action="store_true", help="keep the run directories")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if a.threads:
        env.update(OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git_commit": git_commit(),
            "machine": machine_line(), "threads": env.get("OMP_NUM_THREADS", f"unset (torch: all {os.cpu_count()})"),
            "load_average_start": round(os.getloadavg()[0], 2)}
    work = Path(tempfile.mkdtemp(prefix="sppo-learning-"))
    try:
        runs = {name: run_one(name, [*extra, *a.train], work, out, env) for name, extra in RANKERS.items()}
    finally:
        if not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_average_end"] = round(os.getloadavg()[0], 2)
    result = {"meta": meta, "runs": runs}
    (out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "latest.md").write_text(learning(result, "latest.json"))
    print((out / "latest.md").read_text())
    update_if_committed(out, "latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
