"""MT-Bench single-answer grading (judge GPT-4), as FastChat's ``fastchat/llm_judge`` (fschat 0.2.36).

* Judge prompts (``judge_prompts.jsonl``): ``single-v1`` for turn 1, ``single-v1-multi-turn`` for turn 2; the
  categories math, reasoning and coding use ``single-math-v1`` / ``single-math-v1-multi-turn`` with the GPT-4
  reference answers. Messages: the prompt's system message, then the filled user prompt.
* Parsing: ``[[rating]]`` (regex ``\\[\\[(\\d+\\.?\\d*)\\]\\]``), else ``[rating]``, else -1 (invalid).
* Scores (``show_result.py --mode single``): invalid ratings (-1) are excluded, ratings outside 1-10 (a judge's
  ``[[0]]`` or ``[[11]]``) are kept; turn_1 / turn_2 are the means of the
  valid ratings of each turn, ``average`` the mean of all valid ratings (both turns pooled); per-category means
  pool both turns in the same way.
* Judgment rows: ``{question_id, model, judge: [judge model, prompt name], user_prompt, judgment, score, turn,
  tstamp}``, one JSONL line each.
"""

from __future__ import annotations

import ast
import math
import re
from collections import defaultdict
from statistics import fmean
from typing import Any, Mapping, Sequence

from sppo.errors import UserError

from . import locator, require

JUDGE = "gpt-4"
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
INVALID = -1
JUDGE_PARAMS = {"max_tokens": 2048, "temperature": 0.0}  # run_judge_single with an OpenAI judge
# answer generation: FastChat llm_judge/common.py:40-50 temperature_config (fschat 0.2.36), 0.7 for other categories
# (gen_model_answer.py:99-102)
TEMPERATURE_CONFIG = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                      "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
DEFAULT_TEMPERATURE = 0.7


# --- judge side (used by the runner's judge client) -------------------------------------------------------------

def parse_rating(judgment: str) -> float:
    """The rating in a judge's text, as FastChat: first ``[[x]]``, else first ``[x]``, else -1 (invalid)."""
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    return float(ast.literal_eval(match.group(1))) if match else float(INVALID)


def needs_reference(category: str) -> bool:
    """Whether the category is graded against the GPT-4 reference answer (math, reasoning, coding)."""
    return category in NEED_REF_CATS


def judge_prompt_name(category: str, turn: int) -> str:
    """``single-v1``, ``single-math-v1`` or their ``-multi-turn`` forms, as FastChat's ``make_judge_single``."""
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn}")
    name = "single-math-v1" if needs_reference(category) else "single-v1"
    return name + ("-multi-turn" if turn == 2 else "")


def judge_messages(question: Mapping[str, Any], answer_turns: Sequence[str], turn: int,
                   prompts: Mapping[str, Mapping[str, Any]],
                   reference_turns: Sequence[str] | None = None) -> tuple[str, list[dict[str, str]]]:
    """``(prompt name, messages)`` to grade turn 1 or 2 of one answer, filled as FastChat's ``run_judge_single``.

    ``question`` is a question.jsonl record (category, turns); ``answer_turns`` the model's two answers;
    ``reference_turns`` the GPT-4 reference answers, required for math / reasoning / coding."""
    name = judge_prompt_name(question["category"], turn)
    prompt = prompts[name]
    kwargs: dict[str, str] = {}
    if needs_reference(question["category"]):
        if not reference_turns:
            raise UserError(f"question {question['question_id']}: category {question['category']!r} needs the "
                            "reference answer")
        kwargs["ref_answer_1"] = reference_turns[0]
        if turn == 2:
            kwargs["ref_answer_2"] = reference_turns[1]
    if turn == 1:
        user = prompt["prompt_template"].format(question=question["turns"][0], answer=answer_turns[0], **kwargs)
    else:
        user = prompt["prompt_template"].format(question_1=question["turns"][0], question_2=question["turns"][1],
                                                answer_1=answer_turns[0], answer_2=answer_turns[1], **kwargs)
    return name, [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]


def judgment_record(question_id: Any, model: str, prompt_name: str, user_prompt: str, judgment: str, turn: int,
                    tstamp: float, judge: str = JUDGE) -> dict[str, Any]:
    """One judgment line in FastChat's format (the score parsed from ``judgment``)."""
    return {"question_id": question_id, "model": model, "judge": [judge, prompt_name], "user_prompt": user_prompt,
            "judgment": judgment, "score": parse_rating(judgment), "turn": turn, "tstamp": tstamp}


