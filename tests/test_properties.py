"""Property-based tests (Hypothesis): whatever the input, the override parser, the config validator, every
score-file reader, the judge-reply parser and the release check's file readers give a valid result or a one-line
error, never a traceback; the card renderer keeps any manifest text on its line, without HTML."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.cli import main as bench_main
from sppo.config import Config, load_config
from sppo.errors import UserError

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Scalars as they come out of JSON/YAML, with the awkward ones made likely.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["", "1e-6", "nan", "-1", "0", "[", "{", "true", "null", "\udcff", "\n"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
CONFIG_KEYS = [f"{section.name}.{f.name}" for section in Config.__dataclass_fields__.values()
               for f in section.default_factory.__dataclass_fields__.values()]


def _one_line(e: UserError) -> None:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, text


def _config_or_one_line(call) -> None:
    try:
        cfg = call()
    except UserError as e:
        _one_line(e)
    else:
        assert isinstance(cfg, Config)


# ------------------------------------------------------------------------------------------ the override parser
@FAST
@given(st.text(max_size=40))
def test_any_override_text_gives_a_config_or_one_line(item):
    _config_or_one_line(lambda: load_config("embedded", [item]))


@FAST
@given(st.sampled_from(CONFIG_KEYS + ["training.lora.r", "training.lora", "run", "x.y", "run.seed.x"]),
       st.one_of(st.text(max_size=20), SCALARS.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()
                                                   if not isinstance(v, str) else v)))
def test_any_value_for_a_real_key_gives_a_config_or_one_line_naming_the_override(key, value):
    item = f"{key}={value}"
    try:
        load_config("embedded", [item])
    except UserError as e:
        _one_line(e)
        assert str(e).startswith(f"override {item!r}"), str(e)


# ------------------------------------------------------------------------------------------ the config validator
@FAST
@given(st.dictionaries(st.sampled_from(["run", "model", "prompts", "generation", "ranking", "training", "other"]),
                       st.one_of(VALUES, st.dictionaries(st.sampled_from(
                           sorted({k.split(".")[1] for k in CONFIG_KEYS}) + ["unknown"]), VALUES, max_size=4)),
                       max_size=4))
def test_any_config_file_gives_a_config_or_one_line_naming_the_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8", errors="surrogateescape")
    try:
        cfg = load_config(str(path))
    except UserError as e:
        _one_line(e)
        assert str(path) in str(e), str(e)
    else:
        assert all(math.isfinite(v) for v in (cfg.training.learning_rate, cfg.training.eta, cfg.generation.top_p))


@FAST
@given(st.binary(max_size=200))
def test_any_config_bytes_give_a_config_or_one_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(raw)
    _config_or_one_line(lambda: load_config(str(path)))


# ------------------------------------------------------------------------------------------ score-file readers
def _score(capsys, argv: list[str]) -> None:
    """`sppo-bench score ...` ends with exit 0 and JSON lines, or exit 2 and exactly one error line."""
    capsys.readouterr()
    code = bench_main(["score", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:
        assert all(json.loads(line) for line in out.splitlines())
    else:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(errors) == 1, (code, err)


def _near(valid: dict, extra_keys: list[str]):
    """Records close to a valid one: some fields dropped, some replaced by anything, sometimes not a record."""
    return st.one_of(
        st.fixed_dictionaries({k: st.one_of(st.just(v), VALUES) for k, v in valid.items()},
                              optional={k: VALUES for k in extra_keys}),
        st.dictionaries(st.sampled_from(list(valid) + extra_keys), VALUES, max_size=len(valid)),
        VALUES)


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows).encode()


ALPACA = {"instruction": "q", "output_1": "a", "output_2": "b", "generator_1": "base", "generator_2": "m",
          "preference": 1.5}
MT = {"question_id": 81, "model": "m", "judge": ["gpt-4", "single-v1"], "turn": 1, "score": 5}
ARENA = {"question_id": "q1", "model": "m", "judge": "gpt-4-1106-preview",
         "games": [{"score": "A>B", "user_prompt": "", "judgment": ""}, {"score": "B>A", "user_prompt": "",
                                                                         "judgment": ""}]}
LM_TASKS = {"arc_challenge": "acc_norm,none", "hellaswag": "acc_norm,none", "truthfulqa_mc2": "acc,none",
            "mmlu": "acc,none", "winogrande": "acc,none", "gsm8k": "exact_match,get-answer"}


@FAST
@given(st.one_of(st.lists(_near(ALPACA, ["price_per_example", "time_per_example"]), max_size=5),
                 st.binary(max_size=80).map(lambda b: [b.decode("latin-1")])))
def test_alpaca_eval_annotations(tmp_path_factory, capsys, records):
    path = tmp_path_factory.mktemp("ae") / "annotations.json"
    path.write_text(json.dumps(records, allow_nan=True))
    _score(capsys, ["alpaca-eval", str(path), "--no-lc"])


@FAST
@given(st.one_of(st.lists(_near(MT, ["tstamp", "user_prompt"]), max_size=5), st.just(None)), st.binary(max_size=60))
def test_mt_bench_judgments(tmp_path_factory, capsys, rows, raw):
    path = tmp_path_factory.mktemp("mt") / "gpt-4_single.jsonl"
    path.write_bytes(_jsonl(rows) if rows is not None else raw)
    _score(capsys, ["mt-bench", str(path)])


@FAST
@given(st.lists(_near(ARENA, ["tstamp"]), max_size=4), st.booleans())
def test_arena_hard_judgments(tmp_path_factory, capsys, rows, with_baseline_model):
    d = tmp_path_factory.mktemp("ah") / "judg"
    d.mkdir()
    (d / "m.jsonl").write_bytes(_jsonl(rows))
    if with_baseline_model:
        (d / "other.jsonl").write_bytes(_jsonl([{**ARENA, "model": "other"}]))
    _score(capsys, ["arena-hard", str(d), "--num-rounds", "2"])


@FAST
@given(st.one_of(
    st.fixed_dictionaries({"results": st.dictionaries(st.sampled_from(sorted(LM_TASKS)), st.one_of(
        st.fixed_dictionaries({}, optional={m: VALUES for m in LM_TASKS.values()}), VALUES), max_size=6)},
        optional={"n-shot": VALUES, "config": VALUES, "versions": VALUES}),
    VALUES))
def test_lm_eval_results(tmp_path_factory, capsys, data):
    path = tmp_path_factory.mktemp("lm") / "results.json"
    path.write_text(json.dumps(data, allow_nan=True))
    _score(capsys, ["lm-eval", str(path)])


@pytest.mark.parametrize("suite", ["alpaca-eval", "mt-bench", "lm-eval"])
def test_score_readers_accept_their_valid_file(tmp_path, capsys, suite):
    """The strategies above reach the success path too: a valid file of each kind scores with exit 0."""
    path = tmp_path / "f"
    if suite == "alpaca-eval":
        path.write_text(json.dumps([ALPACA]))
    elif suite == "mt-bench":
        path.write_bytes(_jsonl([MT, {**MT, "turn": 2}]))
    else:
        path.write_text(json.dumps({"results": {t: {m: 0.5} for t, m in LM_TASKS.items()}}))
    capsys.readouterr()
    assert bench_main(["score", suite, str(path)] + (["--no-lc"] if suite == "alpaca-eval" else [])) == 0


# ------------------------------------------------------------------------------------------ the judge-reply parser
COMPLETION = {"choices": [{"message": {"role": "assistant", "content": "Rating: [[5]]"}, "finish_reason": "stop",
                           "logprobs": {"content": [{"token": "m", "logprob": -0.1,
                                                     "top_logprobs": [{"token": "m", "logprob": -0.1}]}]}}],
              "usage": {"prompt_tokens": 10, "completion_tokens": 3}}


def _mutations(value, depth: int = 0):
    """`value` with any part replaced by anything: the shapes a broken or hostile endpoint may send."""
    if depth > 4:
        return VALUES
    if isinstance(value, dict):
        inner = st.fixed_dictionaries({k: _mutations(v, depth + 1) for k, v in value.items()},
                                      optional={"extra": VALUES})
    elif isinstance(value, list):
        inner = st.lists(_mutations(value[0], depth + 1), max_size=2)
    else:
        inner = st.just(value)
    return st.one_of(inner, inner, VALUES)


@FAST
@given(_mutations(COMPLETION))
def test_any_judge_reply_gives_a_reply_or_a_one_line_error(body):
    from benchmarks.judge import JudgeReply, parse_completion

    try:
        reply = parse_completion(body)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(reply, JudgeReply) and (reply.text is None) == (reply.error is not None)
        assert reply.prompt_tokens >= 0 and reply.completion_tokens >= 0
        assert reply.top_logprobs is None or all(isinstance(t["logprob"], float) for t in reply.top_logprobs)


# ------------------------------------------------------------------------------------------ the release check
@FAST
@given(st.sampled_from(["config.json", "tokenizer_config.json", "tokenizer.json", "generation_config.json",
                        "chat_template.jinja", "model.safetensors"]),
       st.one_of(VALUES, st.dictionaries(st.sampled_from(["model_type", "rope_parameters", "model", "added_tokens",
                                                          "eos_token_id", "chat_template", "torch_dtype", "dtype",
                                                          "eos_token", "temperature", "top_p"]),
                                         VALUES, max_size=4)),
       st.binary(max_size=40))
def test_any_checkpoint_file_gives_problem_lines(tmp_path_factory, name, value, raw):
    from release.compat import compat_problems
    from release_testutil import safetensors_bytes, write_model_files

    ckpt = tmp_path_factory.mktemp("ck")
    write_model_files(ckpt, "mistral")
    (ckpt / "model.safetensors").write_bytes(safetensors_bytes(1))
    if name == "model.safetensors":
        header = json.dumps(value, allow_nan=True).encode()
        (ckpt / name).write_bytes(len(header).to_bytes(8, "little") + header)
    elif name == "chat_template.jinja":
        (ckpt / name).write_bytes(raw)
    else:
        (ckpt / name).write_text(json.dumps(value, allow_nan=True))
    problems = compat_problems(ckpt)
    assert all(isinstance(p, str) and p and "\n" not in p for p in problems), problems
    if name == "generation_config.json" and not isinstance(value, dict):
        assert problems  # a generation config that is no object never passes


# ------------------------------------------------------------------------------------------ the card renderer
MANIFEST_TEXT = st.lists(st.sampled_from(list("ab <>&`|[]()*_#-:\n\r\t\x1b\u2028") + ["license: mit", "---"]),
                         max_size=12).map("".join)


@pytest.fixture(scope="module")
def card_run(tmp_path_factory):
    from release_testutil import make_run

    run = make_run(tmp_path_factory.mktemp("card"))
    return run, _render_card(run, "x", "x", "x")


def _render_card(run, base_model: str, ranker: str, optimizer: str) -> str:
    """Iter1's card with these manifest values (the manifest restored afterwards)."""
    from benchmarks.store import ResultsStore
    from release.card import ReleaseInfo, render_card, results_from_store
    from release.run import load_run

    path = run / "checkpoints" / "Iter1" / "sppo_manifest.json"
    original = path.read_text()
    manifest = json.loads(original)
    manifest.update(base_model=base_model, ranker=ranker)
    manifest["hyperparameters"]["optimizer"] = optimizer
    path.write_text(json.dumps(manifest))
    try:
        release = ReleaseInfo(family="Mistral7B-PairRM-SPPO", org="UCLA-AGI")
        iterations = load_run(run)
        results = results_from_store(ResultsStore(run / "results"), iterations, release)
        return str(render_card(release, iterations, iterations[0], results))
    finally:
        path.write_text(original)


@FAST
@given(MANIFEST_TEXT, MANIFEST_TEXT, MANIFEST_TEXT)
def test_any_manifest_text_stays_on_its_line_without_html(card_run, base_model, ranker, optimizer):
    from huggingface_hub import ModelCard

    run, plain = card_run
    text = _render_card(run, base_model or "x", ranker or "x", optimizer)
    assert text.count("\n") == plain.count("\n")  # every value stayed on its own line
    body = text.split("\n---\n", 1)[1]
    assert "<" not in body and "\x1b" not in body and "\r" not in body
    assert ModelCard(text).data.to_dict() == ModelCard(plain).data.to_dict()
