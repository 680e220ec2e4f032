"""MT-Bench on one model: two-turn answers with FastChat's per-category temperatures and conversation template, single
grading by gpt-4 with FastChat's judge prompts, FastChat's scores.

Files: ``<results>/mt_bench[.<variant>]/model_answer/<model>.jsonl`` and ``model_judgment/<judge>_single.jsonl`` (one
file for every model, as FastChat writes it; updated under a lock so concurrent runs lose nothing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from sppo.files import read_jsonl, write_jsonl
from sppo.generate import PromptText

from benchmarks.answers import AnswerSettings, ModelAnswerer, answer_id, reusable
from benchmarks.tables import table_spec
from benchmarks.judge import Judge, JudgeRequest
from benchmarks.judging import (LOGPROB_VERDICT, Conversation, Item, JudgedTask, SharedJsonlFile, Verdicts,
                                judge_task)
from benchmarks.scoring import mt_bench as mt
from benchmarks.store import digest
from benchmarks.suites.common import (ModelTarget, RunContext, Suite, SuiteOutcome, figure, judge_label,
                                      prompt_version as _digest_prompt, require_judge, reused_counts, suite_result)

MT_BENCH_MAX_NEW_TOKENS = 1024  # FastChat gen_model_answer.py --max-new-token default
# gen_model_answer.py:123-128 samples with HF generate passing no top_k/top_p: transformers' defaults, top-k 50
MT_BENCH_TOP_K = 50


def mt_bench_temperature(category: str) -> float:
    """FastChat's temperature for a question category (``temperature_config``, 0.7 for others)."""
    return mt.TEMPERATURE_CONFIG.get(category, mt.DEFAULT_TEMPERATURE)


def fastchat_template(model_name: str) -> str | None:
    """The name of FastChat's conversation template for a model, or None when FastChat has none for it (its
    fallback ``one_shot`` template)."""
    from fastchat.model import get_conversation_template

    name = get_conversation_template(model_name).name
    return None if name == "one_shot" else name


def fastchat_prompt(model_name: str, questions: Sequence[str], answers: Sequence[str]) -> str:
    """The prompt text FastChat's gen_model_answer.py (fschat 0.2.36, lines 107-113 and 175) builds for the next
    turn: each question as the user, each earlier answer as the assistant, an open assistant message last."""
    from fastchat.model import get_conversation_template

    conv = get_conversation_template(model_name)
    for i, q in enumerate(questions):
        conv.append_message(conv.roles[0], q)
        conv.append_message(conv.roles[1], answers[i] if i < len(answers) else None)
    return conv.get_prompt()


def _mt_turns(answerer: ModelAnswerer, qs: list[dict], temp: float, max_new: int, template: str | None):
    """First and second answers of each question (the second turn sees the first answer)."""
    if template is None:
        convs = [[{"role": "user", "content": q["turns"][0]}] for q in qs]
        first = answerer.answer(convs, temp, max_new, top_k=MT_BENCH_TOP_K)
        convs2 = [c + [{"role": "assistant", "content": a}, {"role": "user", "content": q["turns"][1]}]
                  for c, a, q in zip(convs, first, qs)]
        return first, answerer.answer(convs2, temp, max_new, top_k=MT_BENCH_TOP_K)
    name = answerer.template_model()
    first = answerer.answer([PromptText(fastchat_prompt(name, q["turns"][:1], [])) for q in qs], temp, max_new,
                            top_k=MT_BENCH_TOP_K)
    second = answerer.answer([PromptText(fastchat_prompt(name, q["turns"][:2], [a])) for q, a in zip(qs, first)],
                             temp, max_new, top_k=MT_BENCH_TOP_K)
    return first, second


def mt_bench_answers(answerer: ModelAnswerer, questions: list[dict], path: Path, model_id: str,
                     settings: AnswerSettings) -> tuple[dict[int, dict], dict[str, Any]]:
    """``model_answer/<model>.jsonl`` (two turns) for the first ``limit`` questions: {question_id: record}."""
    wanted = questions[:settings.limit] if settings.limit else questions
    max_new = settings.max_new_tokens or MT_BENCH_MAX_NEW_TOKENS
    template = fastchat_template(answerer.template_model()) if settings.chat_template == "fastchat" else None
    key = digest({**answerer.identity(), "temperature": mt.TEMPERATURE_CONFIG, "max_new_tokens": max_new,
                  "suite": "mt_bench", "fastchat_template": template, "prompt_tokens": "tokenizer default",
                  "top_k": MT_BENCH_TOP_K})
    existing = reusable({r.get("question_id"): r for r in read_jsonl(path)} if path.exists() else {}, key)
    todo = [q for q in wanted if q["question_id"] not in existing]
    by_temp: dict[float, list[dict]] = {}
    for q in todo:
        by_temp.setdefault(mt_bench_temperature(q["category"]), []).append(q)
    for temp, qs in by_temp.items():
        first, second = _mt_turns(answerer, qs, temp, max_new, template)
        for q, a1, a2 in zip(qs, first, second):
            existing[q["question_id"]] = {"question_id": q["question_id"], "answer_id": answer_id(),
                                          "model_id": model_id, "choices": [{"index": 0, "turns": [a1, a2]}],
                                          "tstamp": time.time(), "sppo_key": key}
        write_jsonl(path, existing.values())
    info = {"temperature": "per category (FastChat temperature_config)", "top_k": MT_BENCH_TOP_K,
            "max_new_tokens": max_new,
            "chat_template": f"fastchat:{template}" if template else "hf", "best_of": answerer.best_of,
            "n_generated": len(todo), "n_reused": len(wanted) - len(todo), "key": key, "engine": answerer.engine()}
    return {q["question_id"]: existing[q["question_id"]] for q in wanted}, info


