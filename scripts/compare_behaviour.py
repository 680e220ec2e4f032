"""Run the same small fixture workload at two git revisions and diff everything it writes and prints.

    .venv/bin/python scripts/compare_behaviour.py 323541f HEAD            # exit 0: no difference
    .venv/bin/python scripts/compare_behaviour.py 323541f WORKTREE        # uncommitted changes too
    .venv/bin/python scripts/compare_behaviour.py 323541f HEAD --quick-start   # also the README's quick start

For each revision the tracked files are exported (``git archive``) into ``OUT/code`` and the workload runs there
with this checkout's ``.venv`` (``PYTHONPATH`` puts the exported code before the editable install), in the same
directory (``OUT/work``) for both revisions, so every path a file records is the same:

1. ``sppo-train``: two SPPO iterations of a tiny random Llama (``perf.fixtures.make_tiny_checkpoint``, built once
   and shared) on 16 prompts, the plug-in ``LengthRanker`` (``tests/sppo_doubles.py``), the learning check on;
   the run directory's modification times are then set to one fixed value, so checkpoint fingerprints (part of
   every benchmark key) agree between the revisions.
2. ``sppo-bench --all Iter1 Iter2 --best-of 2`` against the fake OpenAI-compatible judge of
   ``tests/bench_fake_judge.py`` (this checkout's copy, on one fixed port), then the same command again (every
   result kept), then the judged suites with a local judge (a tiny checkpoint, its verdicts read from token
   probabilities where its text has none).
3. ``sppo-bench table`` (Markdown, CSV, ``--plots``) on both stores, ``sppo-bench score`` on each judged suite's
   files (with ``--results-dir``), ``sppo-release`` (dry run: the cards).

Compared: every file of the run directory and the results stores, and everything the commands printed. JSON values
of keys that hold a time or a random id (``created_at``, ``finished_at``, ``tstamp``, ``answer_id``, ...) and ISO
timestamps in text are masked; binary files compare by SHA-256; the judge cache by its rows without their time.
``--quick-start`` adds the README's quick start (``sppo-train`` on the embedded model, ``--limit 3`` benchmarks,
table, release; about 10 minutes per revision on 2 cores).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
FIXED_MTIME = 1_700_000_000
# JSON keys whose values are times, durations or random ids: masked before comparing
MASKED_KEYS = re.compile(r"^(created_at|finished_at|started_at|tstamp|answer_id|date|start_time|end_time|"
                         r"total_evaluation_time_seconds|.*_seconds|seconds|elapsed|wall|duration|time_per_example|"
                         r"timestamp)$")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d([.,]\d+)?([+-]\d\d:\d\d|Z)?")
TEXT_SUFFIXES = {".md", ".txt", ".yaml", ".yml", ".csv", ".out", ".err", ".jinja"}
PROMPTS = ["Explain why the sky is blue.", "Write a short poem about the sea.", "Hello! How can I help you?",
           "Which response is better?", "The quick brown fox.", "def add(a, b): return a + b",
           "Thank you, goodbye.", "Explain the numbers 0 1 2 3."]


# --- the workload (runs with the exported revision's code) ------------------------------------------------------

def _fake_judge_module():
    """This checkout's fake judge (stdlib only): the judge side stays the same for both revisions."""
    spec = importlib.util.spec_from_file_location("compare_fake_judge", ROOT / "tests" / "bench_fake_judge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(cmd: list[str], out: Path, name: str, env: dict, cwd: Path, check: bool = True) -> int:
    """Run one command; its stdout goes to ``out/<name>.out`` (compared), stderr to ``out/logs/<name>.err``."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.out", "w") as so, open(out / "logs" / f"{name}.err", "w") as se:
        rc = subprocess.run(cmd, stdout=so, stderr=se, env=env, cwd=cwd).returncode
    last = (out / "logs" / f"{name}.err").read_text().strip().splitlines()[-1:] if rc else []
    with open(out / f"{name}.out", "a") as so:  # the exit status and, on failure, the error line are compared too
        so.write("".join(line + "\n" for line in last) + f"[exit {rc}]\n")
    if check and rc != 0:
        sys.exit(f"{name} failed (exit {rc}); see {out / 'logs' / (name + '.err')}")
    return rc


def _fixtures(fixtures: Path) -> None:
    """The tiny policy, the tiny local judge and the prompt file, built once for both revisions."""
    if (fixtures / "prompts.jsonl").exists():
        return
    sys.path.insert(0, str(ROOT))
    from perf.fixtures import make_tiny_checkpoint

    make_tiny_checkpoint(fixtures / "policy", seed=3)
    make_tiny_checkpoint(fixtures / "judge", seed=5)
    rows = [{"id": f"p{i}", "prompt": p, "split": f"train_iteration_{i // 8 + 1}"} for i, p in enumerate(PROMPTS * 2)]
    rows += [{"id": f"h{i}", "prompt": p, "split": "held_out"} for i, p in enumerate(PROMPTS[:3])]
    (fixtures / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _train_overrides(run: Path, fixtures: Path) -> list[str]:
    o = {"run.output_dir": run, "run.iterations": 2, "run.chunk_size": 3, "model.name": fixtures / "policy",
         "model.dtype": "float32", "prompts.source": fixtures / "prompts.jsonl", "generation.backend": "hf",
         "generation.k": 3, "generation.max_new_tokens": 12, "generation.dtype": "float32",
         "ranking.kind": "python:sppo_doubles:LengthRanker", "ranking.model": "none",
         "training.learning_rate": 1e-3, "training.eta": 10, "training.optimizer": "adamw",
         "training.num_train_epochs": 2, "training.stop_at_epoch": "null", "training.warmup_ratio": 0.0,
         "training.per_device_train_batch_size": 4, "training.max_length": 96, "training.max_prompt_length": 48,
         "training.gradient_checkpointing": False, "learning_check.enabled": True,
         "learning_check.split": "held_out", "learning_check.samples": 2}
    return [f"{k}={v}" for k, v in o.items()]


def _fix_mtimes(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            os.utime(p, (FIXED_MTIME, FIXED_MTIME))


def workload(work: Path, fixtures: Path, out: Path, port: int, quick_start: bool) -> None:
    """Everything the comparison runs, with the code of the current directory (the exported revision)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(Path.cwd() / "tests")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "BENCH_KEY": "sk-compare"}
    env.pop("SPPO_RUN_DIR", None)
    env.pop("SPPO_BENCH_DATA", None)
    py, cwd = [str(PYTHON)], Path.cwd()
    data = ROOT.parent / "shared" / "data"
    run = work / "run"
    _run(py + ["-m", "sppo.cli", *_train_overrides(run, fixtures)], out, "train", env, cwd)
    _fix_mtimes(run)
    fake = _fake_judge_module()
    from http.server import ThreadingHTTPServer

    fake.ThreadingHTTPServer = lambda _addr, handler: ThreadingHTTPServer(("127.0.0.1", port), handler)
    bench = py + ["-m", "benchmarks.cli"]
    with fake.FakeJudgeServer() as server:
        args = fake.bench_args(server, ["Iter1", "Iter2"], data, run / "results", "--all", "--run-dir", str(run),
                               "--best-of", "2", "--ranker", "python:bench_fake_judge:LongestRanker")
        _run(bench + args, out, "bench", env, cwd)
        _run(bench + args, out, "bench-again", env, cwd)
        local = [*map(str, ["Iter1", "Iter2"]), "--alpaca-eval", "--arena-hard", "--mt-bench", "--run-dir", str(run),
                 "--judge", f"local:{fixtures / 'judge'}", "--limit", "2", "--max-new-tokens", "8",
                 "--judge-max-new-tokens", "8", "--data-dir", str(data), "--results-dir", str(work / "local"),
                 "--generation-backend", "hf", "--batch-size", "4", "--dtype", "float32"]
        _run(bench + local, out, "bench-local", env, cwd)
    _tables_scores_release(py, run, work, data, out, env, cwd)
    if quick_start:
        _quick_start(py, work, data, out, env, cwd)


