"""End to end on the embedded default: the README's quick start, timed stage by stage.

In a fresh temporary directory: `sppo-train` (the default config: the embedded model, 3 iterations), then
`sppo-bench --all Iter1 Iter2 Iter3 --limit 3 --data-dir <repo>/../shared/data --progress`, then `sppo-release`
(the cards, a dry run). Nothing is timed twice or re-run: the figures are the tools' own records and the arrival
times of their output lines.

train   per iteration: generate, rank, reference, train — the `seconds` each stage's manifest records
        (<run>/iterN/<stage>/manifest.json; train: the checkpoint's sppo_manifest.json); "other" is the rest of
        the command's wall time (start-up, model loads, the dataset stage, saving checkpoints).
bench   per checkpoint x suite: answers, judging, scoring — from the arrival time of each line (and progress-bar
        update) of the command's output: a suite starts at its "IterN: suite" log line; its judging runs from its
        first `judge ...: chunk` log line (sppo.chunks) to the last progress update after its last one; answers
        are what comes before, scoring what comes after, up to the next suite (the last suite: up to its last
        output line). "scoring" therefore holds whatever a suite does after its judge jobs (a local judge's
        log-probability verdicts for replies without a valid label, the official scoring, writing the result).
        Arena-Hard is fitted over all checkpoints at once after the last suite, before the summary is printed:
        that gap is its own row (a silent tail of the last suite would count there too).
release its wall time, one row.

    python -m perf.bench_e2e                         (the default settings; results to perf/results/e2e, which
                                                      the READMEs quote: perf.readme)
    python -m perf --stages e2e                      (the same run as a stage of the suite)
    python -m perf.bench_e2e --out DIR [--train KEY=VALUE ...] [--limit N] [--bench-arg ARG ...] [--keep-work]
    python -m perf.bench_e2e --out DIR --reparse WORK    the table again from a kept work directory
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "perf" / "results" / "e2e"
TARGET_SECONDS = 360  # the quick start, end to end, on 2 quiet cores
DATA_DIR = ROOT.parent / "shared" / "data"
TRAIN_STAGES = ("generate", "rank", "reference")
SUITE_START = re.compile(r"INFO benchmarks\.run_cmd: (?P<model>\S+): (?P<suite>[a-z_]+)(?: \((?P<variant>.+)\))?$")
JUDGE_CHUNK = re.compile(r"INFO sppo\.chunks: judge [^:]*: chunk \d+/\d+")  # a chunk of a local judge job
PROGRESS = re.compile(r"\d+%\|")  # a tqdm update
SUMMARY = re.compile(r"^(\S+/(alpaca_eval|arena_hard|mt_bench|lm_eval)\b|up to date, kept:|results: )")  # print_summary


@dataclass
class Line:
    t: float  # seconds since the command started
    text: str


@dataclass
class Command:
    argv: list[str]
    rc: int
    seconds: float
    lines: list[Line] = field(default_factory=list)


@dataclass
class Row:
    """One row of the per-stage table."""
    tool: str       # train | bench
    where: str      # iter1 .. / Iter1 ..
    stage: str      # generate / rank / reference / train / other; suite/answers ...
    seconds: float


def run_logged(argv: list[str], cwd: Path, log_path: Path, env: dict) -> Command:
    """Run a command, its stdout and stderr merged; stamp every line and progress-bar update (split at \\n and
    \\r) with its arrival time; keep them in `log_path` as "seconds<TAB>text"."""
    t0 = time.monotonic()
    lines: list[Line] = []
    buf = b""
    with open(log_path, "w", buffering=1) as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while chunk := os.read(proc.stdout.fileno(), 65536):
            now = time.monotonic() - t0
            parts = re.split(rb"[\r\n]", buf + chunk)
            buf = parts.pop()
            for part in parts:
                if part.strip():
                    lines.append(Line(round(now, 3), part.decode(errors="replace").rstrip()))
                    log.write(f"{now:.3f}\t{lines[-1].text}\n")
        rc = proc.wait()
        if buf.strip():
            lines.append(Line(round(time.monotonic() - t0, 3), buf.decode(errors="replace").rstrip()))
            log.write(f"{lines[-1].t:.3f}\t{lines[-1].text}\n")
    return Command(argv, rc, round(time.monotonic() - t0, 3), lines)


def read_logged(log_path: Path, rc: int, seconds: float, argv: list[str]) -> Command:
    """A command's record back from its log (for --reparse)."""
    lines = []
    for raw in log_path.read_text().splitlines():
        t, _, text = raw.partition("\t")
        lines.append(Line(float(t), text))
    return Command(argv, rc, seconds, lines)


