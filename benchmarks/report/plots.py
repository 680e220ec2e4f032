"""The report's figures as inline SVG (matplotlib, text kept as text, no date, a fixed id salt: the same store
gives the same bytes): each suite's score per checkpoint with its uncertainty, answer length per checkpoint,
AlpacaEval LC vs WR, MT-Bench per category (the radar of FastChat's MT-Bench leaderboard), and the training side.

Each function returns a `Figure` or None when there is nothing to draw."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from benchmarks.store import SuiteResult
from benchmarks.table_cmd import model_sort_key, plot_series
from benchmarks.tables import TABLES

from .items import Browser
from .training import IterationLog


@dataclass(frozen=True)
class Figure:
    title: str
    svg: str
    caption: str = ""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "sppo-report", "font.size": 9,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def to_svg(fig) -> str:
    """The figure as an ``<svg>`` element to put inside HTML (no XML prolog, no doctype, no date)."""
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(w: float = 4.6, h: float = 3.0, **kw):
    return _pyplot().subplots(figsize=(w, h), **kw)


def score_figures(results: list[SuiteResult]) -> list[Figure]:
    """One figure per suite: its headline figure per checkpoint (iteration order), a line per variant, error bars
    where the benchmark reports uncertainty (AlpacaEval's standard error, Arena-Hard's 95% interval)."""
    out = []
    for spec in TABLES:
        if not any(r.suite == spec.suite for r in results):
            continue
        metric, models, series = plot_series(results, spec)
        fig, ax = _figure()
        for variant, (xs, ys, yerr) in series.items():
            ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=4, label=variant)
        ax.set_ylim(bottom=0, top=spec.axis_top)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        fig.tight_layout()
        bars = {"alpaca_eval": "standard error", "arena_hard": "95% interval"}.get(spec.suite, "none reported")
        out.append(Figure(f"{spec.heading}: {metric}", to_svg(fig), f"error bars: {bars}"))
    return out


def _mean_chars(browser: Browser, column: str) -> float | None:
    lengths = [len(t) for it in browser.items if column in it.cells for t in it.cells[column].answer]
    return sum(lengths) / len(lengths) if lengths else None


def length_figure(browsers: list[Browser]) -> Figure | None:
    """Mean answer length (characters, all turns) per checkpoint, a line per suite."""
    columns = sorted({c for b in browsers for c in b.columns}, key=model_sort_key)
    if not columns:
        return None
    fig, ax = _figure()
    for b in browsers:
        points = [(i, m) for i, c in enumerate(columns) if c in b.columns and (m := _mean_chars(b, c)) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=b.title)
    ax.set_xticks(range(len(columns)), columns, rotation=20 if len(columns) > 4 else 0)
    ax.set_ylabel("characters")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Figure("Answer length per checkpoint", to_svg(fig), "mean characters of the answers the judge saw")


def lc_vs_wr_figure(results: list[SuiteResult]) -> Figure | None:
    """AlpacaEval: the length-controlled win rate against the raw win rate, one point per checkpoint."""
    pts = [(r, r.metrics.get("win_rate"), r.metrics.get("length_controlled_winrate"))
           for r in results if r.suite == "alpaca_eval"]
    pts = [(r, wr, lc) for r, wr, lc in pts if isinstance(wr, (int, float))]
    if not pts:
        return None
    fig, ax = _figure(4.0, 3.4)
    ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--")
    drawn = [(r, wr, lc) for r, wr, lc in pts if isinstance(lc, (int, float))]
    for r, wr, lc in drawn:
        ax.scatter([wr], [lc])
        ax.annotate(r.model if r.variant == "default" else f"{r.model} ({r.variant})", (wr, lc), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("win rate")
    ax.set_ylabel("length-controlled win rate")
    fig.tight_layout()
    caption = "" if drawn else "no LC win rate in these results (df_gamed.csv was unavailable): nothing to plot"
    return Figure("AlpacaEval: LC vs WR", to_svg(fig), caption)


def mt_category_figure(results: list[SuiteResult]) -> Figure | None:
    """MT-Bench per category as FastChat's leaderboard shows it: a radar, one polygon per checkpoint, 0-10; the
    means are the results' own (``categories``: every valid rating of both turns, as ``scoring.mt_bench``)."""
    rs = sorted((r for r in results if r.suite == "mt_bench" and isinstance(r.metrics.get("categories"), dict)),
                key=lambda r: (r.variant != "default", r.variant, model_sort_key(r.model)))
    cats = sorted({c for r in rs for c in r.metrics["categories"]})
    if len(cats) < 3:
        return None
    angles = [2 * math.pi * i / len(cats) for i in range(len(cats))]
    fig, ax = _figure(4.6, 4.0, subplot_kw={"projection": "polar"})
    for r in rs:
        vals = [float(r.metrics["categories"].get(c) or 0.0) for c in cats]
        ax.plot(angles + angles[:1], vals + vals[:1], marker="o",
                label=r.model if r.variant == "default" else f"{r.model} ({r.variant})")
        ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.08)
    ax.set_xticks(angles, cats)
    ax.set_ylim(0, 10)
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.3, 1.12))
    fig.tight_layout()
    return Figure("MT-Bench per category", to_svg(fig), "mean rating of both turns per category (0-10)")


def training_figures(logs: list[IterationLog]) -> list[Figure]:
    """Loss and learning rate per step, the P_win / P_lose histogram and mean response lengths, per iteration."""
    out = []
    for key, label in (("loss", "loss"), ("lr", "learning rate")):
        if any(getattr(it, key) for it in logs):
            fig, ax = _figure()
            for it in logs:
                ax.plot(it.steps, getattr(it, key), marker="." if len(it.steps) < 30 else None,
                        label=f"iteration {it.number}")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
            fig.tight_layout()
            out.append(Figure(f"Training {label} per step", to_svg(fig)))
    hist = _probability_histogram(logs)
    if hist:
        out.append(hist)
    lengths = _length_by_iteration(logs)
    if lengths:
        out.append(lengths)
    return out


def _probability_histogram(logs: list[IterationLog]) -> Figure | None:
    with_p = [it for it in logs if it.p_win]
    if not with_p:
        return None
    fig, axes = _figure(2.4 * len(with_p) + 0.6, 2.6, ncols=len(with_p), sharey=True, squeeze=False)
    for ax, it in zip(axes[0], with_p):
        ax.hist([it.p_win, it.p_lose], bins=[i / 20 for i in range(21)], label=["chosen (P_win)",
                                                                                "rejected (P_lose)"])
        ax.set_title(f"iteration {it.number}", fontsize=9)
        ax.set_xlabel("win probability")
    axes[0][0].set_ylabel("pairs")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return Figure("Chosen / rejected win probabilities", to_svg(fig),
                  "the targets of the SPPO loss; both near 0.5 means the ranker hardly preferred one response")


def _length_by_iteration(logs: list[IterationLog]) -> Figure | None:
    its = [it for it in logs if it.response_chars is not None]
    if not its:
        return None
    fig, ax = _figure()
    xs = [it.number for it in its]
    for key, label in (("response_chars", "all K responses"), ("chosen_chars", "chosen"),
                       ("rejected_chars", "rejected")):
        ax.plot(xs, [getattr(it, key) for it in its], marker="o", label=label)
    ax.set_xticks(xs, [f"iteration {x}" for x in xs])
    ax.set_ylabel("mean characters")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Figure("Sampled response length by iteration", to_svg(fig),
                  "iteration t samples from the policy it starts from (Iter t-1)")
