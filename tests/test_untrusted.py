"""Untrusted run directories, templates, URLs, replies and uploads (issue 27): nothing in a run directory is
unpickled, templates are sandboxed and bounded, secrets in URLs never leak, uploads stay inside the checkpoint,
every parser is bounded, and every bad reply or file is one line."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo.errors import UserError


def _one_line(e: BaseException, *words: str) -> str:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, text
    for w in words:
        assert w in text, text
    return text


# --------------------------------------------------------------------------- 1. nothing in a run dir is unpickled
class _Payload:
    """Unpickling this writes a marker file: what a crafted state file would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny checkpoint (copy it before changing it)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=1)


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory, tiny_ckpt):
    """A tiny training run with a state saved at step 2 and at step 4 of 6."""
    from sppo.config import TrainingConfig
    from sppo.models import load_model, load_tokenizer
    from sppo.sequences import encode_examples
    from sppo.train import reference_logps, train_iteration

    root = tmp_path_factory.mktemp("state")
    tiny = str(tiny_ckpt)
    tok = load_tokenizer(tiny, padding_side="right")
    rows = [{"prompt": f"Question {i}?", "chosen": "A fine answer.", "rejected": "No.", "p_win": 0.8, "p_lose": 0.2}
            for i in range(4)]
    cfg = TrainingConfig(learning_rate=1e-3, eta=10, num_train_epochs=3, stop_at_epoch=None, warmup_ratio=0.0,
                         per_device_train_batch_size=2, gradient_checkpointing=False, save_steps=2,
                         save_total_limit=2)
    examples, _ = encode_examples(tok, rows, TrainingConfig(max_length=128, max_prompt_length=64))
    ref = reference_logps(load_model(tiny, dtype="float32"), examples, tok.pad_token_id, batch_size=4,
                          progress=False)

    def train(train_dir: Path):
        model = load_model(tiny, dtype="float32")
        return train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, progress=False,
                               train_dir=train_dir)

    train(root / "train")
    return root / "train", train


def _copy(saved_state, tmp_path) -> Path:
    train_dir, _ = saved_state
    copy = tmp_path / "train"
    shutil.copytree(train_dir, copy)
    return copy


def test_the_training_position_is_json_and_resume_continues(saved_state, tmp_path):
    train_dir = _copy(saved_state, tmp_path)
    newest = train_dir / "state" / "step-000004"
    assert json.loads((newest / "sppo_position.json").read_text()) == {"written_by": "sppo-train", "step": 4}
    assert not list(newest.glob("custom_checkpoint_*"))
    result = saved_state[1](train_dir)
    assert result.resumed_from == newest and result.summary["optimizer_steps"] == 6


@pytest.mark.parametrize("name, form", [("custom_checkpoint_0.pkl", "pickle"), ("random_states_0.pkl", "torch"),
                                        ("optimizer.bin", "torch"), ("optimizer.bin", "pickle")])
def test_a_crafted_state_file_is_refused_and_never_unpickled(saved_state, tmp_path, name, form):
    """A state file someone else made runs no code on resume: it is refused with one line naming the snapshot
    (never a silent restart at step 0)."""
    train_dir = _copy(saved_state, tmp_path)
    marker = tmp_path / "PICKLE_RAN"
    target = train_dir / "state" / "step-000004" / name
    if form == "pickle":
        target.write_bytes(pickle.dumps({"step": _Payload(marker)}))
    else:
        torch.save({"step": _Payload(marker)}, target)
    with pytest.raises(UserError) as e:
        saved_state[1](train_dir)
    _one_line(e.value, "step-000004", "not a training state sppo-train wrote")
    assert not marker.exists(), "a pickle from the run directory was executed"


@pytest.mark.parametrize("position", [None, "[1]", '{"written_by": "sppo-train", "step": 3}',
                                      '{"written_by": "sppo-train", "step": "4"}', "{" * 100_000],
                         ids=["missing", "list", "other-step", "text-step", "deep"])
def test_a_state_without_our_position_is_refused(saved_state, tmp_path, position):
    train_dir = _copy(saved_state, tmp_path)
    path = train_dir / "state" / "step-000004" / "sppo_position.json"
    if position is None:
        path.unlink()
    else:
        path.write_text(position)
    with pytest.raises(UserError) as e:
        saved_state[1](train_dir)
    _one_line(e.value, "step-000004", "sppo_position.json")


