"""`sppo-bench --config FILE`: the file's settings, command-line flags over them, a bad field in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cli import build_parser
from benchmarks.cli import main as bench_main
from benchmarks.config import BenchConfig


def _config(argv: list[str]) -> BenchConfig:
    args = build_parser().parse_args(["run", *argv])
    return BenchConfig.from_command_line({k: v for k, v in vars(args).items() if k != "command"})


def test_file_settings_with_command_line_flags_on_top(tmp_path):
    judged = tmp_path / "other-judgments"
    judged.mkdir()
    path = tmp_path / "bench.yaml"
    path.write_text("models: [embedded, Iter2]\nsuites: [mt_bench]\nlimit: 3\njudge_concurrency: 5\n"
                    f"judge_model: file-judge\nwith_judgments: [{judged}]\n")
    cfg = _config(["--config", str(path), "--limit", "7", "--judge-model", "flag-judge", "--alpaca-eval"])
    assert cfg.models == ("embedded", "Iter2")  # only in the file
    assert cfg.limit == 7 and cfg.judge_model == "flag-judge"  # the flags win
    assert cfg.suites == ("alpaca_eval",) and cfg.chosen == ("alpaca_eval",)  # a suite flag replaces the file's list
    assert cfg.judge_concurrency == 5 and cfg.with_judgments == (judged,)  # only in the file
    assert cfg.judge_max_retries == 6 and cfg.chat_template == "fastchat"  # in neither: the defaults
    assert _config(["--config", str(path), "--all"]).chosen == ("alpaca_eval", "arena_hard", "mt_bench", "lm_eval")
    assert _config(["--config", str(path), "Iter1"]).models == ("Iter1",)


def test_the_same_settings_from_flags_alone(tmp_path):
    cfg = _config(["embedded", "--mt-bench", "--limit", "3", "--judge-concurrency", "5", "--max-new-tokens", "0"])
    assert (cfg.models, cfg.chosen, cfg.limit, cfg.judge_concurrency) == (("embedded",), ("mt_bench",), 3, 5)
    assert cfg.answer_max_new_tokens is None  # 0: the official limits
    assert _config(["embedded", "--mt-bench"]).answer_max_new_tokens == 128  # local judge: the offline cap
    assert _config(["embedded", "--mt-bench", "--judge-model", "m"]).answer_max_new_tokens is None  # endpoint


@pytest.mark.parametrize("text, words", [
    ("judge_concurrency: 0\n", ["bench.yaml: judge_concurrency: must be >= 1, got 0"]),
    ("limit: many\n", ["bench.yaml", "limit", "many"]),
    ("chat_template: jinja\n", ["bench.yaml", "chat_template", "jinja"]),
    ("judge_bse_url: http://localhost:8000/v1\n", ["bench.yaml", "judge_bse_url", "unknown key"]),
    ("- a list\n", ["bench.yaml", "mapping"]),
])
def test_a_bad_field_in_the_file_is_one_line_exit_2(tmp_path, capsys, text, words):
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    code = bench_main(["--config", str(path), "embedded", "--results-dir", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert all(w in err[0] for w in words), err[0]
    assert not (tmp_path / "res").exists()


def test_a_bad_flag_over_a_good_file_names_the_flag(tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text("judge_concurrency: 4\n")
    assert bench_main(["--config", str(path), "embedded", "--judge-concurrency", "0"]) == 2
    err = capsys.readouterr().err
    assert "--judge-concurrency: must be >= 1, got 0" in err and "bench.yaml" not in err


def test_no_model_anywhere_is_one_line(tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text("limit: 2\n")
    assert bench_main(["--config", str(path)]) == 2
    assert "no MODEL given" in capsys.readouterr().err
    assert Path(path).read_text() == "limit: 2\n"
