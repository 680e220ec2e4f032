"""Answer generation shared by the judged suites: one checkpoint through ``sppo.generate``, optionally best-of-N.

Each suite module (``benchmarks.suites.<suite>``) holds its official generation settings and file format and calls
``ModelAnswerer.answer``. Every answer row carries ``sppo_key``, a digest of what produced it
(``ModelAnswerer.identity()`` - checkpoint fingerprint, chat template, backend, seed, best-of and ranker - plus the
suite's generation settings); ``reusable`` keeps exactly the rows whose key is current, so a retrained checkpoint or a
new ``--max-new-tokens`` never reuses an old answer.

One ``answer`` call is one job of ``benchmarks.parallel``: the conversations are cut into chunks (``ANSWER_CHUNK``
at most, 8 chunks or more when each still holds ``ANSWER_MIN_CHUNK``; never dependent on the number of processes), each chunk sampled with a seed of its own (``sppo.chunks.chunk_seed`` of the first conversation's
digest), spread over the ranks and written atomically under ``<results>/.chunks/``, so an interrupted run keeps the
chunks it finished and 1, 2 or 8 processes give the same answers.

Best-of-N: N samples per instruction (sampling at the suite's temperature, 0.7 where the suite is greedy), and the
sample the ranker prefers is the answer: ``sppo.rank.make_ranker(kind, model).compare(prompts, candidates)`` gives
one K x K comparison matrix per prompt, ``sppo.probs.scores_from_comparisons`` the scores, the argmax wins. Sampling
and ranking run on the rank that owns the chunk.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sppo.errors import UserError, described
from sppo.generate import SamplingParams

from benchmarks import parallel
from benchmarks.config import ChatTemplate
from benchmarks.store import checkpoint_fingerprint, digest

log = logging.getLogger(__name__)

TEMPLATE_FILES = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json")
BEST_OF_TEMPERATURE = 0.7  # sampling temperature of best-of-N where the suite itself is greedy
# conversations per chunk of an answer job: at most ANSWER_CHUNK, fewer when a job has under 8 x that many (so
# that 8 processes share it), but at least ANSWER_MIN_CHUNK (a few answers generated in one batch)
ANSWER_CHUNK, ANSWER_MIN_CHUNK = 32, 4


def answer_id() -> str:
    return uuid.uuid4().hex[:22]


@dataclass(frozen=True)
class AnswererSpec:
    """What a rank needs to build the same answerer (picklable: it travels to every rank)."""

    model_path: str
    backend: str
    batch_size: int | None
    dtype: str
    best_of: int
    ranker: tuple | None  # (kind, model) of sppo.rank.make_ranker, for best-of-N
    seed: int
    tensor_parallel_size: int


@dataclass(frozen=True)
class AnswerJob:
    """One `ModelAnswerer.answer` call, run by every rank together: the conversations, cut into chunks that every
    rank shares (``benchmarks.parallel``)."""

    answerer: AnswererSpec
    conversations: tuple
    temperature: float
    top_p: float
    top_k: int  # 0: no top-k cut
    max_new_tokens: int
    chunk_dir: str

    def serve(self) -> list[dict]:
        """A `benchmarks.parallel.Job`: a serving rank's part of the answers (`serve_answer_job`)."""
        return serve_answer_job(self)


