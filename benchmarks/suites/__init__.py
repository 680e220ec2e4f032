"""The four suites, one module each, behind one interface: answers -> judgments (official prompts and file formats)
-> official scores.

    alpaca_eval.py  AlpacaEval 2          (scoring: benchmarks.scoring.alpaca_eval)
    arena_hard.py   Arena-Hard v0.1       (scoring: benchmarks.scoring.arena_hard; scored for all models together)
    mt_bench.py     MT-Bench              (scoring: benchmarks.scoring.mt_bench)
    lm_eval.py      lm-evaluation-harness (scoring: benchmarks.scoring.lm_eval)
    pairwise.py     a pairwise judged benchmark of your own, defined by one YAML file (sppo-bench --suite FILE;
                    scoring: benchmarks.scoring.pairwise); not in REGISTRY, read from its file at run time
    common.py       the Suite interface and its SuiteOutcome, run context, the model under test

A judged suite supplies its prompts (the answers it asks for and the judge requests about them), its verdict parser
and its scorer; the judging itself - reuse of keyed rows, batching, write-through, failure records, the cache - is
the one engine of ``benchmarks.judging``.

Each module declares its ``SUITE`` (name, run, the model card's table, the headline line, the judge prompt's
version); ``REGISTRY`` holds the four, in run order (``benchmarks.store.SUITES``).

Artifacts live beside the results store, in the official tools' layouts, so those tools could read them too.
Every answer and judgment row carries ``sppo_key``, a digest of what produced it (answers: checkpoint, template and
generation settings; judgments: judge identity - backend, base URL, model - and the exact requests, i.e. prompt
version and judged answers). A rerun reuses exactly the rows whose key is current and produces the others; the
judge cache answers repeated requests without a call. A failed judge request is never written: the suite ends
with ``JudgeFailed`` (no result recorded) and the next run asks exactly those requests again.
"""

from __future__ import annotations

from benchmarks.store import SuiteName
from benchmarks.suites import alpaca_eval, arena_hard, common, lm_eval, mt_bench
from benchmarks.judging import JudgeFailed
from benchmarks.suites.common import ModelTarget, RunContext, Suite, SuiteOutcome

REGISTRY: dict[SuiteName, Suite] = {s.name: s for s in (alpaca_eval.SUITE, arena_hard.SUITE, mt_bench.SUITE,
                                                        lm_eval.SUITE)}

__all__ = ["REGISTRY", "Suite", "SuiteOutcome", "JudgeFailed", "ModelTarget", "RunContext", "common"]
