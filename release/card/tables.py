"""The card's result tables (one per benchmark, every iteration and variant of the run a row, with the columns,
rounding and units of the published SPPO cards) and the lines of results no table shows."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.card_layout import TABLES, TableSpec, card_row_label, fmt_short, subset_note, subset_sentence

from ..run import Iteration
from .markdown import md_text, table_markdown
from .naming import ReleaseInfo
from .results import Results, in_any_table, in_table, lm_eval_version, result_source, table_results, variant_suffix
from .sources import evaluation_note, judge_md


@dataclass(frozen=True)
class CardTable:
    """One table as a card template sees it (``table.title``, ``table.markdown``, ...)."""

    suite: str
    title: str
    url: str
    intro: str
    header: list[str]
    rows: list[list[str]]
    markdown: str
    evaluation: str  # the judge and annotator config behind the figures


def build_table(spec: TableSpec, release: ReleaseInfo, iterations: list[Iteration],
                results: Results) -> CardTable | None:
    """One table, or None when no iteration has results for the suite."""
    rows = [[card_row_label(spec, release.family, it.number, variant) + subset_note(spec, r.settings)]
            + [c.cell(r.metrics, result_source(spec, r)) for c in spec.columns]
            for variant, it, r in table_results(spec, iterations, results)]
    if not rows:
        return None
    header = [spec.first_header] + [c.header for c in spec.columns]
    intro = spec.intro.format(version=lm_eval_version(results)) if spec.intro else ""
    shown = [r for rs in results.values() for r in rs if in_table(spec, r)]
    evaluation = evaluation_note(shown)
    if any(subset_note(spec, r.settings) for _, _, r in table_results(spec, iterations, results)):
        evaluation = f"{evaluation} {subset_sentence(spec)}".strip()
    return CardTable(suite=spec.suite, title=spec.title, url=spec.url, intro=intro, header=header, rows=rows,
                     markdown=table_markdown(header, rows), evaluation=evaluation)


def build_tables(release: ReleaseInfo, iterations: list[Iteration], results: Results) -> list[CardTable]:
    return [t for spec in TABLES if (t := build_table(spec, release, iterations, results)) is not None]


def other_results(results: Results, iterations: list[Iteration]) -> list[str]:
    """Results no table shows (e.g. the toolkit's local multiple-choice task), as plain lines: they are not
    leaderboard figures and go to no model-index."""
    out = []
    for it in iterations:
        for r in results.get(it.number, []):
            if in_any_table(r):
                continue
            figures = ", ".join(f"{k} {fmt_short(v)}" for k, v in r.metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool))
            notes = " ".join(str(n) for n in r.metrics.get("notes") or [])
            judge = f"; judge {judge_md(r)}" if r.judge else ""
            out.append(md_text(f"{it.name}, {r.suite}{variant_suffix(r.variant)}: {figures or 'no figures'}")
                       + judge + (f". {md_text(notes)}" if notes else ""))
    return out
