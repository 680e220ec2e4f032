"""MT-Bench on one model: two-turn answers with FastChat's per-category temperatures and conversation template, single
grading by gpt-4 with FastChat's judge prompts, FastChat's scores.

Files: ``<results>/mt_bench[.<variant>]/model_answer/<model>.jsonl`` and ``model_judgment/<judge>_single.jsonl`` (one
file for every model, as FastChat writes it; updated under a lock so concurrent runs lose nothing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from sppo.files import read_jsonl, under, write_jsonl
from sppo.generate import PromptText

from benchmarks.answers import AnswerSettings, ModelAnswerer, answer_id, reusable
from benchmarks.judge import Judge, JudgeReply, JudgeRequest
from benchmarks.scoring import mt_bench as mt
from benchmarks.card_layout import table_spec
from benchmarks.store import digest
from benchmarks.suites.common import (LOGPROB_VERDICT, Failures, ModelTarget, RunContext, Suite, SuiteOutcome,
                                      complete_in_batches, figure, judge_label, judgment_key,
                                      prompt_version as _digest_prompt, replace_model_rows, require_judge,
                                      reused_counts, suite_result)

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


def mt_bench_judgment_path(ctx: RunContext, variant: str, judge: Judge) -> Path:
    return under(ctx.work_dir("mt_bench", variant), "model_judgment", f"{judge_label(judge)}_single.jsonl",
                 what="judge model")


def _mt_logprob_verdict(judge: Judge, row: dict, msgs: list[dict]) -> dict:
    """Local judges only: a judgment without a rating gets the rating (1-10) the judge finds most likely after its
    text and the official opener ``Rating: [[`` (``verdict_source: logprobs``)."""
    if row["score"] != mt.INVALID or not hasattr(judge, "verdict_from_logprobs"):
        return row
    choices = [f"{r}]]" for r in range(int(mt.RATING_RANGE[0]), int(mt.RATING_RANGE[1]) + 1)]
    rating = judge.verdict_from_logprobs(msgs, row["judgment"].rstrip() + "\n\nRating: [[", choices)
    return {**row, "score": int(rating[:-2]), "verdict_source": LOGPROB_VERDICT}


def run(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
    judge = require_judge(ctx, "mt_bench")
    before = judge.stats.as_dict()
    data = ctx.data.mt_bench()
    work = ctx.work_dir("mt_bench", target.variant)
    wanted = data.questions[:ctx.answer_settings.limit] if ctx.answer_settings.limit else data.questions
    answers, gen_info = mt_bench_answers(target.answerer, data.questions,
                                         under(work, "model_answer", f"{target.name}.jsonl", what="model name"),
                                         target.name, ctx.answer_settings)
    jpath = mt_bench_judgment_path(ctx, target.variant, judge)
    old = {(r.get("question_id"), r.get("turn")): r for r in (read_jsonl(jpath) if jpath.exists() else [])
           if r.get("model") == target.name}
    wanted_ids = {q["question_id"] for q in wanted}
    beyond = [r for k, r in old.items() if k[0] not in wanted_ids]  # judgments beyond --limit: kept in the file
    mine, pending = _judgment_plan(data, wanted, answers, judge, old)
    n_reused = len(mine)
    order = {q["question_id"]: i for i, q in enumerate(data.questions)}
    failures = Failures("mt_bench", target.name)

    def on_batch(start: int, replies: list[JudgeReply]) -> None:
        for (q, turn, name, msgs, key), reply in zip(pending[start:start + len(replies)], replies):
            if failures.check(reply):
                row = {**mt.judgment_record(q["question_id"], target.name, name, msgs[1]["content"], reply.text,
                                            turn, time.time(), judge=judge.model), "sppo_key": key}
                mine[q["question_id"], turn] = _mt_logprob_verdict(judge, row, msgs)
        replace_model_rows(jpath, target.name, list(mine.values()) + beyond,
                           lambda r: (r["turn"], order.get(r["question_id"], 1 << 30)))

    complete_in_batches(judge, [JudgeRequest.make(p[3], **mt.JUDGE_PARAMS) for p in pending], on_batch, ctx.progress)
    failures.raise_if_any()
    rows = sorted(mine.values(), key=lambda r: (r["turn"], order.get(r["question_id"], 1 << 30)))
    metrics = _metrics(rows, wanted, jpath, target.name)
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_params": mt.JUDGE_PARAMS, "data": data.source, "judgments": str(jpath),
                "prompt_version": prompt_version(ctx),
                "reused": reused_counts(gen_info, n_reused, 2 * len(wanted)),
                "answers": str(work / "model_answer")}
    return SuiteOutcome(suite_result(target, "mt_bench", metrics, settings, judge, before))


def _judgment_plan(data, wanted: list[dict], answers: dict[int, dict], judge: Judge,
                   old: dict[tuple, dict]) -> tuple[dict[tuple, dict], list[tuple[dict, int, str, list[dict], str]]]:
    """The judgments of both turns of every wanted question reused under the same key ({(question_id, turn): row}),
    and the (question, turn, prompt name, messages, key) of those still to judge."""
    mine: dict[tuple, dict] = {}
    pending: list[tuple[dict, int, str, list[dict], str]] = []
    for q in wanted:
        ref = data.references.get(q["question_id"])
        for turn in (1, 2):
            name, msgs = mt.judge_messages(q, answers[q["question_id"]]["choices"][0]["turns"], turn,
                                           data.judge_prompts, ref["choices"][0]["turns"] if ref else None)
            key = judgment_key(judge, [JudgeRequest.make(msgs, **mt.JUDGE_PARAMS)])
            prev = old.get((q["question_id"], turn))
            if prev is not None and prev.get("sppo_key") == key:
                mine[q["question_id"], turn] = prev
            else:
                pending.append((q, turn, name, msgs, key))
    return mine, pending


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
