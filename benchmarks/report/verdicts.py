"""What a judge said about one answer, read from the official judgment records, and how much its verdicts spread:
pure functions on plain values, shared by the report page and the warning `sppo-bench` prints.

* AlpacaEval: the weighted judge's preference p in [1, 2] (1: the baseline's output is better, 2: the model's;
  ``benchmarks.scoring.alpaca_eval``); ``p - 1`` is the probability that the model's output is better.
* Arena-Hard: the label of each game (``A>>B`` ... ``B>>A``); game 1 shows the baseline as assistant A, game 2 swaps
  the positions (``benchmarks.scoring.arena_hard``), so the model's side is B in game 1 and A in game 2.
* MT-Bench: the rating of each turn (FastChat's ``[[rating]]``; -1 when the judge gave none).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

WINS, TIES, LOSES, NO_VERDICT = "wins", "ties", "loses", "no verdict"
OUTCOMES = (WINS, TIES, LOSES, NO_VERDICT)  # the verdict classes of a pairwise suite, in filter order
NEARLY_ALL = 0.9  # a judge that gave one verdict to at least this share of the answers tells nothing apart

# Arena-Hard: a label as the model's side sees it, when the model is assistant B (game 1); game 2 mirrors it
_ARENA_AS_B = {"B>>A": ("much better", 2), "B>A": ("better", 1), "A=B": ("tie", 0), "A>B": ("worse", -1),
               "A>>B": ("much worse", -2)}
_MIRROR = {"A>>B": "B>>A", "A>B": "B>A", "A=B": "A=B", "B>A": "A>B", "B>>A": "A>>B"}


def alpaca_outcome(preference: Any) -> str:
    """``wins`` (p > 1.5), ``ties`` (1.5, e.g. identical outputs), ``loses``, or ``no verdict`` (missing, NaN, or
    alpaca_eval's 0 for a draw it could not decide)."""
    p = _number(preference)
    if p is None or not 1 <= p <= 2:
        return NO_VERDICT
    return WINS if p > 1.5 else TIES if p == 1.5 else LOSES


def alpaca_badge(preference: Any) -> str:
    p = _number(preference)
    if p is None or not 1 <= p <= 2:
        return "no verdict"
    return f"{alpaca_outcome(p)} · P(better than the baseline) {p - 1:.2f}"


def arena_game_view(label: Any, game: int) -> tuple[str, int] | None:
    """(the model's side of a game's label, points -2..2): ``("much better", 2)`` for ``B>>A`` in game 1 (the model
    is B) or ``A>>B`` in game 2 (the model is A); None when the game has no valid label."""
    if not isinstance(label, str) or label not in _MIRROR:
        return None
    return _ARENA_AS_B[label if game % 2 == 0 else _MIRROR[label]]


def arena_outcome(labels: Sequence[Any]) -> str:
    """The model's verdict over both games: the sign of the summed points; ``no verdict`` when no game has a
    valid label."""
    views = [v for g, label in enumerate(labels) if (v := arena_game_view(label, g)) is not None]
    if not views:
        return NO_VERDICT
    total = sum(points for _, points in views)
    return WINS if total > 0 else LOSES if total < 0 else TIES


def arena_badge(labels: Sequence[Any]) -> str:
    parts = []
    for g, label in enumerate(labels):
        view = arena_game_view(label, g)
        parts.append(f"game {g + 1}: {label} ({view[0]})" if view else f"game {g + 1}: no verdict")
    return f"{arena_outcome(labels)} · " + "; ".join(parts)


def mt_rating(score: Any) -> str:
    """A rating as the filter lists it (``7``, ``7.5``), or ``no rating`` for FastChat's -1."""
    s = _number(score)
    return "no rating" if s is None or s == -1 else f"{s:g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


# --------------------------------------------------------------------------------------------------- spread

@dataclass(frozen=True)
class Spread:
    """How a judge's verdicts on one suite spread: ``counts`` (value, how often) for the page, the most common
    value and its share of the ``n`` verdicts."""

    suite: str
    unit: str  # "preferences", "game labels", "ratings"
    counts: tuple[tuple[str, int], ...]
    n: int

    @property
    def top(self) -> tuple[str, int]:
        return max(self.counts, key=lambda c: c[1]) if self.counts else ("", 0)

    @property
    def uninformative(self) -> bool:
        """One value for (nearly) every verdict: at least two verdicts, the most common one at least 90%."""
        return self.n >= 2 and self.top[1] >= NEARLY_ALL * self.n

    def warning(self, what: str) -> str:
        """The plain warning line: ``mt_bench: the judge gave (nearly) one verdict to everything: 18 of 18 ratings
        were 5 ...``."""
        value, count = self.top
        return (f"{self.suite}: the judge gave (nearly) one verdict to everything: {count} of {self.n} {self.unit} "
                f"were {value} ({what}); these figures cannot tell the answers apart")


def spread(suite: str, unit: str, values: Sequence[str]) -> Spread:
    """The spread of verdict values (already formatted: a preference to two decimals, a label, a rating); values
    that are no verdict are left out."""
    counts = Counter(v for v in values if v not in (NO_VERDICT, "no rating", ""))
    ordered = tuple(sorted(counts.items(), key=lambda kv: _value_order(kv[0])))
    return Spread(suite, unit, ordered, sum(counts.values()))


def _value_order(value: str) -> tuple:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def flat_figures(results: Sequence[Any]) -> list[str]:
    """lm-eval has no judge: a warning when at least two checkpoints got identical figures on every task
    (e.g. a small task every checkpoint answers perfectly). ``results``: SuiteResults of one suite and variant."""
    figures = [{k: v for k, v in r.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not k.startswith("n_")} for r in results]
    if len(figures) < 2 or not figures[0] or any(f != figures[0] for f in figures[1:]):
        return []
    shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(figures[0].items()))
    return [f"{results[0].suite}: every checkpoint ({', '.join(r.model for r in results)}) got the same figures "
            f"({shown}); this task cannot tell them apart"]
