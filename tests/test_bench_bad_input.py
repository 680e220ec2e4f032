"""Bad input to `sppo-bench` and `sppo-bench score`: every case is one line on stderr (``error: ...`` naming the file
or flag), exit status 2, no traceback, and nothing half-written."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.cli import main as bench_main

GOOD_ANN = {"instruction": "q", "output_1": "a", "output_2": "b", "generator_1": "base", "generator_2": "m",
            "preference": 1.5}
MT_ROW = {"question_id": 81, "model": "m", "judge": ["gpt-4", "single-v1"], "turn": 1, "score": 5}
LM_OK = {"results": {t: {k: 0.5} for t, k in (("arc_challenge", "acc_norm,none"), ("hellaswag", "acc_norm,none"),
                                             ("truthfulqa_mc2", "acc,none"), ("mmlu", "acc,none"),
                                             ("winogrande", "acc,none"), ("gsm8k", "exact_match,get-answer"))}}


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _jsonl(*rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _lm(**changes) -> bytes:
    data = json.loads(json.dumps(LM_OK))
    for key, value in changes.items():
        if key == "value":
            data["results"]["arc_challenge"]["acc_norm,none"] = value
        else:
            data[key.replace("_", "-") if key == "n_shot" else key] = value
    return _json(data)


# (case id, {file name: bytes}, argv with {tmp} for the directory, words the one line must contain)
CASES = [
    ("alpaca non-utf8", {"a.json": b'[{"instruction": "\xff\xfe"}]'}, ["score", "alpaca-eval", "{tmp}/a.json"],
     ["a.json", "UTF-8"]),
    ("alpaca generator_2 list", {"a.json": _json([{**GOOD_ANN, "generator_2": ["m"]}])},
     ["score", "alpaca-eval", "{tmp}/a.json", "--no-lc"], ["a.json", "generator_2"]),
    ("alpaca instruction number", {"a.json": _json([{**GOOD_ANN, "instruction": 7}])},
     ["score", "alpaca-eval", "{tmp}/a.json", "--no-lc"], ["a.json", "instruction"]),
    ("alpaca preference true", {"a.json": _json([{**GOOD_ANN, "preference": True}])},
     ["score", "alpaca-eval", "{tmp}/a.json", "--no-lc"], ["a.json", "preference"]),
    ("alpaca path is a directory", {"d/x.json": b"[]"}, ["score", "alpaca-eval", "{tmp}/d", "--no-lc"],
     ["directory"]),
    ("mt-bench non-utf8", {"j.jsonl": b'{"question_id": 81, "model": "\xff"}\n'}, ["score", "mt-bench", "{tmp}/j.jsonl"],
     ["j.jsonl:1", "UTF-8"]),
    ("mt-bench rating -5", {"j.jsonl": _jsonl({**MT_ROW, "score": -5})}, ["score", "mt-bench", "{tmp}/j.jsonl"],
     ["j.jsonl:1", "score"]),
    ("mt-bench rating Infinity", {"j.jsonl": b'{"question_id": 81, "model": "m", "turn": 1, "score": Infinity}\n'},
     ["score", "mt-bench", "{tmp}/j.jsonl"], ["j.jsonl:1", "score"]),
    ("mt-bench empty file", {"j.jsonl": b""}, ["score", "mt-bench", "{tmp}/j.jsonl"], ["j.jsonl", "no judgments"]),
    ("arena-hard non-utf8", {"judg/m.jsonl": b'{"question_id": "\xff"}\n'}, ["score", "arena-hard", "{tmp}/judg"],
     ["m.jsonl:1", "UTF-8"]),
    ("arena-hard --num-rounds 0", {"judg/m.jsonl": _jsonl({"question_id": "q", "model": "m", "games": [{}, {}]})},
     ["score", "arena-hard", "{tmp}/judg", "--num-rounds", "0"], ["--num-rounds"]),
    ("lm-eval non-utf8", {"r.json": b'{"results": "\xff"}'}, ["score", "lm-eval", "{tmp}/r.json"], ["r.json", "UTF-8"]),
    ("lm-eval n-shot list", {"r.json": _lm(n_shot=[25, 10])}, ["score", "lm-eval", "{tmp}/r.json"],
     ["r.json", "n-shot"]),
    ("lm-eval config string", {"r.json": _lm(config="pretrained=x")}, ["score", "lm-eval", "{tmp}/r.json"],
     ["r.json", "config"]),
    ("lm-eval value 40", {"r.json": _lm(value=40)}, ["score", "lm-eval", "{tmp}/r.json"], ["r.json", "arc_challenge"]),
    ("score --results-dir FILE", {"r.json": _json(LM_OK), "store": b"x"},
     ["score", "lm-eval", "{tmp}/r.json", "--results-dir", "{tmp}/store"], ["--results-dir"]),
    ("score --variant ..", {"r.json": _json(LM_OK)},
     ["score", "lm-eval", "{tmp}/r.json", "--results-dir", "{tmp}/store", "--variant", ".."], ["variant"]),
    ("bench --results-dir FILE", {"store": b"x"}, ["--mt-bench", "embedded", "--results-dir", "{tmp}/store"],
     ["--results-dir"]),
    ("bench --judge-model ..", {}, ["--mt-bench", "embedded", "--results-dir", "{tmp}/res", "--judge-model", ".."],
     ["judge model"]),
    ("bench --judge-concurrency 0", {}, ["--mt-bench", "embedded", "--results-dir", "{tmp}/res",
                                         "--judge-concurrency", "0"], ["--judge-concurrency"]),
    *[(f"bench --alpaca-eval-temperature {v}", {}, ["--alpaca-eval", "embedded", "--results-dir", "{tmp}/res",
                                                    "--alpaca-eval-temperature", v], ["--alpaca-eval-temperature"])
      for v in ("nan", "inf", "-0.5")],
    ("bench --alpaca-eval-top-p 0", {}, ["--alpaca-eval", "embedded", "--results-dir", "{tmp}/res",
                                         "--alpaca-eval-top-p", "0"], ["--alpaca-eval-top-p"]),
    *[(f"bench --judge-base-url {v}", {}, ["--mt-bench", "embedded", "--results-dir", "{tmp}/res",
                                           "--judge-base-url", v], ["--judge-base-url"])
      for v in ("notaurl", "ftp://host/v1", "http://", "http://host:99999/v1")],
    ("bench --judge-base-url password not echoed", {},
     ["--mt-bench", "embedded", "--results-dir", "{tmp}/res", "--judge-base-url", "notaurl://u:pw-hidden@h:x/v1"],
     ["--judge-base-url"]),
    *[(f"bench --judge-price {v}", {}, ["--mt-bench", "embedded", "--results-dir", "{tmp}/res",
                                        f"--judge-price={v}"], ["--judge-price"]) for v in ("-1,2", "1,nan", "1,inf")],
    ("bench unset --judge-api-key-env", {},
     ["--mt-bench", "embedded", "--results-dir", "{tmp}/res", "--judge-base-url", "https://api.example.com/v1",
      "--judge-api-key-env", "SPPO_TEST_KEY_THAT_IS_NOT_SET"], ["SPPO_TEST_KEY_THAT_IS_NOT_SET", "not set"]),
]


@pytest.mark.parametrize("files, argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(files, argv, words, tmp_path, capsys):
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    code = bench_main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out == ""
    assert all(w in lines[0] for w in words), lines[0]
    assert "pw-hidden" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_unset_key_for_an_endpoint_on_this_machine_is_a_warning(monkeypatch, caplog):
    """A local server (vllm serve, llama.cpp) often takes no key: a missing variable is a warning, not an error."""
    from benchmarks.config import BenchConfig
    from benchmarks.run_cmd import _check_api_key

    monkeypatch.delenv("SPPO_TEST_KEY_THAT_IS_NOT_SET", raising=False)
    _check_api_key(BenchConfig(models=("embedded",), judge_api_key_env="SPPO_TEST_KEY_THAT_IS_NOT_SET",
                               judge_base_url="http://u:pw@127.0.0.1:8000/v1"))
    assert "SPPO_TEST_KEY_THAT_IS_NOT_SET is not set" in caplog.text and "pw" not in caplog.text


@pytest.mark.parametrize("which, key", [("question.jsonl", "question_id"),
                                        ("reference_answer.gpt-4.jsonl", "question_id"), ("judge_prompts.jsonl", "name")])
def test_benchmark_file_with_a_repeated_id_is_one_line(tmp_path, shared_data, which, key):
    """Two MT-Bench questions (or reference answers) sharing an id would lose one silently: refused, naming the
    file, the record and the id."""
    import shutil

    from benchmarks.data import DataSource
    from sppo.errors import UserError

    shutil.copytree(shared_data / "mt_bench", tmp_path / "mt_bench")
    path = tmp_path / "mt_bench" / which
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[0]]) + "\n")
    first = json.loads(lines[0])[key]
    message = f"{path}: record {len(lines) + 1}: {key} {first!r} is used twice"
    with pytest.raises(UserError, match=re.escape(message)):
        DataSource(tmp_path).mt_bench()


def _checkpoint(tmp_path, corrupt: bool):
    """A copy of the embedded checkpoint with truncated weights, or without its tokenizer files."""
    from sppo.models import embedded_checkpoint

    src, ck = embedded_checkpoint(), tmp_path / "ck"
    ck.mkdir()
    for f in src.iterdir():
        if f.name == "model.safetensors":
            (ck / f.name).write_bytes(f.read_bytes()[:1000] if corrupt else f.read_bytes())
        elif corrupt or not f.name.startswith("tokenizer"):
            (ck / f.name).write_bytes(f.read_bytes())
    return ck


@pytest.mark.parametrize("corrupt", [True, False], ids=["truncated safetensors", "no tokenizer.json"])
def test_unloadable_checkpoint_is_one_line(tmp_path, shared_data, capsys, corrupt):
    ck = _checkpoint(tmp_path, corrupt)
    code = bench_main(["--mt-bench", str(ck), "--limit", "1", "--data-dir", str(shared_data), "--results-dir",
                       str(tmp_path / "res"), "--judge-base-url", "http://127.0.0.1:9/v1", "--max-new-tokens", "4"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    # sppo.models.check_checkpoint names the bad file before loading; a failure while loading names the checkpoint
    expected = (f"error: {ck}/model.safetensors: corrupt or truncated safetensors file" if corrupt
                else f"error: {ck}: ")
    assert code == 2 and len(err) == 1 and err[0].startswith(expected), err
    assert not any("Traceback" in line for line in err)


def test_one_rejected_model_leaves_the_store_untouched(tmp_path, capsys):
    rows = [{**MT_ROW, "model": "good"}, {**MT_ROW, "model": ".hidden"}]
    (tmp_path / "j.jsonl").write_bytes(_jsonl(*rows))
    code = bench_main(["score", "mt-bench", str(tmp_path / "j.jsonl"), "--results-dir", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ".hidden" in err[0]
    assert not (tmp_path / "store").exists()  # old code wrote "good" before rejecting ".hidden"


def test_stdout_is_strict_json_and_pooled_judges_are_noted(tmp_path, capsys):
    """A model that won every game has an infinite rating: printed as null, not a bare Infinity; judgments of two
    judges in one directory are scored but say so."""
    games = [{"score": "B>>A"}, {"score": "A>>B"}]  # game 2 is swapped: the model wins both
    (tmp_path / "judg").mkdir()
    (tmp_path / "judg" / "m.jsonl").write_bytes(_jsonl(*[{"question_id": f"q{i}", "model": "m", "judge": "j1",
                                                          "games": games} for i in range(3)]))
    (tmp_path / "judg" / "n.jsonl").write_bytes(_jsonl({"question_id": "q0", "model": "n", "judge": "j2",
                                                         "games": games}))
    assert bench_main(["score", "arena-hard", str(tmp_path / "judg"), "--num-rounds", "3"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} on stdout")) for line in out.splitlines()]
    m = next(r for r in rows if r["model"] == "m")
    assert m["elo"] is None and any("several judges" in n and "j1, j2" in n for n in m["notes"])
