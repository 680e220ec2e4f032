"""Which benchmark results a card shows: each iteration's results from the store, which of them belong in which
table, and the figures a table would print as ``n/a``."""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.card_layout import TABLES, TableSpec, subset_count
from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult

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


def in_table(spec: TableSpec, r: SuiteResult) -> bool:
    """Whether a result's figures belong in this table: it records at least one of the table's own (not
    aggregate) metrics, possibly as null (then printed n/a and reported by `missing_metrics`). A result measured
    on other tasks, like the toolkit's small local multiple-choice task whose ``average`` is not the Open LLM
    Leaderboard average, gets no row and no model-index entry."""
    return r.suite == spec.suite and any(not c.aggregate and all(k in r.metrics for k in c.keys)
                                         for c in spec.columns)


def in_any_table(r: SuiteResult) -> bool:
    return any(in_table(spec, r) for spec in TABLES)


def variants(results: Results, spec: TableSpec) -> list[str]:
    """Variants of a suite that have figures for this table: the default first."""
    found = {r.variant for rs in results.values() for r in rs if in_table(spec, r)}
    return sorted(found, key=lambda v: (v != DEFAULT_VARIANT, v))


def table_results(spec: TableSpec, iterations: list[Iteration],
                  results: Results) -> Iterator[tuple[str, Iteration, SuiteResult]]:
    """(variant, iteration, result) of every row of the table, in the card's order: by variant, then iteration."""
    for variant in variants(results, spec):
        for it in iterations:
            r = find_result(results, it.number, spec.suite, variant)
            if r is not None and in_table(spec, r):
                yield variant, it, r


def variant_suffix(variant: str) -> str:
    """`` (best-of-16)`` after a name for a variant; nothing for the default."""
    return "" if variant == DEFAULT_VARIANT else f" ({variant})"


def result_source(spec: TableSpec, r: SuiteResult) -> str:
    """How a result is named in an error about one of its figures."""
    return f"results of {r.model} ({spec.suite}, {r.variant})"


def lm_eval_version(results: Results) -> str:
    """The lm-eval version(s) the results record, else the one the published cards name."""
    found = {r.versions.get("lm-eval") for rs in results.values() for r in rs if r.suite == "lm_eval"}
    found.discard(None)
    return ", ".join(sorted(found)) if found else DEFAULT_LM_EVAL_VERSION


def missing_metrics(results: Results) -> list[str]:
    """Figures a card would print as ``n/a``: ``"Iter3: arena_hard metric 'avg_tokens' missing"``."""
    out = []
    for spec in TABLES:
        shown = variants(results, spec)
        for rs in results.values():
            for r in rs:
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
