"""Answer generation for the judged suites, with the official settings, in each benchmark's own file format.

- AlpacaEval 2: one answer per instruction with the sampling settings of alpaca_eval's own model config when the
  model has one (``alpaca_eval/models_configs/*/configs.yaml`` whose ``completions_kwargs.model_name`` is the
  model's Hub id), otherwise those of the SPPO models' official config (T=0.7, top_p 0.9, 2048 new tokens:
  uclaml/SPPO ``models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml``:10-12); flags override. File:
  ``model_outputs.json``, a JSON list of ``{dataset, instruction, output, generator, sppo_key}``.
- Arena-Hard v0.1: greedy, at most 4096 new tokens less the question's tokens and 300 (gen_answer.py's cap for
  local models). File: ``<model>.jsonl`` rows ``{question_id, answer_id,
  model_id, choices: [{index: 0, turns: [{content, token_len}]}], tstamp}``; token_len is tiktoken cl100k_base.
- MT-Bench: two turns (the second sees the first answer), per-category temperature as FastChat's
  ``temperature_config`` (greedy below 1e-4), at most 1024 new tokens, the prompt rendered with FastChat's
  conversation template for the model where FastChat has one (``--chat-template fastchat``, the default; the
  template is looked up by the base model's name, as gen_model_answer.py looks it up by model id), else the
  checkpoint's own chat template (``--chat-template hf``). File: ``<model>.jsonl`` rows
  ``{question_id, answer_id, model_id, choices: [{index: 0, turns: [t1, t2]}], tstamp}``.

Every file is rewritten atomically after each chunk of items, so an interrupted run keeps what it generated and a
rerun generates only the missing items. ``max_new_tokens`` overrides the suite's limit (quick runs).

Every answer row carries ``sppo_key``, a digest of what produced it (checkpoint fingerprint, chat template,
backend, seed, best-of and ranker, and the suite's generation settings). A row is reused only when its key is the
current one; any other row is generated again (a retrained checkpoint or a new ``--max-new-tokens`` never reuses
an old answer). The official tools ignore the extra field.

Best-of-N: N samples per instruction (sampling at the suite's temperature, 0.7 where the suite is greedy), and the
sample the ranker prefers is the answer: ``sppo.rank.make_ranker(kind, model).compare(prompts, candidates)`` gives
one K x K comparison matrix per prompt, ``sppo.probs.scores_from_comparisons`` the scores, the argmax wins.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sppo.errors import UserError
from sppo.files import read_json, read_jsonl, write_json, write_jsonl
from sppo.generate import SamplingParams

from benchmarks.store import checkpoint_fingerprint, digest

log = logging.getLogger(__name__)

# FastChat llm_judge/common.py temperature_config
MT_BENCH_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
MT_BENCH_DEFAULT_TEMPERATURE = 0.7
MT_BENCH_MAX_NEW_TOKENS = 1024
ARENA_HARD_MAX_NEW_TOKENS = 4096
ALPACA_EVAL_MAX_NEW_TOKENS = 2048
# the SPPO models' AlpacaEval generation (uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml:10-12,
# the same in alpaca_eval's models_configs/SPPO-Mistral7B-PairRM/configs.yaml)
ALPACA_EVAL_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": ALPACA_EVAL_MAX_NEW_TOKENS}
ALPACA_EVAL_SAMPLING_SOURCE = "uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml"
TEMPLATE_FILES = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json")
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

    def template_model(self) -> str:
        """The name FastChat's template lookup sees: the base model of a run checkpoint (its sppo_manifest.json),
        else the path or Hub id."""
        manifest = Path(self.model_path) / "sppo_manifest.json"
        data = read_json(manifest) if manifest.is_file() else None
        base = data.get("base_model") if isinstance(data, dict) else None
        return base if isinstance(base, str) and base else str(self.model_path)

    def identity(self) -> dict[str, Any]:
        """What determines this answerer's outputs besides the suite's settings (part of every answer key)."""
        ranker = getattr(self.ranker_factory, "spec", None) if self.best_of > 1 else None
        return {"model": str(self.model_path), "fingerprint": checkpoint_fingerprint(self.model_path),
                "chat_template": _template_digest(self.model_path), "backend": self.backend, "seed": self.seed,
                "best_of": self.best_of, "ranker": ranker}

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

    make.spec = [kind, model]
    return make


def _template_digest(model_path: str) -> str | None:
    """A digest of the files that define a local checkpoint's chat template (None for Hub ids)."""
    path = Path(model_path)
    if not path.is_dir():
        return None
    return digest({name: (path / name).read_bytes().hex() for name in TEMPLATE_FILES if (path / name).is_file()})


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


def _reusable(rows: dict, key: str) -> dict:
    """The rows whose ``sppo_key`` is ``key`` (answers produced exactly as they would be now)."""
    return {k: r for k, r in rows.items() if isinstance(r, dict) and r.get("sppo_key") == key}


def _chunks(items: list, n: int = CHUNK):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass
class AnswerSettings:
    limit: int | None = None
    max_new_tokens: int | None = None  # overrides each suite's official limit
    alpaca_eval_temperature: float | None = None  # override the AlpacaEval sampling settings
    alpaca_eval_top_p: float | None = None
    chat_template: str = "fastchat"  # MT-Bench prompts: FastChat's template where it has one ("hf": the model's)


