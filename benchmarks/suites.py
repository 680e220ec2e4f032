"""The four suites on one checkpoint: answers -> judgments (official prompts and file formats) -> official scores.

Artifacts live beside the results store, in the official tools' layouts, so those tools could read them too::

    <results>/alpaca_eval[.<variant>]/<model>/model_outputs.json, annotations.json
    <results>/arena_hard[.<variant>]/model_answer/<model>.jsonl
    <results>/arena_hard[.<variant>]/model_judgment/<judge>/<model>.jsonl
    <results>/mt_bench[.<variant>]/model_answer/<model>.jsonl
    <results>/mt_bench[.<variant>]/model_judgment/<judge>_single.jsonl
    <results>/lm_eval/<model>/results.json, results_<task>.json, samples_<task>.jsonl

Judgment files are rewritten atomically after each batch, so an interrupted run keeps its finished judgments.
Every answer and judgment row carries ``sppo_key``, a digest of what produced it (answers: checkpoint, template and
generation settings; judgments: judge identity - backend, base URL, model - and the exact requests, i.e. prompt
version and judged answers). A rerun reuses exactly the rows whose key is current and produces the others; the
judge cache answers repeated requests without a call. A failed judge request is never written: the suite ends
with ``JudgeFailed`` (no result recorded) and the next run asks exactly those requests again. The MT-Bench
judgment file, shared by all models, is updated under a file lock, so concurrent runs lose nothing.
Scores come from ``benchmarks.scoring`` applied to the judgment records exactly as written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sppo.errors import UserError
from sppo.files import read_json, read_jsonl, safe_name, under, write_json, write_jsonl, write_text

from benchmarks.answers import (AnswerSettings, ModelAnswerer, alpaca_eval_answers, arena_hard_answers,
                                mt_bench_answers)
from benchmarks.data import DataSource
from benchmarks.judge import Judge, JudgeReply, JudgeRequest, cache_key, scrub
from benchmarks.store import DEFAULT_VARIANT, SuiteResult, checkpoint_fingerprint, digest

log = logging.getLogger(__name__)

JUDGE_BATCH = 64  # judge requests per batch; the judgment file is rewritten after each


@dataclass
class ModelTarget:
    name: str  # name in the results store (Iter1, or a sanitised Hub id / directory name)
    ref: str  # what the user typed
    path: str  # local checkpoint directory or Hub id
    answerer: ModelAnswerer
    variant: str = DEFAULT_VARIANT

    def checkpoint(self) -> dict[str, Any]:
        return {"path": self.path, "ref": self.ref, "fingerprint": checkpoint_fingerprint(self.path)}


@dataclass
class RunContext:
    results_dir: Path
    data: DataSource
    judges: dict[str, Judge] = field(default_factory=dict)  # suite -> its judge
    answer_settings: AnswerSettings = field(default_factory=AnswerSettings)
    progress: bool = False
    lm_eval_tasks: str = "v1"  # "v1" (Open LLM Leaderboard v1, data from the Hub) or "tiny" (generated here)
    lm_eval_batch_size: int = 4
    df_gamed: str | None = None  # local AlpacaEval df_gamed.csv for LC (else the Hub, else LC is None)
    with_judgments: list[Path] = field(default_factory=list)  # other models' Arena-Hard judgment dirs to co-fit

    def work_dir(self, suite: str, variant: str) -> Path:
        return under(self.results_dir, suite if variant == DEFAULT_VARIANT else f"{suite}.{variant}",
                     what="variant")


class JudgeFailed(Exception):
    """Judge requests of one suite on one model failed (after retries): nothing is recorded as a result, the
    judgments that did succeed are kept, and a rerun sends exactly the failed requests again."""

    def __init__(self, suite: str, model: str, count: int, first_error: str):
        super().__init__(f"{suite} on {model}: {count} judge request{'s' if count != 1 else ''} failed "
                         f"(first: {scrub(first_error)}); no result recorded, rerun the same command to retry them")
        self.suite, self.model, self.count = suite, model, count


class _Failures:
    """Counts failed replies of one suite run; ``raise_if_any`` ends the suite with JudgeFailed."""

    def __init__(self, suite: str, model: str):
        self.suite, self.model, self.count, self.first = suite, model, 0, None

    def check(self, reply: JudgeReply) -> bool:
        """True when the reply is usable; a failed reply is counted."""
        if reply.ok:
            return True
        self.count += 1
        self.first = self.first or reply.error or "unknown error"
        return False

    def raise_if_any(self) -> None:
        if self.count:
            raise JudgeFailed(self.suite, self.model, self.count, self.first)


def judge_label(judge: Judge) -> str:
    """The file-name label of a judge (``org/model`` -> ``org_model``); ``..`` and the like are refused."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", judge.model).strip("_")
    return safe_name(label, f"judge model {judge.model!r}")


