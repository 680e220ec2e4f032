"""`sppo-bench table`: the seed model card's four tables from the results store, and one plot per benchmark.

    sppo-bench table [--results-dir DIR | --run-dir RUN] [--family NAME] [--plots | --plots-dir DIR]
                     [--format markdown|csv]

Tables (pandas DataFrames printed as Markdown) with the model card's columns, rounding and row names
(``benchmarks.tables``): AlpacaEval 2 (LC win rate, win rate to two decimals, avg. length), Arena-Hard v0.1
(score, 95% CI, avg. tokens; score and CI as arena-hard-auto's show_result.py prints them, ``23.3``, ``(-1.8, 1.8)``),
Open LLM Leaderboard (lm-eval v0.4.1: the six tasks and their average - ``mmlu`` is v0.4.1's group figure, subjects
weighted by size, with the unweighted mean of the subjects beside it -; the offline ``sppo-tiny-mc`` task when that
is what was run), MT-Bench (1st turn, 2nd turn, average, two decimals). One row per model and variant: the run's
iterations as the card names them (``Mistral7B-PairRM-SPPO Iter 1``, ``... Iter 1 (best-of-16)``), ``Iter0`` - the
run's starting model - by its name, other models by their results-store name. Plots: ``<plots-dir>/<suite>.png``, the
headline figure of each benchmark across the models (iterations in order), one line per variant, with error bars
where the benchmark has them (AlpacaEval standard error, Arena-Hard 95% CI), on an axis that starts at 0, written only
when asked for (``--plots``, ``--plots-dir``): the tables alone only read, so they work on a read-only results store.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from sppo.errors import UserError
from sppo.files import atomic_path
from sppo.run_dir import RunLayout, current_run_dir
from sppo.settings import doc, from_flags, help_of

from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult, plot_file, variant_suffix
from benchmarks.tables import (CONSOLE, LOGPROB_MARK, TABLES, TableSpec, build_table, card_row_label, family_name,
                               specs_for)

ERROR_KEYS = {("alpaca_eval", "length_controlled_winrate"): "lc_standard_error",
              ("alpaca_eval", "win_rate"): "standard_error"}


def error_bar(suite: str, metric: str, m: dict[str, Any]) -> tuple[float, float] | None:
    """(below, above) the point: AlpacaEval's standard error, Arena-Hard's 95% interval; None where the benchmark
    reports no uncertainty."""
    if suite == "arena_hard":
        lo, hi, s = m.get("rating_q025"), m.get("rating_q975"), m.get("score")
        return None if None in (lo, hi, s) else (max(0.0, s - lo), max(0.0, hi - s))
    key = ERROR_KEYS.get((suite, metric))
    if key is None or m.get(key) is None:
        return None
    return float(m[key]), float(m[key])


def model_sort_key(name: str):
    m = re.fullmatch(r"Iter(\d+)", name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


LOGPROB_FOOTNOTE = "\\* some verdicts read from the local judge's token probabilities (its text had no valid one)"


@dataclass(frozen=True)
class RunNames:
    """What names the rows: the run's family (``Mistral7B-PairRM-SPPO``, as ``sppo-release`` names its cards) and
    its base model (the ``Iter0`` row); None where the results belong to no run with checkpoints."""

    family: str | None = None
    base_model: str | None = None


def run_names(run_dir: Path | None, family: str | None = None) -> RunNames:
    """The family and base model recorded in the run's first checkpoint manifest (`family` overrides)."""
    from sppo.checkpoint import MANIFEST_NAME, CheckpointManifest

    checkpoints = RunLayout(run_dir).checkpoints if run_dir else None
    manifests = sorted(checkpoints.glob(f"Iter*/{MANIFEST_NAME}")) if checkpoints and run_dir.is_dir() else []
    if not manifests:
        return RunNames(family)
    try:
        m = CheckpointManifest.read(manifests[0].parent)
    except UserError:
        return RunNames(family)
    return RunNames(family or family_name(m.base_model, m.ranker), m.base_model)


def row_label(spec: TableSpec, r: SuiteResult, names: RunNames) -> str:
    """The card's row name for a run's iteration (``Mistral7B-PairRM-SPPO Iter 2 (best-of-16)``), the base model's
    name for Iter0, else the results-store name."""
    m = re.fullmatch(r"Iter(\d+)", r.model)
    if m and int(m.group(1)) > 0 and names.family:
        return card_row_label(spec, names.family, int(m.group(1)), r.variant)
    model = names.base_model.split("/")[-1] if r.model == "Iter0" and names.base_model else r.model
    return model + variant_suffix(r.variant)


def suite_frames(store: ResultsStore, names: RunNames = RunNames()) -> dict[str, Any]:
    """``{suite: DataFrame}`` with one row per (model, variant) of the store, every cell the table model's
    (`benchmarks.tables`, the console's view); suites without results are left out."""
    import pandas as pd

    results = store.results()
    frames = {}
    for spec in specs_for(results):
        rs = sorted((r for r in results if r.suite == spec.suite),
                    key=lambda r: (r.variant != DEFAULT_VARIANT, r.variant, model_sort_key(r.model)))
        table = build_table(spec, [(row_label(spec, r, names), r) for r in rs], CONSOLE,
                            lambda spec, r: f"results of {r.model} ({spec.suite})")
        if table is None:
            continue
        rows = {row.label: {h: c.shown for h, c in zip(table.headers, row.cells)} for row in table.rows}
        frames[spec.suite] = pd.DataFrame.from_dict(rows, orient="index", columns=table.headers)
        frames[spec.suite].attrs["notes"] = table.notes  # printed under the table (`Table.notes`)
    return frames


