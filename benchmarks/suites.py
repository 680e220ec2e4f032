"""The four suites on one checkpoint: answers -> judgments (official prompts and file formats) -> official scores.

Artifacts live beside the results store, in the official tools' layouts, so those tools could read them too::

    <results>/alpaca_eval[.<variant>]/<model>/model_outputs.json, annotations.json
    <results>/arena_hard[.<variant>]/model_answer/<model>.jsonl
    <results>/arena_hard[.<variant>]/model_judgment/<judge>/<model>.jsonl
    <results>/mt_bench[.<variant>]/model_answer/<model>.jsonl
    <results>/mt_bench[.<variant>]/model_judgment/<judge>_single.jsonl
    <results>/lm_eval/<model>/results.json, results_<task>.json, samples_<task>.jsonl

Judgment files are rewritten atomically after each batch, so an interrupted run keeps its finished judgments; a
rerun judges only what is missing or has no valid verdict (and the judge cache answers repeated requests without a
call). Scores come from ``benchmarks.scoring`` applied to the judgment records exactly as written.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sppo.errors import UserError
from sppo.files import read_json, read_jsonl, write_json, write_jsonl, write_text

from benchmarks.answers import (AnswerSettings, ModelAnswerer, alpaca_eval_answers, arena_hard_answers,
                                mt_bench_answers)
from benchmarks.data import DataSource
from benchmarks.judge import Judge, JudgeReply, JudgeRequest
from benchmarks.store import DEFAULT_VARIANT, SuiteResult, checkpoint_fingerprint

log = logging.getLogger(__name__)

API_ERROR_OUTPUT = "$ERROR$"  # what the official scripts record when the judge API fails after its retries
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
    judge: Judge | None
    answer_settings: AnswerSettings = field(default_factory=AnswerSettings)
    progress: bool = False
    lm_eval_tasks: str = "v1"  # "v1" (Open LLM Leaderboard v1, data from the Hub) or "tiny" (generated here)
    lm_eval_batch_size: int = 4
    df_gamed: str | None = None  # local AlpacaEval df_gamed.csv for LC (else the Hub, else LC is None)

    def work_dir(self, suite: str, variant: str) -> Path:
        return self.results_dir / (suite if variant == DEFAULT_VARIANT else f"{suite}.{variant}")


def safe_name(text: str) -> str:
    """A file-name-safe label (judge names like ``local:embedded`` or ``org/model``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "judge"


def _judge_usage(judge: Judge, before: dict[str, Any]) -> dict[str, Any]:
    now = judge.stats.as_dict()
    return {k: (round(now[k] - before[k], 6) if isinstance(now[k], float) else now[k] - before[k]) for k in now}


def _complete_in_batches(judge: Judge, requests: list[JudgeRequest], on_batch, progress: bool) -> None:
    """Send requests in batches; ``on_batch(start, replies)`` persists each batch's results."""
    for start in range(0, len(requests), JUDGE_BATCH):
        replies = judge.complete(requests[start:start + JUDGE_BATCH], progress=progress)
        on_batch(start, replies)


def _require_judge(ctx: RunContext, suite: str) -> Judge:
    if ctx.judge is None:
        raise UserError(f"{suite} needs a judge: --judge-base-url/--judge-model, or --judge local")
    return ctx.judge


# --- AlpacaEval 2 ---------------------------------------------------------------------------------------------------

ALPACA_JUDGE_PARAMS = {"max_tokens": 1, "temperature": 1.0, "top_logprobs": 5}  # weighted_alpaca_eval_gpt4_turbo


def alpaca_eval(ctx: RunContext, target: ModelTarget) -> SuiteResult:
    from benchmarks.scoring import alpaca_eval as ae

    judge = _require_judge(ctx, "alpaca_eval")
    before = judge.stats.as_dict()
    data = ctx.data.alpaca_eval()
    work = ctx.work_dir("alpaca_eval", target.variant) / target.name
    outputs, gen_info = alpaca_eval_answers(target.answerer, data.examples, work / "model_outputs.json", target.name,
                                            ctx.answer_settings)
    baseline = {ex["instruction"]: ex for ex in data.examples}
    ann_path = work / "annotations.json"
    annotator = ae.ANNOTATOR if judge.model == "gpt-4-1106-preview" else f"weighted_alpaca_eval[{judge.model}]"
    existing: dict[tuple[str, str], dict] = {}
    if ann_path.exists():
        for r in read_json(ann_path):
            existing[r["instruction"], r["output_2"]] = r
    annotations: list[dict | None] = []
    pending: list[tuple[int, dict, str, bool]] = []  # (position, output record, baseline output, switched)
    for i, out in enumerate(outputs):
        base = baseline[out["instruction"]]
        old = existing.get((out["instruction"], out["output"]))
        if old is not None and old.get("preference") is not None and old.get("output_1") == base["output"]:
            annotations.append(old)
            continue
        record = {"instruction": out["instruction"], "output_1": base["output"],
                  "generator_1": base.get("generator", ae.BASELINE), "dataset": out.get("dataset"),
                  "output_2": out["output"], "generator_2": target.name, "annotator": annotator,
                  "preference": None, "raw_completion": None, "price_per_example": 0.0, "time_per_example": 0.0}
        if base["output"] == out["output"]:  # identical outputs: 1.5 without a judge call, as alpaca_eval
            record["preference"] = ae.annotate_preference(out["instruction"], base["output"], out["output"], None)
            annotations.append(record)
            continue
        annotations.append(record)
        pending.append((i, record, base["output"], ae.is_switched_outputs(out["instruction"])))

    def save() -> None:
        write_json(ann_path, [a for a in annotations if a is not None])

    requests = []
    for _, rec, base_out, switched in pending:
        o1, o2 = (rec["output_2"], base_out) if switched else (base_out, rec["output_2"])
        requests.append(JudgeRequest.make(ae.judge_messages(data.prompt_template, rec["instruction"], o1, o2),
                                          **ALPACA_JUDGE_PARAMS))

    def on_batch(start: int, replies: list[JudgeReply]) -> None:
        for (_, rec, base_out, _switched), reply in zip(pending[start:start + len(replies)], replies):
            rec["preference"] = ae.annotate_preference(rec["instruction"], base_out, rec["output_2"],
                                                       reply.top_logprobs if reply.ok else None)
            rec["is_switched_outputs"] = _switched
            rec["raw_completion"] = ({"text": reply.text, "top_logprobs": reply.top_logprobs} if reply.ok
                                     else {"error": reply.error})
            rec["price_per_example"] = _price(judge, reply)
        save()

    _complete_in_batches(judge, requests, on_batch, ctx.progress)
    save()
    records = read_json(ann_path)
    df_gamed, reason = _df_gamed(ctx)
    scored = ae.score_annotations(records, df_gamed=df_gamed, source=str(ann_path), lc_unavailable_reason=reason)
    metrics = scored[target.name]
    settings = {"limit": ctx.answer_settings.limit, "n_instructions": len(outputs), "generation": gen_info,
                "annotator": annotator, "judge_params": ALPACA_JUDGE_PARAMS, "data": data.source,
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

def arena_hard_judge(ctx: RunContext, target: ModelTarget) -> dict[str, Any]:
    """Answers and judgments of one model; scoring is done for all models together (``arena_hard_score``)."""
    from benchmarks.scoring import arena_hard as ah

    judge = _require_judge(ctx, "arena_hard")
    before = judge.stats.as_dict()
    data = ctx.data.arena_hard()
    cfg = data.judge_config
    work = ctx.work_dir("arena_hard", target.variant)
    wanted = data.questions[:ctx.answer_settings.limit] if ctx.answer_settings.limit else data.questions
    answers, gen_info = arena_hard_answers(target.answerer, data.questions, work / "model_answer" / f"{target.name}.jsonl",
                                           target.name, ctx.answer_settings)
    jpath = arena_judgment_dir(ctx, target.variant, judge) / f"{target.name}.jsonl"
    rows = {str(r["question_id"]): r for r in read_jsonl(jpath)} if jpath.exists() else {}
    pattern = re.compile(cfg["regex_pattern"])
    attempts = int(cfg.get("number_of_judgment_attempts", 2))
    template = cfg["prompt_template"][0]
    todo = [q for q in wanted
            if str(q["question_id"]) not in rows
            or any(g.get("score") is None for g in rows[str(q["question_id"])].get("games", []))]
    # state per (question, game): conversation so far, accumulated judgment, verdict, finished?
    games: list[dict] = []
    for q in todo:
        qid = str(q["question_id"])
        if qid not in data.baseline_answers:
            raise UserError(f"{data.source}: no gpt-4-0314 answer for question {qid}")
        for g in range(2):
            msgs = ah.judge_messages(q["turns"][0]["content"], answers[qid]["choices"][0]["turns"][0]["content"],
                                     data.baseline_answers[qid]["choices"][0]["turns"][0]["content"], g,
                                     cfg["system_prompt"], template)
            games.append({"qid": qid, "game": g, "conv": msgs, "judgment": "", "score": None, "open": True})

    def write_rows() -> None:
        write_jsonl(jpath, [rows[str(q["question_id"])] for q in data.questions if str(q["question_id"]) in rows])

    by_q: dict[str, list[dict]] = {}
    for st in games:
        by_q.setdefault(st["qid"], []).append(st)
    for start in range(0, len(todo), JUDGE_BATCH // 2):
        chunk = [by_q[str(q["question_id"])] for q in todo[start:start + JUDGE_BATCH // 2]]
        states = [st for pair in chunk for st in pair]
        for _ in range(attempts):  # gen_judgment: up to number_of_judgment_attempts, continuing the conversation
            live = [st for st in states if st["open"]]
            if not live:
                break
            replies = judge.complete([JudgeRequest.make(st["conv"], int(cfg.get("max_tokens", 4096)),
                                                        float(cfg.get("temperature", 0))) for st in live],
                                     progress=ctx.progress)
            for st, reply in zip(live, replies):
                new = reply.text if reply.ok and reply.text is not None else API_ERROR_OUTPUT
                st["judgment"] += "\n" + new
                st["score"], try_again = ah.parse_verdict(st["judgment"], pattern)
                st["conv"] = st["conv"] + [{"role": "assistant", "content": new}]
                if not try_again:
                    st["open"] = False
                else:
                    st["conv"] = st["conv"] + [{"role": "user", "content": ah.CONTINUE_PROMPT}]
        for pair in chunk:
            qid = pair[0]["qid"]
            rows[qid] = {"question_id": qid, "model": target.name, "judge": judge.model,
                         "games": [{"user_prompt": st["conv"][1]["content"], "judgment": st["judgment"],
                                    "score": st["score"]} for st in sorted(pair, key=lambda s: s["game"])]}
        write_rows()
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_config": {k: cfg.get(k) for k in ("judge_model", "baseline_model", "temperature", "max_tokens",
                                                         "regex_pattern", "number_of_judgment_attempts")},
                "data": data.source, "judgments": str(jpath), "answers": str(work / "model_answer")}
    return {"settings": settings, "usage": _judge_usage(judge, before), "wanted": [str(q["question_id"]) for q in wanted]}


def arena_judgment_dir(ctx: RunContext, variant: str, judge: Judge) -> Path:
    return ctx.work_dir("arena_hard", variant) / "model_judgment" / safe_name(judge.model)


def arena_hard_score(ctx: RunContext, targets: Sequence[ModelTarget], judged: dict[str, dict]) -> list[SuiteResult]:
    """Score the judged models with every judgment file of the same judge and variant, fitted together as the
    official show_result does with its judgment directory."""
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
        for f in sorted(jdir.glob("*.jsonl")):
            r, ln = read_jsonl_lines(f)
            keep = [i for i, row in enumerate(r) if str(row.get("question_id")) in wanted]
            rows += [r[i] for i in keep]
            lines += [ln[i] for i in keep]
            sources.append(str(f))
        adir = ctx.work_dir("arena_hard", variant) / "model_answer"
        answers = {f.stem: [a for a in read_jsonl(f) if str(a["question_id"]) in wanted] for f in adir.glob("*.jsonl")}
        board = ah.score_judgments(rows, answers=answers, question_ids=wanted,
                                   source=str(jdir) if len(sources) != 1 else sources[0], lines=lines)
        for t in ts:
            metrics = board.get(t.name)
            if metrics is None:  # no valid verdict at all
                metrics = {"score": None, "notes": ["no valid verdict: every game was dropped"]}
            settings = {**judged[t.name]["settings"], "models_fitted_together": sorted(board)}
            res = _result(t, "arena_hard", metrics, settings, judge, None)
            res.judge["usage"] = judged[t.name]["usage"]
            out.append(res)
    return out


# --- MT-Bench -------------------------------------------------------------------------------------------------------

MT_JUDGE_PARAMS = {"max_tokens": 2048, "temperature": 0.0}  # FastChat run_judge_single


def mt_bench_judgment_path(ctx: RunContext, variant: str, judge: Judge) -> Path:
    return ctx.work_dir("mt_bench", variant) / "model_judgment" / f"{safe_name(judge.model)}_single.jsonl"


def mt_bench(ctx: RunContext, target: ModelTarget) -> SuiteResult:
    from benchmarks.scoring import mt_bench as mt

    judge = _require_judge(ctx, "mt_bench")
    before = judge.stats.as_dict()
    data = ctx.data.mt_bench()
    work = ctx.work_dir("mt_bench", target.variant)
    wanted = data.questions[:ctx.answer_settings.limit] if ctx.answer_settings.limit else data.questions
    answers, gen_info = mt_bench_answers(target.answerer, data.questions, work / "model_answer" / f"{target.name}.jsonl",
                                         target.name, ctx.answer_settings)
    jpath = mt_bench_judgment_path(ctx, target.variant, judge)
    all_rows = read_jsonl(jpath) if jpath.exists() else []
    mine = {(r["question_id"], r["turn"]): r for r in all_rows if r.get("model") == target.name}
    others = [r for r in all_rows if r.get("model") != target.name]
    pending: list[tuple[dict, int, str, list[dict]]] = []
    for q in wanted:
        for turn in (1, 2):
            old = mine.get((q["question_id"], turn))
            if old is not None and old.get("score") != mt.INVALID:
                continue
            ref = data.references.get(q["question_id"])
            ref_turns = ref["choices"][0]["turns"] if ref else None
            name, msgs = mt.judge_messages(q, answers[q["question_id"]]["choices"][0]["turns"], turn,
                                           data.judge_prompts, ref_turns)
            pending.append((q, turn, name, msgs))

    def write_rows() -> None:
        order = {q["question_id"]: i for i, q in enumerate(data.questions)}
        mine_sorted = sorted(mine.values(), key=lambda r: (r["turn"], order.get(r["question_id"], 1 << 30)))
        write_jsonl(jpath, others + mine_sorted)

    requests = [JudgeRequest.make(msgs, **MT_JUDGE_PARAMS) for _, _, _, msgs in pending]

    def on_batch(start: int, replies: list[JudgeReply]) -> None:
        for (q, turn, name, msgs), reply in zip(pending[start:start + len(replies)], replies):
            text = reply.text if reply.ok and reply.text is not None else API_ERROR_OUTPUT
            mine[q["question_id"], turn] = mt.judgment_record(q["question_id"], target.name, name, msgs[1]["content"],
                                                              text, turn, time.time(), judge=judge.model)
        write_rows()

    _complete_in_batches(judge, requests, on_batch, ctx.progress)
    ids = {q["question_id"] for q in wanted}
    rows = [r for r in read_jsonl(jpath) if r.get("model") == target.name and r["question_id"] in ids]
    scored = mt.score_judgments(rows, questions=wanted, source=str(jpath))
    metrics = scored.get(target.name) or {"average": None, "notes": ["no judgments"]}
    metrics.pop("judge", None)
    settings = {"limit": ctx.answer_settings.limit, "n_questions": len(wanted), "generation": gen_info,
                "judge_params": MT_JUDGE_PARAMS, "data": data.source, "judgments": str(jpath),
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


def _lm_eval_tasks_ready(extra_dir: Path | None) -> None:
    from sppo.compat import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval.tasks

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