def judgment_key(judge: Judge, requests: Sequence[JudgeRequest]) -> str:
    """What produced a judgment: the judge's identity (backend, base URL, model) and the exact requests, which hold
    the prompt version and the judged answers. A stored judgment is reused only under the same key."""
    return digest({"judge": judge.identity(), "requests": [cache_key(judge.identity(), r) for r in requests]})


def prompt_version(*parts: Any) -> str:
    """A digest of a suite's judge prompt (template, system prompt, parameters): recorded with every result."""
    return digest(list(parts))


def suite_prompt_version(ctx: RunContext, suite: str) -> str:
    """A digest of a judged suite's judge prompt and parameters (part of every results key)."""
    from benchmarks.scoring import alpaca_eval as ae
    from benchmarks.scoring import mt_bench as mt

    if suite == "alpaca_eval":
        return prompt_version(ctx.data.alpaca_eval().prompt_template, ae.JUDGE_PARAMS)
    if suite == "arena_hard":
        cfg = ctx.data.arena_hard().judge_config
        return prompt_version(*(cfg.get(k) for k in ("system_prompt", "prompt_template", "regex_pattern",
                                                     "max_tokens", "temperature", "number_of_judgment_attempts")))
    if suite == "mt_bench":
        return prompt_version(ctx.data.mt_bench().judge_prompts, mt.JUDGE_PARAMS)
    raise ValueError(suite)


def _judge_usage(judge: Judge, before: dict[str, Any]) -> dict[str, Any]:
    now = judge.stats.as_dict()
    return {k: (round(now[k] - before[k], 6) if isinstance(now[k], float) else now[k] - before[k]) for k in now}


def _complete_in_batches(judge: Judge, requests: list[JudgeRequest], on_batch, progress: bool) -> None:
    """Send requests in batches; ``on_batch(start, replies)`` persists each batch's results."""
    for start in range(0, len(requests), JUDGE_BATCH):
        replies = judge.complete(requests[start:start + JUDGE_BATCH], progress=progress)
        on_batch(start, replies)


def _require_judge(ctx: RunContext, suite: str) -> Judge:
    judge = ctx.judges.get(suite)
    if judge is None:
        raise UserError(f"{suite} needs a judge: --judge-base-url/--judge-model, or --judge local")
    return judge


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside ``path`` (``<path>.lock``) for read-modify-write of a file that several models (and
    several bench processes) share; waits for another holder."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def replace_model_rows(path: Path, model: str, rows: list[dict], order) -> None:
    """Rewrite a JSONL file shared by several models: this model's rows replaced by ``rows`` (sorted by ``order``),
    everybody else's rows re-read under the lock and kept, so concurrent runs lose nothing."""
    with _locked(path):
        others = [r for r in (read_jsonl(path) if path.exists() else []) if r.get("model") != model]
        write_jsonl(path, others + sorted(rows, key=order))


def _reused_counts(gen_info: dict[str, Any], n_judgments_reused: int, n_judgments: int) -> dict[str, Any]:
    return {"answers": gen_info.get("n_reused", 0), "judgments": n_judgments_reused, "judgments_total": n_judgments}


# --- AlpacaEval 2 ---------------------------------------------------------------------------------------------------

