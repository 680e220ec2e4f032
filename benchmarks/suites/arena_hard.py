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
from sppo.files import read_jsonl, under, write_jsonl

from benchmarks.answers import AnswerSettings, ModelAnswerer, answer_id, reusable
from benchmarks.card_layout import table_spec
from benchmarks.judge import Judge, JudgeRequest
from benchmarks.scoring import arena_hard as ah
from benchmarks.store import SuiteResult, digest
from benchmarks.suites import common
from benchmarks.suites.common import (LOGPROB_VERDICT, Failures, JointFit, ModelTarget, RunContext, Suite,
                                      SuiteOutcome, figure, judge_label, judgment_key, prompt_version as _digest_prompt,
                                      require_judge, reused_counts, suite_result)

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


def _arena_games(q: dict, answer: dict, data, template: str) -> list[dict]:
    qid = str(q["question_id"])
    if qid not in data.baseline_answers:
        raise UserError(f"{data.source}: no gpt-4-0314 answer for question {qid}")
    return [{"qid": qid, "game": g, "judgment": "", "score": None, "open": True,
             "conv": ah.judge_messages(q["turns"][0]["content"], answer["choices"][0]["turns"][0]["content"],
                                       data.baseline_answers[qid]["choices"][0]["turns"][0]["content"], g,
                                       data.judge_config["system_prompt"], template)} for g in range(2)]


def _arena_game(st: dict) -> dict:
    game = {"user_prompt": st["conv"][1]["content"], "judgment": st["judgment"], "score": st["score"]}
    if st.get("verdict_source"):
        game["verdict_source"] = st["verdict_source"]
    return game


def _arena_request(conv: list[dict], cfg: dict) -> JudgeRequest:
    return JudgeRequest.make(conv, int(cfg.get("max_tokens", ah.JUDGE_PARAMS["max_tokens"])),
                             float(cfg.get("temperature", ah.JUDGE_PARAMS["temperature"])))


def _arena_judge_chunk(judge: Judge, states: list[dict], cfg: dict, failures: Failures, progress: bool) -> None:
    """Judge the games of a chunk as gen_judgment does: up to number_of_judgment_attempts, continuing the
    conversation (arena-hard-auto gen_judgment.py judgment(): the ``for _ in range(configs[...attempts])`` loop).
    A failed request closes its game as failed (``state["failed"]``)."""
    pattern = re.compile(cfg["regex_pattern"])
    for _ in range(int(cfg.get("number_of_judgment_attempts", ah.JUDGMENT_ATTEMPTS))):
        live = [st for st in states if st["open"]]
        if not live:
            break
        replies = judge.complete([_arena_request(st["conv"], cfg) for st in live], progress=progress)
        for st, reply in zip(live, replies):
            if not failures.check(reply):
                st["open"], st["failed"] = False, True
                continue
            st["judgment"] += "\n" + reply.text
            st["score"], try_again = ah.parse_verdict(st["judgment"], pattern)
            st["conv"] = st["conv"] + [{"role": "assistant", "content": reply.text}]
            if not try_again:
                st["open"] = False
            else:
                st["conv"] = st["conv"] + [{"role": "user", "content": ah.CONTINUE_PROMPT}]


def _arena_logprob_verdicts(judge: Judge, states: list[dict]) -> None:
    """Local judges only: a game left without a valid label gets the label the judge finds most likely after its
    own text and the official opener ``[[`` (recorded as ``verdict_source: logprobs``)."""
    if not hasattr(judge, "verdict_from_logprobs"):
        return  # official (endpoint) judges: an invalid verdict stays invalid, as upstream
    for st in states:
        if st["score"] is None and not st.get("failed") and len(st["conv"]) > 2:
            prefix = st["conv"][2]["content"].rstrip() + " [["
            label = judge.verdict_from_logprobs(st["conv"][:2], prefix, [v + "]]" for v in ah.VERDICTS])
            st["score"], st["verdict_source"] = label[:-2], LOGPROB_VERDICT


