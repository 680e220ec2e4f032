"""Which benchmark results a card shows: each iteration's results from the store, the card's table of each benchmark
(the table model of `benchmarks.tables`, its `CARD` view), and the figures a table would print as ``n/a``."""

from __future__ import annotations

from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult, variant_suffix
from benchmarks.tables import (CARD, TABLES, Table, TableSpec, build_table, card_row_label, in_table, specs_for,
                               subset_count, variants)

from ..run import Iteration
from .naming import ReleaseInfo

DEFAULT_LM_EVAL_VERSION = "0.4.1"

Results = dict[int, list[SuiteResult]]  # iteration number -> its results (all suites and variants)


def results_from_store(store: ResultsStore, iterations: list[Iteration], release: ReleaseInfo) -> Results:
    """Each iteration's results, stored under its checkpoint name (``Iter2``) or its full name."""
    out: Results = {}
    for it in iterations:
        for model in (it.name, release.model_name(it)):
            found = store.results(model) if (store.root / model).is_dir() else []
            if found:
                out[it.number] = found
                break
        else:
            out[it.number] = []
    return out


def find_result(results: Results, number: int, suite: str, variant: str = DEFAULT_VARIANT) -> SuiteResult | None:
    for r in results.get(number, []):
        if r.suite == suite and r.variant == variant:
            return r
    return None


def card_table(spec: TableSpec, family: str, iterations: list[Iteration], results: Results) -> Table | None:
    """The card's table of one benchmark (the table model's `CARD` view): a row per variant and iteration, in that
    order, named as the published cards name them; None when no iteration has figures for it."""
    entries = [(card_row_label(spec, family, it.number, variant), r)
               for variant in variants([r for rs in results.values() for r in rs], spec)
               for it in iterations
               if (r := find_result(results, it.number, spec.suite, variant)) is not None]
    return build_table(spec, entries, CARD)


def card_specs(results: Results) -> tuple[TableSpec, ...]:
    """The card's tables: the four benchmarks', then one per suite file of your own among the results."""
    return specs_for([r for rs in results.values() for r in rs])


def in_any_table(r: SuiteResult, specs: tuple[TableSpec, ...] = TABLES) -> bool:
    return any(in_table(spec, r) for spec in specs)


def lm_eval_version(results: Results) -> str:
    """The lm-eval version(s) the results record, else the one the published cards name."""
    found = {r.versions.get("lm-eval") for rs in results.values() for r in rs if r.suite == "lm_eval"}
    found.discard(None)
    return ", ".join(sorted(found)) if found else DEFAULT_LM_EVAL_VERSION


def missing_metrics(results: Results) -> list[str]:
    """Figures a card would print as ``n/a``: ``"Iter3: arena_hard metric 'avg_tokens' missing"``."""
    out = []
    every = [r for rs in results.values() for r in rs]
    for spec in TABLES:
        shown = variants(every, spec)
        for r in every:
            if r.suite == spec.suite and r.variant in shown:
                out += [f"{r.model}: {spec.suite}{variant_suffix(r.variant)} metric {k!r} missing"
                        for c in spec.columns for k in c.missing(r.metrics)]
    return out


def subset_results(results: Results) -> list[str]:
    """Figures a card would show from a subset of the benchmark (``sppo-bench --limit``):
    ``"Iter3: alpaca_eval figures come from 3 of its 805 instructions (--limit 3)"``."""
    out = []
    for spec in TABLES:
        for r in (r for rs in results.values() for r in rs if in_table(spec, r)):
            count = subset_count(spec, r.settings)
            if count is not None:
                n, of = count
                whole = f"{n} of its {of} {spec.item_name}" if of is not None else f"{n} items per task"
                out.append(f"{r.model}: {spec.suite}{variant_suffix(r.variant)} figures come from {whole} "
                           f"(sppo-bench --limit {r.settings.get('limit')})")
    return out
