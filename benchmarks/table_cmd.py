"""`sppo-bench table`: the seed model card's four tables from the results store, and one plot per benchmark.

    sppo-bench table [--results-dir DIR | --run-dir RUN] [--plots-dir DIR] [--no-plots] [--format markdown|csv]

Tables (pandas DataFrames printed as Markdown): AlpacaEval 2 (LC win rate, win rate, avg. length), Arena-Hard v0.1
(score, 95% CI, avg. tokens), Open LLM Leaderboard (lm-eval v0.4.1: the six tasks and their average; the offline
``sppo-tiny-mc`` task when that is what was run), MT-Bench (1st turn, 2nd turn, average). One row per model and
variant (``Iter1``, ``Iter1 (best-of-16)``). Plots: ``<plots-dir>/<suite>.png``, the headline figure of each
benchmark across the models (iterations in order), one line per variant.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from sppo.errors import UserError
from sppo.files import current_run_dir

from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult

# (suite, title, [(column header, metric key)], headline metric for the plot)
TABLES: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("alpaca_eval", "AlpacaEval 2", [("LC. Win Rate", "length_controlled_winrate"), ("Win Rate", "win_rate"),
                                     ("Avg. Length", "avg_length")], "length_controlled_winrate"),
    ("arena_hard", "Arena-Hard v0.1", [("Score", "score"), ("95% CI", "CI"), ("average # Tokens", "avg_tokens")],
     "score"),
    ("lm_eval", "Open LLM Leaderboard (lm-evaluation-harness v0.4.1)",
     [("arc_challenge", "arc_challenge"), ("truthfulqa_mc2", "truthfulqa_mc2"), ("winogrande", "winogrande"),
      ("gsm8k", "gsm8k"), ("hellaswag", "hellaswag"), ("mmlu", "mmlu"), ("average", "average")], "average"),
    ("mt_bench", "MT-Bench", [("1st Turn", "turn_1"), ("2nd Turn", "turn_2"), ("Average", "average")], "average"),
]
PLOT_FALLBACK = {"alpaca_eval": "win_rate"}  # LC needs df_gamed.csv; without it plot the win rate


def model_sort_key(name: str):
    m = re.fullmatch(r"Iter(\d+)", name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


def row_label(r: SuiteResult) -> str:
    return r.model if r.variant == DEFAULT_VARIANT else f"{r.model} ({r.variant})"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    return value


def suite_frames(store: ResultsStore) -> dict[str, Any]:
    """``{suite: DataFrame}`` with one row per (model, variant); suites without results are left out."""
    import pandas as pd

    results = store.results()
    frames = {}
    for suite, _title, columns, _ in TABLES:
        rs = sorted((r for r in results if r.suite == suite),
                    key=lambda r: (r.variant != DEFAULT_VARIANT, r.variant, model_sort_key(r.model)))
        if not rs:
            continue
        cols = list(columns)
        if suite == "lm_eval" and all(r.metrics.get("arc_challenge") is None for r in rs):
            # only the project's offline task was run: show what was measured
            extra = sorted({k for r in rs for k, v in r.metrics.items()
                            if isinstance(v, (int, float)) and not k.startswith("n_") and k != "average"})
            cols = [(k, k) for k in extra] + [("average", "average")]
        rows = {row_label(r): {h: _cell(r.metrics.get(k)) for h, k in cols} for r in rs}
        frames[suite] = pd.DataFrame.from_dict(rows, orient="index", columns=[h for h, _ in cols])
    return frames


def render(frames: dict[str, Any], fmt: str = "markdown") -> str:
    out = []
    for suite, title, _, _ in TABLES:
        if suite not in frames:
            continue
        df = frames[suite]
        out.append(f"## {title}\n")
        out.append(df.to_markdown(missingval="n/a") if fmt == "markdown" else df.to_csv())
        out.append("")
    return "\n".join(out)


def write_plots(store: ResultsStore, plots_dir: Path) -> list[Path]:
    """One PNG per benchmark: its headline figure per model (x: models in iteration order), a line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = store.results()
    written = []
    for suite, title, _, key in TABLES:
        rs = [r for r in results if r.suite == suite]
        if not rs:
            continue
        metric = key
        if all(r.metrics.get(metric) is None for r in rs) and suite in PLOT_FALLBACK:
            metric = PLOT_FALLBACK[suite]
        models = sorted({r.model for r in rs}, key=model_sort_key)
        fig, ax = plt.subplots(figsize=(6, 4))
        for variant in sorted({r.variant for r in rs}, key=lambda v: (v != DEFAULT_VARIANT, v)):
            by_model = {r.model: r.metrics.get(metric) for r in rs if r.variant == variant}
            xs = [i for i, m in enumerate(models) if by_model.get(m) is not None]
            ys = [float(by_model[models[i]]) for i in xs]
            ax.plot(xs, ys, marker="o", label=variant)
        ax.set_xticks(range(len(models)), models)
        ax.set_title(f"{title}: {metric}")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        plots_dir.mkdir(parents=True, exist_ok=True)
        path = plots_dir / f"{suite}.png"
        tmp = plots_dir / f".{suite}.png.tmp"
        fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        tmp.replace(path)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="sppo-bench table", description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", type=Path, help="results store (default <run_dir>/results)")
    p.add_argument("--run-dir", help="training run (default: $SPPO_RUN_DIR, runs/latest, newest under runs/)")
    p.add_argument("--plots-dir", type=Path, help="where the PNG plots go (default <results-dir>/plots)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    args = p.parse_args(argv)
    results_dir = args.results_dir or current_run_dir(args.run_dir) / "results"
    store = ResultsStore(results_dir)
    frames = suite_frames(store)
    if not frames:
        raise UserError(f"{results_dir}: no benchmark results (run `sppo-bench --all ...` first)")
    print(render(frames, args.format))
    if not args.no_plots:
        for path in write_plots(store, args.plots_dir or results_dir / "plots"):
            print(f"plot: {path}")
    return 0
