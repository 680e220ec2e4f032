"""The four suites, one module each, behind one interface: answers -> judgments (official prompts and file formats)
-> official scores.

    alpaca_eval.py  AlpacaEval 2          (scoring: benchmarks.scoring.alpaca_eval)
    arena_hard.py   Arena-Hard v0.1       (scoring: benchmarks.scoring.arena_hard; scored for all models together)
    mt_bench.py     MT-Bench              (scoring: benchmarks.scoring.mt_bench)
    lm_eval.py      lm-evaluation-harness (scoring: benchmarks.scoring.lm_eval)
    common.py       run context, judge failures, artifact keys, batched judging, file lock

Artifacts live beside the results store, in the official tools' layouts, so those tools could read them too.
Every answer and judgment row carries ``sppo_key``, a digest of what produced it (answers: checkpoint, template and
generation settings; judgments: judge identity - backend, base URL, model - and the exact requests, i.e. prompt
version and judged answers). A rerun reuses exactly the rows whose key is current and produces the others; the
judge cache answers repeated requests without a call. A failed judge request is never written: the suite ends
with ``JudgeFailed`` (no result recorded) and the next run asks exactly those requests again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmarks.suites import alpaca_eval, arena_hard, common, lm_eval, mt_bench
from benchmarks.suites.common import JudgeFailed, ModelTarget, RunContext


@dataclass(frozen=True)
class Suite:
    """One benchmark: ``run(ctx, target)`` answers, judges and scores one model (a SuiteResult); a suite scored
    for all models together (Arena-Hard) instead gives ``run`` its per-model state and ``score_together(ctx,
    targets, states)`` the SuiteResults. ``prompt_version(ctx)`` digests the judge prompt (None: no judge)."""

    name: str
    flag: str
    run: Callable
    prompt_version: Callable | None = None
    score_together: Callable | None = None

    @property
    def judged(self) -> bool:
        return self.prompt_version is not None


SUITES: dict[str, Suite] = {
    "alpaca_eval": Suite("alpaca_eval", "--alpaca-eval", alpaca_eval.run, alpaca_eval.prompt_version),
    "arena_hard": Suite("arena_hard", "--arena-hard", arena_hard.judge_one, arena_hard.prompt_version,
                        arena_hard.score_together),
    "mt_bench": Suite("mt_bench", "--mt-bench", mt_bench.run, mt_bench.prompt_version),
    "lm_eval": Suite("lm_eval", "--lm-eval", lm_eval.run),
}

__all__ = ["SUITES", "Suite", "JudgeFailed", "ModelTarget", "RunContext", "common"]
