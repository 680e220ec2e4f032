"""`sppo-bench score ...`: official file layouts in, one JSON object per model out, SuiteResults in the store,
one-line errors naming file and line."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from benchmarks.cli import main as bench_main
from benchmarks.store import ResultsStore


def run(argv, capsys):
    code = bench_main(["score", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def write_jsonl(path, rows, raw_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- alpaca-eval ----------------------------------------------------------------------------------------------------

def test_alpaca_eval_official_annotations_to_store(shared_data, tmp_path, capsys):
    ann = shared_data / "alpaca_eval" / "OpenHermes-2.5-Mistral-7B.annotations.json"
    code, out, _ = run(["alpaca-eval", str(ann), "--results-dir", str(tmp_path), "--no-lc"], capsys)
    assert code == 0 and len(out) == 1
    row = pd.read_csv(shared_data / "alpaca_eval" / "leaderboard_weighted_alpaca_eval_gpt4_turbo.csv",
                      index_col=0).loc["OpenHermes-2.5-Mistral-7B"]
    assert out[0]["model"] == "OpenHermes-2.5-Mistral-7B"
    assert out[0]["win_rate"] == pytest.approx(row["win_rate"], abs=1e-6)
    assert out[0]["length_controlled_winrate"] is None and "--no-lc" in out[0]["notes"][0]
    stored = ResultsStore(tmp_path).read("OpenHermes-2.5-Mistral-7B", "alpaca_eval")
    assert stored.metrics["standard_error"] == pytest.approx(row["standard_error"], abs=1e-6)
    assert stored.metrics["avg_length"] == row["avg_length"] and "notes" not in stored.metrics
    assert stored.settings["notes"] and stored.judge["name"] == "weighted_alpaca_eval_gpt4_turbo"


def test_alpaca_eval_lc_with_a_local_df_gamed(tmp_path, capsys):
    n = 60
    ann = [{"instruction": f"q{i}", "output_1": "x" * 100, "output_2": "y" * (40 + (i * 37) % 120),
            "generator_1": "gpt4_1106_preview", "generator_2": "mine", "preference": 1.3} for i in range(n)]
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    pd.DataFrame([{"model": g, "index": i, "preference": 0.5, "std_delta_len": ((i * 13) % 7 - 3) / 3,
                   "instruction_difficulty": (i % 5) / 5 - 0.4, "not_gamed_baseline": False}
                  for g in ("verbose", "concise") for i in range(n)]).to_csv(tmp_path / "df_gamed.csv", index=False)
    code, out, _ = run(["alpaca-eval", str(tmp_path / "annotations.json"), "--df-gamed",
                        str(tmp_path / "df_gamed.csv")], capsys)
    assert code == 0
    # a length-independent preference of 1.3: LC = raw win rate = 30
    assert out[0]["win_rate"] == pytest.approx(30.0)
    assert out[0]["length_controlled_winrate"] == pytest.approx(30.0, abs=0.05)


def test_alpaca_eval_errors(tmp_path, capsys):
    code, _, err = run(["alpaca-eval", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "missing.json: file not found" in err
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "a",\n "output_1": }]')
    code, _, err = run(["alpaca-eval", str(bad), "--no-lc"], capsys)
    assert code == 2 and f"{bad}:2: invalid JSON" in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"instruction": "a", "output_1": "x", "output_2": "y", "preference": 2.0}]))
    code, _, err = run(["alpaca-eval", str(good), "--df-gamed", str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and "nope.csv: file not found" in err


# --- arena-hard -----------------------------------------------------------------------------------------------------

def arena_layout(tmp_path, judgments: dict[str, list[dict]], raw_lines: dict[str, list[str]] | None = None):
    bench = tmp_path / "data" / "arena-hard-v0.1"
    qids = sorted({j["question_id"] for rows in judgments.values() for j in rows if "question_id" in j})
    write_jsonl(bench / "question.jsonl", [{"question_id": q, "category": "arena-hard-v0.1", "cluster": "c",
                                           "turns": [{"content": "?"}]} for q in qids])
    for model, length in (("gpt-4-0314", 400), ("m1", 700)):
        write_jsonl(bench / "model_answer" / f"{model}.jsonl",
                    [{"question_id": q, "model_id": model,
                      "choices": [{"index": 0, "turns": [{"content": "..", "token_len": length + k % 2}]}]}
                     for k, q in enumerate(qids)])
    jdir = bench / "model_judgment" / "gpt-4-1106-preview"
    for model, rows in judgments.items():
        write_jsonl(jdir / f"{model}.jsonl", rows, (raw_lines or {}).get(model, ()))
    return jdir


def game(qid, model, g1, g2):
    return {"question_id": qid, "model": model, "judge": "gpt-4-1106-preview",
            "games": [{"user_prompt": "", "judgment": "", "score": g} for g in (g1, g2)]}


def test_arena_hard_directory_scores_every_model(tmp_path, capsys):
    m1 = [game(f"q{i}", "m1", "B>A", "A>B") for i in range(30)] + [game(f"p{i}", "m1", "A>B", "B>A") for i in range(10)]
    m2 = [game(f"q{i}", "m2", "A=B", "A=B") for i in range(20)]
    jdir = arena_layout(tmp_path, {"m1": m1, "m2": m2})
    store = tmp_path / "store"
    code, out, _ = run(["arena-hard", str(jdir), "--num-rounds", "10", "--results-dir", str(store)], capsys)
    assert code == 0
    by_model = {r["model"]: r for r in out}
    assert set(by_model) == {"gpt-4-0314", "m1", "m2"}
    assert by_model["m1"]["score"] == pytest.approx(75.0, abs=1e-6)  # 60 of 80 battles won
    assert by_model["m2"]["score"] == 50.0
    # avg_tokens from the model_answer/ beside the judgments: int(mean(700, 701, 700, ...)) over 40 answers
    assert by_model["m1"]["avg_tokens"] == math.floor(sum(700 + k % 2 for k in range(40)) / 40)
    assert by_model["gpt-4-0314"]["avg_tokens"] == 400 and by_model["m2"]["avg_tokens"] is None
    assert ResultsStore(store).models() == ["m1", "m2"]  # the baseline's fixed 50 is not a result
    assert ResultsStore(store).read("m1", "arena_hard").settings["num_rounds"] == 10


@pytest.mark.parametrize("rows, raw, message", [
    ([game("q1", "m1", "A=B", "A=B")], ["{not json"], "m1.jsonl:2: invalid JSON"),
    ([game("q1", "m1", "A=B", "A=B"), game("q1", "m1", "A>B", "A=B")], [], "m1.jsonl:2: duplicate judgment"),
    ([game("q1", "m1", "A=B", "A=B"), {"model": "m1", "games": []}], [], "m1.jsonl:2: missing field 'question_id'"),
])
def test_arena_hard_malformed_files_name_file_and_line(tmp_path, capsys, rows, raw, message):
    jdir = arena_layout(tmp_path, {"m1": rows}, {"m1": raw})
    code, out, err = run(["arena-hard", str(jdir), "--num-rounds", "2"], capsys)
    assert code == 2 and out == [] and message in err


def test_arena_hard_unknown_question_is_an_error(tmp_path, capsys):
    jdir = arena_layout(tmp_path, {"m1": [game("q1", "m1", "A=B", "A=B")]})
    write_jsonl(jdir / "m2.jsonl", [game("q1", "m2", "A=B", "A=B"), game("zz", "m2", "A=B", "A=B")])
    code, _, err = run(["arena-hard", str(jdir), "--num-rounds", "2"], capsys)
    assert code == 2 and "m2.jsonl:2: question_id 'zz' is not an Arena-Hard v0.1 question" in err


# --- mt-bench -------------------------------------------------------------------------------------------------------

def mt_row(qid, turn, score, model="m"):
    return {"question_id": qid, "model": model, "judge": ["gpt-4", "single-v1"], "user_prompt": "",
            "judgment": f"[[{score}]]", "score": score, "turn": turn, "tstamp": 1.0}


def test_mt_bench_file_to_store(shared_data, tmp_path, capsys):
    f = write_jsonl(tmp_path / "gpt-4_single.jsonl",
                    [mt_row(81, 1, 9), mt_row(81, 2, 7), mt_row(101, 1, 4), mt_row(101, 2, -1),
                     mt_row(81, 1, 3, model="other")])
    code, out, _ = run(["mt-bench", str(f), "--questions", str(shared_data / "mt_bench" / "question.jsonl"),
                        "--model", "m", "--results-dir", str(tmp_path / "store")], capsys)
    assert code == 0 and [r["model"] for r in out] == ["m"]
    assert (out[0]["turn_1"], out[0]["turn_2"], out[0]["average"]) == (6.5, 7.0, pytest.approx(20 / 3))
    assert out[0]["categories"] == {"writing": 8.0, "reasoning": 4.0} and out[0]["n_invalid"] == 1
    stored = ResultsStore(tmp_path / "store").read("m", "mt_bench")
    assert stored.judge == {"model": "gpt-4"} and stored.metrics["turn_2"] == 7.0


def test_mt_bench_errors(tmp_path, capsys):
    f = write_jsonl(tmp_path / "j.jsonl", [mt_row(81, 1, 9)], ['{"question_id": 81,'])
    code, _, err = run(["mt-bench", str(f)], capsys)
    assert code == 2 and f"{f}:2: invalid JSON" in err
    f = write_jsonl(tmp_path / "j.jsonl", [mt_row(81, 1, 9), mt_row(82, 1, 9), mt_row(81, 1, 2)])
    code, _, err = run(["mt-bench", str(f)], capsys)
    assert code == 2 and f"{f}:3: duplicate judgment of 'm' on question 81 turn 1" in err
    code, _, err = run(["mt-bench", str(f), "--model", "nobody"], capsys)
    assert code == 2 and "no judgments of model 'nobody'" in err


# --- lm-eval --------------------------------------------------------------------------------------------------------

def lm_results():
    tasks = {"arc_challenge": {"acc_norm,none": 0.6502}, "hellaswag": {"acc_norm,none": 0.8511},
             "truthfulqa_mc2": {"acc,none": 0.694}, "mmlu": {"acc,none": 0.5884},
             "winogrande": {"acc,none": 0.7782}, "gsm8k": {"exact_match,get-answer": 0.4382}}
    return {"results": tasks, "n-shot": {}, "config": {"model": "hf", "model_args": "pretrained=/x/SPPO-Iter1/"}}


def test_lm_eval_results_file(tmp_path, capsys):
    f = tmp_path / "results.json"
    f.write_text(json.dumps(lm_results()))
    code, out, _ = run(["lm-eval", str(f), "--results-dir", str(tmp_path / "store")], capsys)
    assert code == 0 and out[0]["model"] == "SPPO-Iter1"
    assert out[0]["gsm8k"] == pytest.approx(43.82)
    assert out[0]["average"] == pytest.approx((65.02 + 85.11 + 69.4 + 58.84 + 77.82 + 43.82) / 6)
    assert ResultsStore(tmp_path / "store").read("SPPO-Iter1", "lm_eval").metrics["mmlu"] == pytest.approx(58.84)
    code, out, _ = run(["lm-eval", str(f), "--model", "Iter1"], capsys)
    assert out[0]["model"] == "Iter1"


def test_lm_eval_missing_task(tmp_path, capsys):
    data = lm_results()
    del data["results"]["winogrande"]
    f = tmp_path / "results.json"
    f.write_text(json.dumps(data))
    code, _, err = run(["lm-eval", str(f)], capsys)
    assert code == 2 and f"{f}: task 'winogrande' is missing from the results" in err


def test_help_lists_the_suites(capsys):
    with pytest.raises(SystemExit) as e:
        bench_main(["score", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for suite in ("alpaca-eval", "arena-hard", "mt-bench", "lm-eval"):
        assert suite in out
