"""A pairwise judged benchmark of your own (``sppo-bench --suite FILE.yaml``): the model against a baseline's
answers, each prompt judged twice with the positions swapped (the model as assistant A, then as B), as Arena-Hard
does to cancel the judge's position bias.

* A judgment row: ``{id, model, judge, games: [{model_position: "A" | "B", judgment, verdict}, x 2]}``; ``verdict``
  is the label the judge wrote as ``[[LABEL]]`` (None when it wrote none, or several different ones).
* ``meanings`` maps each label to who it favours: ``"a"`` (assistant A), ``"b"`` (assistant B) or ``"tie"``.
* Per game the model wins, ties or loses; a game without a known verdict is left out and counted
  (``n_invalid``).
* ``win_rate = 100 * (wins + ties / 2) / games``, the share of games won, a tie counting half.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from sppo.errors import UserError

from . import locator, require

MEANINGS = ("a", "b", "tie")


def verdict_pattern(labels: Sequence[str]) -> re.Pattern:
    """``[[LABEL]]`` for any of the labels (longest first, so ``A`` never shadows ``A+``)."""
    return re.compile(r"\[\[(" + "|".join(re.escape(v) for v in sorted(labels, key=len, reverse=True)) + r")\]\]")


def parse_verdict(text: str, pattern: re.Pattern) -> str | None:
    """The one label the judge wrote (``[[A]]``); None when it wrote none, or several different ones."""
    found = set(pattern.findall(text))
    return found.pop() if len(found) == 1 else None


def game_outcome(verdict: Any, model_position: str, meanings: Mapping[str, str]) -> str | None:
    """``"win"``, ``"tie"`` or ``"loss"`` of the model in one game; None without a known verdict."""
    meaning = meanings.get(verdict) if isinstance(verdict, str) else None
    if meaning is None:
        return None
    if meaning == "tie":
        return "tie"
    return "win" if (meaning == "a") == (model_position == "A") else "loss"


def score_games(rows: Sequence[Mapping[str, Any]], meanings: Mapping[str, str], source: str | None = None
                ) -> dict[str, Any]:
    """``{win_rate, n_wins, n_ties, n_losses, n_games, n_invalid, notes}`` of one model's judgment rows."""
    where = locator(source)
    counts = {"win": 0, "tie": 0, "loss": 0, None: 0}
    for i, row in enumerate(rows):
        games = require(row, "games", where(i))
        if not isinstance(games, list):
            raise UserError(f"{where(i)}: 'games' must be a list")
        for game in games:
            position = game.get("model_position") if isinstance(game, Mapping) else None
            if position not in ("A", "B"):
                raise UserError(f"{where(i)}: every game needs model_position 'A' or 'B'")
            counts[game_outcome(game.get("verdict"), position, meanings)] += 1
    n = counts["win"] + counts["tie"] + counts["loss"]
    notes = [f"{counts[None]} games without a valid verdict were left out"] if counts[None] else []
    return {"win_rate": 100 * (counts["win"] + counts["tie"] / 2) / n if n else None, "n_wins": counts["win"],
            "n_ties": counts["tie"], "n_losses": counts["loss"], "n_games": n, "n_invalid": counts[None],
            "notes": notes + ([] if n else ["no valid verdict: nothing to score"])}