# --- AlpacaEval ---------------------------------------------------------------------------------------------------

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
    existing = _reusable({r.get("instruction"): r for r in rows if isinstance(r, dict)}, key)
    todo = [ex for ex in wanted if ex["instruction"] not in existing]
    for chunk in _chunks(todo):
        outs = answerer.answer([[{"role": "user", "content": ex["instruction"]}] for ex in chunk],
                               temperature, max_new, top_p)
        for ex, out in zip(chunk, outs):
            existing[ex["instruction"]] = {"dataset": ex.get("dataset", "alpaca_eval"),
                                           "instruction": ex["instruction"], "output": out,
                                           "generator": generator_name, "sppo_key": key}
        # every current answer (also beyond --limit), in evaluation-set order
        write_json(path, [existing[ex["instruction"]] for ex in examples if ex["instruction"] in existing])
    info.update(best_of=answerer.best_of, n_generated=len(todo), n_reused=len(wanted) - len(todo), key=key)
    return [existing[ex["instruction"]] for ex in wanted], info


# --- Arena-Hard ---------------------------------------------------------------------------------------------------

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
    existing = _reusable({str(r.get("question_id")): r for r in read_jsonl(path)} if path.exists() else {}, key)
    todo = [q for q in wanted if str(q["question_id"]) not in existing]
    for chunk in _chunks(todo):
        by_cap: dict[int, list[dict]] = {}
        for q, cap in zip(chunk, arena_hard_caps(answerer, chunk, settings.max_new_tokens)):
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
            "n_reused": len(wanted) - len(todo), "key": key}
    return {str(q["question_id"]): existing[str(q["question_id"])] for q in wanted}, info


# --- MT-Bench -----------------------------------------------------------------------------------------------------

def mt_bench_temperature(category: str) -> float:
    return MT_BENCH_TEMPERATURE.get(category, MT_BENCH_DEFAULT_TEMPERATURE)


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


@contextlib.contextmanager
def _prompt_as_is(answerer: ModelAnswerer):
    """While active, the generator's chat template writes the single user message's text unchanged (a prompt
    already rendered with FastChat's template)."""
    tok = answerer.generator.tokenizer
    old = tok.chat_template
    tok.chat_template = "{{ messages[0]['content'] }}"
    try:
        yield
    finally:
        tok.chat_template = old


def _mt_turns(answerer: ModelAnswerer, qs: list[dict], temp: float, max_new: int, template: str | None):
    """First and second answers of each question (the second turn sees the first answer)."""
    if template is None:
        convs = [[{"role": "user", "content": q["turns"][0]}] for q in qs]
        first = answerer.answer(convs, temp, max_new)
        convs2 = [c + [{"role": "assistant", "content": a}, {"role": "user", "content": q["turns"][1]}]
                  for c, a, q in zip(convs, first, qs)]
        return first, answerer.answer(convs2, temp, max_new)
    name = answerer.template_model()
    with _prompt_as_is(answerer):
        first = answerer.answer([[{"role": "user", "content": fastchat_prompt(name, q["turns"][:1], [])}]
                                 for q in qs], temp, max_new)
        second = answerer.answer([[{"role": "user", "content": fastchat_prompt(name, q["turns"][:2], [a])}]
                                  for q, a in zip(qs, first)], temp, max_new)
    return first, second


def mt_bench_answers(answerer: ModelAnswerer, questions: list[dict], path: Path, model_id: str,
                     settings: AnswerSettings) -> tuple[dict[int, dict], dict[str, Any]]:
    """``model_answer/<model>.jsonl`` (two turns) for the first ``limit`` questions: {question_id: record}."""
    wanted = questions[:settings.limit] if settings.limit else questions
    max_new = settings.max_new_tokens or MT_BENCH_MAX_NEW_TOKENS
    template = fastchat_template(answerer.template_model()) if settings.chat_template == "fastchat" else None
    key = digest({**answerer.identity(), "temperature": MT_BENCH_TEMPERATURE, "max_new_tokens": max_new,
                  "suite": "mt_bench", "fastchat_template": template})
    existing = _reusable({r.get("question_id"): r for r in read_jsonl(path)} if path.exists() else {}, key)
    todo = [q for q in wanted if q["question_id"] not in existing]
    for chunk in _chunks(todo):
        by_temp: dict[float, list[dict]] = {}
        for q in chunk:
            by_temp.setdefault(mt_bench_temperature(q["category"]), []).append(q)
        for temp, qs in by_temp.items():
            first, second = _mt_turns(answerer, qs, temp, max_new, template)
            for q, a1, a2 in zip(qs, first, second):
                existing[q["question_id"]] = {"question_id": q["question_id"], "answer_id": answer_id(),
                                              "model_id": model_id, "choices": [{"index": 0, "turns": [a1, a2]}],
                                              "tstamp": time.time(), "sppo_key": key}
        write_jsonl(path, existing.values())
    info = {"temperature": "per category (FastChat temperature_config)", "max_new_tokens": max_new,
            "chat_template": f"fastchat:{template}" if template else "hf", "best_of": answerer.best_of,
            "n_generated": len(todo), "n_reused": len(wanted) - len(todo), "key": key}
    return {q["question_id"]: existing[q["question_id"]] for q in wanted}, info
