"""Arena-Hard v0.1 on one model: greedy answers (the official cap), judgments by gpt-4-1106-preview as
arena-hard-auto's gen_judgment.py makes them (two games, up to ``number_of_judgment_attempts``), and the official
Bradley-Terry score fitted over every judgment file of the judge (and ``--with-judgments``), all models together.

Files: ``<results>/arena_hard[.<variant>]/model_answer/<model>.jsonl`` and ``model_judgment/<judge>/<model>.jsonl``."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from sppo.errors import UserError
from sppo.files import read_jsonl, write_jsonl

from benchmarks import inputs
from benchmarks.answers import AnswerSettings, ModelAnswerer, answer_id, reusable
from benchmarks.tables import table_spec
from benchmarks.judge import Judge, JudgeRequest
from benchmarks.judging import LOGPROB_VERDICT, Conversation, Item, JsonlFile, JudgedTask, Verdicts, judge_task
from benchmarks.scoring import arena_hard as ah
from benchmarks.store import SuiteResult, digest
from benchmarks.suites.common import (JointFit, ModelTarget, RunContext, Suite, SuiteOutcome, figure, judge_label,
                                      prompt_version as _digest_prompt, require_judge, reused_counts, suite_result)

ARENA_HARD_MAX_NEW_TOKENS = 4096  # config/gen_answer_config.yaml max_tokens (arena-hard-auto @e883410)
ARENA_HARD_PROMPT_MARGIN = 300  # gen_answer.py (arena-hard-auto @e883410:150-151), local models with a tokenizer


def arena_hard_caps(answerer: ModelAnswerer, questions: list[dict], max_new: int | None) -> list[int]:
    """New-token limit per question: ``--max-new-tokens`` if given, else the official cap for a local model,
    ``4096 - len(tokenizer(question)) - 300`` (gen_answer.py @e883410:137-151; at least 1)."""
    if max_new:
        return [max_new] * len(questions)
    tok = answerer.generator.tokenizer
    return [max(1, ARENA_HARD_MAX_NEW_TOKENS - len(tok(q["turns"][0]["content"])["input_ids"])
                - ARENA_HARD_PROMPT_MARGIN) for q in questions]


def arena_hard_answers(answerer: ModelAnswerer, questions: list[dict], path: Path, model_id: str,
                       settings: AnswerSettings) -> tuple[dict[str, dict], dict[str, Any]]:
    """``model_answer/<model>.jsonl`` for the first ``limit`` questions: {question_id: record}; greedy."""
    from benchmarks.scoring.arena_hard import count_tokens

    wanted = questions[:settings.limit] if settings.limit else questions
    max_new = settings.max_new_tokens or f"{ARENA_HARD_MAX_NEW_TOKENS} - prompt tokens - {ARENA_HARD_PROMPT_MARGIN}"
    key = digest({**answerer.identity(), "temperature": 0.0, "max_new_tokens": max_new, "suite": "arena_hard"})
    existing = reusable({str(r.get("question_id")): r for r in read_jsonl(path)} if path.exists() else {}, key)
    todo = [q for q in wanted if str(q["question_id"]) not in existing]
    by_cap: dict[int, list[dict]] = {}
    for q, cap in zip(todo, arena_hard_caps(answerer, todo, settings.max_new_tokens) if todo else []):
        by_cap.setdefault(cap, []).append(q)
    for cap, qs in by_cap.items():
        outs = answerer.answer([[{"role": "user", "content": q["turns"][0]["content"]}] for q in qs], 0.0, cap)
        for q, out in zip(qs, outs):
            existing[str(q["question_id"])] = {
                "question_id": q["question_id"], "answer_id": answer_id(), "model_id": model_id,
                "choices": [{"index": 0, "turns": [{"content": out, "token_len": count_tokens(out)}]}],
                "tstamp": time.time(), "sppo_key": key}
        write_jsonl(path, existing.values())
    info = {"temperature": 0.0, "max_new_tokens": max_new, "best_of": answerer.best_of, "n_generated": len(todo),
            "n_reused": len(wanted) - len(todo), "key": key, "engine": answerer.engine()}
    return {str(q["question_id"]): existing[str(q["question_id"])] for q in wanted}, info


def prompt_version(ctx: RunContext) -> str:
    """The judge config's prompt, pattern and parameters (part of every results key)."""
    cfg = ctx.data.arena_hard().judge_config
    return _digest_prompt(*(cfg.get(k) for k in ("system_prompt", "prompt_template", "regex_pattern", "max_tokens",
                                                 "temperature", "number_of_judgment_attempts")))


def judge_one(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
    """Answers and judgments of one model; scoring is done for all models together (``score_together``)."""
    judge = require_judge(ctx, "arena_hard")
    before = judge.stats.as_dict()
    data = ctx.data.arena_hard()
    cfg = data.judge_config
    wanted = data.questions[:ctx.answer_settings.limit] if ctx.answer_settings.limit else data.questions
    answers, gen_info = arena_hard_answers(target.answerer, data.questions,
                                           ctx.layout.answers("arena_hard", target.variant, target.name),
                                           target.name, ctx.answer_settings)
    jpath = ctx.layout.judgments("arena_hard", target.variant, judge_label(judge), target.name)
    task = judged_task(data, wanted, answers, target.name, judge, jpath)
    judged = judge_task(judge, task, ctx.progress)
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_config": {k: cfg.get(k) for k in ("judge_model", "baseline_model", "temperature", "max_tokens",
                                                         "regex_pattern", "number_of_judgment_attempts")},
                "prompt_version": prompt_version(ctx),
                "reused": reused_counts(gen_info, judged.n_reused, len(wanted)),
                "data": data.source, "judgments": str(jpath),
                "answers": str(ctx.layout.answers_dir("arena_hard", target.variant))}
    n_lp = sum(g.get("verdict_source") == LOGPROB_VERDICT for row in judged.of(task.items) for g in row["games"])
    return SuiteOutcome(suite_result(target, "arena_hard", {}, settings, judge, before),
                        JointFit(tuple(str(q["question_id"]) for q in wanted), n_lp))