def alpaca_eval(ctx: RunContext, target: ModelTarget) -> SuiteResult:
    from benchmarks.scoring import alpaca_eval as ae

    judge = _require_judge(ctx, "alpaca_eval")
    before = judge.stats.as_dict()
    data = ctx.data.alpaca_eval()
    work = under(ctx.work_dir("alpaca_eval", target.variant), target.name, what="model name")
    outputs, gen_info = alpaca_eval_answers(target.answerer, data.examples, work / "model_outputs.json", target.name,
                                            ctx.answer_settings, target.path)
    baseline = {ex["instruction"]: ex for ex in data.examples}
    ann_path = work / "annotations.json"
    annotator = ae.ANNOTATOR if judge.model == ae.JUDGE_MODEL else f"weighted_alpaca_eval[{judge.model}]"
    existing = {r.get("sppo_key"): r for r in (read_json(ann_path) if ann_path.exists() else [])
                if isinstance(r, dict)}
    annotations: list[dict] = []
    pending: list[tuple[dict, JudgeRequest, bool]] = []  # (record, request, switched)
    for out in outputs:
        base = baseline[out["instruction"]]
        record = {"instruction": out["instruction"], "output_1": base["output"],
                  "generator_1": base.get("generator", ae.BASELINE), "dataset": out.get("dataset"),
                  "output_2": out["output"], "generator_2": target.name, "annotator": annotator,
                  "preference": None, "raw_completion": None, "price_per_example": 0.0, "time_per_example": 0.0}
        if base["output"] == out["output"]:  # identical outputs: 1.5 without a judge call, as alpaca_eval
            record["preference"] = ae.annotate_preference(out["instruction"], base["output"], out["output"], None)
            annotations.append(record)
            continue
        switched = ae.is_switched_outputs(out["instruction"])
        o1, o2 = (out["output"], base["output"]) if switched else (base["output"], out["output"])
        request = JudgeRequest.make(ae.judge_messages(data.prompt_template, out["instruction"], o1, o2),
                                    **ae.JUDGE_PARAMS)
        record["sppo_key"] = judgment_key(judge, [request])
        if record["sppo_key"] in existing:
            annotations.append(existing[record["sppo_key"]])
            continue
        annotations.append(record)
        pending.append((record, request, switched))
    n_reused = len(annotations) - len(pending)
    failures = _Failures("alpaca_eval", target.name)

    def save() -> None:  # failed requests are not written: a rerun asks them again
        write_json(ann_path, [a for a in annotations if a.get("raw_completion") is not None or "sppo_key" not in a])

    def on_batch(start: int, replies: list[JudgeReply]) -> None:
        for (rec, _request, switched), reply in zip(pending[start:start + len(replies)], replies):
            if not failures.check(reply):
                continue
            rec["preference"] = ae.annotate_preference(rec["instruction"], rec["output_1"], rec["output_2"],
                                                       reply.top_logprobs)
            rec["is_switched_outputs"] = switched
            rec["raw_completion"] = {"text": reply.text, "top_logprobs": reply.top_logprobs}
            rec["price_per_example"] = _price(judge, reply)
        save()

    _complete_in_batches(judge, [req for _, req, _ in pending], on_batch, ctx.progress)
    save()
    failures.raise_if_any()
    df_gamed, reason = _df_gamed(ctx)
    scored = ae.score_annotations(annotations, df_gamed=df_gamed, source=str(ann_path), lc_unavailable_reason=reason)
    metrics = scored[target.name]
    settings = {"limit": ctx.answer_settings.limit, "n_instructions": len(outputs), "generation": gen_info,
                "annotator": annotator, "judge_params": ae.JUDGE_PARAMS, "data": data.source,
                "prompt_version": suite_prompt_version(ctx, "alpaca_eval"),
                "reused": _reused_counts(gen_info, n_reused, len(annotations)),
                "annotations": str(ann_path), "model_outputs": str(work / "model_outputs.json")}
    return _result(target, "alpaca_eval", metrics, settings, judge, before)


def _df_gamed(ctx: RunContext):
    from benchmarks.scoring import alpaca_eval as ae

    local = ctx.df_gamed
    if local is None and ctx.data.data_dir is not None:
        candidate = ctx.data.data_dir / "alpaca_eval" / ae.DF_GAMED
        local = str(candidate) if candidate.is_file() else None
    path = ae.hub_file(ae.DF_GAMED, local)
    if path is None:
        return None, f"{ae.DF_GAMED} unavailable (no local copy, Hub dataset {ae.HUB_DATASET} unreachable)"
    return ae.read_df_gamed(path), None


