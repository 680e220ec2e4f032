"""Answer generation shared by the judged suites: one checkpoint through ``sppo.generate``, optionally best-of-N.

Each suite module (``benchmarks.suites.<suite>``) holds its official generation settings and file format and calls
``ModelAnswerer.answer``. Every answer row carries ``sppo_key``, a digest of what produced it
(``ModelAnswerer.identity()`` - checkpoint fingerprint, chat template, backend, seed, best-of and ranker - plus the
suite's generation settings); ``reusable`` keeps exactly the rows whose key is current, so a retrained checkpoint or a
new ``--max-new-tokens`` never reuses an old answer. Files are rewritten atomically after each chunk of ``CHUNK``
items, so an interrupted run keeps what it generated.

Best-of-N: N samples per instruction (sampling at the suite's temperature, 0.7 where the suite is greedy), and the
sample the ranker prefers is the answer: ``sppo.rank.make_ranker(kind, model).compare(prompts, candidates)`` gives
one K x K comparison matrix per prompt, ``sppo.probs.scores_from_comparisons`` the scores, the argmax wins.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sppo.errors import UserError
from sppo.generate import SamplingParams

from benchmarks.store import checkpoint_fingerprint, digest

log = logging.getLogger(__name__)

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

            try:
                self._generator = make_generator(self.backend, self.model_path, batch_size=self.batch_size)
            except (UserError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as e:  # corrupt weights, missing tokenizer files, ...: one line naming the checkpoint
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise UserError(f"{self.model_path}: cannot load the checkpoint ({type(e).__name__}: {first})") from None
        return self._generator

    def template_model(self) -> str:
        """The name FastChat's template lookup sees: the base model of a run checkpoint (its sppo_manifest.json),
        else the path or Hub id."""
        from sppo.checkpoint import CheckpointManifest, is_finished

        base = None
        if is_finished(self.model_path):
            try:
                base = CheckpointManifest.read(self.model_path).base_model
            except UserError:  # an unreadable manifest: the template lookup falls back to the path
                base = None
        return base or str(self.model_path)

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

    def answer(self, conversations: Sequence, temperature: float, max_new_tokens: int, top_p: float = 1.0,
               top_k: int = 0) -> list[str]:
        """One answer per conversation (the ranker's favourite of ``best_of`` samples when best_of > 1); top_k 0:
        no top-k cut."""
        if not conversations:
            return []
        if self.best_of > 1:
            t = temperature if temperature >= 1e-4 else BEST_OF_TEMPERATURE
            params = SamplingParams(n=self.best_of, temperature=t, top_p=top_p, top_k=top_k,
                                    max_new_tokens=max_new_tokens, seed=self.seed)
            return self._rank(conversations, self.generator.generate(conversations, params, progress=self.progress))
        t = temperature if temperature >= 1e-4 else 0.0
        params = SamplingParams(n=1, temperature=t, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                                seed=self.seed)
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


def reusable(rows: dict, key: str) -> dict:
    """The rows whose ``sppo_key`` is ``key`` (answers produced exactly as they would be now)."""
    return {k: r for k, r in rows.items() if isinstance(r, dict) and r.get("sppo_key") == key}


def chunks(items: list, n: int = CHUNK):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass
class AnswerSettings:
    limit: int | None = None
    max_new_tokens: int | None = None  # overrides each suite's official limit
    alpaca_eval_temperature: float | None = None  # override the AlpacaEval sampling settings
    alpaca_eval_top_p: float | None = None
    chat_template: str = "fastchat"  # MT-Bench prompts: FastChat's template where it has one ("hf": the model's)