def judged_task(data, wanted: list[dict], answers: dict[str, dict], model: str, judge: Judge,
                jpath: Path) -> JudgedTask:
    """The judging of every wanted question as gen_judgment.py does it: two games (the baseline as assistant A,
    then as B), each asked up to ``number_of_judgment_attempts`` times, continuing the conversation
    (arena-hard-auto gen_judgment.py judgment(): the ``for _ in range(configs[...attempts])`` loop)."""
    cfg = data.judge_config
    template, pattern = cfg["prompt_template"][0], re.compile(cfg["regex_pattern"])
    params = (int(cfg.get("max_tokens", ah.JUDGE_PARAMS["max_tokens"])),
              float(cfg.get("temperature", ah.JUDGE_PARAMS["temperature"])))
    items = []
    for q in wanted:
        qid = str(q["question_id"])
        if qid not in data.baseline_answers:
            raise UserError(f"{data.source}: no gpt-4-0314 answer for question {qid}")
        games = [ah.judge_messages(q["turns"][0]["content"], answers[qid]["choices"][0]["turns"][0]["content"],
                                   data.baseline_answers[qid]["choices"][0]["turns"][0]["content"], g,
                                   data.judge_config["system_prompt"], template) for g in range(2)]
        items.append(Item(qid, tuple(JudgeRequest.make(conv, *params) for conv in games)))

    def row(item: Item, convs: list[Conversation], key: str) -> dict:
        return {"question_id": item.id, "model": model, "judge": judge.model,
                "games": [_arena_game(c) for c in convs], "sppo_key": key}

    verdicts = Verdicts(lambda c: ah.parse_verdict(c.text, pattern),
                        int(cfg.get("number_of_judgment_attempts", ah.JUDGMENT_ATTEMPTS)), ah.CONTINUE_PROMPT, " [[",
                        ah.VERDICTS)
    order = [str(q["question_id"]) for q in data.questions]
    return JudgedTask("arena_hard", model, items, verdicts, row, JsonlFile(jpath), lambda r: str(r.get("question_id")),
                      lambda rows: [rows[i] for i in order if i in rows])


def _arena_game(c: Conversation) -> dict:
    game = {"user_prompt": c.request.messages[1]["content"], "judgment": c.text, "score": c.verdict}
    if c.verdict_source:
        game["verdict_source"] = c.verdict_source
    return game


def _with_notes(metrics: dict | None, n_logprob: int, pooled: str | None) -> dict:
    """A model's leaderboard row with the run's notes: no valid verdict, verdicts from logprobs, pooled judges."""
    metrics = dict(metrics) if metrics is not None else {"score": None, "notes": ["no valid verdict: every game "
                                                                                   "was dropped"]}
    notes = list(metrics.get("notes", []))
    if n_logprob:
        metrics["n_logprob_verdicts"] = n_logprob
        notes.append(f"{n_logprob} verdicts read from the local judge's token probabilities (its text had no "
                     "valid label)")
    metrics["notes"] = notes + ([pooled] if pooled else [])
    return metrics


def score_together(ctx: RunContext, outcomes: Sequence[tuple[ModelTarget, SuiteOutcome]]) -> list[SuiteResult]:
    """Score the judged models with every judgment file of the same judge and variant, fitted together as the
    official show_result does with its judgment directory (files in sorted name order)."""
    judge = require_judge(ctx, "arena_hard")
    out = []
    by_variant: dict[str, list[tuple[ModelTarget, SuiteOutcome]]] = {}
    for t, outcome in outcomes:
        by_variant.setdefault(t.variant, []).append((t, outcome))
    for variant, pairs in by_variant.items():
        jdir = ctx.layout.judgments_dir("arena_hard", variant, judge_label(judge))
        wanted = set(pairs[0][1].joint.question_ids)
        board, pooled = _fit(ctx, variant, jdir, wanted)
        for t, outcome in pairs:
            metrics = _with_notes(board.get(t.name), outcome.joint.n_logprob_verdicts, pooled)
            settings = {**outcome.result.settings, "models_fitted_together": sorted(board)}
            out.append(replace(outcome.result, metrics=metrics, settings=settings))
    return out


def _fit(ctx: RunContext, variant: str, jdir: Path, wanted: set[str]) -> tuple[dict[str, dict], str | None]:
    """The leaderboard of every judgment file of ``jdir`` (and ``--with-judgments``) on the ``wanted`` questions,
    and the note when judges were pooled."""
    judgments = inputs.read_judgments(inputs.judgment_files(jdir, ctx.with_judgments), wanted)
    adir = ctx.layout.answers_dir("arena_hard", variant)
    answers = inputs.answers_by_model(adir, wanted) if adir.is_dir() else {}
    board = ah.score_judgments(judgments.rows, answers=answers, question_ids=wanted, source=judgments.sources,
                               lines=judgments.lines)
    return board, ah.pooled_judges_note(judgments.rows, jdir)


def headline(m: dict[str, Any]) -> str:
    return f"score {figure(m, 'score', 1)}  CI {m.get('CI', 'n/a')}  tokens {m.get('avg_tokens')}"


SUITE = Suite("arena_hard", judge_one, table_spec("arena_hard"), headline, prompt_version, score_together)