def _price(judge: Judge, reply: JudgeReply) -> float:
    if not judge.price or reply.cached:
        return 0.0
    return (reply.prompt_tokens * judge.price[0] + reply.completion_tokens * judge.price[1]) / 1e6


# --- Arena-Hard v0.1 ------------------------------------------------------------------------------------------------

def _arena_games(q: dict, answer: dict, data, template: str) -> list[dict]:
    from benchmarks.scoring import arena_hard as ah

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
    from benchmarks.scoring import arena_hard as ah

    return JudgeRequest.make(conv, int(cfg.get("max_tokens", ah.JUDGE_PARAMS["max_tokens"])),
                             float(cfg.get("temperature", ah.JUDGE_PARAMS["temperature"])))


def _arena_judge_chunk(judge: Judge, states: list[dict], cfg: dict, failures: _Failures, progress: bool) -> None:
    """Judge the games of a chunk as gen_judgment does: up to number_of_judgment_attempts, continuing the
    conversation (arena-hard-auto gen_judgment.py judgment(): the ``for _ in range(configs[...attempts])`` loop).
    A failed request closes its game as failed (``state["failed"]``)."""
    from benchmarks.scoring import arena_hard as ah

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


LOGPROB_VERDICT = "logprobs"  # verdict_source of a verdict read from a local judge's token probabilities


def _arena_logprob_verdicts(judge: Judge, states: list[dict]) -> None:
    """Local judges only: a game left without a valid label gets the label the judge finds most likely after its
    own text and the official opener ``[[`` (recorded as ``verdict_source: logprobs``)."""
    from benchmarks.scoring import arena_hard as ah

    if not hasattr(judge, "verdict_from_logprobs"):
        return  # official (endpoint) judges: an invalid verdict stays invalid, as upstream
    for st in states:
        if st["score"] is None and not st.get("failed") and len(st["conv"]) > 2:
            prefix = st["conv"][2]["content"].rstrip() + " [["
            label = judge.verdict_from_logprobs(st["conv"][:2], prefix, [v + "]]" for v in ah.VERDICTS])
            st["score"], st["verdict_source"] = label[:-2], LOGPROB_VERDICT


def arena_hard_judge(ctx: RunContext, target: ModelTarget) -> dict[str, Any]:
    """Answers and judgments of one model; scoring is done for all models together (``arena_hard_score``)."""
    judge = _require_judge(ctx, "arena_hard")
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
    failures = _Failures("arena_hard", target.name)

    def write_rows() -> None:
        write_jsonl(jpath, [rows[str(q["question_id"])] for q in data.questions if str(q["question_id"]) in rows])

    for start in range(0, len(todo), JUDGE_BATCH // 2):
        chunk = todo[start:start + JUDGE_BATCH // 2]
        _arena_judge_chunk(judge, [st for pair in chunk for st in pair], cfg, failures, ctx.progress)
        _arena_logprob_verdicts(judge, [st for pair in chunk for st in pair])
        for pair in chunk:
            if any(st.get("failed") for st in pair):
                continue  # not written: a rerun judges this question again
            rows[pair[0]["qid"]] = {"question_id": pair[0]["qid"], "model": target.name, "judge": judge.model,
                                    "games": [_arena_game(st) for st in pair], "sppo_key": pair[0]["key"]}
        write_rows()
    write_rows()
    failures.raise_if_any()
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_config": {k: cfg.get(k) for k in ("judge_model", "baseline_model", "temperature", "max_tokens",
                                                         "regex_pattern", "number_of_judgment_attempts")},
                "prompt_version": suite_prompt_version(ctx, "arena_hard"),
                "reused": _reused_counts(gen_info, n_reused, len(wanted)),
                "data": data.source, "judgments": str(jpath), "answers": str(work / "model_answer")}
    n_lp = sum(g.get("verdict_source") == LOGPROB_VERDICT for qid in wanted_ids if qid in rows
               for g in rows[qid]["games"])
    return {"settings": settings, "usage": _judge_usage(judge, before), "n_logprob_verdicts": n_lp,
            "wanted": [str(q["question_id"]) for q in wanted]}


def arena_judgment_dir(ctx: RunContext, variant: str, judge: Judge) -> Path:
    return under(ctx.work_dir("arena_hard", variant), "model_judgment", judge_label(judge), what="judge model")


