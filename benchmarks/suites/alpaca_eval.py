"""AlpacaEval 2 on one model: answers with the official sampling settings, the weighted gpt-4-1106-preview judge
(one token, top-5 logprobs, ``benchmarks.scoring.alpaca_eval.JUDGE_PARAMS``), the official scores.

Files: ``<results>/alpaca_eval[.<variant>]/<model>/model_outputs.json`` (``{dataset, instruction, output, generator,
sppo_key}`` in evaluation-set order) and ``annotations.json`` (alpaca_eval's format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sppo.errors import UserError
from sppo.files import read_json, under, write_json

from benchmarks.answers import AnswerSettings, ModelAnswerer, reusable
from benchmarks.judge import Judge, JudgeReply, JudgeRequest
from benchmarks.scoring import alpaca_eval as ae
from benchmarks.card_layout import table_spec
from benchmarks.store import digest
from benchmarks.suites.common import (Failures, ModelTarget, RunContext, Suite, SuiteOutcome, complete_in_batches,
                                      figure, judgment_key, prompt_version as _digest_prompt, require_judge,
                                      reused_counts, suite_result)

ALPACA_EVAL_MAX_NEW_TOKENS = 2048
# the SPPO models' AlpacaEval generation (uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml:10-12,
# the same in alpaca_eval's models_configs/SPPO-Mistral7B-PairRM/configs.yaml)
ALPACA_EVAL_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": ALPACA_EVAL_MAX_NEW_TOKENS}
ALPACA_EVAL_SAMPLING_SOURCE = "uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml"

def alpaca_eval_sampling(model_ref: str) -> dict[str, Any]:
    """AlpacaEval generation settings of a model: alpaca_eval's own model config when one names this Hub id
    (``completions_kwargs``: temperature, top_p, max_new_tokens), else the SPPO models' official ones."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("alpaca_eval")
    root = Path(spec.origin).parent / "models_configs" if spec and spec.origin else None
    for cfg_path in sorted(root.glob("*/configs.yaml")) if root and "/" in model_ref else []:
        try:
            cfg = next(iter((yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}).values()))
            kw = cfg.get("completions_kwargs") or {}
        except (yaml.YAMLError, StopIteration, AttributeError):
            continue
        if kw.get("model_name") == model_ref:
            return {"temperature": float(kw.get("temperature", 0.0)), "top_p": float(kw.get("top_p", 1.0)),
                    "max_new_tokens": int(kw.get("max_new_tokens", ALPACA_EVAL_MAX_NEW_TOKENS)),
                    "source": f"alpaca_eval models_configs/{cfg_path.parent.name}/configs.yaml"}
    return {**ALPACA_EVAL_SAMPLING, "source": ALPACA_EVAL_SAMPLING_SOURCE}


def alpaca_eval_answers(answerer: ModelAnswerer, examples: list[dict], path: Path, generator_name: str,
                        settings: AnswerSettings, model_ref: str = "") -> tuple[list[dict], dict[str, Any]]:
    """``model_outputs.json`` for the first ``limit`` instructions (resumed from ``path``)."""
    wanted = examples[:settings.limit] if settings.limit else examples
    rows = read_json(path) if path.exists() else []
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON list of model outputs")
    gen = alpaca_eval_sampling(model_ref)
    if settings.alpaca_eval_temperature is not None or settings.alpaca_eval_top_p is not None:
        gen["source"] = "command line"
    temperature = settings.alpaca_eval_temperature if settings.alpaca_eval_temperature is not None else gen["temperature"]
    top_p = settings.alpaca_eval_top_p if settings.alpaca_eval_top_p is not None else gen["top_p"]
    max_new = settings.max_new_tokens or gen["max_new_tokens"]
    info = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new, "source": gen["source"]}
    key = digest({**answerer.identity(), **info, "suite": "alpaca_eval"})
    existing = reusable({r.get("instruction"): r for r in rows if isinstance(r, dict)}, key)
    todo = [ex for ex in wanted if ex["instruction"] not in existing]
    outs = answerer.answer([[{"role": "user", "content": ex["instruction"]}] for ex in todo],
                           temperature, max_new, top_p)
    for ex, out in zip(todo, outs):
        existing[ex["instruction"]] = {"dataset": ex.get("dataset", "alpaca_eval"), "instruction": ex["instruction"],
                                       "output": out, "generator": generator_name, "sppo_key": key}
    if todo:  # every current answer (also beyond --limit), in evaluation-set order
        write_json(path, [existing[ex["instruction"]] for ex in examples if ex["instruction"] in existing])
    info.update(best_of=answerer.best_of, n_generated=len(todo), n_reused=len(wanted) - len(todo), key=key,
                engine=answerer.engine())
    return [existing[ex["instruction"]] for ex in wanted], info


