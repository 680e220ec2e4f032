"""No rank waits for a dead one: real processes (torchrun on CPU, gloo), one of them failing for real.

Topologies: 2 ranks under one `torchrun --nproc_per_node 2`, and 2 "nodes" (two `torchrun --nnodes 2 --node_rank
0|1 --master_addr 127.0.0.1` launches, the second in a UTS namespace of its own with another host name, so the
ranks cannot see each other's processes and must go by heartbeats, as on two machines).
Faults: an exception on one rank; a full disk (a 64 KiB tmpfs) or a read-only directory on one rank only
(tests/fault_rank.sh: a mount namespace of that rank's own), including inside accelerate's `save_state`; a
`kill -9`; a SIGSTOP (the rank stops answering without dying).
Every case: every other rank, and the launcher, exit non-zero within 60 s of the fault (a SIGSTOP: within the
collective timeout + 60 s) with one line naming the rank and the cause. `tests/dist_probe.py` is the quick
probe (sppo.distributed alone); sppo-train and sppo-bench themselves run the cases that need their stages; their
reruns resume and send no judge request twice.

The seconds from each fault to the end of the run are printed (`pytest -s`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_distributed import ENV, TESTS, _free_port
from test_pipeline import prompt_file, tiny  # noqa: F401 (fixtures)

ROOT = TESTS.parent
FAULT = str(TESTS / "fault_rank.sh")
PROBE = str(TESTS / "dist_probe.py")
BIN = Path(sys.executable).parent


def _can_unshare() -> str | None:
    """Why mount/UTS namespaces are not available here (None if they are)."""
    if os.geteuid() != 0:
        return "needs root (mount and UTS namespaces for a fault on one rank only)"
    if not shutil.which("unshare"):
        return "needs unshare (util-linux)"
    r = subprocess.run(["unshare", "--mount", "--uts", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"unshare does not work here: {r.stderr.strip()}"


needs_namespaces = pytest.mark.skipif(_can_unshare() is not None, reason=str(_can_unshare()))


# ----------------------------------------------------------------------------------------------- launching
def two_ranks(cmd: list[str], faulty: bool = False) -> list[list[str]]:
    """One launcher, 2 ranks; `faulty`: rank SPPO_TEST_FAULT_RANK runs under fault_rank.sh."""
    tr = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port())]
    return [[*tr, "--no-python", FAULT, sys.executable, *cmd] if faulty else [*tr, *cmd]]


def two_nodes(cmd: list[str], faulty: bool = False) -> list[list[str]]:
    """Two launchers (nodes) of one rank each; node 1 under another host name (and the fault, if `faulty`)."""
    port = str(_free_port())
    tr = [str(BIN / "torchrun"), "--nnodes", "2", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
          "--master_port", port]
    node1 = ["unshare", "--uts", "sh", "-c", 'hostname sppo-node1 && exec "$@"', "sh",
             *([FAULT] if faulty else []), *tr, "--node_rank", "1", *cmd]
    return [[*tr, "--node_rank", "0", *cmd], node1]


TOPOLOGIES = {"2 ranks": two_ranks, "2 nodes": two_nodes}


class Run:
    """Launchers started with their output in files; `wait_end` times them from the fault to the end."""

    def __init__(self, launchers: list[list[str]], tmp: Path, env: dict | None = None):
        self.tmp = tmp
        self.procs, self.outs, self.errs = [], [], []
        for i, cmd in enumerate(launchers):
            out, err = tmp / f"launcher{i}.out", tmp / f"launcher{i}.err"
            self.outs.append(out)
            self.errs.append(err)
            self.procs.append(subprocess.Popen(cmd, env={**ENV, **(env or {})}, cwd=ROOT, stdout=open(out, "w"),
                                               stderr=open(err, "w"), start_new_session=True))
        self.fault_at: float | None = None

    def stderr(self) -> str:
        return "\n".join(e.read_text(errors="replace") for e in self.errs)

    def ready(self) -> dict[int, int]:
        """rank -> pid from the probes' "ready" lines."""
        lines = [json.loads(x) for o in self.outs for x in o.read_text().splitlines() if x.startswith("{")]
        return {x["rank"]: x["pid"] for x in lines if x.get("ready")}

    def wait_for(self, found, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not found():
            assert time.monotonic() < deadline, "timed out waiting:\n" + self.stderr()[-3000:]
            assert any(p.poll() is None for p in self.procs), "the run ended first:\n" + self.stderr()[-3000:]
            time.sleep(0.05)

    def wait_end(self, fault_line: str | None = None, only=None, timeout: float = 300) -> float:
        """Seconds from the fault (`self.fault_at`, or the moment `fault_line` appears in the output) until the
        launchers `only` (default: all) have exited."""
        procs = self.procs if only is None else [self.procs[i] for i in only]
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if self.fault_at is None and fault_line and fault_line in self.stderr():
                self.fault_at = time.monotonic()
            time.sleep(0.05)
        end = time.monotonic()
        if self.fault_at is None and fault_line and fault_line in self.stderr():
            self.fault_at = end
        assert all(p.poll() is not None for p in procs), "still running:\n" + self.stderr()[-3000:]
        assert self.fault_at is not None, f"never saw {fault_line!r}:\n" + self.stderr()[-3000:]
        return end - self.fault_at

    def finish(self, timeout: float = 600) -> list[int]:
        """Wait for every launcher; their exit codes."""
        return [p.wait(timeout=timeout) for p in self.procs]

    def codes(self) -> list[int | None]:
        return [p.poll() for p in self.procs]

    def kill(self) -> None:
        import psutil

        for p in self.procs:
            try:
                tree = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for q in tree:
                try:
                    q.kill()
                except psutil.NoSuchProcess:
                    pass
            p.wait(timeout=60)


@pytest.fixture
def runs(tmp_path):
    started: list[Run] = []

    def start(launchers, env=None, name="run") -> Run:
        d = tmp_path / f"{name}{len(started)}"
        d.mkdir()
        started.append(Run(launchers, d, env))
        return started[-1]

    yield start
    for r in started:  # never leave a rank behind (a stopped one above all)
        r.kill()


def report(case: str, seconds: float) -> None:
    print(f"\n[rank failure] {case}: the run ended {seconds:.1f} s after the fault", file=sys.stderr)


def _line(text: str, pattern: str) -> list[str]:
    return [x for x in text.splitlines() if re.search(pattern, x)]


# ----------------------------------------------------------------------------------------------- the probe
@needs_namespaces
@pytest.mark.parametrize("topology,fault", [("2 ranks", "exception"), ("2 nodes", "exception"),
                                            ("2 ranks", "full disk"), ("2 nodes", "read-only")])
def test_a_failing_rank_ends_every_rank_with_its_cause(runs, tmp_path, topology, fault):
    """Rank 1 fails for real while rank 0 waits for it (in `wait`, or in a blocking `gather` on 2 nodes): every
    launcher exits non-zero within 60 s; rank 1 says its cause, rank 0 that it stopped because of rank 1's."""
    how = "raise" if fault == "exception" else "io"
    where = "gather" if topology == "2 nodes" else "wait"
    env = {"SPPO_TEST_FAULT_DIR": str(tmp_path / "fault"), "SPPO_TEST_FAULT": "full" if fault == "full disk"
           else "readonly", "SPPO_TEST_FAULT_RANK": "1" if topology == "2 ranks" else ""}
    run = runs(TOPOLOGIES[topology]([PROBE, "fail-on-rank1", how, where], faulty=how == "io"), env)
    seconds = run.wait_end(fault_line="error: rank 1: ")
    report(f"probe, {topology}, {fault} on rank 1", seconds)
    assert seconds < 60 and all(c not in (0, None) for c in run.codes())
    cause = {"exception": "RuntimeError: probe: rank 1 broke", "full disk": "no space left on device",
             "read-only": "read-only file system"}[fault]
    err = run.stderr()
    assert len(_line(err, rf"^error: rank 1: .*{cause}")) == 1, err[-3000:]
    assert len(_line(err, rf"^error: rank 0 stopped: rank 1 failed: .*{cause}")) == 1, err[-3000:]
    assert "Traceback" not in "\n".join(x for x in err.splitlines() if x.startswith("[rank0]"))


@needs_namespaces
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_kill_9_of_rank1_ends_the_run_in_seconds(runs, topology):
    run = runs(TOPOLOGIES[topology]([PROBE, "fail-on-rank1", "sleep", "gather"]))
    run.wait_for(lambda: len(run.ready()) == 2)
    time.sleep(0.5)  # rank 0 is inside the collective by now
    os.kill(run.ready()[1], signal.SIGKILL)
    run.fault_at = time.monotonic()
    seconds = run.wait_end()
    report(f"probe, {topology}, kill -9 of rank 1", seconds)
    assert seconds < 10 and all(c not in (0, None) for c in run.codes())
    said = _line(run.stderr(), r"^error: rank 0 stopped: rank 1 (died without a word|went silent)")
    assert len(said) == 1, run.stderr()[-3000:]


@needs_namespaces
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_silent_rank_is_named_after_the_collective_timeout(runs, topology):
    """SIGSTOP of rank 1 (alive, silent): rank 0 gives up after the collective timeout (here 0.1 min) and names
    rank 1 as the one that went silent."""
    run = runs(TOPOLOGIES[topology]([PROBE, "fail-on-rank1", "sleep", "wait"]), {"PROBE_TIMEOUT_MINUTES": "0.1"})
    run.wait_for(lambda: len(run.ready()) == 2)
    time.sleep(0.5)
    stopped = run.ready()[1]
    os.kill(stopped, signal.SIGSTOP)
    run.fault_at = time.monotonic()
    rank0 = run.ready()[0]
    run.wait_for(lambda: not _alive(rank0), timeout=120)
    seconds = time.monotonic() - run.fault_at
    report(f"probe, {topology}, SIGSTOP of rank 1 (collective timeout 6 s)", seconds)
    assert seconds < 6 + 60
    said = _line(run.stderr(), r"^error: rank 0 stopped: rank 1 went silent")
    assert len(said) == 1, run.stderr()[-3000:]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------- sppo-train
@needs_namespaces
@pytest.mark.slow
def test_train_save_state_failing_on_rank1_only(runs, tmp_path, tiny, prompt_file):
    """The known hang: an I/O failure inside accelerate's `save_state` on a rank other than 0 (here the training
    state directory is read-only for rank 1 alone). Both ranks and the launcher exit within 60 s, naming rank 1
    and the directory; the finished stages stay for the rerun."""
    from test_distributed import _args

    args = ["-m", "sppo.cli", *_args(tmp_path, tiny, prompt_file, "run", **{"training.save_steps": 2})]
    state = tmp_path / "run" / "iter1" / "train" / "state"
    env = {"SPPO_TEST_FAULT_DIR": str(state), "SPPO_TEST_FAULT": "readonly", "SPPO_TEST_FAULT_RANK": "1"}
    run = runs(two_ranks(args, faulty=True), env)
    seconds = run.wait_end(fault_line="error: rank 1: ")
    report("sppo-train, 2 ranks, save_state on a read-only directory of rank 1", seconds)
    err = run.stderr()
    assert seconds < 60 and run.codes() != [0], err[-3000:]
    assert _line(err, rf"^error: rank 1: {state}/step-000002: read-only file system"), err[-3000:]
    assert _line(err, rf"^error: rank 0 stopped: rank 1 failed: {state}/step-000002: read-only"), err[-3000:]
    for stage in ("generate", "rank", "dataset", "reference"):  # kept: a rerun goes on from training
        assert (tmp_path / "run" / "iter1" / stage / "manifest.json").exists(), stage
    assert not list(state.glob("step-*"))  # and no half-written training state counts as one


@needs_namespaces
@pytest.mark.slow
def test_train_exception_on_one_node(runs, tmp_path, tiny, prompt_file):
    """Two nodes; the ranker raises on rank 1 (node 1) only: both nodes exit within 60 s, rank 0 naming rank 1's
    error; the generation stage and rank 0's finished ranking chunks are kept for the rerun."""
    from test_distributed import _args

    args = ["-m", "sppo.cli", *_args(tmp_path, tiny, prompt_file, "run",
                                     **{"ranking.kind": "python:sppo_doubles:FailingRanker"})]
    run = runs(two_nodes(args), {"SPPO_TEST_FAIL_RANK": "1"})
    seconds = run.wait_end(fault_line="error: rank 1: ")
    report("sppo-train, 2 nodes, an exception on rank 1", seconds)
    err = run.stderr()
    assert seconds < 60 and 0 not in run.codes(), err[-3000:]
    assert _line(err, r"^error: rank 1: RuntimeError: ranker failed on rank 1 \(test\)$"), err[-3000:]
    assert _line(err, r"^error: rank 0 stopped: rank 1 failed: RuntimeError: ranker failed on rank 1"), err[-3000:]
    assert (tmp_path / "run" / "iter1" / "generate" / "manifest.json").exists()
    assert list((tmp_path / "run" / "iter1" / "rank" / "chunks").glob("*.jsonl"))  # rank 0's, kept


# ----------------------------------------------------------------------------------------------- sppo-bench
@pytest.fixture(scope="module")
def bench_models(tmp_path_factory):
    from bench_fake_judge import tiny_checkpoints

    return tiny_checkpoints(tmp_path_factory.mktemp("bench-models"), seeds=(0,))


@needs_namespaces
@pytest.mark.slow
@pytest.mark.parametrize("topology", ["2 nodes"])
def test_bench_rank_failing_then_the_rerun_asks_the_judge_nothing_twice(runs, tmp_path, bench_models,
                                                                         shared_data, topology):
    """sppo-bench with best-of-2: the plain AlpacaEval answers are judged, then the best-of-2 ranking raises on
    rank 1 only. Every rank exits within 60 s, naming rank 1; the rerun keeps the judged result and sends the
    judge only what it had not been asked (no request twice over both runs)."""
    from bench_fake_judge import FakeJudgeServer, bench_args

    env = {"BENCH_KEY": "sk-x", "SPPO_TEST_FAIL_RANK": "1"}
    with FakeJudgeServer() as server:
        args = ["-m", "benchmarks.cli", *bench_args(server, bench_models, shared_data, tmp_path / "results",
                                                    "--alpaca-eval", "--best-of", "2", "--ranker",
                                                    "python:bench_fake_judge:FailingRanker", limit=8),
                "--judge-timeout", "60"]
        run = runs(TOPOLOGIES[topology](args), env)
        seconds = run.wait_end(fault_line="error: rank 1: ")
        report(f"sppo-bench, {topology}, an exception on rank 1", seconds)
        err = run.stderr()
        assert seconds < 60 and 0 not in run.codes(), err[-3000:]
        assert _line(err, r"^error: rank 0 stopped: rank 1 failed: RuntimeError: ranker failed on rank 1"), \
            err[-3000:]
        first = server.count()
        assert first > 0 and (tmp_path / "results" / "tiny1" / "alpaca_eval.json").exists()  # judged before
        rerun = runs(TOPOLOGIES[topology](args), {**env, "SPPO_TEST_FAIL_RANK": "none"}, name="rerun")
        assert rerun.finish() == [0] * len(rerun.procs), rerun.stderr()[-3000:]
        bodies = [json.dumps(b, sort_keys=True) for b in server.requests]
    assert server.count() > first and len(set(bodies)) == len(bodies)  # nothing asked twice
    assert (tmp_path / "results" / "tiny1" / "alpaca_eval.best-of-2.json").exists()


# ----------------------------------------------------------------------------------------------- the setting
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e9"])
def test_the_collective_timeout_is_validated_in_both_commands(value, tmp_path, capsys):
    """run.collective_timeout_minutes (sppo-train) and --collective-timeout-minutes (sppo-bench): a finite number of
    minutes > 0, at most a week; anything else is one line naming the setting, exit status 2, nothing run."""
    from benchmarks.cli import main as bench
    from sppo.cli import main as train

    assert train(["--print-config", f"run.collective_timeout_minutes={value}"]) == 2
    assert bench(["--alpaca-eval", "x", "--results-dir", str(tmp_path), f"--collective-timeout-minutes={value}"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "run.collective_timeout_minutes" in lines[0], lines
    assert lines[1].startswith("error: --collective-timeout-minutes: must be"), lines  # the settings machinery's spelling
    assert not any(tmp_path.iterdir())
