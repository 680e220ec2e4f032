"""Answer generation for the judged suites, with the official settings, in each benchmark's own file format.

- AlpacaEval 2: one answer per instruction with the model's generation config (``generation_config.json``:
  do_sample / temperature / top_p; ``max_new_tokens`` 2048 unless the config says otherwise). File:
  ``model_outputs.json``, a JSON list of ``{dataset, instruction, output, generator}`` in evaluation-set order.
- Arena-Hard v0.1: greedy, at most 4096 new tokens. File: ``<model>.jsonl`` rows ``{question_id, answer_id,
  model_id, choices: [{index: 0, turns: [{content, token_len}]}], tstamp}``; token_len is tiktoken cl100k_base.
- MT-Bench: two turns (the second sees the first answer), per-category temperature as FastChat's
  ``temperature_config`` (greedy below 1e-4), at most 1024 new tokens. File: ``<model>.jsonl`` rows
  ``{question_id, answer_id, model_id, choices: [{index: 0, turns: [t1, t2]}], tstamp}``.

Every file is rewritten atomically after each chunk of items, so an interrupted run keeps what it generated and a
rerun generates only the missing items. ``max_new_tokens`` overrides the suite's limit (quick runs).

Best-of-N: N samples per instruction (sampling at the suite's temperature, 0.7 where the suite is greedy), and the
sample the ranker prefers is the answer: ``sppo.rank.make_ranker(kind, model).compare(prompts, candidates)`` gives
one K x K comparison matrix per prompt, ``sppo.probs.scores_from_comparisons`` the scores, the argmax wins.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sppo.errors import UserError
from sppo.files import read_json, read_jsonl, write_json, write_jsonl
from sppo.generate import SamplingParams

log = logging.getLogger(__name__)

# FastChat llm_judge/common.py temperature_config
MT_BENCH_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
MT_BENCH_DEFAULT_TEMPERATURE = 0.7
MT_BENCH_MAX_NEW_TOKENS = 1024
ARENA_HARD_MAX_NEW_TOKENS = 4096
ALPACA_EVAL_MAX_NEW_TOKENS = 2048
BEST_OF_TEMPERATURE = 0.7  # sampling temperature of best-of-N where the suite itself is greedy
CHUNK = 16


def answer_id() -> str:
    return uuid.uuid4().hex[:22]


class ModelAnswerer:
    """Generates with one checkpoint through sppo.generate (loaded on first use), optionally best-of-N."""

    def __init__(self, model_path: str, backend: str = "hf", batch_size: int = 8, best_of: int = 1,
                 ranker_factory: Callable[[], Any] | None = None, seed: int = 42, progress: bool = False):
        self.model_path = model_path
        self.backend = backend
        self.batch_size = batch_size
        self.best_of = best_of
        self.ranker_factory = ranker_factory
        self.seed = seed
        self.progress = progress
        self._generator = None
        self._ranker = None

    @property
    def generator(self):
        if self._generator is None:
            from sppo.generate import make_generator

            self._generator = make_generator(self.backend, self.model_path, batch_size=self.batch_size)
        return self._generator

    def generation_config(self) -> dict[str, Any]:
        """The model's own sampling settings (generation_config.json), as AlpacaEval's model configs use them."""
        path = Path(self.model_path) / "generation_config.json"
        cfg: dict[str, Any] = {}
        if path.is_file():
            cfg = read_json(path)
        elif not Path(self.model_path).exists():
            try:
                from transformers import GenerationConfig

                cfg = GenerationConfig.from_pretrained(self.model_path).to_dict()
            except Exception:  # no generation config on the Hub either: transformers' defaults
                cfg = {}
        sample = bool(cfg.get("do_sample", False))
        return {"do_sample": sample,
                "temperature": float(cfg.get("temperature") or 1.0) if sample else 0.0,
                "top_p": float(cfg.get("top_p") or 1.0),
                "max_new_tokens": int(cfg.get("max_new_tokens") or ALPACA_EVAL_MAX_NEW_TOKENS)}

    def _rank(self, conversations, candidates: list[list[str]]) -> list[str]:
        import numpy as np

        from sppo.probs import scores_from_comparisons

        if self._ranker is None:
            if self.ranker_factory is None:
                raise UserError("--best-of needs a ranker")
            self._ranker = self.ranker_factory()
        from sppo.rank import checked_compare

        prompts = [c[-1]["content"] if not isinstance(c, str) else c for c in conversations]
        matrices = checked_compare(self._ranker, prompts, candidates)
        return [cands[int(np.argmax(scores_from_comparisons(m)))] for cands, m in zip(candidates, matrices)]

    def answer(self, conversations: Sequence, temperature: float, max_new_tokens: int, top_p: float = 1.0) -> list[str]:
        """One answer per conversation (the ranker's favourite of ``best_of`` samples when best_of > 1)."""
        if not conversations:
            return []
        if self.best_of > 1:
            t = temperature if temperature >= 1e-4 else BEST_OF_TEMPERATURE
            params = SamplingParams(n=self.best_of, temperature=t, top_p=top_p, max_new_tokens=max_new_tokens,
                                    seed=self.seed)
            return self._rank(conversations, self.generator.generate(conversations, params, progress=self.progress))
        t = temperature if temperature >= 1e-4 else 0.0
        params = SamplingParams(n=1, temperature=t, top_p=top_p, max_new_tokens=max_new_tokens, seed=self.seed)
        return [r[0] for r in self.generator.generate(conversations, params, progress=self.progress)]


def default_ranker_factory(kind: str = "pairrm", model: str | None = None) -> Callable[[], Any]:
    def make():
        from sppo.rank import make_ranker

        return make_ranker(kind, model)

    return make


def _chunks(items: list, n: int = CHUNK):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass
class AnswerSettings:
    limit: int | None = None
    max_new_tokens: int | None = None  # overrides each suite's official limit


# --- AlpacaEval ---------------------------------------------------------------------------------------------------

def alpaca_eval_answers(answerer: ModelAnswerer, examples: list[dict], path: Path, generator_name: str,
                        settings: AnswerSettings) -> tuple[list[dict], dict[str, Any]]:
    """``model_outputs.json`` for the first ``limit`` instructions (resumed from ``path``)."""
    wanted = examples[:settings.limit] if settings.limit else examples
    existing = {}
    if path.exists():
        rows = read_json(path)
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of model outputs")
        existing = {r["instruction"]: r for r in rows if isinstance(r, dict) and "instruction" in r}
    gen = answerer.generation_config()
    max_new = settings.max_new_tokens or gen["max_new_tokens"]
    info = {"temperature": gen["temperature"], "top_p": gen["top_p"], "max_new_tokens": max_new,
            "source": "generation_config", "best_of": answerer.best_of}
    todo = [ex for ex in wanted if ex["instruction"] not in existing]

    def ordered() -> list[dict]:
        return [existing[ex["instruction"]] for ex in wanted if ex["instruction"] in existing]

    for chunk in _chunks(todo):
        outs = answerer.answer([[{"role": "user", "content": ex["instruction"]}] for ex in chunk],
                               gen["temperature"], max_new, gen["top_p"])
        for ex, out in zip(chunk, outs):
            existing[ex["instruction"]] = {"dataset": ex.get("dataset", "alpaca_eval"),
                                           "instruction": ex["instruction"], "output": out,
                                           "generator": generator_name}
        # every answer so far (also beyond --limit), in evaluation-set order
        write_json(path, [existing[ex["instruction"]] for ex in examples if ex["instruction"] in existing])
    info["n_generated"] = len(todo)
    return ordered(), info


# --- Arena-Hard ---------------------------------------------------------------------------------------------------

def arena_hard_answers(answerer: ModelAnswerer, questions: list[dict], path: Path, model_id: str,
                       settings: AnswerSettings) -> tuple[dict[str, dict], dict[str, Any]]:
    """``model_answer/<model>.jsonl`` for the first ``limit`` questions: {question_id: record}."""
    from benchmarks.scoring.arena_hard import count_tokens

    wanted = questions[:settings.limit] if settings.limit else questions
    existing = {str(r["question_id"]): r for r in read_jsonl(path)} if path.exists() else {}
    max_new = settings.max_new_tokens or ARENA_HARD_MAX_NEW_TOKENS
    todo = [q for q in wanted if str(q["question_id"]) not in existing]
    for chunk in _chunks(todo):
        outs = answerer.answer([[{"role": "user", "content": q["turns"][0]["content"]}] for q in chunk], 0.0, max_new)
        for q, out in zip(chunk, outs):
            existing[str(q["question_id"])] = {
                "question_id": q["question_id"], "answer_id": answer_id(), "model_id": model_id,
                "choices": [{"index": 0, "turns": [{"content": out, "token_len": count_tokens(out)}]}],
                "tstamp": time.time()}
        write_jsonl(path, existing.values())
    info = {"temperature": 0.0, "max_new_tokens": max_new, "best_of": answerer.best_of, "n_generated": len(todo)}
    return {str(q["question_id"]): existing[str(q["question_id"])] for q in wanted}, info


# --- MT-Bench -----------------------------------------------------------------------------------------------------

def mt_bench_temperature(category: str) -> float:
    return MT_BENCH_TEMPERATURE.get(category, MT_BENCH_DEFAULT_TEMPERATURE)


def mt_bench_answers(answerer: ModelAnswerer, questions: list[dict], path: Path, model_id: str,
                     settings: AnswerSettings) -> tuple[dict[int, dict], dict[str, Any]]:
    """``model_answer/<model>.jsonl`` (two turns) for the first ``limit`` questions: {question_id: record}."""
    wanted = questions[:settings.limit] if settings.limit else questions
    existing = {r["question_id"]: r for r in read_jsonl(path)} if path.exists() else {}
    max_new = settings.max_new_tokens or MT_BENCH_MAX_NEW_TOKENS
    todo = [q for q in wanted if q["question_id"] not in existing]
    for chunk in _chunks(todo):
        by_temp: dict[float, list[dict]] = {}
        for q in chunk:
            by_temp.setdefault(mt_bench_temperature(q["category"]), []).append(q)
        for temp, qs in by_temp.items():
            convs = [[{"role": "user", "content": q["turns"][0]}] for q in qs]
            first = answerer.answer(convs, temp, max_new)
            convs2 = [c + [{"role": "assistant", "content": a}, {"role": "user", "content": q["turns"][1]}]
                      for c, a, q in zip(convs, first, qs)]
            second = answerer.answer(convs2, temp, max_new)
            for q, a1, a2 in zip(qs, first, second):
                existing[q["question_id"]] = {"question_id": q["question_id"], "answer_id": answer_id(),
                                              "model_id": model_id, "choices": [{"index": 0, "turns": [a1, a2]}],
                                              "tstamp": time.time()}
        write_jsonl(path, existing.values())
    info = {"temperature": "per category (FastChat temperature_config)", "max_new_tokens": max_new,
            "best_of": answerer.best_of, "n_generated": len(todo)}
    return {q["question_id"]: existing[q["question_id"]] for q in wanted}, info