class ModelAnswerer:
    """Generates with one checkpoint through sppo.generate (loaded on first use), optionally best-of-N. Under a
    launcher every rank holds one (rank 0 this one, the others one built from ``spec()``)."""

    def __init__(self, model_path: str, backend: str = "hf", batch_size: int | None = None, best_of: int = 1,
                 ranker_factory: RankerFactory | Callable[[], Any] | None = None, seed: int = 42, progress: bool = False,
                 scratch_dir: Path | None = None, tensor_parallel_size: int = 1, dtype: str = "auto"):
        self.model_path = model_path
        self.backend = backend
        self.batch_size = batch_size  # None: chosen from the memory available (sppo.generate)
        self.dtype = dtype  # sppo.models.load_model's, for inference
        self.best_of = best_of
        self.ranker_factory = ranker_factory
        self.seed = seed
        self.progress = progress
        self.scratch_dir = scratch_dir  # where answer jobs keep their chunks (a temporary directory if None)
        self.tensor_parallel_size = tensor_parallel_size
        self._generator = None
        self._ranker = None

    @classmethod
    def from_spec(cls, spec: AnswererSpec) -> "ModelAnswerer":
        factory = default_ranker_factory(*spec.ranker) if spec.ranker else None
        return cls(spec.model_path, spec.backend, spec.batch_size, spec.best_of, factory, spec.seed,
                   tensor_parallel_size=spec.tensor_parallel_size, dtype=spec.dtype)

    def spec(self) -> AnswererSpec:
        from sppo import distributed

        ranker = self._ranker_spec()
        if self.best_of > 1 and ranker is None and distributed.world_size() > 1:
            raise UserError("--best-of on several processes needs a ranker named by --ranker")
        return AnswererSpec(str(self.model_path), self.backend, self.batch_size, self.dtype, self.best_of,
                            tuple(ranker) if ranker else None, self.seed, self.tensor_parallel_size)

    @property
    def generator(self):
        if self._generator is None:
            from sppo.generate import make_generator

            extra = {"tensor_parallel_size": self.tensor_parallel_size} if self.tensor_parallel_size > 1 else {}
            try:
                self._generator = make_generator(self.backend, self.model_path, batch_size=self.batch_size,
                                                 dtype=self.dtype, **extra)
            except (UserError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as e:  # corrupt weights, missing tokenizer files, ...: one line naming the checkpoint
                raise UserError(f"{self.model_path}: cannot load the checkpoint ({described(e)})") from None
        return self._generator

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded (or adopted)."""
        return self._generator is not None

    def adopt(self, generator) -> None:
        """Generate with an already loaded model (the best-of-N answerer of a checkpoint uses the plain one's)."""
        self._generator = generator

    def release(self) -> None:
        """Free the model (loaded again on next use)."""
        self._generator = None

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

    def engine(self) -> dict[str, Any]:
        """The engine the answers come from (``sppo.generate.engine_settings``: the backend "auto" resolves to here,
        and for vLLM its distribution, version and eager mode), recorded with each suite's generation settings."""
        from sppo.generate import engine_settings

        return engine_settings(self.backend)

    def identity(self) -> dict[str, Any]:
        """What determines this answerer's outputs besides the suite's settings (part of every answer key): the
        backend as resolved here (auto means vLLM on one machine and transformers on another), and vLLM's engine."""
        ranker = self._ranker_spec()
        engine = self.engine()
        vllm = {"engine": engine} if engine["backend"] == "vllm" else {}
        return {"model": str(self.model_path), "fingerprint": checkpoint_fingerprint(self.model_path),
                "chat_template": _template_digest(self.model_path), "backend": engine["backend"], "seed": self.seed,
                "best_of": self.best_of, "ranker": ranker, **vllm}

    def _ranker_spec(self) -> list | None:
        """The ranker of best-of-N as its answer key and the other ranks know it (None: no best-of-N, or a ranker
        made some other way, which only one process can use)."""
        factory = self.ranker_factory
        return factory.spec if self.best_of > 1 and isinstance(factory, RankerFactory) else None

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
        """One answer per conversation (the ranker's favourite of ``best_of`` samples when best_of > 1), the work
        shared by every rank; top_k 0: no top-k cut. A conversation may be a ``sppo.generate.PromptText`` (a prompt
        already rendered, e.g. by FastChat's template), given to the model as it is."""
        if not conversations:
            return []
        convs = tuple(_frozen(c) for c in conversations)
        fields = (self.spec(), convs, float(temperature), float(top_p), int(top_k), int(max_new_tokens))
        with self._scratch() as scratch:
            job = AnswerJob(*fields, chunk_dir=str(scratch / f"answers-{digest(repr(fields))}"))
            rows = parallel.run(job, here=self.run_job)
        return [r["answer"] for r in rows]

    @contextlib.contextmanager
    def _scratch(self):
        from sppo import distributed

        if self.scratch_dir is not None:
            yield Path(self.scratch_dir)
            return
        if distributed.world_size() > 1:
            raise RuntimeError("an answerer shared by several processes needs a scratch_dir they all see")
        with tempfile.TemporaryDirectory(prefix="sppo-answers-") as tmp:
            yield Path(tmp)

    def run_job(self, job: AnswerJob) -> list[dict]:
        """This rank's part of an answer job (every rank returns all rows, in the order of the conversations)."""
        from sppo import chunks as sppo_chunks
        from sppo import distributed

        items = _job_items(job.conversations)
        stage = Path(job.chunk_dir)

        def fn(chunk: list[dict]) -> list[dict]:
            convs = [_thawed(job.conversations[x["index"]]) for x in chunk]
            texts = self._answer_chunk(convs, job, sppo_chunks.chunk_seed(self.seed, 0, chunk))
            return [{"id": x["id"], "answer": t} for x, t in zip(chunk, texts)]

        rows = sppo_chunks.run_chunked(stage, items, fn, ANSWER_CHUNK, "answers", ANSWER_MIN_CHUNK)
        if distributed.is_main():
            sppo_chunks.clear(stage)
            with contextlib.suppress(OSError):
                stage.rmdir()
        return rows

    def _answer_chunk(self, conversations: list, job: AnswerJob, seed: int) -> list[str]:
        from sppo import distributed

        progress = self.progress and distributed.is_main()
        best_of = self.best_of > 1
        greedy = BEST_OF_TEMPERATURE if best_of else 0.0  # best-of-N samples where the suite itself is greedy
        params = SamplingParams(n=self.best_of, temperature=job.temperature if job.temperature >= 1e-4 else greedy,
                                top_p=job.top_p, top_k=job.top_k, max_new_tokens=job.max_new_tokens, seed=seed)
        samples = self.generator.generate(conversations, params, progress=progress)
        return self._rank(conversations, samples) if best_of else [r[0] for r in samples]


def _frozen(conversation):
    """A conversation as an immutable job field: a rendered prompt (str, PromptText) stays as it is."""
    return conversation if isinstance(conversation, str) else tuple(dict(m) for m in conversation)


def _thawed(conversation):
    return conversation if isinstance(conversation, str) else [dict(m) for m in conversation]


def _job_items(conversations: Sequence) -> list[dict]:
    """One item per conversation, its id the conversation's digest (and its occurrence, for repeats): a chunk's
    seed follows from what it holds, not from where the conversation stands in the list."""
    seen: dict[str, int] = {}
    items = []
    for index, conv in enumerate(conversations):
        d = digest(repr(conv))
        seen[d] = seen.get(d, 0) + 1
        items.append({"id": f"{d}-{seen[d]}", "index": index})
    return items


def serve_answer_job(job: AnswerJob) -> list[dict]:
    """A serving rank's part of an answer job, with its own answerer for the job's spec; the model is kept while
    jobs name it (the best-of-N variant uses the model of the plain one)."""
    spec = job.answerer
    answerer = parallel.loaded("answerer", spec, lambda: ModelAnswerer.from_spec(spec))
    if not answerer.loaded:
        model = (spec.model_path, spec.backend, spec.batch_size, spec.tensor_parallel_size)
        answerer.adopt(parallel.loaded("generator", model, lambda: answerer.generator))
    return answerer.run_job(job)


@dataclass(frozen=True)
class RankerFactory:
    """How best-of-N makes its ranker (``sppo.rank.make_ranker(kind, model)``), loaded on first use. It is part of
    every best-of-N answer key (``spec``) and travels to the other ranks (`AnswererSpec.ranker`)."""

    kind: str = "pairrm"
    model: str | None = None

    def __call__(self):
        from sppo.rank import make_ranker

        return make_ranker(self.kind, self.model)

    @property
    def spec(self) -> list:
        """``[kind, model]``: the ranker in the answer key."""
        return [self.kind, self.model]


def default_ranker_factory(kind: str = "pairrm", model: str | None = None) -> RankerFactory:
    return RankerFactory(kind, model)


def _template_digest(model_path: str) -> str | None:
    """A digest of the files that define a local checkpoint's chat template (None for Hub ids)."""
    path = Path(model_path)
    if not path.is_dir():
        return None
    return digest({name: (path / name).read_bytes().hex() for name in TEMPLATE_FILES if (path / name).is_file()})


def reusable(rows: dict, key: str) -> dict:
    """The rows whose ``sppo_key`` is ``key`` (answers produced exactly as they would be now)."""
    return {k: r for k, r in rows.items() if isinstance(r, dict) and r.get("sppo_key") == key}


@dataclass
class AnswerSettings:
    limit: int | None = None
    max_new_tokens: int | None = None  # overrides each suite's official limit
    alpaca_eval_temperature: float | None = None  # override the AlpacaEval sampling settings
    alpaca_eval_top_p: float | None = None
    chat_template: ChatTemplate = "fastchat"  # MT-Bench prompts: FastChat's template where it has one ("hf": the
    # model's)