def arena_hard_score(ctx: RunContext, targets: Sequence[ModelTarget], judged: dict[str, dict]) -> list[SuiteResult]:
    """Score the judged models with every judgment file of the same judge and variant, fitted together as the
    official show_result does with its judgment directory (files in sorted name order)."""
    from benchmarks.scoring import arena_hard as ah
    from benchmarks.scoring import read_jsonl_lines

    judge = _require_judge(ctx, "arena_hard")
    out = []
    by_variant: dict[str, list[ModelTarget]] = {}
    for t in targets:
        by_variant.setdefault(t.variant, []).append(t)
    for variant, ts in by_variant.items():
        jdir = arena_judgment_dir(ctx, variant, judge)
        wanted = set(judged[ts[0].name]["wanted"])
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
        for t in ts:
            metrics = board.get(t.name)
            if metrics is None:  # no valid verdict at all
                metrics = {"score": None, "notes": ["no valid verdict: every game was dropped"]}
            n_lp = judged[t.name].get("n_logprob_verdicts", 0)
            if n_lp:
                metrics = {**metrics, "n_logprob_verdicts": n_lp,
                           "notes": [*metrics.get("notes", []), f"{n_lp} verdicts read from the local judge's token "
                                     "probabilities (its text had no valid label)"]}
            settings = {**judged[t.name]["settings"], "models_fitted_together": sorted(board)}
            res = _result(t, "arena_hard", metrics, settings, judge, None)
            res.judge["usage"] = judged[t.name]["usage"]
            out.append(res)
    return out


# --- MT-Bench -------------------------------------------------------------------------------------------------------

def mt_bench_judgment_path(ctx: RunContext, variant: str, judge: Judge) -> Path:
    return under(ctx.work_dir("mt_bench", variant), "model_judgment", f"{judge_label(judge)}_single.jsonl",
                 what="judge model")


def _mt_logprob_verdict(judge: Judge, row: dict, msgs: list[dict]) -> dict:
    """Local judges only: a judgment without a rating gets the rating (1-10) the judge finds most likely after its
    text and the official opener ``Rating: [[`` (``verdict_source: logprobs``)."""
    from benchmarks.scoring import mt_bench as mt

    if row["score"] != mt.INVALID or not hasattr(judge, "verdict_from_logprobs"):
        return row
    choices = [f"{r}]]" for r in range(int(mt.RATING_RANGE[0]), int(mt.RATING_RANGE[1]) + 1)]
    rating = judge.verdict_from_logprobs(msgs, row["judgment"].rstrip() + "\n\nRating: [[", choices)
    return {**row, "score": int(rating[:-2]), "verdict_source": LOGPROB_VERDICT}


def mt_bench(ctx: RunContext, target: ModelTarget) -> SuiteResult:
    from benchmarks.scoring import mt_bench as mt

    judge = _require_judge(ctx, "mt_bench")
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
    n_reused = len(mine)
    order = {q["question_id"]: i for i, q in enumerate(data.questions)}
    failures = _Failures("mt_bench", target.name)

    def on_batch(start: int, replies: list[JudgeReply]) -> None:
        for (q, turn, name, msgs, key), reply in zip(pending[start:start + len(replies)], replies):
            if failures.check(reply):
                row = {**mt.judgment_record(q["question_id"], target.name, name, msgs[1]["content"], reply.text,
                                            turn, time.time(), judge=judge.model), "sppo_key": key}
                mine[q["question_id"], turn] = _mt_logprob_verdict(judge, row, msgs)
        replace_model_rows(jpath, target.name, list(mine.values()) + beyond,
                           lambda r: (r["turn"], order.get(r["question_id"], 1 << 30)))

    _complete_in_batches(judge, [JudgeRequest.make(p[3], **mt.JUDGE_PARAMS) for p in pending], on_batch, ctx.progress)
    failures.raise_if_any()
    rows = sorted(mine.values(), key=lambda r: (r["turn"], order.get(r["question_id"], 1 << 30)))
    scored = mt.score_judgments(rows, questions=wanted, source=str(jpath))
    metrics = scored.get(target.name) or {"average": None, "notes": ["no judgments"]}
    metrics.pop("judge", None)
    n_lp = sum(r.get("verdict_source") == LOGPROB_VERDICT for r in rows)
    if n_lp:
        metrics["n_logprob_verdicts"] = n_lp
        metrics["notes"] = [*metrics.get("notes", []), f"{n_lp} ratings read from the local judge's token "
                            "probabilities (its text had no valid rating)"]
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_params": mt.JUDGE_PARAMS, "data": data.source, "judgments": str(jpath),
                "prompt_version": suite_prompt_version(ctx, "mt_bench"),
                "reused": _reused_counts(gen_info, n_reused, 2 * len(wanted)),
                "answers": str(work / "model_answer")}
    return _result(target, "mt_bench", metrics, settings, judge, before)


