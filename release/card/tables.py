"""The card's result tables (one per benchmark, every iteration and variant of the run a row, with the columns,
rounding and units of the published SPPO cards) and the lines of results no table shows."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.store import variant_suffix
from benchmarks.tables import TableSpec, fmt_short, in_table

from ..run import Iteration
from .markdown import md_text, table_markdown
from .naming import ReleaseInfo
from .results import Results, card_specs, card_table, in_any_table, lm_eval_version
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
    """One table (the table model's card view, `results.card_table`), or None when no iteration has results for the
    suite."""
    table = card_table(spec, release.family, iterations, results)
    if table is None:
        return None
    rows = [[row.label] + [cell.shown for cell in row.cells] for row in table.rows]
    header = [spec.first_header] + table.headers
    intro = spec.intro.format(version=lm_eval_version(results)) if spec.intro else ""
    shown = [r for rs in results.values() for r in rs if in_table(spec, r)]
    evaluation = " ".join([evaluation_note(shown), *table.notes]).strip()
    return CardTable(suite=spec.suite, title=spec.title, url=spec.url, intro=intro, header=header, rows=rows,
                     markdown=table_markdown(header, rows), evaluation=evaluation)


def build_tables(release: ReleaseInfo, iterations: list[Iteration], results: Results) -> list[CardTable]:
    return [t for spec in card_specs(results) if (t := build_table(spec, release, iterations, results)) is not None]


def other_results(results: Results, iterations: list[Iteration]) -> list[str]:
    """Results no table shows (e.g. the toolkit's local multiple-choice task), as plain lines: they are not
    leaderboard figures and go to no model-index."""
    out, specs = [], card_specs(results)
    for it in iterations:
        for r in results.get(it.number, []):
            if in_any_table(r, specs):
                continue
            figures = ", ".join(f"{k} {fmt_short(v)}" for k, v in r.metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool))
            notes = " ".join(str(n) for n in r.metrics.get("notes") or [])
            judge = f"; judge {judge_md(r)}" if r.judge else ""
            out.append(md_text(f"{it.name}, {r.suite}{variant_suffix(r.variant)}: {figures or 'no figures'}")
                       + judge + (f". {md_text(notes)}" if notes else ""))
    return out