# --------------------------------------------------------------------------- 6. every parser bounded
def _alias_bomb(levels: int = 7) -> str:
    """A flow-style YAML value of a few hundred bytes that expands to 9**levels strings."""
    parts = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    parts += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def _short_refusal(call, *words: str) -> str:
    import time

    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        call()
    assert time.perf_counter() - start < 10
    text = _one_line(e.value, *words)
    assert len(text) < 400, text[:400]
    return text


@pytest.mark.parametrize("where", ["train-file", "train-override", "bench-file"])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, where):
    from benchmarks.config import BenchConfig
    from sppo.config import load_config

    bomb = _alias_bomb()
    assert len(bomb) < 700
    if where == "train-file":
        (tmp_path / "c.yaml").write_text(f"run:\n  seed: {bomb}\n")
        call = lambda: load_config(str(tmp_path / "c.yaml"))  # noqa: E731
    elif where == "train-override":
        call = lambda: load_config("embedded", [f"run.seed={bomb}"])  # noqa: E731
    else:
        (tmp_path / "b.yaml").write_text(f"models: {bomb}\n")
        call = lambda: BenchConfig.from_command_line({"config": str(tmp_path / "b.yaml")})  # noqa: E731
    _short_refusal(call, "aliases")


def test_yaml_anchors_of_a_normal_config_still_work(tmp_path):
    from sppo.config import load_config

    (tmp_path / "c.yaml").write_text("training:\n  learning_rate: &lr 1.0e-6\nranking:\n  batch_size: 4\n")
    assert load_config(str(tmp_path / "c.yaml"), ["run.seed=7"]).training.learning_rate == 1e-6


@pytest.mark.parametrize("value", ["x" * 200_000, "[" * 100_000], ids=["long", "deep"])
def test_error_messages_show_a_bounded_value(tmp_path, value):
    from benchmarks.config import BenchConfig
    from sppo.config import load_config

    _short_refusal(lambda: load_config("embedded", [f"run.seed={value}"]), "run.seed")
    (tmp_path / "b.yaml").write_text(f"limit: '{value}'\n" if value[0] == "x" else f"limit: {value}\n")
    _short_refusal(lambda: BenchConfig.from_command_line({"config": str(tmp_path / "b.yaml"), "models": ["a"]}))


# --------------------------------------------------------------------------- 7/9. judge replies: deadline, cap, shape
def _judge(server, **kw):
    from benchmarks.judge import JudgeCache, OpenAIJudge

    kw = {"max_retries": 0, "backoff_base": 0.01, **kw}
    return OpenAIJudge("fake-judge", base_url=kw.pop("base_url", server.url), api_key_env=None,
                       cache=JudgeCache(kw.pop("cache")) if "cache" in kw else None, **kw)


def _request():
    from benchmarks.judge import JudgeRequest

    return JudgeRequest.make([{"role": "user", "content": "Rate: hello"}], max_tokens=8)


