"""MT-Bench single grading: FastChat's rating parser, judge prompts from the official judge_prompts.jsonl, and
turn / average / category means computed by hand."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from benchmarks import inputs
from benchmarks.scoring import mt_bench as mt
from sppo.errors import UserError


@pytest.fixture(scope="module")
def mt_dir(shared_data):
    return shared_data / "mt_bench"


@pytest.fixture(scope="module")
def questions(mt_dir):
    return [json.loads(line) for line in (mt_dir / "question.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def prompts(mt_dir):
    return inputs.judge_prompts(mt_dir / "judge_prompts.jsonl")


@pytest.mark.parametrize("text, rating", [
    ("The answer is fine. Rating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [9]", 9.0),                      # FastChat's backup pattern
    ("first [[6]] then [[3]]", 6.0),            # first match wins
    ("[[10]] beats [4]", 10.0),                 # [[x]] is tried before [x]
    ("Rating: 8/10", -1.0),                     # no bracketed rating: invalid
    ("Rating: [[eight]]", -1.0),
])
def test_parse_rating(text, rating):
    assert mt.parse_rating(text) == rating


def test_patterns_and_reference_categories_are_fastchats():
    """Compare with the installed fschat source (its module cannot be imported without the anthropic client)."""
    spec = importlib.util.find_spec("fastchat")
    if spec is None:
        pytest.skip("fschat not installed")
    src = (Path(spec.submodule_search_locations[0]) / "llm_judge" / "common.py").read_text()
    assert re.search(r'^one_score_pattern = re\.compile\("(.*)"\)$', src, re.M).group(1) == mt.ONE_SCORE.pattern
    assert (re.search(r'^one_score_pattern_backup = re\.compile\("(.*)"\)$', src, re.M).group(1)
            == mt.ONE_SCORE_BACKUP.pattern)
    cats = re.search(r"^NEED_REF_CATS = \[(.*)\]$", src, re.M).group(1)
    assert tuple(c.strip().strip('"') for c in cats.split(",")) == mt.NEED_REF_CATS


def test_prompt_names_by_category_and_turn():
    assert mt.judge_prompt_name("writing", 1) == "single-v1"
    assert mt.judge_prompt_name("humanities", 2) == "single-v1-multi-turn"
    assert mt.judge_prompt_name("math", 1) == "single-math-v1"
    assert mt.judge_prompt_name("reasoning", 2) == "single-math-v1-multi-turn"
    assert mt.judge_prompt_name("coding", 1) == "single-math-v1"


def test_judge_messages_fill_the_official_templates(questions, prompts, mt_dir):
    q81 = next(q for q in questions if q["question_id"] == 81)
    name, msgs = mt.judge_messages(q81, ["ANSWER ONE", "ANSWER TWO"], 1, prompts)
    assert name == "single-v1"
    assert msgs[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert f"[Question]\n{q81['turns'][0]}\n\n[The Start of Assistant's Answer]\nANSWER ONE\n" in msgs[1]["content"]

    refs = {r["question_id"]: r for r in map(json.loads, (mt_dir / "reference_answer.gpt-4.jsonl").read_text()
                                             .splitlines())}
    q111 = next(q for q in questions if q["question_id"] == 111)
    ref = refs[111]["choices"][0]["turns"]
    name, msgs = mt.judge_messages(q111, ["A1", "A2"], 2, prompts, reference_turns=ref)
    assert name == "single-math-v1-multi-turn"
    user = msgs[1]["content"]
    assert f"### Reference answer:\n{ref[1]}" in user
    assert f"### User:\n{q111['turns'][1]}\n\n### Assistant A:\nA2" in user
    assert msgs[0]["content"] == prompts[name]["system_prompt"]
    with pytest.raises(UserError, match="needs the reference answer"):
        mt.judge_messages(q111, ["A1", "A2"], 1, prompts)


def row(qid, turn, score, model="a"):
    name = "single-v1" if turn == 1 else "single-v1-multi-turn"
    return {"question_id": qid, "model": model, "judge": ["gpt-4", name], "user_prompt": "..",
            "judgment": f"Rating: [[{score}]]", "score": score, "turn": turn, "tstamp": 0.0}


def test_means_by_hand(questions):
    rows = [row(81, 1, 8), row(81, 2, 6), row(111, 1, 10), row(111, 2, -1), row(131, 1, 5), row(131, 2, 7),
            row(81, 1, 2, model="b")]
    got = mt.score_judgments(rows, questions=questions)
    a = got["a"]
    assert a["turn_1"] == pytest.approx((8 + 10 + 5) / 3)
    assert a["turn_2"] == pytest.approx((6 + 7) / 2)
    assert a["average"] == pytest.approx((8 + 6 + 10 + 5 + 7) / 5)  # -1 excluded, turns pooled
    assert a["categories"] == {"writing": 7.0, "math": 10.0, "extraction": 6.0}
    assert (a["n_scores"], a["n_invalid"], a["n_missing"]) == (5, 1, 160 - 6)
    assert a["judge"] == "gpt-4"
    assert got["b"]["turn_1"] == 2.0 and got["b"]["turn_2"] is None and got["b"]["average"] == 2.0


def test_ratings_outside_1_to_10_are_kept_as_fastchat_keeps_them(questions):
    """FastChat's parser takes any digits in [[..]] (common.py:36, 175-181) and show_result.py averages every score
    but -1: a judge's [[0]] or [[11]] counts as 0 or 11."""
    texts = ["Poor. Rating: [[0]]", "Superb. Rating: [[11]]", "Rating: [[7]]", "no rating"]
    rows = [mt.judgment_record(qid, "a", "single-v1" if t == 1 else "single-v1-multi-turn", "..", text, t, 0.0)
            for (qid, t), text in zip([(81, 1), (81, 2), (82, 1), (82, 2)], texts)]
    assert [r["score"] for r in rows] == [0.0, 11.0, 7.0, -1.0]
    a = mt.score_judgments(rows, questions=questions)["a"]
    assert a["turn_1"] == pytest.approx((0 + 7) / 2) and a["turn_2"] == 11.0
    assert a["average"] == pytest.approx((0 + 11 + 7) / 3)
    assert (a["n_scores"], a["n_invalid"], a["n_out_of_range"]) == (3, 1, 2)
    assert any("2 ratings outside 1-10 were kept" in n for n in a["notes"])