def _tables_scores_release(py, run: Path, work: Path, data: Path, out: Path, env: dict, cwd: Path) -> None:
    bench = py + ["-m", "benchmarks.cli"]
    for store, tag in ((run / "results", "fake"), (work / "local", "local")):
        _run(bench + ["table", "--results-dir", str(store), "--run-dir", str(run)], out, f"table-{tag}", env, cwd)
        _run(bench + ["table", "--run-dir", str(run), "--results-dir", str(store), "--format", "csv", "--plots-dir",
                      str(work / f"plots-{tag}")], out, f"table-{tag}-csv", env, cwd)
    _run(bench + ["table", "--run-dir", str(run)], out, "table-run", env, cwd)
    res, scored = run / "results", work / "scored"
    _run(bench + ["score", "alpaca-eval", str(res / "alpaca_eval" / "Iter1" / "annotations.json"), "--no-lc",
                  "--results-dir", str(scored)], out, "score-alpaca", env, cwd)
    _run(bench + ["score", "arena-hard", str(res / "arena_hard" / "model_judgment" / "fake-judge"), "--questions",
                  str(data / "arena_hard_v0.1" / "question.jsonl"), "--num-rounds", "10", "--results-dir",
                  str(scored)], out, "score-arena", env, cwd)
    _run(bench + ["score", "mt-bench", str(res / "mt_bench" / "model_judgment" / "fake-judge_single.jsonl"),
                  "--questions", str(data / "mt_bench" / "question.jsonl"), "--results-dir", str(scored)],
         out, "score-mt", env, cwd)
    _run(bench + ["score", "lm-eval", str(res / "lm_eval" / "Iter1" / "results.json"), "--results-dir",
                  str(scored)], out, "score-lm-eval", env, cwd, check=False)  # the tiny task: a clear error
    _run(py + ["-m", "release.cli", "--run-dir", str(run)], out, "release", env, cwd)
    _run(py + ["-m", "release.cli", "--run-dir", str(run), "--results-dir", str(work / "local"), "--out",
               str(work / "cards-local")], out, "release-local", env, cwd)