def prompt_version(ctx: RunContext) -> str:
    """The judge prompts and parameters (part of every results key)."""
    return _digest_prompt(ctx.data.mt_bench().judge_prompts, mt.JUDGE_PARAMS)


def parse_rating(conv: Conversation) -> tuple[Any, bool]:
    """FastChat's rating of the judge's reply (``[[x]]``, else ``[x]``); None when it wrote none."""
    rating = mt.parse_rating(conv.replies[-1].text)
    return (None if rating == mt.INVALID else rating), False


# a reply without a rating: a local judge's most likely rating after its text and the official opener
VERDICTS = Verdicts(parse_rating, opener="\n\nRating: [[",
                    labels=tuple(str(r) for r in range(int(mt.RATING_RANGE[0]), int(mt.RATING_RANGE[1]) + 1)))


def run(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
    judge = require_judge(ctx, "mt_bench")
    before = judge.stats.as_dict()
    data = ctx.data.mt_bench()
    wanted = data.questions[:ctx.answer_settings.limit] if ctx.answer_settings.limit else data.questions
    answers, gen_info = mt_bench_answers(target.answerer, data.questions,
                                         ctx.layout.answers("mt_bench", target.variant, target.name),
                                         target.name, ctx.answer_settings)
    jpath = ctx.layout.shared_judgments("mt_bench", target.variant, judge_label(judge))
    task = judged_task(data, wanted, answers, target.name, judge, jpath)
    judged = judge_task(judge, task, ctx.progress)
    metrics = _metrics(task.ordered({i.id: judged.rows[i.id] for i in task.items}), wanted, jpath, target.name)
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_params": mt.JUDGE_PARAMS, "data": data.source, "judgments": str(jpath),
                "prompt_version": prompt_version(ctx),
                "reused": reused_counts(gen_info, judged.n_reused, 2 * len(wanted)),
                "answers": str(ctx.layout.answers_dir("mt_bench", target.variant))}
    return SuiteOutcome(suite_result(target, "mt_bench", metrics, settings, judge, before))


def judged_task(data, wanted: list[dict], answers: dict[int, dict], model: str, judge: Judge,
                jpath: Path) -> JudgedTask:
    """Single grading of both turns of every wanted question with FastChat's judge prompts (a reference answer for
    math, reasoning and coding), rows in FastChat's format in the file every model shares."""
    items = []
    for q in wanted:
        ref = data.references.get(q["question_id"])
        for turn in (1, 2):
            name, msgs = mt.judge_messages(q, answers[q["question_id"]]["choices"][0]["turns"], turn,
                                           data.judge_prompts, ref["choices"][0]["turns"] if ref else None)
            items.append(Item((q["question_id"], turn), (JudgeRequest.make(msgs, **mt.JUDGE_PARAMS),), name))

    def row(item: Item, convs: list[Conversation], key: str) -> dict:
        (qid, turn), c = item.id, convs[0]
        out = {**mt.judgment_record(qid, model, item.data, c.request.messages[1]["content"], c.replies[-1].text,
                                    turn, time.time(), judge=judge.model), "sppo_key": key}
        if c.verdict_source:  # a rating read from a local judge's token probabilities
            out = {**out, "score": int(c.verdict), "verdict_source": c.verdict_source}
        return out

    order = {q["question_id"]: i for i, q in enumerate(data.questions)}
    return JudgedTask("mt_bench", model, items, VERDICTS, row, SharedJsonlFile(jpath, model),
                      lambda r: (r.get("question_id"), r.get("turn")),
                      lambda rows: sorted(rows.values(), key=lambda r: (r["turn"], order.get(r["question_id"], 1 << 30))))


def _metrics(rows: list[dict], wanted: list[dict], jpath: Path, model: str) -> dict[str, Any]:
    """FastChat's scores of the model's judgments, with a note on ratings read from token probabilities."""
    scored = mt.score_judgments(rows, questions=wanted, source=str(jpath))
    metrics = scored.get(model) or {"average": None, "notes": ["no judgments"]}
    metrics.pop("judge", None)
    n_lp = sum(r.get("verdict_source") == LOGPROB_VERDICT for r in rows)
    if n_lp:
        metrics["n_logprob_verdicts"] = n_lp
        metrics["notes"] = [*metrics.get("notes", []), f"{n_lp} ratings read from the local judge's token "
                            "probabilities (its text had no valid rating)"]
    return metrics


def headline(m: dict[str, Any]) -> str:
    return f"turn1 {figure(m, 'turn_1')}  turn2 {figure(m, 'turn_2')}  avg {figure(m, 'average')}"


SUITE = Suite("mt_bench", run, table_spec("mt_bench"), headline, prompt_version)