# --- scoring ------------------------------------------------------------------------------------------------------

RATING_RANGE = (1.0, 10.0)  # the judge prompts ask for "a scale of 1 to 10"; judges sometimes answer 0 or 11


def _score_value(value: Any, where: str) -> float:
    """A rating: any finite number >= 0 - FastChat's parser (common.py:36-37, 175-183) turns whatever digits the
    judge wrote into the score and show_result.py averages every score but -1, so 0 or 11 are kept - or -1
    (invalid). Anything its parser cannot produce (-5, Infinity, true) is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: score {value!r} is not a number")
    if value != INVALID and not (math.isfinite(value) and value >= 0):
        raise UserError(f"{where}: score {value!r} is not a rating (a number >= 0, or {INVALID} for no rating)")
    return float(value)


def score_judgments(rows: Sequence[Mapping[str, Any]], questions: Sequence[Mapping[str, Any]] | None = None,
                    source: str | None = None, lines: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
    """``{model: {turn_1, turn_2, average, categories, n_scores, n_invalid, n_missing, judge}}`` from judgment rows.

    With ``questions`` (question.jsonl records), unknown question ids are errors and per-category means and the
    number of missing (question, turn) judgments are reported; without, ``categories`` is empty. Duplicate
    (model, question_id, turn) judgments, turns other than 1/2 and non-numeric scores raise UserError naming
    file and line."""
    where = locator(source, lines)
    category = {str(q["question_id"]): q["category"] for q in questions} if questions is not None else None
    scores: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    judges: dict[str, set[str]] = defaultdict(set)
    seen: dict[tuple[str, str, int], str] = {}
    for i, row in enumerate(rows):
        qid = str(require(row, "question_id", where(i)))
        model = str(require(row, "model", where(i)))
        turn = require(row, "turn", where(i))
        score = _score_value(require(row, "score", where(i)), where(i))
        if turn not in (1, 2):
            raise UserError(f"{where(i)}: turn {turn!r} is not 1 or 2")
        if category is not None and qid not in category:
            raise UserError(f"{where(i)}: question_id {qid} is not an MT-Bench question")
        if (model, qid, turn) in seen:
            raise UserError(f"{where(i)}: duplicate judgment of {model!r} on question {qid} turn {turn} "
                            f"(first at {seen[model, qid, turn]})")
        seen[model, qid, turn] = where(i)
        judge = row.get("judge")
        if isinstance(judge, (list, tuple)) and judge:
            judges[model].add(str(judge[0]))
        scores[model].append((qid, turn, score))
    return {model: _model_metrics(rows_, category, judges[model]) for model, rows_ in scores.items()}


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _model_metrics(rows: list[tuple[str, int, float]], category: dict[str, str] | None,
                   judges: set[str]) -> dict[str, Any]:
    """Means of one model's valid ratings (FastChat drops score == -1)."""
    valid = [(q, t, s) for q, t, s in rows if s != INVALID]
    out: dict[str, Any] = {
        "turn_1": _mean([s for _, t, s in valid if t == 1]),
        "turn_2": _mean([s for _, t, s in valid if t == 2]),
        "average": _mean([s for _, _, s in valid]),
        "categories": {},
        "n_scores": len(valid),
        "n_invalid": len(rows) - len(valid),
        "n_out_of_range": sum(not RATING_RANGE[0] <= s <= RATING_RANGE[1] for _, _, s in valid),
        "n_missing": None,
        "judge": sorted(judges)[0] if len(judges) == 1 else sorted(judges) or None,
    }
    notes = []
    if category is not None:
        by_cat: dict[str, list[float]] = defaultdict(list)
        for q, _, s in valid:
            by_cat[category[q]].append(s)
        out["categories"] = {c: fmean(v) for c, v in sorted(by_cat.items())}
        out["n_missing"] = 2 * len(category) - len(rows)
        if out["n_missing"]:
            notes.append(f"{out['n_missing']} of {2 * len(category)} (question, turn) judgments are missing")
    if out["n_invalid"]:
        notes.append(f"{out['n_invalid']} judgments without a rating were excluded (as FastChat does)")
    if out["n_out_of_range"]:
        notes.append(f"{out['n_out_of_range']} ratings outside {RATING_RANGE[0]:g}-{RATING_RANGE[1]:g} were kept "
                     "in the means (as FastChat does)")
    if len(judges) > 1:
        notes.append(f"judgments from several judges pooled: {', '.join(sorted(judges))}")
    out["notes"] = notes
    return out
