"""Does training learn? A property of every checkpoint's responses to held-out prompts, per iteration.

With `learning_check.enabled`, after the last iteration each checkpoint (Iter0 = the run's starting model
`model.name`, then Iter1, Iter2, ...) answers the prompts of `learning_check.split` (never trained on),
`samples` responses each, sampled as generation.* with the same seed (run.seed) for every checkpoint, and the
mean of `measure` (sppo.rankers.MEASURES) over those responses is recorded with its standard error:

    <run>/learning_check/IterN.json        one checkpoint's figure, with the settings that produced it and the
                                           sampled responses
    <run>/learning_check/summary.json      every checkpoint's figure, in iteration order
    <run>/learning_check/learning_check.png    the figure per iteration, with standard-error bars

A figure is reused while its settings are unchanged, so enabling the check on a finished run measures its
checkpoints without training again. With a scripted ranker (`sppo.rankers.PreferShorter`) the mean length
should fall from iteration to iteration (`sppo-train --config learning-check`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from . import distributed
from .files import atomic_path, read_json, write_json
from .rankers import MEASURES
from .run_dir import RunLayout

log = logging.getLogger(__name__)



@dataclass
class Figure:
    """The property measured on one checkpoint's held-out responses."""
    name: str  # Iter0, Iter1, ...
    model: str
    mean: float
    stderr: float  # of the mean, over responses
    responses: int
    stopped: float  # fraction of responses that ended with EOS (not cut at max_new_tokens)


@dataclass
class Summary:
    ranker: str  # ranking.kind of the run
    measure: str
    split: str
    prompts: int
    samples: int
    figures: list[Figure]
    direction: int | None = None  # +1: the ranker prefers more of the measure, -1 less; None: not declared

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Summary":
        return cls(**{**data, "figures": [Figure(**f) for f in data["figures"]]})


# What "learned" means: from Iter0 to the last checkpoint the mean moved the ranker's way by at least this share of
# Iter0's mean and this many standard errors of the difference (sqrt(se_0^2 + se_last^2)).
MARGIN_SHARE, MARGIN_STDERRS = 0.15, 3.0


def preferred_direction(kind: str) -> int | None:
    """+1 / -1 for a scripted ranker of sppo.rankers (or a subclass): which way its preference should move the
    measure; None for any other ranker (its preference is not known in advance)."""
    import importlib

    from .rankers import PreferLonger

    parts = kind.split(":") if isinstance(kind, str) and kind.startswith("python:") else []
    if len(parts) != 3:
        return None
    try:
        cls = getattr(importlib.import_module(parts[1]), parts[2], None)
    except ImportError:
        return None
    return int(cls.sign) if isinstance(cls, type) and issubclass(cls, PreferLonger) else None


def verdict(summary: Summary) -> tuple[bool, str] | None:
    """Whether the mean moved the ranker's way by the stated margin from the first checkpoint to the last, and
    a line saying so; None when the ranker's direction is not known."""
    if summary.direction is None or len(summary.figures) < 2:
        return None
    first, last = summary.figures[0], summary.figures[-1]
    change = last.mean - first.mean
    se = math.hypot(first.stderr, last.stderr)
    learned = summary.direction * change > max(MARGIN_SHARE * abs(first.mean), MARGIN_STDERRS * se)
    way = "more" if summary.direction > 0 else "less"
    moved = f"{'rose' if change > 0 else 'fell'} {abs(change) / abs(first.mean or 1):.0%}" if change else "did not move"
    return learned, (f"{first.name} → {last.name}: {moved} ({abs(change) / se if se else 0:.1f} standard errors); "
                     f"the ranker prefers {way}; learned (>= {MARGIN_SHARE:.0%} and {MARGIN_STDERRS:g} standard "
                     f"errors its way): {'yes' if learned else 'NO'}")


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def held_out_prompts(cfg) -> list[str]:
    from .prompts import load_split

    c = cfg.learning_check
    return [r["prompt"] for r in load_split(dataclasses.replace(cfg.prompts, splits=[c.split], limit=c.limit), 1)]


def settings(cfg, prompts: list[str]) -> dict:
    """Everything a figure depends on besides the checkpoint (the dtype as it resolves on this machine)."""
    from .models import inference_dtype

    g = cfg.generation
    return {"learning_check": dataclasses.asdict(cfg.learning_check) | {"enabled": True}, "prompts": prompts,
            "temperature": g.temperature, "top_p": g.top_p, "max_new_tokens": g.max_new_tokens,
            "seed": cfg.run.seed, "special_tokens": cfg.training.special_tokens,
            "dtype": g.dtype if g.backend == "vllm" else inference_dtype(g.dtype)}


