"""Hostile input and broken machines: no code execution, no symlink followed, no secret written, one line and a
clean exit status (1 environment, 2 input) for every I/O failure, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path,
            "HF_HUB_OFFLINE": "1", **extra}


def _run(args: list[str], cwd: Path, timeout: int = 300, user: int | None = None, **env) -> subprocess.CompletedProcess:
    """A console script in a fresh interpreter (``python -m MODULE ...``), optionally as another user."""
    preexec = None
    if user is not None:
        def preexec():
            os.setgid(user)
            os.setgroups([])
            os.setuid(user)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec)


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The command failed with exit `code` and exactly one ``error:`` line containing `words`, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


# --------------------------------------------------------------------------- 1. code execution through lm-eval
def test_lm_eval_path_with_comma_loads_that_directory_and_runs_no_remote_code(tmp_path):
    """A checkpoint path `DIR,trust_remote_code=True` beside a directory `DIR` whose config maps the model class to
    its own Python file: exactly the named directory is evaluated, keyed by its fingerprint, and no code runs."""
    from benchmarks.store import checkpoint_fingerprint
    from perf.fixtures import make_tiny_checkpoint

    named = make_tiny_checkpoint(tmp_path / "ck,trust_remote_code=True")
    sibling = make_tiny_checkpoint(tmp_path / "ck", seed=1)
    cfg = json.loads((sibling / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.Evil"}
    (sibling / "config.json").write_text(json.dumps(cfg))
    marker = tmp_path / "REMOTE_CODE_RAN"
    (sibling / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as Evil\n")
    results = tmp_path / "results"
    proc = _run(["-m", "benchmarks.cli", "--lm-eval", str(named), "--lm-eval-tasks", "tiny", "--limit", "2",
                 "--results-dir", str(results)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists(), "the sibling directory's auto_map module was imported"
    stored = json.loads(next(results.glob("*/lm_eval.sppo-tiny-mc.json")).read_text())
    assert stored["checkpoint"]["path"] == str(named)
    assert stored["checkpoint"]["fingerprint"] == checkpoint_fingerprint(named) != checkpoint_fingerprint(sibling)
    assert stored["settings"]["trust_remote_code"] is False


def test_lm_eval_model_arguments_are_values_and_remote_code_needs_the_flag(monkeypatch):
    """The harness's model is built from values (a path with commas and '=' stays one path), and
    ``trust_remote_code`` is what the user asked for, nothing else."""
    from sppo.package_shims import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval.models.huggingface as hf

    from benchmarks.suites.lm_eval import LmEvalJob, hf_model

    seen = {}
    monkeypatch.setattr(hf, "HFLM", lambda **kw: seen.update(kw) or "lm")
    job = LmEvalJob("/m/a,b=c,trust_remote_code=True", "float32", "arc", 0, 4, None, None)
    assert hf_model(job, "cpu") == "lm"
    assert seen["pretrained"] == "/m/a,b=c,trust_remote_code=True" and seen["trust_remote_code"] is False
    hf_model(LmEvalJob("/m/x", "float32", "arc", 0, 4, None, None, trust_remote_code=True), "cpu")
    assert seen["trust_remote_code"] is True


# --------------------------------------------------------------------------- 2. writers never follow a symlink
def test_writers_in_place_refuse_symlinks(tmp_path):
    """The shared-file lock of the bench, the training log and the temporary checkpoint directory never write
    through a link someone planted."""
    from benchmarks.judging import SharedJsonlFile
    from sppo.errors import UserError
    from sppo.files import append_text, fresh_dir

    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    shared = tmp_path / "mt_bench.jsonl"
    (tmp_path / "mt_bench.jsonl.lock").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        SharedJsonlFile(shared, "m").write([{"model": "m", "id": 1}])
    log = tmp_path / "log.jsonl"
    log.symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        append_text(log, "{}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tmp = tmp_path / ".Iter1.tmp"
    tmp.symlink_to(elsewhere)
    made = fresh_dir(tmp)
    assert made.is_dir() and not made.is_symlink() and elsewhere.is_dir()
    (made / "w").write_text("x")
    assert victim.read_text() == "keep\n" and list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- 3. secrets are never written
KEY = 'sk-h"ard\\ened/key+9=%41'  # a quote and a backslash: JSON-escaping changes it
USER, PASSWORD = "alice", "pw-s3cr@t"  # '@' is URL-encoded in the URL's userinfo


def _secret_forms() -> list[bytes]:
    """The key and the password as a leak would show them: raw, JSON-escaped, URL-encoded, base64 (alone and
    as HTTP basic authentication's user:password)."""
    import base64
    from urllib.parse import quote

    out = []
    for s in (KEY, PASSWORD):
        out += [s, json.dumps(s)[1:-1], quote(s, safe=""), base64.b64encode(s.encode()).decode()]
    out += [base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    return [f.encode() for f in out]


def _leaks(*blobs: bytes) -> list[bytes]:
    return [f for f in _secret_forms() if any(f in b for b in blobs)]


def test_scrub_removes_a_key_in_every_encoding_and_leaves_other_text_alone():
    import base64
    from urllib.parse import quote, quote_plus

    from sppo.scrub import public_url, register_secret, scrub

    key = 'sk-\u00e9n"co\\ded/+%=key-2468'
    register_secret(key)
    assert public_url("https://bob:h%40ppy-pass@example.com:8443/v1?x=1") == "https://example.com:8443/v1?x=1"
    forms = [key, json.dumps(key)[1:-1], json.dumps(key, ensure_ascii=False)[1:-1], quote(key, safe=""),
             quote_plus(key), "h@ppy-pass", "h%40ppy-pass", base64.b64encode(b"bob:h@ppy-pass").decode()]
    for prefix in (b"", b"B", b"Be", b"Bearer "):  # base64 of the key inside a longer base64 text, any alignment
        forms.append(base64.b64encode(prefix + key.encode()).decode())
        forms.append(base64.urlsafe_b64encode(prefix + key.encode() + b" tail").decode())
    for form in forms:
        text = scrub(f"before {form} after")
        assert "[REDACTED]" in text and text.startswith("before ") and text.endswith(" after"), (form, text)
        assert "ppy-pass" not in text and "co\\ded" not in text, (form, text)
    plain = "A basic answer: see http://example.com/docs (Bearer bonds are old)."
    assert scrub(plain) == plain


def test_echoed_key_and_url_password_never_reach_cache_replies_or_logs(tmp_path, monkeypatch, caplog):
    """A judge that echoes the Authorization header inside a 200 reply: the reply, the SQLite cache (with its
    journal), the judge's recorded identity and every log line are free of the key and of the URL password."""
    from urllib.parse import quote

    from benchmarks.judge import JudgeCache, JudgeRequest, OpenAIJudge
    from bench_fake_judge import FakeJudgeServer
    from sppo.files import write_json

    import logging

    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="httpx")  # the HTTP client's request lines too (another test may quiet it)
    monkeypatch.setenv("HARDEN_KEY", KEY)
    cache_path = tmp_path / "cache.sqlite3"
    cache = JudgeCache(cache_path)
    with FakeJudgeServer() as server:
        server.always = "echo-auth"
        with_password = server.url.replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")
        replies = []
        for url, q in ((server.url, "q1"), (with_password, "q2")):  # Bearer key, then basic authentication
            judge = OpenAIJudge("m", base_url=url, api_key_env="HARDEN_KEY", cache=cache, backoff_base=0.01)
            replies += judge.complete([JudgeRequest.make([{"role": "user", "content": q}], 16)])
            assert judge.base_url == server.url and PASSWORD not in json.dumps([judge.info(), judge.identity()])
        sent = [h.get("Authorization", "") for h in server.headers]
    assert sent[0] == f"Bearer {KEY}" and sent[1].startswith("Basic "), "the fake server did not see the secrets"
    assert all(r.ok and "[[" in r.text and "[REDACTED]" in r.text for r in replies), replies
    cache.close()
    write_json(tmp_path / "replies.json", [r.text for r in replies])
    files = [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
    assert "HTTP Request" in caplog.text
    assert _leaks(*files, caplog.text.encode(), json.dumps([r.text for r in replies]).encode()) == []


def test_bench_run_with_url_password_and_echoing_judge_writes_no_secret(tmp_path, shared_data, monkeypatch, capsys,
                                                                     caplog):
    """End to end: `sppo-bench --mt-bench` with a base URL carrying user:password and a judge echoing the
    Authorization header: no file of the results store (judgments, cache, results) and no output line holds
    the key or the password; the result records the URL without its userinfo."""
    from urllib.parse import quote

    from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
    from benchmarks.cli import main as bench

    ckpt = tiny_checkpoints(tmp_path / "ck", seeds=(0,))
    monkeypatch.setenv("BENCH_KEY", KEY)
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        server.always = "echo-auth"
        argv = bench_args(server, ckpt, shared_data, results, "--mt-bench", limit=1, max_new_tokens=4)
        url = argv.index("--judge-base-url") + 1
        argv[url] = argv[url].replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")
        assert bench(argv) == 0
        assert any("Basic " in h.get("Authorization", "") for h in server.headers)
    out = capsys.readouterr()
    stored = json.loads((results / "tiny1" / "mt_bench.json").read_text())
    assert stored["judge"]["base_url"] == server.url
    judgments = b"".join(p.read_bytes() for p in results.rglob("*") if "judgment" in str(p) and p.is_file())
    assert b"REDACTED" in judgments  # the echo was recorded, scrubbed
    files = [p.read_bytes() for p in results.rglob("*") if p.is_file()]
    assert _leaks(*files, out.out.encode(), out.err.encode(), caplog.text.encode()) == []


# --------------------------------------------------------------------------- 4/5. full disk, read-only, unreadable
def _mount_tmpfs(where: Path, *options: str) -> Path:
    """A small tmpfs at `where` (``size=...``, ``ro``), unmounted by the caller; skipped where mounting is
    impossible (not root, no mount namespace)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    return where


@pytest.fixture
def disks(tmp_path):
    """``disks(name, *options)`` mounts a tmpfs under tmp_path; all are unmounted afterwards."""
    mounted = []

    def mount(name: str, *options: str) -> Path:
        mounted.append(_mount_tmpfs(tmp_path / name, *options))
        return mounted[-1]

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _as_unprivileged() -> list[str]:
    """A command prefix under which file modes count: root keeps its uid but loses the capabilities that let it
    ignore them (as a process run by any other user)."""
    if os.geteuid() != 0:
        return []
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        pytest.skip("running as root without setpriv: cannot drop the capability to ignore file modes")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _run_cli(args: list[str], cwd: Path, unprivileged: bool = False, timeout: int = 300):
    prefix = _as_unprivileged() if unprivileged else []
    return subprocess.run([*prefix, sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _train_args(tmp_path: Path, run: Path) -> list[str]:
    from perf.fixtures import make_tiny_checkpoint

    model = tmp_path / "model"
    if not model.exists():
        make_tiny_checkpoint(model, seed=2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Explain why the sky is blue.", "split": "train_iteration_1"}\n')
    return ["-m", "sppo.cli", f"run.output_dir={run}", "run.iterations=1", f"model.name={model}",
            f"prompts.source={prompts}", "generation.backend=hf", "generation.k=2", "generation.max_new_tokens=4",
            "ranking.kind=python:sppo_doubles:LengthRanker", "ranking.model=none", "training.max_length=96",
            "training.max_prompt_length=48"]


def _no_temporary_files(root: Path) -> None:
    left = [p for p in root.rglob(".*") if p.name != ".lock"]
    assert left == [], left


def test_sppo_train_on_a_full_disk_and_a_read_only_one(tmp_path, disks):
    full = disks("full", "size=8k")
    proc = _run_cli(_train_args(tmp_path, full / "run"), tmp_path)
    _one_line_error(proc, 1, str(full / "run"), "no space left on device")
    _no_temporary_files(full)
    ro = disks("ro", "size=64k", "ro")
    proc = _run_cli(_train_args(tmp_path, ro / "run"), tmp_path)
    _one_line_error(proc, 1, str(ro / "run"), "read-only file system")


def test_judge_cache_on_a_full_disk_is_one_line_and_keeps_what_it_had(tmp_path, disks):
    """SQLite's "database or disk is full" names the cache file (exit 1 from the CLI); the rows committed
    before stay readable and no half row is left."""
    from benchmarks.judge import JudgeCache, JudgeReply, JudgeRequest
    from sppo.errors import MachineError

    disk = disks("disk", "size=128k")
    cache = JudgeCache(disk / "judge_cache.sqlite3")
    request = JudgeRequest.make([{"role": "user", "content": "q"}], 8)
    cache.put("first", "m", request, JudgeReply("Rating: [[5]]"))
    with pytest.raises(MachineError, match=r"judge_cache.sqlite3: (no space left on device|input/output error)"):
        for i in range(1000):
            cache.put(f"k{i}", "m", request, JudgeReply(f"{i} " * 2000))
    assert cache.get("first").text == "Rating: [[5]]"
    stored = [cache.get(f"k{j}") for j in range(i)]
    assert all(r is not None and r.text == f"{j} " * 2000 for j, r in enumerate(stored))  # whole rows only
    cache.close()


@pytest.mark.parametrize("options, words", [(("size=48k",), ("no space left on device", "input/output error")),
                                            (("size=64k", "ro"), ("read-only file system",))])
def test_bench_run_on_a_full_or_read_only_store(tmp_path, shared_data, disks, monkeypatch, capsys, options, words):
    """`sppo-bench` whose results store fills up (SQLite: "database or disk is full") or is read-only: one line
    naming the file, exit 1, no temporary file left."""
    from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
    from benchmarks.cli import main as bench

    ckpt = tiny_checkpoints(tmp_path / "ck", seeds=(0,))
    store = disks("store", *options)
    monkeypatch.setenv("BENCH_KEY", "k-123456")
    with FakeJudgeServer() as server:
        capsys.readouterr()
        code = bench(bench_args(server, ckpt, shared_data, store / "results", "--mt-bench", "--alpaca-eval",
                                limit=1, max_new_tokens=4))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(err) == 1 and str(store) in err[0] and any(w in err[0] for w in words), err
    _no_temporary_files(store)


def test_bench_table_only_reads_and_works_on_a_read_only_store(tmp_path):
    """`sppo-bench table` prints the tables of a store it may not write to, and writes nothing; plots only when
    asked, and then a store it cannot write is one line."""
    import shutil

    sys.path.insert(0, str(REPO / "tests"))
    from release_testutil import make_run

    run = make_run(tmp_path)
    results = run / "results"
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    for p in [results, *results.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        proc = _run_cli(["-m", "benchmarks.cli", "table", "--results-dir", str(results)], tmp_path,
                        unprivileged=True)
        assert proc.returncode == 0 and "AlpacaEval 2" in proc.stdout, proc.stderr[-2000:]
        assert sorted(p.relative_to(results) for p in results.rglob("*")) == before
        proc = _run_cli(["-m", "benchmarks.cli", "table", "--results-dir", str(results), "--plots"], tmp_path,
                        unprivileged=True)
        _one_line_error(proc, 1, str(results / "plots"), "permission denied")
    finally:
        for p in [results, *results.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(run)


def test_unreadable_files_are_permission_errors_not_tracebacks(tmp_path):
    """score, table and sppo-release on files this user may not read: one line naming the file, exit 1; an
    unreadable model.safetensors is "permission denied", not "corrupt or truncated"."""
    sys.path.insert(0, str(REPO / "tests"))
    from release_testutil import make_run

    run = make_run(tmp_path)
    annotations = tmp_path / "annotations.json"
    annotations.write_text("[]")
    locked = [annotations, run / "results" / "Iter2" / "mt_bench.json",
              run / "checkpoints" / "Iter3" / "model.safetensors"]
    for p in locked:
        p.chmod(0)
    proc = _run_cli(["-m", "benchmarks.cli", "score", "alpaca-eval", str(annotations)], tmp_path, unprivileged=True)
    _one_line_error(proc, 1, str(annotations), "permission denied")
    proc = _run_cli(["-m", "benchmarks.cli", "table", "--results-dir", str(run / "results")], tmp_path,
                    unprivileged=True)
    _one_line_error(proc, 1, str(locked[1]), "permission denied")
    locked[1].chmod(0o644)
    proc = _run_cli(["-m", "release.cli", "--run-dir", str(run), "--out", str(tmp_path / "cards")], tmp_path,
                    unprivileged=True)
    _one_line_error(proc, 1, str(locked[2]), "permission denied")


def test_sppo_release_into_a_full_or_read_only_directory(tmp_path, disks):
    sys.path.insert(0, str(REPO / "tests"))
    from release_testutil import make_run

    run = make_run(tmp_path)
    for options, words in ((("size=4k",), "no space left on device"), (("size=64k", "ro"), "read-only file system")):
        out = disks(f"out-{len(options)}", *options)
        proc = _run_cli(["-m", "release.cli", "--run-dir", str(run), "--out", str(out)], tmp_path)
        _one_line_error(proc, 1, str(out), words)
        _no_temporary_files(out)


# --------------------------------------------------------------------------- 8. one results entry per checkpoint
def test_checkpoints_whose_names_clean_alike_keep_separate_results(tmp_path, shared_data, monkeypatch, capsys):
    """`we ird;name` and `we_ird_name` both clean to `we_ird_name`: each keeps its own entry, and the table
    shows both."""
    import shutil

    from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
    from benchmarks.cli import main as bench
    from benchmarks.store import ResultsStore

    a, b = tiny_checkpoints(tmp_path, seeds=(0, 1))
    a, b = Path(shutil.move(a, tmp_path / "we ird;name")), Path(shutil.move(b, tmp_path / "we_ird_name"))
    monkeypatch.setenv("BENCH_KEY", "k-123456")
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        assert bench(bench_args(server, [a, b], shared_data, results, "--mt-bench", limit=1, max_new_tokens=4)) == 0
    store = ResultsStore(results)
    by_path = {r.checkpoint["path"]: r.model for r in store.results()}
    assert set(by_path) == {str(a), str(b)} and len(set(by_path.values())) == 2, by_path
    assert by_path[str(b)] == "we_ird_name"
    capsys.readouterr()
    assert bench(["table", "--results-dir", str(results)]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in by_path.values())


def test_a_stored_result_of_another_existing_checkpoint_is_never_replaced(tmp_path):
    from benchmarks.run_cmd import refuse_other_checkpoint
    from benchmarks.store import SuiteResult
    from sppo.errors import UserError

    first, second = tmp_path / "a" / "ck", tmp_path / "b" / "ck"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    old = SuiteResult(model="ck", suite="mt_bench", metrics={}, checkpoint={"path": str(first)})
    with pytest.raises(UserError, match=f"holds the results of {first}"):
        refuse_other_checkpoint(old, str(second), tmp_path / "results" / "ck" / "mt_bench.json")
    refuse_other_checkpoint(old, str(first), tmp_path / "r.json")  # the same checkpoint: its own entry
    first.rename(tmp_path / "moved")
    refuse_other_checkpoint(old, str(second), tmp_path / "r.json")  # the old one is gone: the entry moves on


# --------------------------------------------------------------------------- 9. the smaller refusals
def test_manifest_of_a_newer_schema_is_refused(tmp_path):
    """A checkpoint manifest written by a newer toolkit is refused with one line, as the results store does."""
    sys.path.insert(0, str(REPO / "tests"))
    from release_testutil import manifest

    from sppo.checkpoint import SCHEMA_VERSION, CheckpointManifest
    from sppo.errors import UserError

    for version, words in ((SCHEMA_VERSION + 1, "newer than this toolkit"), ("2", "positive integer")):
        with pytest.raises(UserError, match=words) as e:
            CheckpointManifest.from_dict({**manifest(1), "schema_version": version}, "m.json")
        assert str(e.value).startswith("m.json: schema_version") or "'schema_version'" in str(e.value)
    assert CheckpointManifest.from_dict({**manifest(1), "schema_version": SCHEMA_VERSION}, "m.json").iteration == 1


def test_prompts_sharing_an_id_are_all_kept(tmp_path, caplog):
    """Two different prompts under one id are both trained on (the later one as <id>#1) and a warning says so;
    the same prompt twice is kept once."""
    from sppo.config import PromptsConfig
    from sppo.prompts import load_split

    path = tmp_path / "p.jsonl"
    rows = [("a", "first"), ("a", "second"), ("b", "third"), ("a", "first"), ("c", "fourth"), ("a", "fifth")]
    path.write_text("".join(json.dumps({"id": i, "prompt": t, "split": "s"}) + "\n" for i, t in rows))
    got = load_split(PromptsConfig(source=str(path), splits=["s"]), 1)
    assert [g["prompt"] for g in got] == ["first", "second", "third", "fourth", "fifth"]
    assert [g["id"] for g in got] == ["a", "a#1", "b", "c", "a#2"]
    assert "share an id" in caplog.text and str(path) in caplog.text


def test_first_line_of_an_exception_never_fails():
    from sppo.errors import described, first_line

    assert first_line(ValueError("bad value\nsecond line")) == "bad value"
    assert first_line(ValueError("")) == "ValueError"          # an empty message: the type, not IndexError
    assert first_line(KeyError()) == "KeyError"
    assert described(OSError("  \n  ")) == "OSError"
    assert described(RuntimeError("\n  boom \nmore")) == "RuntimeError: boom"