def train_rows(run_dir: Path, wall: float) -> list[Row]:
    """Seconds of every iteration's stages, from the manifests `sppo-train` writes; "other" = wall - their sum."""
    rows = []
    for it in sorted((p for p in run_dir.glob("iter*") if p.name[4:].isdigit()), key=lambda p: int(p.name[4:])):
        for stage in TRAIN_STAGES:
            manifest = it / stage / "manifest.json"
            if manifest.is_file():
                rows.append(Row("train", it.name, stage, float(json.loads(manifest.read_text())["seconds"])))
        checkpoint = run_dir / "checkpoints" / f"Iter{it.name[4:]}" / "sppo_manifest.json"
        if checkpoint.is_file():
            rows.append(Row("train", it.name, "train", float(json.loads(checkpoint.read_text())["seconds"])))
    rows.append(Row("train", "all", "other", round(wall - sum(r.seconds for r in rows), 2)))
    return rows


def judging_span(lines: list[Line]) -> tuple[float, float] | None:
    """(start, end) of a suite's judge jobs: from the first `judge ...: chunk` log line to the last progress
    update that follows the last such line."""
    marks = [i for i, ln in enumerate(lines) if JUDGE_CHUNK.search(ln.text)]
    if not marks:
        return None
    j = marks[-1] + 1
    while j < len(lines) and PROGRESS.search(lines[j].text):
        j += 1
    return lines[marks[0]].t, lines[j - 1].t


def _suite_rows(name: str, suite: str, lines: list[Line], start: float, end: float) -> list[Row]:
    span = judging_span(lines)
    if span is None:
        return [Row("bench", name, f"{suite}/all (no judge job ran: lm-eval, or every verdict cached)",
                    round(end - start, 2))]
    first, last = span
    return [Row("bench", name, f"{suite}/answers", round(first - start, 2)),
            Row("bench", name, f"{suite}/judging", round(last - first, 2)),
            Row("bench", name, f"{suite}/scoring", round(end - last, 2))]


def bench_rows(cmd: Command) -> list[Row]:
    """Per checkpoint x suite: answers / judging / scoring, cut from the output's arrival times."""
    starts = [i for i, ln in enumerate(cmd.lines) if SUITE_START.search(ln.text)]
    if not starts:
        return [Row("bench", "all", "other", cmd.seconds)]
    after = range(starts[-1] + 1, len(cmd.lines))
    summary = next((i for i in after if SUMMARY.match(cmd.lines[i].text)), len(cmd.lines))
    summary_t = cmd.lines[summary].t if summary < len(cmd.lines) else cmd.seconds
    rows = [Row("bench", "all", "start-up (imports, data, judge load)", cmd.lines[starts[0]].t)]
    for i, stop in zip(starts, starts[1:] + [summary]):
        m = SUITE_START.search(cmd.lines[i].text)
        segment = cmd.lines[i:stop]
        # a suite ends where the next starts; the last where its own output stops
        end = cmd.lines[stop].t if stop != summary else segment[-1].t
        suite = m["suite"] + (f" ({m['variant']})" if m["variant"] else "")
        rows += _suite_rows(m["model"], suite, segment, cmd.lines[i].t, end)
    rows.append(Row("bench", "all", "after the last suite's output: Arena-Hard fit over all checkpoints",
                    round(summary_t - cmd.lines[summary - 1].t, 2)))
    rows.append(Row("bench", "all", "summary and exit", round(cmd.seconds - summary_t, 2)))
    return rows


