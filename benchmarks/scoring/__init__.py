"""The official scoring methods of the four suites, as pure functions on plain records.

    alpaca_eval.py - AlpacaEval 2 (weighted_alpaca_eval_gpt4_turbo): win rate, LC win rate, judge logprob parsing
    arena_hard.py  - Arena-Hard v0.1: battles, Bradley-Terry fit, bootstrap CI, win rate vs gpt-4-0314
    mt_bench.py    - MT-Bench single grading: `[[rating]]` parsing, judge prompts, turn/category means
    lm_eval.py     - lm-evaluation-harness v0.4.1 results JSON -> Open LLM Leaderboard v1 figures

Each suite returns a metrics dict whose keys are the official leaderboard's names. Non-numeric caveats go in a
``notes`` list (never a number), so a missing input is stated, never faked.

This module holds the few helpers every suite shares: locating a record ("file:line") for one-line errors and a
required field. Reading files is the edge's job (`benchmarks.inputs`): nothing here opens a file, a socket or a
directory.
"""

from __future__ import annotations

from typing import Callable, Sequence

from sppo.errors import UserError

Locator = Callable[[int], str]


def locator(source: str | Sequence[str] | None = None, lines: Sequence[int] | None = None) -> Locator:
    """Return ``where(i)`` naming record ``i``: ``"file:line"`` when line numbers are known, else
    ``"file: record N"`` (1-based). ``source`` is one file name, or one per record when records come from
    several files."""

    def where(i: int) -> str:
        if isinstance(source, (list, tuple)):
            src = source[i] if 0 <= i < len(source) else "<records>"
        else:
            src = source or "<records>"
        if lines is not None and 0 <= i < len(lines):
            return f"{src}:{lines[i]}"
        return f"{src}: record {i + 1}"

    return where


def require(row: dict, key: str, where: str) -> object:
    """``row[key]``, or UserError ``"<where>: missing field 'key'"``."""
    if key not in row or row[key] is None:
        raise UserError(f"{where}: missing field {key!r}")
    return row[key]
