"""What every suite shares: the `Suite` interface and its `SuiteOutcome`, the run context, the model under test,
the judge's file label and a result's bookkeeping. Judging itself is `benchmarks.judging`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from sppo.errors import UserError
from sppo.files import clean_name, safe_name, short_name

from benchmarks.answers import AnswerSettings, ModelAnswerer
from benchmarks.tables import TableSpec
from benchmarks.config import LmEvalTaskSet
from benchmarks.data import DataSource
from benchmarks.judge import Judge
from benchmarks.store import (DEFAULT_VARIANT, StoreLayout, SuiteName, SuiteResult, checkpoint_fingerprint,
                              digest)


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

    @property
    def layout(self) -> StoreLayout:
        """Where every file of the results store lives (`benchmarks.store.StoreLayout`)."""
        return StoreLayout(self.results_dir)


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
    judge_model: str | None = None  # a suite file of your own may name its endpoint judge's model

    @property
    def judged(self) -> bool:
        return self.prompt_version is not None


def figure(metrics: dict[str, Any], key: str, digits: int = 2) -> str:
    """A metric for a headline line: ``digits`` decimals, ``n/a`` when missing."""
    v = metrics.get(key)
    return "n/a" if v is None else f"{v:.{digits}f}"


def judge_label(judge: Judge) -> str:
    """The file-name label of a judge (``org/model`` -> ``org_model``); ``..`` and the like are refused."""
    label = clean_name(judge.model).strip("_")
    return short_name(safe_name(label, f"judge model {judge.model!r}"), judge.model)


def prompt_version(*parts: Any) -> str:
    """A digest of a suite's judge prompt (template, system prompt, parameters): recorded with every result."""
    return digest(list(parts))


def judge_usage(judge: Judge, before: dict[str, Any]) -> dict[str, Any]:
    now = judge.stats.as_dict()
    return {k: (round(now[k] - before[k], 6) if isinstance(now[k], float) else now[k] - before[k]) for k in now}


def require_judge(ctx: RunContext, suite: str) -> Judge:
    judge = ctx.judges.get(suite)
    if judge is None:
        raise UserError(f"{suite} needs a judge: --judge-base-url/--judge-model, or --judge local")
    return judge


def reused_counts(gen_info: dict[str, Any], n_judgments_reused: int, n_judgments: int) -> dict[str, Any]:
    return {"answers": gen_info.get("n_reused", 0), "judgments": n_judgments_reused, "judgments_total": n_judgments}


def suite_result(target: ModelTarget, suite: str, metrics: dict[str, Any], settings: dict[str, Any], judge: Judge,
            before: dict[str, Any] | None) -> SuiteResult:
    info = judge.info()
    if before is not None:
        info["usage"] = judge_usage(judge, before)
    return SuiteResult(model=target.name, suite=suite, metrics=metrics, variant=target.variant, settings=settings,
                       judge=info, checkpoint=target.checkpoint())