def test_without_questions_no_categories():
    got = mt.score_judgments([row(81, 1, 8), row(81, 2, 6)])["a"]
    assert got["categories"] == {} and got["n_missing"] is None and got["average"] == 7.0


def test_judgment_record_round_trips():
    rec = mt.judgment_record(81, "m", "single-v1", "prompt", "Good. Rating: [[9]]", 1, 1.0)
    assert rec["score"] == 9.0 and rec["judge"] == ["gpt-4", "single-v1"]
    assert mt.score_judgments([rec])["m"]["turn_1"] == 9.0


@pytest.mark.parametrize("bad, message", [
    ({"turn": 3}, "j.jsonl:12: turn 3 is not 1 or 2"),
    ({"score": "8"}, "j.jsonl:12: score '8' is not a number"),
    ({"question_id": 999}, "j.jsonl:12: question_id 999 is not an MT-Bench question"),
    ({"question_id": 81, "turn": 1}, "j.jsonl:12: duplicate judgment of 'a' on question 81 turn 1 "
                                     r"\(first at j.jsonl:4\)"),
    ({"question_id": None}, "j.jsonl:12: missing field 'question_id'"),
])
def test_malformed_judgments_name_file_and_line(bad, message, questions):
    rows = [row(81, 1, 8), {**row(82, 1, 8), **bad}]
    with pytest.raises(UserError, match=message):
        mt.score_judgments(rows, questions=questions, source="j.jsonl", lines=[4, 12])