def render(frames: dict[str, Any], fmt: str = "markdown", specs: tuple[TableSpec, ...] = TABLES) -> str:
    out = []
    for spec in specs:
        if spec.suite not in frames:
            continue
        df = frames[spec.suite]
        out.append(f"## {spec.heading}\n")
        out.append(df.to_markdown(disable_numparse=True) if fmt == "markdown" else df.to_csv())
        if fmt == "markdown" and any(str(i).endswith(LOGPROB_MARK) for i in df.index):
            out.append("\n" + LOGPROB_FOOTNOTE)
        if fmt == "markdown":
            out += ["\n" + note for note in df.attrs.get("notes", [])]
        out.append("")
    return "\n".join(out)


def plot_series(results: list[SuiteResult], spec: TableSpec) -> tuple[str, list[str], dict[str, tuple]]:
    """(metric, models in iteration order, {variant: (xs, ys, yerr)}) of one benchmark's plot; ``yerr`` is
    ``[[below...], [above...]]`` or None when the benchmark reports no uncertainty."""
    suite = spec.suite
    rs = [r for r in results if r.suite == suite]
    metric = spec.plot_metric
    if all(r.metrics.get(metric) is None for r in rs) and spec.plot_fallback:
        metric = spec.plot_fallback
    models = sorted({r.model for r in rs}, key=model_sort_key)
    series = {}
    for variant in sorted({r.variant for r in rs}, key=lambda v: (v != DEFAULT_VARIANT, v)):
        by_model = {r.model: r.metrics for r in rs if r.variant == variant}
        xs = [i for i, m in enumerate(models) if by_model.get(m, {}).get(metric) is not None]
        ys = [float(by_model[models[i]][metric]) for i in xs]
        errors = [error_bar(suite, metric, by_model[models[i]]) for i in xs]
        yerr = None if not errors or None in errors else [[e[0] for e in errors], [e[1] for e in errors]]
        series[variant] = (xs, ys, yerr)
    return metric, models, series


def write_plots(store: ResultsStore, plots_dir: Path) -> list[Path]:
    """One PNG per benchmark: its headline figure per model (x: models in iteration order), a line per variant,
    error bars where the benchmark has them, y from 0 to the figure's full scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = store.results()
    written = []
    for spec in specs_for(results):
        if not any(r.suite == spec.suite for r in results):
            continue
        metric, models, series = plot_series(results, spec)
        fig, ax = plt.subplots(figsize=(6, 4))
        for variant, (xs, ys, yerr) in series.items():
            ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=4, label=variant)
        ax.set_ylim(bottom=0, top=spec.axis_top)
        ax.set_xticks(range(len(models)), models)
        ax.set_title(f"{spec.heading}: {metric}")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = plot_file(plots_dir, spec.suite)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(path)
    return written


TableFormat = Literal["markdown", "csv"]


@dataclass(frozen=True)
class TableSettings:
    """The settings of ``sppo-bench table``, built once from its arguments (`configure`)."""

    results_dir: Path | None = doc("results store (default <run_dir>/results)", None)
    run_dir: str | None = doc("training run (default: $SPPO_RUN_DIR, runs/latest, newest under runs/)", None)
    plots: bool = doc("also write one PNG plot per benchmark (into --plots-dir)", False)
    plots_dir: Path | None = doc("write the PNG plots there (implies --plots; default <results-dir>/plots)", None)
    no_plots: bool = doc("no plots (the default)", False)
    format: TableFormat = doc("markdown (the card's tables) or csv", "markdown")
    family: str | None = doc("row names '<NAME> Iter N' (default: the run's family as sppo-release names its "
                             "cards, e.g. Mistral7B-PairRM-SPPO; plain IterN without a run)", None)


def configure(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sppo-bench table``: one per `TableSettings` field."""
    def arg(name: str, **kw: Any) -> None:
        p.add_argument("--" + name.replace("_", "-"), help=help_of(TableSettings, name), **kw)

    arg("results_dir", type=Path)
    arg("run_dir")
    arg("plots", action="store_true")
    arg("plots_dir", type=Path)
    p.add_argument("--no-plots", action="store_true", help=argparse.SUPPRESS)  # the default
    arg("format", choices=get_args(TableFormat), default="markdown")
    arg("family", metavar="NAME")


def main(namespace: argparse.Namespace) -> int:
    args = from_flags(TableSettings, vars(namespace))
    run_dir = None if args.results_dir else current_run_dir(args.run_dir)
    results_dir = args.results_dir or RunLayout(run_dir).results
    store = ResultsStore(results_dir)
    frames = suite_frames(store, run_names(run_dir or results_dir.parent, args.family))
    if not frames:
        raise UserError(f"{results_dir}: no benchmark results (run `sppo-bench --all ...` first)")
    print(render(frames, args.format, specs_for(store.results())))
    if (args.plots or args.plots_dir) and not args.no_plots:
        for path in write_plots(store, args.plots_dir or store.layout.plots):
            print(f"plot: {path}")
    return 0