# --- lm-evaluation-harness ------------------------------------------------------------------------------------------

TINY_TASK = "sppo_tiny_mc"
TINY_FEWSHOT = 2
# A small multiple-choice task written by this project (general knowledge, one correct choice of four).
_TINY_ITEMS = [
    ("What color is the sky on a clear day?", ["blue", "green", "red", "black"], 0),
    ("How many legs does a dog have?", ["two", "four", "six", "eight"], 1),
    ("Which of these is a fruit?", ["carrot", "potato", "apple", "onion"], 2),
    ("What do bees make?", ["milk", "silk", "wool", "honey"], 3),
    ("Which planet do we live on?", ["Earth", "Mars", "Venus", "Jupiter"], 0),
    ("How many days are in a week?", ["five", "seven", "ten", "twelve"], 1),
    ("What is frozen water called?", ["steam", "sand", "ice", "glass"], 2),
    ("Which animal says 'meow'?", ["cow", "dog", "duck", "cat"], 3),
    ("What is two plus two?", ["four", "three", "five", "six"], 0),
    ("Which season is usually the coldest?", ["summer", "winter", "spring", "autumn"], 1),
    ("What do you use to write on paper?", ["spoon", "shoe", "pencil", "cup"], 2),
    ("Which of these can fly?", ["fish", "horse", "snake", "bird"], 3),
    ("What is the opposite of hot?", ["cold", "big", "fast", "loud"], 0),
    ("How many hours are in a day?", ["twelve", "twenty-four", "sixty", "seven"], 1),
    ("Which shape has three sides?", ["square", "circle", "triangle", "hexagon"], 2),
    ("What gas do people need to breathe?", ["helium", "neon", "argon", "oxygen"], 3),
]
_TINY_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
fewshot_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_tiny_task(directory: Path) -> Path:
    """Write the project's small multiple-choice task (YAML + JSONL data) for lm-eval's ``include_path``."""
    data = directory / f"{TINY_TASK}.jsonl"
    write_jsonl(data, [{"question": q, "choices": c, "answer": a} for q, c, a in _TINY_ITEMS])
    write_text(directory / f"{TINY_TASK}.yaml", _TINY_YAML.format(task=TINY_TASK, data=json.dumps(str(data.resolve()))))
    return directory


_LM_EVAL_READY: set[str] = set()


def _quiet_git_hash() -> str | None:
    """lm-eval 0.4.1's ``get_git_commit_hash`` (utils.py:461-472) without git's "fatal: not a git repository" on
    the terminal when the command runs outside a git checkout."""
    import subprocess

    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def _lm_eval_tasks_ready(extra_dir: Path | None) -> None:
    from sppo.compat import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval.evaluator
    import lm_eval.tasks

    lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash

    if "builtin" not in _LM_EVAL_READY:
        lm_eval.tasks.initialize_tasks()
        _LM_EVAL_READY.add("builtin")
    if extra_dir is not None and str(extra_dir) not in _LM_EVAL_READY:
        lm_eval.tasks.include_path(str(extra_dir))
        _LM_EVAL_READY.add(str(extra_dir))


def lm_eval_task_plan(task_set: str) -> dict[str, int]:
    from benchmarks.scoring import lm_eval as le

    if task_set == "v1":
        return {task: shots for task, (_, shots) in le.TASKS.items()}
    if task_set == "tiny":
        return {TINY_TASK: TINY_FEWSHOT}
    raise UserError(f"--lm-eval-tasks: unknown task set {task_set!r}; use v1 or tiny")