def judge_one(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
    """Answers and judgments of one model; scoring is done for all models together (``score_together``)."""
    judge = require_judge(ctx, "arena_hard")
    before = judge.stats.as_dict()
    data = ctx.data.arena_hard()
    cfg = data.judge_config
    work = ctx.work_dir("arena_hard", target.variant)
    wanted = data.questions[:ctx.answer_settings.limit] if ctx.answer_settings.limit else data.questions
    answers, gen_info = arena_hard_answers(target.answerer, data.questions,
                                           under(work, "model_answer", f"{target.name}.jsonl", what="model name"),
                                           target.name, ctx.answer_settings)
    jpath = under(arena_judgment_dir(ctx, target.variant, judge), f"{target.name}.jsonl", what="model name")
    old = {str(r.get("question_id")): r for r in read_jsonl(jpath)} if jpath.exists() else {}
    template = cfg["prompt_template"][0]
    wanted_ids = {str(q["question_id"]) for q in wanted}
    rows: dict[str, dict] = {qid: r for qid, r in old.items() if qid not in wanted_ids}  # beyond --limit: kept
    todo: list[list[dict]] = []
    for q in wanted:
        games = _arena_games(q, answers[str(q["question_id"])], data, template)
        key = judgment_key(judge, [_arena_request(g["conv"], cfg) for g in games])
        if old.get(games[0]["qid"], {}).get("sppo_key") == key:
            rows[games[0]["qid"]] = old[games[0]["qid"]]
        else:
            todo.append([{**g, "key": key} for g in games])
    n_reused = len(rows) - len(old.keys() - wanted_ids)

    def write_rows() -> None:
        write_jsonl(jpath, [rows[str(q["question_id"])] for q in data.questions if str(q["question_id"]) in rows])

    _judge_questions(judge, todo, cfg, rows, write_rows, Failures("arena_hard", target.name), ctx.progress,
                     target.name)
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_config": {k: cfg.get(k) for k in ("judge_model", "baseline_model", "temperature", "max_tokens",
                                                         "regex_pattern", "number_of_judgment_attempts")},
                "prompt_version": prompt_version(ctx),
                "reused": reused_counts(gen_info, n_reused, len(wanted)),
                "data": data.source, "judgments": str(jpath), "answers": str(work / "model_answer")}
    n_lp = sum(g.get("verdict_source") == LOGPROB_VERDICT for qid in wanted_ids if qid in rows
               for g in rows[qid]["games"])
    return SuiteOutcome(suite_result(target, "arena_hard", {}, settings, judge, before),
                        JointFit(tuple(str(q["question_id"]) for q in wanted), n_lp))


def _judge_questions(judge: Judge, todo: list[list[dict]], cfg: dict, rows: dict[str, dict], write_rows,
                     failures: Failures, progress: bool, model: str) -> None:
    """Judge the two games of every question in ``todo`` in chunks, each question's row added to ``rows`` and the
    judgment file rewritten after each chunk; ends with JudgeFailed when a request failed (that question is not
    written: a rerun judges it again)."""
    for start in range(0, len(todo), common.JUDGE_BATCH // 2):
        chunk = todo[start:start + common.JUDGE_BATCH // 2]
        _arena_judge_chunk(judge, [st for pair in chunk for st in pair], cfg, failures, progress)
        _arena_logprob_verdicts(judge, [st for pair in chunk for st in pair])
        for pair in chunk:
            if any(st.get("failed") for st in pair):
                continue
            rows[pair[0]["qid"]] = {"question_id": pair[0]["qid"], "model": model, "judge": judge.model,
                                    "games": [_arena_game(st) for st in pair], "sppo_key": pair[0]["key"]}
        write_rows()
    write_rows()
    failures.raise_if_any()


def arena_judgment_dir(ctx: RunContext, variant: str, judge: Judge) -> Path:
    return under(ctx.work_dir("arena_hard", variant), "model_judgment", judge_label(judge), what="judge model")


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
        jdir = arena_judgment_dir(ctx, variant, judge)
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
    from benchmarks.scoring import read_jsonl_lines

    rows, lines, sources = [], [], []
    for f in ah.judgment_files(jdir, ctx.with_judgments):
        r, ln = read_jsonl_lines(f)
        keep = [i for i, row in enumerate(r) if str(row.get("question_id")) in wanted]
        rows += [r[i] for i in keep]
        lines += [ln[i] for i in keep]
        sources += [str(f)] * len(keep)
    adir = ctx.work_dir("arena_hard", variant) / "model_answer"
    answers = {f.stem: [a for a in read_jsonl(f) if str(a["question_id"]) in wanted] for f in adir.glob("*.jsonl")}
    board = ah.score_judgments(rows, answers=answers, question_ids=wanted, source=sources, lines=lines)
    return board, ah.pooled_judges_note(rows, jdir)


def headline(m: dict[str, Any]) -> str:
    return f"score {figure(m, 'score', 1)}  CI {m.get('CI', 'n/a')}  tokens {m.get('avg_tokens')}"


SUITE = Suite("arena_hard", judge_one, table_spec("arena_hard"), headline, prompt_version, score_together)
