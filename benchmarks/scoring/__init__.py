"""The official scoring methods of the four suites, as pure functions on plain records.

    alpaca_eval.py - AlpacaEval 2 (weighted_alpaca_eval_gpt4_turbo): win rate, LC win rate, judge logprob parsing
    arena_hard.py  - Arena-Hard v0.1: battles, Bradley-Terry fit, bootstrap CI, win rate vs gpt-4-0314
    mt_bench.py    - MT-Bench single grading: `[[rating]]` parsing, judge prompts, turn/category means
    lm_eval.py     - lm-evaluation-harness v0.4.1 results JSON -> Open LLM Leaderboard v1 figures

Each suite returns a metrics dict whose keys are the official leaderboard's names. Non-numeric caveats go in a
``notes`` list (never a number), so a missing input is stated, never faked.

This module holds the few helpers every suite shares: locating a record ("file:line") for one-line errors and
reading JSON / JSONL files (UTF-8 only; anything else is a one-line error) while remembering line numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
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


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file")
    if not path.is_file():
        raise UserError(f"{path}: file not found")


def read_json_file(path: str | os.PathLike) -> object:
    """A UTF-8 JSON file; a missing file, a directory, bad bytes or bad JSON raise UserError naming the file."""
    path = Path(path)
    _check_file(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_jsonl_lines(path: str | os.PathLike) -> tuple[list[dict], list[int]]:
    """Read a JSONL file into (rows, line numbers). A bad line or a line that is not a JSON object raises
    UserError naming file and line; blank lines are skipped."""
    path = Path(path)
    _check_file(path)
    rows: list[dict] = []
    lines: list[int] = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}:{lineno}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        lines.append(lineno)
    return rows, lines


def require(row: dict, key: str, where: str) -> object:
    """``row[key]``, or UserError ``"<where>: missing field 'key'"``."""
    if key not in row or row[key] is None:
        raise UserError(f"{where}: missing field {key!r}")
    return row[key]
