"""What every suite shares: the `Suite` interface and its `SuiteOutcome`, the run context, the model under test,
judge failures, artifact keys, batched judging and the lock for files several models share."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from sppo.errors import UserError
from sppo.files import clean_name, open_no_follow, read_jsonl, safe_name, short_name, under, write_jsonl

from benchmarks.answers import AnswerSettings, ModelAnswerer
from benchmarks.card_layout import TableSpec
from benchmarks.config import LmEvalTaskSet
from benchmarks.data import DataSource
from benchmarks.judge import Judge, JudgeReply, JudgeRequest, cache_key, scrub
from benchmarks.store import DEFAULT_VARIANT, SuiteName, SuiteResult, checkpoint_fingerprint, digest

LOGPROB_VERDICT = "logprobs"  # verdict_source of a verdict read from a local judge's token probabilities
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
    lm_eval_tasks: LmEvalTaskSet = "v1"  # "v1" (Open LLM Leaderboard v1, data from the Hub) or "tiny" (generated here)
    lm_eval_batch_size: int = 4
    df_gamed: str | None = None  # local AlpacaEval df_gamed.csv for LC (else the Hub, else LC is None)
    with_judgments: list[Path] = field(default_factory=list)  # other models' Arena-Hard judgment dirs to co-fit
    trust_remote_code: bool = False  # lm-eval may run a checkpoint's own modelling code (auto_map) only when set

    def work_dir(self, suite: str, variant: str) -> Path:
        return under(self.results_dir, suite if variant == DEFAULT_VARIANT else f"{suite}.{variant}",
                     what="variant")


@dataclass(frozen=True)
class JointFit:
    """What a suite scored for all models together (Arena-Hard) keeps of one model until the joint fit: the
    questions judged and how many verdicts were read from a local judge's token probabilities."""

    question_ids: tuple[str, ...]
    n_logprob_verdicts: int = 0


@dataclass(frozen=True)
class SuiteOutcome:
    """A suite's run on one model: its result, or - for a suite scored for all models together - the result
    without figures (``result.metrics`` empty) and what the joint fit needs (``joint``)."""

    result: SuiteResult
    joint: JointFit | None = None


@dataclass(frozen=True)
class Suite:
    """One benchmark. ``run(ctx, target)`` answers, judges and scores one model; a suite scored for all models
    together (Arena-Hard) has ``score_together(ctx, outcomes)``, which turns the outcomes of every model into
    their SuiteResults. ``prompt_version(ctx)`` digests the judge prompt (None: no judge). ``table`` is the model
    card's table (columns, rounding, plotted figure), ``headline(metrics)`` the line printed after a run."""

    name: SuiteName
    run: Callable[["RunContext", ModelTarget], SuiteOutcome]
    table: TableSpec
    headline: Callable[[dict[str, Any]], str]
    prompt_version: Callable[["RunContext"], str] | None = None
    score_together: Callable[["RunContext", Sequence[tuple[ModelTarget, SuiteOutcome]]], list[SuiteResult]] | None \
        = None

    @property
    def judged(self) -> bool:
        return self.prompt_version is not None


def figure(metrics: dict[str, Any], key: str, digits: int = 2) -> str:
    """A metric for a headline line: ``digits`` decimals, ``n/a`` when missing."""
    v = metrics.get(key)
    return "n/a" if v is None else f"{v:.{digits}f}"


class JudgeFailed(Exception):
    """Judge requests of one suite on one model failed (after retries): nothing is recorded as a result, the
    judgments that did succeed are kept, and a rerun sends exactly the failed requests again."""

    def __init__(self, suite: str, model: str, count: int, first_error: str):
        super().__init__(f"{suite} on {model}: {count} judge request{'s' if count != 1 else ''} failed "
                         f"(first: {scrub(first_error)}); no result recorded, rerun the same command to retry them")
        self.suite, self.model, self.count = suite, model, count


class Failures:
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
    label = clean_name(judge.model).strip("_")
    return short_name(safe_name(label, f"judge model {judge.model!r}"), judge.model)


def judgment_key(judge: Judge, requests: Sequence[JudgeRequest]) -> str:
    """What produced a judgment: the judge's identity (backend, base URL, model) and the exact requests, which hold
    the prompt version and the judged answers. A stored judgment is reused only under the same key."""
    return digest({"judge": judge.identity(), "requests": [cache_key(judge.identity(), r) for r in requests]})


def prompt_version(*parts: Any) -> str:
    """A digest of a suite's judge prompt (template, system prompt, parameters): recorded with every result."""
    return digest(list(parts))


def judge_usage(judge: Judge, before: dict[str, Any]) -> dict[str, Any]:
    now = judge.stats.as_dict()
    return {k: (round(now[k] - before[k], 6) if isinstance(now[k], float) else now[k] - before[k]) for k in now}


def complete_in_batches(judge: Judge, requests: list[JudgeRequest], on_batch, progress: bool) -> None:
    """Send requests in batches; ``on_batch(start, replies)`` persists each batch's results."""
    for start in range(0, len(requests), JUDGE_BATCH):
        replies = judge.complete(requests[start:start + JUDGE_BATCH], progress=progress)
        on_batch(start, replies)


def require_judge(ctx: RunContext, suite: str) -> Judge:
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
    with open(open_no_follow(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT), "a") as f:
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


def reused_counts(gen_info: dict[str, Any], n_judgments_reused: int, n_judgments: int) -> dict[str, Any]:
    return {"answers": gen_info.get("n_reused", 0), "judgments": n_judgments_reused, "judgments_total": n_judgments}


def suite_result(target: ModelTarget, suite: str, metrics: dict[str, Any], settings: dict[str, Any], judge: Judge,
            before: dict[str, Any] | None) -> SuiteResult:
    info = judge.info()
    if before is not None:
        info["usage"] = judge_usage(judge, before)
    return SuiteResult(model=target.name, suite=suite, metrics=metrics, variant=target.variant, settings=settings,
                       judge=info, checkpoint=target.checkpoint())