def _complete_within(judge, seconds: float):
    """judge.complete([one request]) in a thread; fails the test if it has not returned after `seconds`."""
    import threading
    import time

    out = {}
    thread = threading.Thread(target=lambda: out.update(replies=judge.complete([_request()])), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the judge request was still running after {seconds} s"
    return out["replies"][0], time.monotonic() - start


def test_a_dripping_judge_times_out_at_the_total_deadline():
    from bench_fake_judge import FakeJudgeServer

    with FakeJudgeServer() as server:
        server.always = "drip"  # a 300-byte reply, one byte every 0.2 s: a minute in all
        reply, took = _complete_within(_judge(server, timeout=1.5), 20)
    assert not reply.ok and "timeout" in reply.error
    assert took < 5


def test_a_reply_over_the_size_cap_fails_unstored(tmp_path):
    from bench_fake_judge import FakeJudgeServer

    with FakeJudgeServer() as server:
        server.always = "huge"
        judge = _judge(server, cache=tmp_path / "cache.sqlite", max_reply_bytes=100_000, max_retries=3)
        reply, _ = _complete_within(judge, 60)
        assert server.count() == 1  # not retried: the same request would get the same reply
    assert not reply.ok and "larger than 100000 bytes" in reply.error
    assert len(judge.cache) == 0


@pytest.mark.parametrize("body, field", [
    ('{"choices": [{"message": {"content": "Rating: [[5]]"}}], "usage": "lots"}', "usage"),
    ('{"choices": [{"message": {"content": "m"}, "logprobs": "nope"}]}', "logprobs"),
    ('{"choices": [{"message": {"content": "m"}, "logprobs": {"content": [{"top_logprobs": [{"token": 1}]}]}}]}',
     "token"),
    ('{"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": -5}}', "prompt_tokens"),
    ('{"choices": {"0": 1}}', "choices"),
    ('[' * 100_000 + ']' * 100_000, "malformed"),
], ids=["usage-lots", "logprobs-nope", "token-int", "negative-usage", "choices-dict", "deep"])
def test_a_malformed_reply_is_a_one_line_failure(body, field):
    from bench_fake_judge import FakeJudgeServer

    with FakeJudgeServer() as server:
        server.always = ("raw", body)
        reply, _ = _complete_within(_judge(server, timeout=10), 60)
    assert not reply.ok and "malformed response" in reply.error and field in reply.error
    assert "\n" not in reply.error and len(reply.error) < 400


def test_a_query_string_in_the_base_url_is_joined_and_never_recorded(caplog):
    import logging

    from bench_fake_judge import FakeJudgeServer
    from sppo.scrub import install_log_scrubber

    secret = "qsSECRET-4455667788"
    install_log_scrubber()
    with FakeJudgeServer() as server, caplog.at_level(logging.INFO, logger="httpx"):
        judge = _judge(server, base_url=f"{server.url}?api_key={secret}&api-version=2024-06-01")
        reply, _ = _complete_within(judge, 60)
        assert reply.ok, reply.error  # the fake server answers 404 on any other path
        assert server.queries == [f"api_key={secret}&api-version=2024-06-01"]
    assert judge.info()["base_url"] == f"{server.url}?api_key=[REDACTED]&api-version=2024-06-01"
    assert secret not in json.dumps(judge.info()) + json.dumps(judge.identity())
    assert "chat/completions?api_key=[REDACTED]" in caplog.text and secret not in caplog.text


_JUDGE_UNTIL_SIGTERM = """
import signal, sys
from benchmarks.judge import JudgeRequest, OpenAIJudge
from sppo.cli_util import run_cli

def interrupt(signum, frame):  # as sppo-bench does: SIGTERM behaves as Ctrl-C
    raise KeyboardInterrupt

def judge(argv):
    judge = OpenAIJudge("fake-judge", base_url=argv[0], api_key_env=None, timeout=600, max_retries=0)
    judge.complete([JudgeRequest.make([{"role": "user", "content": "hello"}], max_tokens=8)])

signal.signal(signal.SIGTERM, interrupt)
sys.exit(run_cli(judge, sys.argv[1:]))
"""


def test_sigterm_ends_the_process_at_once_while_a_judge_request_hangs(tmp_path):
    """SIGTERM while the endpoint sends headers and then nothing: the process exits with the resume hint at once
    (before: it printed "interrupted" and lived on, its request thread joined at exit)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench_fake_judge import FakeJudgeServer

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    with FakeJudgeServer() as server:
        server.always = "hang"
        proc = subprocess.Popen([sys.executable, "-c", _JUDGE_UNTIL_SIGTERM, server.url], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while server.count() == 0 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None and server.count() == 1, "no judge request arrived"
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err


# --------------------------------------------------------------------------- 4. the scrubber on every handler
_LEAKY = """
import base64, logging, sys, warnings
from sppo.cli_util import setup_logging
setup_logging()
token = sys.argv[1]
from huggingface_hub.utils import logging as hub_logging
hub = hub_logging.get_logger("huggingface_hub.file_download")  # huggingface_hub's own handler, not the root's
hub.warning("proxy said: bad token %s (basic %s)", token, base64.b64encode(f"user:{token}".encode()).decode())
logging.getLogger("httpx").warning("GET https://hub/api?token=%s", token)
warnings.warn(f"a warning quoting {token}")
raise RuntimeError(f"uncaught error quoting {token}")
"""


def test_a_token_echoed_by_the_hub_never_reaches_stderr(tmp_path):
    import base64
    import os
    import subprocess
    import sys

    token = "hf_TestTokenEchoed0123456789"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-W", "always", "-c", _LEAKY, token], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(repo), "HF_TOKEN": token})
    err = proc.stderr
    assert "proxy said: bad token [REDACTED]" in err and "a warning quoting [REDACTED]" in err
    assert "uncaught error quoting [REDACTED]" in err and "token=[REDACTED]" in err
    assert token not in err and base64.b64encode(f"user:{token}".encode()).decode()[8:] not in err


# --------------------------------------------------------------------------- 2/8. templates: sandbox, time, size
@pytest.fixture(scope="module")
def release_run(tmp_path_factory):
    from release_testutil import make_run

    return make_run(tmp_path_factory.mktemp("release"))


def _card(run: Path, template: Path) -> str:
    from benchmarks.store import ResultsStore
    from release.card import ReleaseInfo, render_card, results_from_store
    from release.run import load_run

    release = ReleaseInfo(family="Mistral7B-PairRM-SPPO", org="UCLA-AGI")
    iterations = load_run(run)
    results = results_from_store(ResultsStore(run / "results"), iterations, release)
    return str(render_card(release, iterations, iterations[0], results, template))


@pytest.mark.parametrize("body, words", [
    ("{{ cycler.__init__.__globals__.os.system('touch MARKER') }}", ["blocked by the sandbox"]),
    ("{{ ().__class__.__mro__[1].__subclasses__() }}", ["blocked by the sandbox"]),
    ("{% include 'secret.txt' %}", ["template error"]),
    ("{{ range(10**9)|list|length }}", ["blocked by the sandbox"]),
    ("{{ 'x' * 10**10 }}", ["blocked by the sandbox"]),
    ("{{ 'x'|center(10**10) }}", ["blocked by the sandbox"]),
    ("{% for i in range(100000) %}{% for j in range(100000) %}xy{% endfor %}{% endfor %}", ["longer than"]),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", ["RecursionError"]),
], ids=["globals", "subclasses", "include", "range", "repeat", "center", "output", "recursion"])
def test_a_hostile_card_template_is_one_line_and_runs_nothing(release_run, tmp_path, monkeypatch, body, words):
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.txt").write_text("the secret")
    tpl = tmp_path / "hostile.md.j2"
    tpl.write_text("---\n{{ card_data }}\n---\n" + body + "\n")
    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        _card(release_run, tpl)
    assert time.perf_counter() - start < 20
    _one_line(e.value, str(tpl), *words)
    assert not (tmp_path / "MARKER").exists()


def test_a_looping_template_is_stopped_at_its_time_bound():
    import time

    from sppo.bounded import render_template

    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        render_template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {},
                        "loop.j2", seconds=1)
    assert time.perf_counter() - start < 5
    _one_line(e.value, "loop.j2", "took longer than 1 s")
    assert render_template("{{ 'ok' }}", {}, "fine.j2", seconds=1) == "ok"  # the thread is usable afterwards
    time.sleep(1.2)  # no late interrupt arrives after a render that finished in time


@pytest.fixture
def looping_chat_template(tmp_path, monkeypatch, tiny_ckpt):
    """A checkpoint whose chat template loops for hours; the chat-template bound set to 1 s."""
    from sppo import bounded

    monkeypatch.setattr(bounded, "CHAT_TEMPLATE_SECONDS", 1.0)
    ckpt = Path(shutil.copytree(tiny_ckpt, tmp_path / "loopy"))
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    jinja = ckpt / "chat_template.jinja"  # what transformers 5 reads
    jinja.write_text(loop + jinja.read_text())
    return ckpt


def test_a_looping_chat_template_stops_tokens_and_generation(looping_chat_template, tmp_path):
    import time

    from sppo.config import load_config
    from sppo.generate import render_prompt
    from sppo.models import load_tokenizer
    from sppo.tokens import print_tokens

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "No."}) + "\n")
    cfg = load_config("embedded", [f"model.name={looping_chat_template}"])
    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        print_tokens(cfg, str(pairs))
    _one_line(e.value, "chat template", "took longer than 1 s")
    with pytest.raises(UserError):
        render_prompt(load_tokenizer(str(looping_chat_template)), "Hi")
    assert time.perf_counter() - start < 20


# --------------------------------------------------------------------------- 5. uploads stay inside the checkpoint
def test_a_symlink_in_a_checkpoint_is_refused_by_the_dry_run_and_the_push(tmp_path, capsys):
    from release import cli
    from release.push import checkpoint_files
    from release_testutil import make_run

    run = make_run(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("PRIVATE-KEY-MATERIAL")
    link = run / "checkpoints" / "Iter2" / "notes.txt"
    link.symlink_to(secret)
    for extra in ([], ["--push", "UCLA-AGI/Mistral7B-PairRM-SPPO"]):
        assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards"), *extra]) == 2
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and f"{link}: is a symbolic link" in err, err
        assert "PRIVATE-KEY-MATERIAL" not in out + err and "notes.txt" not in out
    link.unlink()
    (run / "checkpoints" / "Iter2" / "sub").mkdir()
    assert [f.name for f in checkpoint_files(run / "checkpoints" / "Iter2")] == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]


def test_a_file_swapped_for_a_link_after_planning_is_never_read(tmp_path):
    from sppo.files import open_regular

    target = tmp_path / "weights.bin"
    target.write_bytes(b"weights")
    with open_regular(target) as f:
        assert f.read() == b"weights"
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError) as e:
        open_regular(target)
    _one_line(e.value, "is a symbolic link")


# --------------------------------------------------------------------------- 11. injection into cards and output
def test_manifest_text_reaches_the_card_escaped(tmp_path):
    from huggingface_hub import ModelCard
    from release_testutil import make_run

    run = make_run(tmp_path)
    path = run / "checkpoints" / "Iter1" / "sppo_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["base_model"] = "base`` x\n---\nlicense: mit\n<script>alert(1)</script>"
    manifest["ranker"] = "[click](https://evil.example) <img src=x onerror=alert(1)>"
    manifest["hyperparameters"]["optimizer"] = "RMSProp\nlicense: mit\n<script>x</script> | `"
    path.write_text(json.dumps(manifest))
    text = _card(run, None)
    assert "<script>" not in text and "<img" not in text
    body = text.split("\n---\n", 1)[1]
    assert not any(line.strip().startswith("license:") for line in body.splitlines())
    assert "[click](https://evil.example)" not in text and "\\[click\\]" in text
    assert "base\\`\\` x --- license: mit &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert ModelCard(text).data.to_dict()["license"] == "apache-2.0"


def test_a_file_name_cannot_forge_a_line_of_the_dry_run(tmp_path, capsys):
    from release import cli
    from release_testutil import make_run

    run = make_run(tmp_path)
    ckpt = run / "checkpoints" / "Iter2"
    (ckpt / "generation_config.json").write_text("[1]")  # not an object: the check must not say ok
    forged = "notes.txt\n\x1b[2K\rcompatibility Iter2: ok (config, tokenizer, chat template and generation config)"
    (ckpt / forged).write_text("x")
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert not any(line.startswith("compatibility Iter2: ok") for line in out.splitlines()), out
    assert "compatibility Iter2: generation_config.json: expected a JSON object" in out
    assert "notes.txt\\n\\x1b[2K\\rcompatibility Iter2: ok" in out


def test_a_name_is_one_code_span_whatever_backticks_it_holds():
    from release.card.markdown import md_code

    assert md_code("a``b\nc") == "```a``b c```" and md_code("`x") == "`` `x ``" and md_code("p/q") == "`p/q`"


# --------------------------------------------------------------------------- 9/10. the release check's file readers
def _safetensors_with_header(header: dict) -> bytes:
    data = json.dumps(header).encode()
    return len(data).to_bytes(8, "little") + data


@pytest.mark.parametrize("name, content, words", [
    ("config.json", "[" * 100_000 + "]" * 100_000, ["config.json", "nested too deeply"]),
    ("chat_template.jinja", b"\xff\xfe{{ x }}", ["chat_template.jinja", "UTF-8"]),
    ("tokenizer.json", {"model": [1], "added_tokens": []}, ["tokenizer.json", "'model'"]),
    ("tokenizer.json", {"model": {"merges": 5}}, ["tokenizer.json", "'model.merges'"]),
    ("config.json", {"model_type": "mistral", "rope_parameters": {"rope_theta": 1e6, "rope_type": ["linear"]}},
     ["config.json", "rope_parameters.rope_type"]),
    ("model.safetensors", _safetensors_with_header({"w": {"dtype": ["F32"], "shape": [1]}}), None),
    ("tokenizer.json", {"added_tokens": [{"content": "</s>", "id": [2]}], "model": {}}, None),
    ("generation_config.json", [1], ["generation_config.json", "expected a JSON object"]),
    ("tokenizer_config.json", {"chat_template": 5}, ["tokenizer_config.json", "'chat_template'"]),
], ids=["deep", "not-utf8", "model-list", "merges-int", "rope-type-list", "dtype-list", "id-list",
        "generation-list", "template-int"])
def test_a_tampered_checkpoint_file_is_a_problem_line_not_a_traceback(tmp_path, name, content, words):
    from release.checkpoint_check import compat_problems
    from release_testutil import safetensors_bytes, write_model_files

    ckpt = tmp_path / "Iter1"
    ckpt.mkdir()
    write_model_files(ckpt, "mistral")
    (ckpt / "model.safetensors").write_bytes(safetensors_bytes(1))
    assert compat_problems(ckpt) == []
    if isinstance(content, bytes):
        (ckpt / name).write_bytes(content)
    else:
        (ckpt / name).write_text(content if isinstance(content, str) else json.dumps(content))
    problems = compat_problems(ckpt)
    for line in problems:
        assert "\n" not in line and len(line) < 400, line
    if words:
        assert any(all(w in line for w in words) for line in problems), problems


# --------------------------------------------------------------------------- 12. long names
def test_a_250_character_checkpoint_name_can_be_benchmarked(tmp_path, shared_data, monkeypatch):
    from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
    from benchmarks.cli import main as bench
    from benchmarks.run_cmd import store_name

    ckpt = tiny_checkpoints(tmp_path, seeds=(0,))[0].rename(tmp_path / ("c" * 250))
    monkeypatch.setenv("BENCH_KEY", "k-123456")
    with FakeJudgeServer() as server:
        assert bench(bench_args(server, [ckpt], shared_data, tmp_path / "results", "--arena-hard", limit=1)) == 0
    assert max(len(p.name) for p in (tmp_path / "results").rglob("*")) <= 120
    assert store_name(str(ckpt)) != store_name(str(tmp_path / ("c" * 249 + "d")))


@pytest.mark.parametrize("flag, value, words", [("--judge-timeout", "1e300", "--judge-timeout"),
                                                 ("--judge-timeout", "nan", "--judge-timeout"),
                                                 ("--judge-max-new-tokens", "-5", "--judge-max-new-tokens"),
                                                 ("--judge-max-reply-bytes", "0", "--judge-max-reply-bytes")])
def test_judge_settings_out_of_range_are_one_line(tmp_path, capsys, flag, value, words):
    from benchmarks.cli import main as bench

    assert bench(["--mt-bench", "Iter1", "--run-dir", str(tmp_path), "--judge", "local", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("line", ["[" * 100_000, '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"],
                         ids=["open", "closed"])
def test_a_tokens_line_nested_past_pythons_limit_is_one_line(tmp_path, line):
    from sppo.files import read_json
    from sppo.tokens import read_inputs

    path = tmp_path / "pairs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(UserError) as e:
        read_inputs(path)
    _one_line(e.value, f"{path}:1")
    with pytest.raises(UserError) as e:
        read_json(path)
    _one_line(e.value, str(path))


@pytest.mark.parametrize("body, words", [("{% include 'x.jinja' %}", "read no file"),
                                         ("{{ cycler.__init__.__globals__ }}", "chat template error")],
                         ids=["include", "sandbox"])
def test_a_blocked_chat_template_is_one_line(tmp_path, tiny_ckpt, body, words):
    from sppo.generate import render_prompt
    from sppo.models import load_tokenizer

    ckpt = Path(shutil.copytree(tiny_ckpt, tmp_path / "ck"))
    (ckpt / "chat_template.jinja").write_text(body)
    with pytest.raises(UserError) as e:
        render_prompt(load_tokenizer(str(ckpt)), "Hi")
    _one_line(e.value, str(ckpt), words)
