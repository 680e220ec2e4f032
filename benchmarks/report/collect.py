"""Everything the report shows, read once from a results store (and the training run, when known): the card's
tables as `sppo-bench table` prints them, each judged suite's prompts with every checkpoint's answer and verdict,
the spread of the judge's verdicts, the warnings, and the run's training logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.scoring import alpaca_eval as ae
from benchmarks.scoring import arena_hard as ah
from benchmarks.store import DEFAULT_VARIANT, ResultsStore, StoreLayout, SuiteResult
from benchmarks.table_cmd import RunNames, model_sort_key, run_names, suite_frames
from benchmarks.tables import TABLES, subset_count

from . import items as it
from . import verdicts as v
from .training import IterationLog, training_side

# suite -> (title, baseline shown beside the answers, what a verdict value is, reader)
BROWSERS = {
    "alpaca_eval": ("AlpacaEval 2", f"baseline ({ae.BASELINE})", "preferences (P better than the baseline)",
                    lambda store, rs, b, data: it.alpaca_items(store, rs, b)),
    "arena_hard": ("Arena-Hard v0.1", f"baseline ({ah.BASELINE})", "game labels", it.arena_items),
    "mt_bench": ("MT-Bench", "reference answer (gpt-4; math, reasoning and coding only)", "ratings", it.mt_items),
}


@dataclass
class Report:
    root: Path
    results: list[SuiteResult]
    frames: dict[str, Any]  # suite -> DataFrame, as `sppo-bench table` prints it
    browsers: list[it.Browser]
    spreads: dict[str, list[tuple[str, v.Spread]]]  # suite -> (column or "all checkpoints", spread)
    training: list[IterationLog] = field(default_factory=list)
    run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    subsets: list[str] = field(default_factory=list)


def _order(r: SuiteResult):
    return (r.variant != DEFAULT_VARIANT, r.variant, model_sort_key(r.model))


def browsers(store: StoreLayout, results: list[SuiteResult], data_dir: Path | None) -> list[it.Browser]:
    out = []
    for suite, (title, baseline, unit, read) in BROWSERS.items():
        rs = sorted((r for r in results if r.suite == suite and r.metrics), key=_order)
        if not rs:
            continue
        b = it.Browser(suite, title, [it.column_name(r) for r in rs], [], baseline, unit)
        read(store, rs, b, data_dir)
        found = {x for item in b.items for c in item.cells.values() for x in c.verdicts}
        b.verdict_order = sorted(found, key=_verdict_rank)
        out.append(b)
    return out


def _verdict_rank(value: str) -> tuple:
    if value in v.OUTCOMES:
        return (0, v.OUTCOMES.index(value), 0.0)
    try:
        return (1, 0, float(value))
    except ValueError:
        return (2, 0, 0.0)


def spreads(bs: list[it.Browser]) -> dict[str, list[tuple[str, v.Spread]]]:
    """Per suite: the spread of the judge's verdict values over all checkpoints, then per checkpoint."""
    out = {}
    for b in bs:
        per = [(c, v.spread(b.suite, b.unit, [x for item in b.items if c in item.cells
                                               for x in item.cells[c].values])) for c in b.columns]
        pooled = v.spread(b.suite, b.unit, [x for item in b.items for cell in item.cells.values()
                                            for x in cell.values])
        out[b.suite] = [("all checkpoints", pooled), *per]
    return out


def warnings(results: list[SuiteResult], sp: dict[str, list[tuple[str, v.Spread]]]) -> list[str]:
    """The plain warnings: a judge that gave (nearly) one verdict to everything, lm-eval figures identical for
    every checkpoint."""
    out = []
    for suite, rows in sp.items():
        pooled = rows[0][1]
        if pooled.uninformative:
            out.append(pooled.warning(f"over {len(rows) - 1} checkpoint{'s' if len(rows) > 2 else ''}"))
    lm = [r for r in results if r.suite == "lm_eval"]
    for variant in sorted({r.variant for r in lm}):
        out += v.flat_figures(sorted((r for r in lm if r.variant == variant), key=_order))
    return out


def subsets(results: list[SuiteResult]) -> list[str]:
    """One line per suite whose figures come from a subset of the benchmark."""
    out = []
    for spec in TABLES:
        counts = sorted({c for r in results if r.suite == spec.suite and (c := subset_count(spec, r.settings))},
                        key=str)
        for n, of in counts:
            whole = f"{n} of the benchmark's {of} {spec.item_name}" if of else f"the first {n} items of each task"
            out.append(f"{spec.heading}: figures from {whole} (sppo-bench --limit {n}), not the benchmark's figures")
    return out


def collect(results_dir: Path, run_dir: Path | None = None, data_dir: Path | None = None,
            names: RunNames | None = None) -> Report:
    """Read the store (and the run beside it: ``run_dir``, else the store's parent when it holds checkpoints)."""
    store = ResultsStore(results_dir)
    results = store.results()
    run = run_dir if run_dir is not None else results_dir.parent
    bs = browsers(store.layout, results, data_dir)
    sp = spreads(bs)
    return Report(Path(results_dir), results, suite_frames(store, names or run_names(run)), bs, sp,
                  training_side(run), run, warnings(results, sp), subsets(results))
