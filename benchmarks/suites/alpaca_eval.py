"""AlpacaEval 2 on one model: answers with the official sampling settings, the weighted gpt-4-1106-preview judge
(one token, top-5 logprobs, ``benchmarks.scoring.alpaca_eval.JUDGE_PARAMS``), the official scores.

Files: ``<results>/alpaca_eval[.<variant>]/<model>/model_outputs.json`` (``{dataset, instruction, output, generator,
sppo_key}`` in evaluation-set order) and ``annotations.json`` (alpaca_eval's format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sppo.errors import UserError
from sppo.files import read_json, write_json

from benchmarks import inputs
from benchmarks.answers import AnswerSettings, ModelAnswerer, reusable
from benchmarks.tables import table_spec
from benchmarks.inputs import alpaca_eval_model_configs
from benchmarks.judge import Judge, JudgeRequest
from benchmarks.judging import Conversation, Item, JsonListFile, JudgedTask, Verdicts, judge_task
from benchmarks.scoring import alpaca_eval as ae
from benchmarks.store import digest
from benchmarks.suites.common import (ModelTarget, RunContext, Suite, SuiteOutcome, figure,
                                      prompt_version as _digest_prompt, require_judge, reused_counts, suite_result)

ALPACA_EVAL_MAX_NEW_TOKENS = 2048
# the SPPO models' AlpacaEval generation (uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml:10-12,
# the same in alpaca_eval's models_configs/SPPO-Mistral7B-PairRM/configs.yaml)
ALPACA_EVAL_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": ALPACA_EVAL_MAX_NEW_TOKENS}
ALPACA_EVAL_SAMPLING_SOURCE = "uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml"

def alpaca_eval_sampling(model_ref: str) -> dict[str, Any]:
    """AlpacaEval generation settings of a model: alpaca_eval's own model config when one names this Hub id
    (``completions_kwargs``: temperature, top_p, max_new_tokens), else the SPPO models' official ones."""
    for name, kw in alpaca_eval_model_configs() if "/" in model_ref else []:
        if kw.get("model_name") == model_ref:
            return {"temperature": float(kw.get("temperature", 0.0)), "top_p": float(kw.get("top_p", 1.0)),
                    "max_new_tokens": int(kw.get("max_new_tokens", ALPACA_EVAL_MAX_NEW_TOKENS)),
                    "source": f"alpaca_eval models_configs/{name}/configs.yaml"}
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
    outputs_path = ctx.layout.model_outputs(target.variant, target.name)
    outputs, gen_info = alpaca_eval_answers(target.answerer, data.examples, outputs_path, target.name,
                                            ctx.answer_settings, target.path)
    ann_path = ctx.layout.annotations(target.variant, target.name)
    annotator = ae.ANNOTATOR if judge.model == ae.JUDGE_MODEL else f"weighted_alpaca_eval[{judge.model}]"
    task = judged_task(data, outputs, target.name, annotator, judge, ann_path)
    judged = judge_task(judge, task, ctx.progress)
    annotations = judged.of(task.items)
    df_gamed = inputs.df_gamed(ctx.df_gamed, ctx.data.data_dir)
    reason = None if df_gamed is not None else (f"{ae.DF_GAMED} unavailable (no local copy, Hub dataset "
                                                f"{ae.HUB_DATASET} unreachable)")
    scored = ae.score_annotations(annotations, df_gamed=df_gamed, source=str(ann_path), lc_unavailable_reason=reason)
    metrics = scored[target.name]
    settings = {"limit": ctx.answer_settings.limit, "n_instructions": len(outputs), "generation": gen_info,
                "annotator": annotator, "judge_params": ae.JUDGE_PARAMS, "data": data.source,
                "prompt_version": prompt_version(ctx),
                "reused": reused_counts(gen_info, judged.n_reused, len(annotations)),
                "annotations": str(ann_path), "model_outputs": str(outputs_path)}
    return SuiteOutcome(suite_result(target, "alpaca_eval", metrics, settings, judge, before))


def judged_task(data, outputs: list[dict], model: str, annotator: str, judge: Judge, ann_path: Path) -> JudgedTask:
    """The judging of every output against the baseline's: one weighted-judge request each (outputs swapped for a
    pseudo-random half, as alpaca_eval), identical outputs decided without a judge (preference 1.5)."""
    baseline = {ex["instruction"]: ex for ex in data.examples}
    items = []
    for out in outputs:
        base = baseline[out["instruction"]]
        record = {"instruction": out["instruction"], "output_1": base["output"],
                  "generator_1": base.get("generator", ae.BASELINE), "dataset": out.get("dataset"),
                  "output_2": out["output"], "generator_2": model, "annotator": annotator}
        if base["output"] == out["output"]:  # identical outputs: 1.5 without a judge call, as alpaca_eval
            pref = ae.annotate_preference(out["instruction"], base["output"], out["output"], None)
            items.append(Item(out["instruction"], decided={**record, **_judged(pref, None, 0.0)}))
            continue
        switched = ae.is_switched_outputs(out["instruction"])
        o1, o2 = (out["output"], base["output"]) if switched else (base["output"], out["output"])
        request = JudgeRequest.make(ae.judge_messages(data.prompt_template, out["instruction"], o1, o2),
                                    **ae.JUDGE_PARAMS)
        items.append(Item(out["instruction"], (request,), (record, switched)))

    def parse(conv: Conversation) -> tuple[Any, bool]:
        rec = conv.item.data[0]
        return ae.annotate_preference(rec["instruction"], rec["output_1"], rec["output_2"],
                                      conv.replies[-1].top_logprobs), False

    def row(item: Item, convs: list[Conversation], key: str) -> dict:
        (rec, switched), reply = item.data, convs[0].replies[-1]
        completion = {"text": reply.text, "top_logprobs": reply.top_logprobs}
        return {**rec, **_judged(convs[0].verdict, completion, judge.cost(reply)), "sppo_key": key,
                "is_switched_outputs": switched}

    order = [out["instruction"] for out in outputs]
    return JudgedTask("alpaca_eval", model, items, Verdicts(parse), row, JsonListFile(ann_path),
                      lambda r: r.get("instruction"), lambda rows: [rows[i] for i in order if i in rows])


def _judged(preference, raw_completion, price: float) -> dict[str, Any]:
    """The annotation fields a judgment fills (alpaca_eval's order)."""
    return {"preference": preference, "raw_completion": raw_completion, "price_per_example": price,
            "time_per_example": 0.0}


def headline(m: dict[str, Any]) -> str:
    return f"LC {figure(m, 'length_controlled_winrate')}  WR {figure(m, 'win_rate')}  len {m.get('avg_length')}"


SUITE = Suite("alpaca_eval", run, table_spec("alpaca_eval"), headline, prompt_version)
