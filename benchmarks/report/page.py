"""The report as one self-contained HTML file: inline CSS, inline SVG figures, one inline script, the prompts and
answers as gzip + base64 data. Nothing is fetched: a Content-Security-Policy (``default-src 'none'``) forbids
every request and every script but the page's own (by its SHA-256).

Untrusted text - answers, prompts, judge texts, names read from files - is escaped here (``html.escape``) where
it enters the static HTML, and reaches the prompt browser only through the data block, which holds no markup at
all (base64) and which the script turns into DOM text nodes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from datetime import datetime, timezone
from html import escape
from importlib import resources
from typing import Any

from sppo.scrub import scrub, scrub_obj

from benchmarks.scoring import arena_hard as ah
from benchmarks.table_cmd import LOGPROB_FOOTNOTE
from benchmarks.tables import LOGPROB_MARK, TableSpec, specs_for

from . import plots
from .collect import Report
from .items import Browser
from .verdicts import Spread

ALPACA_BINS = 10  # AlpacaEval's preferences are probabilities: their spread is shown in tenths


def asset(name: str) -> str:
    return (resources.files("benchmarks.report") / "static" / name).read_text(encoding="utf-8")


def browser_data(b: Browser) -> dict[str, Any]:
    """One suite's prompts as the page's script reads them: cells aligned with ``columns`` (null: none)."""
    items = []
    for item in b.items:
        cells = [item.cells.get(c) for c in b.columns]
        items.append({"id": item.id, "category": item.category, "prompt": item.prompt, "baseline": item.baseline,
                      "changed": item.changed(),
                      "cells": [None if c is None else {"answer": c.answer, "verdicts": c.verdicts, "badge": c.badge,
                                                        "notes": c.notes} for c in cells]})
    return {"suite": b.suite, "title": b.title, "columns": b.columns, "verdicts": b.verdict_order,
            "baseline_name": b.baseline_name, "items": items}


def data_block(report: Report) -> str:
    """The browsers' data: JSON with every registered secret scrubbed (before it is encoded, so in no encoding
    can one remain), gzip (no timestamp: the same data, the same bytes; level 9 would save 0.3% for 30% more
    time), base64."""
    data = scrub_obj({"browsers": [browser_data(b) for b in report.browsers]}, patterns=False)
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(blob, compresslevel=6, mtime=0)).decode("ascii")


def header_text(markdown: str) -> str:
    """A column header without its Markdown escapes (the card writes ``average \\# Tokens``)."""
    return re.sub(r"\\(.)", r"\1", str(markdown))


def table_html(spec: TableSpec, df) -> str:
    suite = spec.suite
    head = "".join(f"<th>{escape(header_text(c))}</th>" for c in ["", *df.columns])
    rows = "".join("<tr>" + f"<th scope=\"row\">{escape(str(label))}</th>"
                   + "".join(f"<td>{escape(str(x))}</td>" for x in row) + "</tr>"
                   for label, row in zip(df.index, df.itertuples(index=False)))
    notes = []
    if any(str(i).endswith(LOGPROB_MARK) for i in df.index):
        notes.append(LOGPROB_FOOTNOTE.replace("\\*", "*"))
    notes += df.attrs.get("notes", [])  # the table model's (`Table.notes`)
    return (f"<h3>{escape(spec.heading)}</h3><table class=\"card\" id=\"table-{suite}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>" + "".join(f"<p class=\"note\">{escape(n)}</p>" for n in notes))


def figures_html(figs: list[plots.Figure]) -> str:
    return "<div class=\"figures\">" + "".join(
        f"<figure>{f.svg}<figcaption><b>{escape(f.title)}</b>{(' — ' + escape(f.caption)) if f.caption else ''}"
        "</figcaption></figure>" for f in figs) + "</div>"


def distribution(suite: str, s: Spread) -> list[tuple[str, int]]:
    """What the bars show: AlpacaEval's P(better) in tenths, Arena-Hard's five labels, MT-Bench's ratings 1-10
    (every value of the scale, also those never given, and any other value the judge gave)."""
    counts = dict(s.counts)
    if suite == "alpaca_eval":
        bins = [0] * ALPACA_BINS
        for value, count in counts.items():
            bins[min(int(float(value) * ALPACA_BINS), ALPACA_BINS - 1)] += count
        return [(f"{i / ALPACA_BINS:.1f}", c) for i, c in enumerate(bins)]
    scale = list(ah.VERDICTS) if suite == "arena_hard" else [str(r) for r in range(1, 11)]
    return [(v, counts.get(v, 0)) for v in scale] + [(v, c) for v, c in s.counts if v not in scale]


def bars_html(dist: list[tuple[str, int]]) -> str:
    top = max((c for _, c in dist), default=0) or 1
    bars = "".join(f"<div class=\"bar\" style=\"height:{100 * c / top:.0f}%\" title=\"{escape(v)}: {c}\"></div>"
                   for v, c in dist)
    labels = "".join(f"<span>{escape(v)}</span>" for v, _ in dist)
    return f"<div class=\"bars\">{bars}</div><div class=\"bar-labels\">{labels}</div>"


def spread_html(report: Report) -> str:
    parts = []
    for b in report.browsers:
        rows = []
        for name, s in report.spreads.get(b.suite, []):
            value, count = s.top
            share = f"{value}: {count} of {s.n} ({100 * count / s.n:.0f}%)" if s.n else "no verdicts"
            flag = " <span class=\"flag\">one verdict for (nearly) everything</span>" if s.uninformative else ""
            rows.append(f"<tr><th>{escape(name)}</th><td>{s.n}</td><td>{escape(share)}{flag}</td>"
                        f"<td>{bars_html(distribution(b.suite, s))}</td></tr>")
        parts.append(f"<h3>{escape(b.title)}: {escape(b.unit)}</h3><table class=\"spread\" id=\"spread-{b.suite}\">"
                     "<tr><th></th><th>verdicts</th><th>most common</th><th>distribution</th></tr>"
                     + "".join(rows) + "</table>")
    return "".join(parts) or "<p>No judged suite in this store.</p>"


def training_html(report: Report) -> str:
    if not report.training:
        return ("<p>No training run found beside this store (pass <code>--run-dir</code> to show its loss, learning "
                "rate and win probabilities).</p>")
    rows = "".join(
        f"<tr><th>iteration {it.number}</th><td>{it.pairs}</td><td>{_fmt(_avg(it.p_win))}</td>"
        f"<td>{_fmt(_avg(it.p_lose))}</td><td>{_fmt(it.loss[-1] if it.loss else None, 4)}</td>"
        f"<td>{_fmt(it.response_chars, 0)}</td></tr>" for it in report.training)
    table = ("<table class=\"spread\"><tr><th></th><th>pairs</th><th>mean P_win</th><th>mean P_lose</th>"
             f"<th>last loss</th><th>mean response chars</th></tr>{rows}</table>")
    return (f"<p class=\"note\">run: {escape(str(report.run_dir))}</p>{table}"
            + figures_html(plots.training_figures(report.training)))


def _avg(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def score_section(report: Report) -> str:
    figs = plots.score_figures(report.results)
    figs += [f for f in (plots.length_figure(report.browsers), plots.lc_vs_wr_figure(report.results),
                         plots.mt_category_figure(report.results))
             if f is not None]
    return figures_html(figs)


def warnings_html(report: Report) -> str:
    lines = report.warnings + report.subsets
    if not lines:
        return ""
    return "<div class=\"warnings\" id=\"warnings\"><b>Read before you publish</b><ul>" + "".join(
        f"<li>{escape(w)}</li>" for w in lines) + "</ul></div>"


DATA_SLOT = "\x00report-data\x00"  # where the data block goes, after the rest of the page is scrubbed


def render(report: Report, title: str = "SPPO benchmark report") -> str:
    """The whole page, every registered secret scrubbed from it (`sppo.scrub`). The data block is scrubbed before
    it is encoded, and its base64 is never scrubbed again: a short secret that happens to match some of its
    characters would corrupt it."""
    return scrub(page_text(report, title), patterns=False).replace(DATA_SLOT, data_block(report))


def page_text(report: Report, title: str) -> str:
    """The page with `DATA_SLOT` for the data block."""
    script = asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           "base-uri 'none'; form-action 'none'")
    tables = "".join(table_html(spec, report.frames[spec.suite]) for spec in specs_for(report.results)
                     if spec.suite in report.frames) or "<p>No results.</p>"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f"<a href=\"#{i}\">{t}</a>" for i, t in (("tables", "Tables"), ("plots", "Plots"), (
        "judge", "Judge"), ("training", "Training"), ("answers", "Answers and verdicts")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{asset("report.css")}</style></head>
<body>
<header class="top"><h1>{escape(title)}</h1>
<p class="meta">results store {escape(str(report.root))} · {len(report.results)} results · generated {when}</p>
<nav>{nav}</nav></header>
<main>
{warnings_html(report)}
<section class="part" id="tables"><h2>Tables (as the model card prints them)</h2>{tables}</section>
<section class="part" id="plots"><h2>Plots</h2>{score_section(report)}</section>
<section class="part" id="judge"><h2>Did the judge tell the answers apart?</h2>
<p class="note">The spread of the judge's verdicts per suite; Arena-Hard labels as the judge wrote them (assistant A
is the baseline in game 1, the model in game 2).</p>{spread_html(report)}</section>
<section class="part" id="training"><h2>Training</h2>{training_html(report)}</section>
<section class="part" id="answers"><h2>Answers and verdicts</h2>
<div id="browsers"><p class="missing">Loading the answers (this part needs JavaScript)…</p></div></section>
</main>
<script type="text/plain" id="report-data" data-encoding="gzip+base64">{DATA_SLOT}</script>
<script>{script}</script>
</body></html>
"""