def prompt_version(ctx: RunContext) -> str:
    """The judge prompt and parameters (part of every results key)."""
    return _digest_prompt(ctx.data.alpaca_eval().prompt_template, ae.JUDGE_PARAMS)


def run(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
    judge = require_judge(ctx, "alpaca_eval")
    before = judge.stats.as_dict()
    data = ctx.data.alpaca_eval()
    work = under(ctx.work_dir("alpaca_eval", target.variant), target.name, what="model name")
    outputs, gen_info = alpaca_eval_answers(target.answerer, data.examples, work / "model_outputs.json", target.name,
                                            ctx.answer_settings, target.path)
    ann_path = work / "annotations.json"
    annotator = ae.ANNOTATOR if judge.model == ae.JUDGE_MODEL else f"weighted_alpaca_eval[{judge.model}]"
    annotations, pending = _annotation_plan(data, outputs, target.name, annotator, judge, ann_path)
    n_reused = len(annotations) - len(pending)
    _annotate(judge, annotations, pending, ann_path, Failures("alpaca_eval", target.name), ctx.progress)
    df_gamed, reason = _df_gamed(ctx)
    scored = ae.score_annotations(annotations, df_gamed=df_gamed, source=str(ann_path), lc_unavailable_reason=reason)
    metrics = scored[target.name]
    settings = {"limit": ctx.answer_settings.limit, "n_instructions": len(outputs), "generation": gen_info,
                "annotator": annotator, "judge_params": ae.JUDGE_PARAMS, "data": data.source,
                "prompt_version": prompt_version(ctx),
                "reused": reused_counts(gen_info, n_reused, len(annotations)),
                "annotations": str(ann_path), "model_outputs": str(work / "model_outputs.json")}
    return SuiteOutcome(suite_result(target, "alpaca_eval", metrics, settings, judge, before))


def _annotation_plan(data, outputs: list[dict], model: str, annotator: str, judge: Judge,
                     ann_path: Path) -> tuple[list[dict], list[tuple[dict, JudgeRequest, bool]]]:
    """Every output's annotation record, in order - reused from ``annotations.json`` under the same key, decided
    without a judge (identical outputs), or new - and the (record, request, switched) of those still to judge."""
    baseline = {ex["instruction"]: ex for ex in data.examples}
    existing = {r.get("sppo_key"): r for r in (read_json(ann_path) if ann_path.exists() else [])
                if isinstance(r, dict)}
    annotations: list[dict] = []
    pending: list[tuple[dict, JudgeRequest, bool]] = []
    for out in outputs:
        base = baseline[out["instruction"]]
        record = {"instruction": out["instruction"], "output_1": base["output"],
                  "generator_1": base.get("generator", ae.BASELINE), "dataset": out.get("dataset"),
                  "output_2": out["output"], "generator_2": model, "annotator": annotator,
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
    return annotations, pending


def _annotate(judge: Judge, annotations: list[dict], pending: list[tuple[dict, JudgeRequest, bool]],
              ann_path: Path, failures: Failures, progress: bool) -> None:
    """Judge the pending records in batches, ``annotations.json`` rewritten after each; ends with JudgeFailed when
    a request failed (failed requests are not written: a rerun asks them again)."""
    def save() -> None:
        write_json(ann_path, [a for a in annotations if a.get("raw_completion") is not None or "sppo_key" not in a])

    def on_batch(start: int, replies: list[JudgeReply]) -> None:
        for (rec, _request, switched), reply in zip(pending[start:start + len(replies)], replies):
            if not failures.check(reply):
                continue
            rec["preference"] = ae.annotate_preference(rec["instruction"], rec["output_1"], rec["output_2"],
                                                       reply.top_logprobs)
            rec["is_switched_outputs"] = switched
            rec["raw_completion"] = {"text": reply.text, "top_logprobs": reply.top_logprobs}
            rec["price_per_example"] = judge.cost(reply)
        save()

    complete_in_batches(judge, [req for _, req, _ in pending], on_batch, progress)
    save()
    failures.raise_if_any()


def _df_gamed(ctx: RunContext):
    local = ctx.df_gamed
    if local is None and ctx.data.data_dir is not None:
        candidate = ctx.data.data_dir / "alpaca_eval" / ae.DF_GAMED
        local = str(candidate) if candidate.is_file() else None
    path = ae.hub_file(ae.DF_GAMED, local)
    if path is None:
        return None, f"{ae.DF_GAMED} unavailable (no local copy, Hub dataset {ae.HUB_DATASET} unreachable)"
    return ae.read_df_gamed(path), None


def headline(m: dict[str, Any]) -> str:
    return f"LC {figure(m, 'length_controlled_winrate')}  WR {figure(m, 'win_rate')}  len {m.get('avg_length')}"


SUITE = Suite("alpaca_eval", run, table_spec("alpaca_eval"), headline, prompt_version)
