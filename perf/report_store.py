"""A synthetic results store of any size, in the layout and official file formats `sppo-bench` writes (AlpacaEval
annotations and model outputs, Arena-Hard answers and two-game judgments, MT-Bench answers and FastChat
judgments, one result JSON per model and suite), for the report's tests and its timing (`perf/bench_report.py`).

The questions, categories and baseline answers are the benchmarks' own (a data directory such as
``../shared/data``). The checkpoints' answers and the judge's texts are real model outputs from that directory
(the published SPPO model's and the baselines' AlpacaEval and Arena-Hard outputs), dealt round-robin so that no
two cells of one prompt share a text: their lengths and compressibility are those of real answers. Verdicts come
from a seeded generator (a slight edge per iteration); ``one_verdict`` makes the judge give one verdict to
everything, as a judge that tells nothing apart does. Figures are computed from those verdicts by the official
scoring (``benchmarks.scoring``), except AlpacaEval's LC win rate, which needs ``df_gamed.csv`` (not available
offline): it is set to the win rate minus 2, a stand-in marked in the result's notes."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sppo.files import read_json, read_jsonl, write_json, write_jsonl

from benchmarks.data import (ALPACA_BASELINE_FILE, ALPACA_DIR, ARENA_BASELINE, ARENA_CONFIG, ARENA_DIR, ARENA_QUESTIONS,
                             MT_DIR, MT_QUESTIONS)
from benchmarks.scoring import alpaca_eval as ae
from benchmarks.scoring import arena_hard as ah
from benchmarks.scoring import mt_bench as mt
from benchmarks.store import ResultsStore, StoreLayout, SuiteResult

Answer = Callable[[str, int, int, int], str]  # (suite, model index, item index, turn) -> answer text


@dataclass(frozen=True)
class StoreSpec:
    models: tuple[str, ...] = ("Iter1", "Iter2", "Iter3")
    alpaca: int = 805
    arena: int = 500
    mt: int = 80
    judge: str = "gpt-4-1106-preview"
    one_verdict: bool = False
    seed: int = 0
    answer: Answer | None = None  # default: real outputs dealt round-robin
    bootstrap_rounds: int = ah.NUM_ROUNDS  # Arena-Hard's CI (the tests take fewer)


class Texts:
    """Real outputs of ``data_dir``, dealt so that neighbouring cells never share one."""

    def __init__(self, data_dir: Path):
        sppo = data_dir / ALPACA_DIR / "SPPO-Mistral7B-PairRM.model_outputs.json"
        pool = [r["output"] for r in read_json(sppo)] if sppo.is_file() else []
        pool += [r["output"] for r in read_json(data_dir / ALPACA_DIR / ALPACA_BASELINE_FILE)]
        pool += [a["choices"][0]["turns"][0]["content"] for a in read_jsonl(data_dir / ARENA_DIR / ARENA_BASELINE)]
        self.pool = pool

    def pick(self, suite: str, model: int, item: int, turn: int, cap: int | None = None) -> str:
        salt = {"alpaca_eval": 0, "arena_hard": 401, "mt_bench": 803, "judge": 1201}.get(suite, 0)
        text = self.pool[(item * 7 + model * 131 + turn * 17 + salt) % len(self.pool)]
        return text[:cap] if cap else text


def _result(model: str, suite: str, metrics: dict, settings: dict, judge: str) -> SuiteResult:
    return SuiteResult(model=model, suite=suite, metrics=metrics, settings=settings,
                       judge={"backend": "openai", "model": judge, "base_url": "https://api.openai.com/v1"},
                       checkpoint={"path": f"/synthetic/{model}", "fingerprint": None})


def alpaca(root: Path, data_dir: Path, spec: StoreSpec, answer: Answer, texts: Texts) -> list[SuiteResult]:
    examples = read_json(data_dir / ALPACA_DIR / ALPACA_BASELINE_FILE)[:spec.alpaca]
    out = []
    for k, model in enumerate(spec.models):
        rng = random.Random(spec.seed * 1000 + k)
        records = []
        for i, ex in enumerate(examples):
            p = 1.5 if spec.one_verdict else 1 + min(1.0, max(0.0, rng.gauss(0.3 + 0.08 * k, 0.3)))
            token = "M" if p > 1.5 else "m"
            records.append({"instruction": ex["instruction"], "output_1": ex["output"],
                            "generator_1": ex.get("generator", ae.BASELINE), "dataset": ex.get("dataset"),
                            "output_2": answer("alpaca_eval", k, i, 0), "generator_2": model,
                            "annotator": ae.ANNOTATOR, "preference": p, "is_switched_outputs": False,
                            "raw_completion": {"text": token, "top_logprobs": [{"token": token, "logprob": -0.3}]},
                            "price_per_example": 0.0, "time_per_example": 0.0})
        outputs = StoreLayout(root).model_outputs("default", model)
        annotations = StoreLayout(root).annotations("default", model)
        write_json(outputs, [{"dataset": r["dataset"], "instruction": r["instruction"], "output": r["output_2"],
                              "generator": model} for r in records])
        write_json(annotations, records)
        metrics = ae.score_annotations(records, lc_unavailable_reason="synthetic store")[model]
        metrics.update(length_controlled_winrate=max(0.0, metrics["win_rate"] - 2), lc_standard_error=1.0,
                       notes=["synthetic store: the LC win rate is a stand-in (win rate - 2)"])
        out.append(_result(model, "alpaca_eval", metrics, {
            "limit": spec.alpaca if spec.alpaca < 805 else None, "n_instructions": len(records),
            "annotations": str(annotations), "model_outputs": str(outputs),
            "data": str(data_dir / ALPACA_DIR), "annotator": ae.ANNOTATOR}, spec.judge))
    return out


def _arena_label(rng: random.Random, k: int, game: int, one: bool) -> str:
    if one:
        return "A=B"
    view = rng.choices(range(5), weights=[3 - 0.5 * k, 3, 2, 2 + 0.5 * k, 1 + 0.5 * k])[0]  # much worse..much better
    labels = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]  # game 1: the model is B
    return labels[view] if game == 0 else labels[4 - view]


def arena(root: Path, data_dir: Path, spec: StoreSpec, answer: Answer, texts: Texts) -> list[SuiteResult]:
    import yaml

    questions = read_jsonl(data_dir / ARENA_DIR / ARENA_QUESTIONS)[:spec.arena]
    baseline = {a["question_id"]: a for a in read_jsonl(data_dir / ARENA_DIR / ARENA_BASELINE)}
    template = yaml.safe_load((data_dir / ARENA_DIR / ARENA_CONFIG).read_text())["prompt_template"][0]
    store = StoreLayout(root)
    rows_all, answers_all, settings = [], {}, {}
    for k, model in enumerate(spec.models):
        rng = random.Random(spec.seed * 1000 + 100 + k)
        answers, rows = [], []
        for i, q in enumerate(questions):
            text = answer("arena_hard", k, i, 0)
            answers.append({"question_id": q["question_id"], "answer_id": f"{model}-{i}", "model_id": model,
                            "choices": [{"index": 0, "turns": [{"content": text, "token_len": len(text) // 4}]}],
                            "tstamp": time.time()})
            base = baseline[q["question_id"]]["choices"][0]["turns"][0]["content"]
            games = []
            for g in range(2):
                label = _arena_label(rng, k, g, spec.one_verdict)
                a1, a2 = (base, text) if g == 0 else (text, base)
                games.append({"user_prompt": template.format(question_1=q["turns"][0]["content"], answer_1=a1,
                                                             answer_2=a2),
                              "judgment": texts.pick("judge", k, i, g, 1800) + f"\n\nMy final verdict is [[{label}]]",
                              "score": label})
            rows.append({"question_id": q["question_id"], "model": model, "judge": spec.judge, "games": games})
        write_jsonl(store.answers("arena_hard", "default", model), answers)
        write_jsonl(store.judgments("arena_hard", "default", spec.judge, model), rows)
        rows_all += rows
        answers_all[model] = answers
        settings[model] = {"limit": spec.arena if spec.arena < 500 else None, "n_questions": len(questions),
                           "judgments": str(store.judgments("arena_hard", "default", spec.judge, model)),
                           "answers": str(store.answers_dir("arena_hard", "default")),
                           "data": str(data_dir / ARENA_DIR)}
    board = ah.score_judgments(rows_all, answers=answers_all, question_ids={str(q["question_id"]) for q in questions},
                               num_rounds=spec.bootstrap_rounds)
    return [_result(m, "arena_hard", board[m], settings[m], spec.judge) for m in spec.models]


def mt_bench(root: Path, data_dir: Path, spec: StoreSpec, answer: Answer, texts: Texts) -> list[SuiteResult]:
    questions = read_jsonl(data_dir / MT_DIR / MT_QUESTIONS)[:spec.mt]
    store = StoreLayout(root)
    jpath, adir = store.shared_judgments("mt_bench", "default", "gpt-4"), store.answers_dir("mt_bench", "default")
    rows, out = [], []
    for k, model in enumerate(spec.models):
        rng = random.Random(spec.seed * 1000 + 200 + k)
        answers = []
        for i, q in enumerate(questions):
            turns = [answer("mt_bench", k, i, t) for t in (0, 1)]
            answers.append({"question_id": q["question_id"], "answer_id": f"{model}-{i}", "model_id": model,
                            "choices": [{"index": 0, "turns": turns}], "tstamp": time.time()})
            for t in (1, 2):
                rating = 5 if spec.one_verdict else min(10, max(1, rng.randint(2, 8) + k))
                text = texts.pick("judge", k, i, t + 2, 700) + f"\n\nRating: [[{rating}]]"
                rows.append(mt.judgment_record(q["question_id"], model, "single-v1", q["turns"][t - 1], text, t,
                                               time.time(), judge="gpt-4"))
        write_jsonl(store.answers("mt_bench", "default", model), answers)
        mine = [r for r in rows if r["model"] == model]
        metrics = mt.score_judgments(mine, questions=questions)[model]
        metrics.pop("judge", None)
        out.append(_result(model, "mt_bench", metrics, {
            "limit": spec.mt if spec.mt < 80 else None, "n_questions": len(questions), "judgments": str(jpath),
            "answers": str(adir), "data": str(data_dir / MT_DIR)}, "gpt-4"))
    write_jsonl(jpath, rows)
    return out


def lm_eval(spec: StoreSpec) -> list[SuiteResult]:
    tasks = ("arc_challenge", "truthfulqa_mc2", "winogrande", "gsm8k", "hellaswag", "mmlu")
    out = []
    for k, model in enumerate(spec.models):
        m = {t: 40.0 + 3 * i + 0.5 * k for i, t in enumerate(tasks)}
        m.update(mmlu_unweighted=m["mmlu"] - 0.3, average=sum(m[t] for t in tasks) / len(tasks))
        out.append(SuiteResult(model=model, suite="lm_eval", metrics=m, settings={"task_set": "v1", "limit": None},
                               checkpoint={"path": f"/synthetic/{model}", "fingerprint": None}))
    return out


def build_store(root: Path, data_dir: Path, spec: StoreSpec = StoreSpec()) -> ResultsStore:
    """Write the store under ``root`` (answers, judgments, results) and return it."""
    texts = Texts(Path(data_dir))
    caps = {"mt_bench": 1200}
    answer = spec.answer or (lambda suite, k, i, t: texts.pick(suite, k, i, t, caps.get(suite)))
    store = ResultsStore(root)
    for build in (alpaca, arena, mt_bench):
        for r in build(Path(root), Path(data_dir), spec, answer, texts):
            store.write(r)
    for r in lm_eval(spec):
        store.write(r)
    return store
