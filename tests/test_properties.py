"""Property-based tests (Hypothesis): whatever the input, the override parser, the config validator and every
score-file reader give a valid result or a one-line error (UserError), never a traceback."""

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