def lm_eval_variant(task_set: str) -> str:
    return DEFAULT_VARIANT if task_set == "v1" else "sppo-tiny-mc"


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def lm_eval(ctx: RunContext, target: ModelTarget) -> SuiteResult:
    """``lm_eval.simple_evaluate`` per task with its v1 few-shot count; the harness's results JSON (merged over the
    tasks) and the samples are kept. Each finished task is kept, so a rerun resumes with the next one."""
    import torch

    plan = lm_eval_task_plan(ctx.lm_eval_tasks)
    variant = lm_eval_variant(ctx.lm_eval_tasks)
    work = ctx.work_dir("lm_eval", DEFAULT_VARIANT) / target.name
    extra = write_tiny_task(ctx.results_dir / "lm_eval_tasks") if ctx.lm_eval_tasks == "tiny" else None
    _lm_eval_tasks_ready(extra)
    from lm_eval import simple_evaluate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    limit = ctx.answer_settings.limit
    merged: dict[str, Any] = {"results": {}, "groups": {}, "configs": {}, "versions": {}, "n-shot": {}, "config": {}}
    for task, shots in plan.items():
        tpath = work / f"results_{task}.json"
        run_key = {"model": target.path, "fingerprint": checkpoint_fingerprint(target.path), "num_fewshot": shots,
                   "limit": limit}
        res = read_json(tpath) if tpath.exists() else None
        if res is None or res.get("sppo_run_key") != run_key:
            log.info("lm-eval %s (%d-shot) on %s", task, shots, target.name)
            try:
                res = simple_evaluate(model="hf", model_args=f"pretrained={target.path},dtype={dtype}", tasks=[task],
                                      num_fewshot=shots, batch_size=ctx.lm_eval_batch_size, device=device,
                                      limit=limit, log_samples=True)
            except Exception as e:  # the harness raises plain exceptions (missing dataset, no network, ...)
                raise UserError(f"lm-eval task {task} failed on {target.name}: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from None
            samples = res.pop("samples", {}) or {}
            for name, rows in samples.items():
                text = "".join(json.dumps(r, default=_json_default, ensure_ascii=False) + "\n" for r in rows)
                write_text(work / f"samples_{name}.jsonl", text)
            res["sppo_run_key"] = run_key
            write_text(tpath, json.dumps(res, indent=2, default=_json_default, ensure_ascii=False) + "\n")
        for key in ("results", "groups", "configs", "versions", "n-shot"):
            merged[key].update(res.get(key) or {})
        merged["config"] = res.get("config") or {}
    merged["config"]["num_fewshot"] = plan
    results_path = write_text(work / "results.json", json.dumps(merged, indent=2, default=_json_default) + "\n")
    if ctx.lm_eval_tasks == "v1":
        from benchmarks.scoring import lm_eval as le

        metrics = le.score_results(merged, source=str(results_path))
    else:
        r = merged["results"][TINY_TASK]
        metrics = {TINY_TASK: r["acc_norm,none"] * 100, f"{TINY_TASK}_acc": r["acc,none"] * 100,
                   "average": r["acc_norm,none"] * 100, "n_shot": merged["n-shot"],
                   "notes": [f"{TINY_TASK}: the project's own {len(_TINY_ITEMS)}-question multiple-choice task "
                             "(offline smoke test), not an Open LLM Leaderboard task"]}
    settings = {"task_set": ctx.lm_eval_tasks, "num_fewshot": plan, "limit": limit, "device": device, "dtype": dtype,
                "batch_size": ctx.lm_eval_batch_size, "results_json": str(results_path)}
    res = SuiteResult(model=target.name, suite="lm_eval", metrics=metrics, variant=variant, settings=settings,
                      judge=None, checkpoint=target.checkpoint())
    return res


# --- shared -----------------------------------------------------------------------------------------------------------

def _result(target: ModelTarget, suite: str, metrics: dict[str, Any], settings: dict[str, Any], judge: Judge,
            before: dict[str, Any] | None) -> SuiteResult:
    info = judge.info()
    if before is not None:
        info["usage"] = _judge_usage(judge, before)
    return SuiteResult(model=target.name, suite=suite, metrics=metrics, variant=target.variant, settings=settings,
                       judge=info, checkpoint=target.checkpoint())