def measure_checkpoint(cfg, name: str, policy: str, revision: str | None,
                       prompts: list[str]) -> tuple[Figure, list[list[str]]]:
    """Sample `samples` responses per prompt from `policy` and measure them, sampled as the generation stage samples
    (generation.dtype: bf16 where the device computes it natively); the figure and the responses, per prompt."""
    from .generate import FINISH_STOP, SamplingParams, make_generator

    g, c = cfg.generation, cfg.learning_check
    generator = make_generator(g.backend, policy, dtype=g.dtype, batch_size=g.batch_size,
                               special_tokens=cfg.training.special_tokens, revision=revision,
                               enforce_eager=g.enforce_eager)
    params = SamplingParams(n=c.samples, temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens,
                            seed=cfg.run.seed)
    rows = generator.sample(prompts, params, progress=False)
    samples = [s for row in rows for s in row]
    if hasattr(generator, "close"):
        generator.close()
    del generator
    gc.collect()
    mean, stderr = mean_and_stderr([MEASURES[c.measure].of(s.text) for s in samples])
    stopped = sum(s.finish_reason == FINISH_STOP for s in samples) / len(samples)
    return Figure(name, policy, mean, stderr, len(samples), stopped), [[s.text for s in row] for row in rows]


def _figure(run, name: str, policy: str, prompts: list[str]) -> Figure:
    """The stored figure of `name` if its settings are those of this run's config, else a new measurement."""
    path = run.layout.learning_check_figure(name)
    wanted = settings(run.cfg, prompts)
    if path.exists():
        stored = read_json(path)
        if stored.get("settings") == wanted and stored.get("figure", {}).get("model") == policy:
            return Figure(**stored["figure"])
    log.info("learning check: measuring %s on %d held-out prompts", name, len(prompts))
    figure, responses = measure_checkpoint(run.cfg, name, policy, run.revision_of(policy), prompts)
    write_json(path, {"settings": wanted, "figure": dataclasses.asdict(figure),
                      "responses": [{"prompt": p, "responses": r} for p, r in zip(prompts, responses)]})
    return figure


def stage_learning_check(run, checkpoints: list[Path]) -> Summary:
    """Measure Iter0 and every checkpoint (rank 0; the other ranks wait), write the summary and the plot."""
    def write() -> Summary:
        cfg = run.cfg
        prompts = held_out_prompts(cfg)
        models = [("Iter0", cfg.model.name)] + [(Path(c).name, str(c)) for c in checkpoints]
        figures = [_figure(run, name, policy, prompts) for name, policy in models]
        summary = Summary(cfg.ranking.kind, cfg.learning_check.measure, cfg.learning_check.split, len(prompts),
                          cfg.learning_check.samples, figures, preferred_direction(cfg.ranking.kind))
        write_json(run.layout.learning_check_summary, summary.to_dict())
        write_plot(summary, plot_path(run.dir))
        return summary

    summary = distributed.decide("learning check: rank 0 measures every checkpoint", write)
    if distributed.is_main():
        for line in report(summary).splitlines():
            log.info("%s", line)
    return summary


def read_summary(run_dir: str | Path) -> Summary:
    return Summary.from_dict(read_json(RunLayout(Path(run_dir)).learning_check_summary))


def plot_path(run_dir: str | Path) -> Path:
    return RunLayout(Path(run_dir)).learning_check_plot


def title(summary: Summary) -> str:
    return (f"mean {MEASURES[summary.measure].label} on {summary.prompts} held-out prompts "
            f"({summary.split}) x {summary.samples} samples")


def report(summary: Summary) -> str:
    """A few lines for people: the figure per iteration, then the whole path in one line."""
    lines = [f"learning check ({summary.ranker}): {title(summary)}"]
    for f in summary.figures:
        lines.append(f"  {f.name:<6} {f.mean:8.1f} ± {f.stderr:.1f}   ({f.stopped:.0%} ended before "
                     "max_new_tokens)")
    lines.append("  " + " → ".join(f"{f.name} {f.mean:.1f}" for f in summary.figures))
    judged = verdict(summary)
    if judged:
        lines.append("  " + judged[1])
    return "\n".join(lines)


def write_plot(summary: Summary, path: Path) -> Path:
    """The mean per iteration with standard-error bars, y from 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f.name for f in summary.figures]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(range(len(names)), [f.mean for f in summary.figures], yerr=[f.stderr for f in summary.figures],
                marker="o", capsize=4)
    for x, f in enumerate(summary.figures):
        ax.annotate(f"{f.mean:.1f}", (x, f.mean), textcoords="offset points", xytext=(8, 6))
    ax.set_xticks(range(len(names)), names)
    ax.margins(x=0.15)
    ax.set_ylim(0, 1.15 * max(f.mean + f.stderr for f in summary.figures) or 1.0)
    ax.set_xlabel("checkpoint")
    ax.set_ylabel(f"mean {MEASURES[summary.measure].label}")
    ax.set_title(f"{summary.ranker}\n{summary.prompts} held-out prompts x {summary.samples} samples", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