def table(rows: list[Row], commands: dict[str, Command]) -> str:
    lines = ["| tool | iteration / checkpoint | stage | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.tool} | {r.where} | {r.stage} | {r.seconds:.1f} |" for r in rows]
    for name, c in commands.items():
        lines.append(f"| {name} | **total** | wall (exit status {c.rc}) | {c.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def commands(limit: int, train_args: list[str], bench_args: list[str]) -> dict[str, list[str]]:
    """The README's quick start as argv lists (the console scripts' modules, run by this Python)."""
    return {"sppo-train": [sys.executable, "-m", "sppo.cli", *train_args],
            "sppo-bench": [sys.executable, "-m", "benchmarks.cli", "--all", "Iter1", "Iter2", "Iter3",
                           "--limit", str(limit), "--data-dir", str(DATA_DIR), "--progress", *bench_args],
            "sppo-release": [sys.executable, "-m", "release.cli"]}


def run_e2e(work: Path, limit: int = 3, train_args: list[str] | None = None,
            bench_args: list[str] | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "SPPO_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}  # lines arrive when written
    done: dict[str, Command] = {}
    for name, argv in commands(limit, train_args or [], bench_args or []).items():
        print(f"[perf e2e] {name} ...", file=sys.stderr, flush=True)
        done[name] = c = run_logged(argv, work, work / f"{name}.log", env)
        (work / f"{name}.json").write_text(json.dumps({"argv": c.argv, "rc": c.rc, "seconds": c.seconds}) + "\n")
        print(f"[perf e2e] {name}: {c.seconds:.0f} s, exit {c.rc}", file=sys.stderr, flush=True)
        if c.rc != 0:
            break
    return e2e_result(work, done)


def reparse(work: Path) -> dict:
    """The table again from a kept work directory (its logs, <name>.json records and run directory)."""
    done = {}
    for name in ("sppo-train", "sppo-bench", "sppo-release"):
        if (work / f"{name}.json").is_file():
            rec = json.loads((work / f"{name}.json").read_text())
            done[name] = read_logged(work / f"{name}.log", rec["rc"], rec["seconds"], rec["argv"])
    return e2e_result(work, done)


def e2e_result(work: Path, done: dict[str, Command]) -> dict:
    run_dir = work / "runs" / "embedded"
    rows = (train_rows(run_dir, done["sppo-train"].seconds) if run_dir.is_dir() else []) + \
        (bench_rows(done["sppo-bench"]) if "sppo-bench" in done else []) + \
        ([Row("release", "all", "cards (dry run)", done["sppo-release"].seconds)] if "sppo-release" in done else [])
    return {"commands": {k: {"argv": v.argv[1:], "rc": v.rc, "seconds": v.seconds} for k, v in done.items()},
            "rows": [asdict(r) for r in rows], "report_md": table(rows, done),
            "error": next((f"{k} exited {v.rc} (see its log)" for k, v in done.items() if v.rc), None)}


def run(opts: dict) -> dict:
    """The perf stage: the default settings, once (--repeats does not apply)."""
    result = run_e2e(Path(opts["work"]) / "e2e")
    total = sum(c["seconds"] for c in result["commands"].values())
    case = {"name": "e2e/embedded default: sppo-train + sppo-bench --all Iter1 Iter2 Iter3 --limit 3 + sppo-release",
            "metric": "s", "higher_is_better": False, "ours": {"median": total, "min": total, "max": total, "n": 1},
            "reference": None, "ratio": None, "target": f"<= {TARGET_SECONDS} s on 2 cores",
            "target_met": total <= TARGET_SECONDS,
            "settings": {"commands": result["commands"]}, "notes": []}
    if result["error"]:
        raise RuntimeError(result["error"])
    return {"cases": [case], "rows": result["rows"], "report_md": result["report_md"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.bench_e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="where e2e.json, e2e.md and the commands' logs go (default perf/results/e2e)")
    p.add_argument("--limit", type=int, default=3, help="sppo-bench --limit (default 3)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for sppo-train (smaller settings for a quick proof run)")
    p.add_argument("--bench-arg", action="append", default=[], metavar="ARG", help="one more sppo-bench argument")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary run directory")
    p.add_argument("--reparse", metavar="WORK", help="no run: the table again from a work directory kept earlier")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.reparse) if a.reparse else Path(tempfile.mkdtemp(prefix="sppo-e2e-"))
    from perf.__main__ import git_commit, machine_line

    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git_commit": git_commit(),
            "machine": machine_line(), "threads": os.environ.get("OMP_NUM_THREADS", f"unset (all {os.cpu_count()})"),
            "load_average_start": round(os.getloadavg()[0], 2)}
    try:
        result = reparse(work) if a.reparse else run_e2e(work, a.limit, a.train, a.bench_arg)
        for log in work.glob("*.log"):
            shutil.copy(log, out / log.name)
    finally:
        if not (a.keep_work or a.reparse):
            shutil.rmtree(work, ignore_errors=True)
    result["meta"] = ({"reparsed_from": str(work)} if a.reparse else
                      {**meta, "load_average_end": round(os.getloadavg()[0], 2), "train": a.train,
                       "bench": a.bench_arg, "limit": a.limit})
    (out / "e2e.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "e2e.md").write_text(result["report_md"])
    print(result["report_md"])
    if not (result["error"] or a.reparse or a.train or a.bench_arg or a.limit != 3):  # the quick start as written
        from perf.readme import update_if_committed

        update_if_committed(out, "e2e.json")
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