def _quick_start(py, work: Path, data: Path, out: Path, env: dict, cwd: Path) -> None:
    """The README's quick start, in its own run directory."""
    run = work / "quick"
    _run(py + ["-m", "sppo.cli", f"run.output_dir={run}"], out, "qs-train", env, cwd)
    _fix_mtimes(run)
    _run(py + ["-m", "benchmarks.cli", "--all", "Iter1", "Iter2", "Iter3", "--limit", "3", "--data-dir", str(data),
               "--run-dir", str(run)], out, "qs-bench", env, cwd)
    _run(py + ["-m", "benchmarks.cli", "table", "--run-dir", str(run)], out, "qs-table", env, cwd)
    _run(py + ["-m", "release.cli", "--run-dir", str(run)], out, "qs-release", env, cwd)


# --- comparing ----------------------------------------------------------------------------------------------------

def _mask(obj):
    if isinstance(obj, dict):
        return {k: ("<masked>" if MASKED_KEYS.match(str(k)) else _mask(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask(v) for v in obj]
    if isinstance(obj, str):
        return ISO_TIME.sub("<time>", obj)
    return obj


def normalised(path: Path) -> list[str]:
    """A file's content as lines to compare: masked JSON, masked text, the judge cache's rows, or a digest."""
    if path.suffix == ".json":
        try:
            return json.dumps(_mask(json.loads(path.read_text())), indent=1, ensure_ascii=False).splitlines()
        except ValueError:
            pass
    if path.suffix == ".jsonl":
        return [json.dumps(_mask(json.loads(line)), ensure_ascii=False) if line.strip() else line
                for line in path.read_text().splitlines()]
    if path.suffix == ".sqlite3":
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return [json.dumps(r) for r in db.execute("SELECT key, judge, request, reply FROM replies ORDER BY key")]
    if path.suffix in TEXT_SUFFIXES or path.name == "README.md":
        return ISO_TIME.sub("<time>", path.read_text()).splitlines()
    return [hashlib.sha256(path.read_bytes()).hexdigest()]


IGNORED = re.compile(r"(^|/)(logs/|\.lock$|.*\.sqlite3-(wal|shm)$|code/|commit\.txt$|port$)")


def compare(a: Path, b: Path) -> list[str]:
    """One message per difference between the two output trees (missing files, differing content)."""
    files = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files |= {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    problems = []
    for rel in sorted(f for f in files if not IGNORED.search(f)):
        pa, pb = a / rel, b / rel
        if not (pa.exists() and pb.exists()):
            problems.append(f"{rel}: only in {'A' if pa.exists() else 'B'}")
            continue
        la, lb = normalised(pa), normalised(pb)
        if la != lb:
            diff = list(difflib.unified_diff(la, lb, "A/" + rel, "B/" + rel, n=1, lineterm=""))
            problems.append("\n".join(diff[:30]))
    return problems


# --- driver -------------------------------------------------------------------------------------------------------

def export(rev: str, code: Path) -> str:
    """The tracked files of `rev` in `code` (emptied first); returns the full commit id. ``WORKTREE``: this
    checkout's files as they are now (tracked and untracked, not ignored)."""
    shutil.rmtree(code, ignore_errors=True)
    if rev == "WORKTREE":
        names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for name in filter(None, names):
            if (ROOT / name).is_file():
                (code / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, code / name)
        return "working tree"
    commit = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    code.mkdir(parents=True)
    blob = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(code, filter="data")
    return commit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rev_a", nargs="?")
    p.add_argument("rev_b", nargs="?", default="HEAD")
    p.add_argument("--out", type=Path, default=Path("/tmp/sppo-compare"), help="work directory (default %(default)s)")
    p.add_argument("--quick-start", action="store_true", help="also run the README's quick start")
    p.add_argument("--reuse-a", action="store_true", help="keep OUT/A when it holds the outputs of the same commit")
    p.add_argument("--workload", nargs=4, metavar=("WORK", "FIXTURES", "OUT", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.workload:
        work, fixtures, out, port = args.workload
        workload(Path(work), Path(fixtures), Path(out), int(port), args.quick_start)
        return 0
    if args.rev_a is None:
        p.error("name the revision to compare with (e.g. 323541f)")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _fixtures(out / "fixtures")
    port_file = out / "port"  # the fake judge's URL is part of every judgment key: one port for A and B
    port = int(port_file.read_text()) if args.reuse_a and port_file.exists() else free_port()
    port_file.write_text(str(port))
    for label, rev in (("A", args.rev_a), ("B", args.rev_b)):
        commit = export(rev, out / "code")
        done = out / label / "commit.txt"
        if label == "A" and args.reuse_a and done.exists() and done.read_text() == f"{commit} {args.quick_start}":
            print(f"A: {rev} ({commit[:10]}): outputs of an earlier comparison reused", flush=True)
            continue
        shutil.rmtree(out / "work", ignore_errors=True)
        shutil.rmtree(out / label, ignore_errors=True)
        print(f"{label}: {rev} ({commit[:10]})", flush=True)
        cmd = [str(PYTHON), str(Path(__file__).resolve()), "--workload", str(out / "work"), str(out / "fixtures"),
               str(out / label / "printed"), str(port)] + (["--quick-start"] if args.quick_start else [])
        subprocess.run(cmd, cwd=out / "code", check=True)
        shutil.move(str(out / "work"), str(out / label / "files"))
        done.write_text(f"{commit} {args.quick_start}")
    problems = compare(out / "A", out / "B")
    n = sum(1 for p_ in (out / "A").rglob("*") if p_.is_file() and not IGNORED.search(p_.as_posix()))
    for problem in problems:
        print(problem)
    print(f"{args.rev_a} vs {args.rev_b}: {n} files compared, {len(problems)} differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
