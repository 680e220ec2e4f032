"""`sppo-bench report`: one self-contained HTML page of a results store, to read before publishing.

    sppo-bench report [--results-dir DIR | --run-dir RUN] [--out FILE.html] [--data-dir DIR] [--family NAME]

The page (default ``<results-dir>/report.html``) opens from disk in any current browser, offline: no server, no
network, nothing fetched (it can be mailed or attached to a release). It holds the model card's tables (the figures
`sppo-bench table` prints), plots (each suite's score per checkpoint with its uncertainty, answer length per
checkpoint, AlpacaEval LC vs WR, MT-Bench per category), every judged prompt with each checkpoint's answer beside the
judge's verdict and explanation (both turns of MT-Bench, both games of Arena-Hard; filter by category, verdict and
"verdict changed between checkpoints", search), the spread of the judge's verdicts with a warning when it gave
(nearly) one verdict to everything, and - when the training run is known - its loss, learning rate, win
probabilities and response lengths per iteration. `sppo-bench` writes the page after every run and prints its path.

Question texts and categories come from the benchmark files the results record (``--data-dir`` if they moved).
Answers and judge texts are shown as plain text, never as HTML.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sppo.errors import UserError
from sppo.files import atomic_path
from sppo.run_dir import RunLayout, current_run_dir

from benchmarks.store import ResultsStore
from benchmarks.table_cmd import run_names

from .collect import Report, collect
from .page import render

def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", type=Path, help="results store (default <run_dir>/results)")
    p.add_argument("--run-dir", help="training run, for the training side and the row names (default: "
                   "$SPPO_RUN_DIR, runs/latest, newest under runs/; with --results-dir: the store's parent)")
    p.add_argument("--out", type=Path, metavar="FILE.html", help="the page (default <results-dir>/report.html)")
    p.add_argument("--data-dir", type=Path, help="benchmark files (question texts, categories, baseline answers) "
                   "when they are no longer where the results say")
    p.add_argument("--family", metavar="NAME", help="row names '<NAME> Iter N' in the tables (as sppo-bench table)")


def write_report(results_dir: Path, out: Path | None = None, run_dir: Path | None = None,
                 data_dir: Path | None = None, family: str | None = None) -> tuple[Path, Report]:
    """Collect and write the page (atomically); returns where it went and what it shows."""
    run = run_dir if run_dir is not None else Path(results_dir).parent
    report = collect(Path(results_dir), run, data_dir, run_names(run, family))
    path = out if out is not None else ResultsStore(results_dir).layout.report
    if path.is_dir():
        raise UserError(f"--out: {path} is a directory, expected an .html file")
    with atomic_path(path) as tmp:  # not sppo.files.write_text: render() scrubbed the page, its base64 must stay
        tmp.write_text(render(report), encoding="utf-8")
    return path, report


def summary(path: Path, report: Report) -> list[str]:
    """The lines printed after writing: the warnings, the subsets, then the page's path."""
    prompts = ", ".join(f"{b.title} {len(b.items)} prompts" for b in report.browsers) or "no judged suite"
    size = path.stat().st_size / 1e6
    return ([f"warning: {w}" for w in report.warnings] + [f"note: {s}" for s in report.subsets]
            + [f"report: {path} ({size:.1f} MB; {prompts})"])


def main(args: argparse.Namespace) -> int:
    run_dir = current_run_dir(args.run_dir) if args.run_dir or not args.results_dir else None
    results_dir = Path(args.results_dir or RunLayout(run_dir).results)
    if not ResultsStore(results_dir).models():
        raise UserError(f"{results_dir}: no benchmark results (run `sppo-bench --all ...` first)")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"--data-dir: {args.data_dir} is not a directory")
    path, report = write_report(results_dir, args.out, run_dir, args.data_dir, args.family)
    for line in summary(path, report):
        print(line)
    return 0
