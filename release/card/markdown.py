"""Markdown tables, written (GitHub-flavoured) and read back from any card, hand-written ones included."""

from __future__ import annotations

import re
from typing import Any

_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_HEADING = re.compile(r"^#+\s*(.*?)\s*$")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def table_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns centred."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def split_row(line: str) -> list[str]:
    """Cells of one Markdown table row; leading/trailing pipes optional."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def _starts_table(lines: list[str], i: int) -> bool:
    """A header row at line i followed by a separator row (``|---|:---:|``)."""
    return ("|" in lines[i] and i + 1 < len(lines) and "|" in lines[i + 1]
            and all(_SEPARATOR_CELL.match(c) for c in split_row(lines[i + 1]) if c))


def parse_tables(markdown: str) -> list[dict[str, Any]]:
    """Tables of a Markdown document: ``{"title": <last heading, links stripped>, "header": [...],
    "rows": [[...], ...]}``. Works on hand-written cards too (rows without leading pipes)."""
    lines = markdown.splitlines()
    tables, title, i = [], "", 0
    while i < len(lines):
        heading = _HEADING.match(lines[i])
        if heading:
            title = _LINK.sub(r"\1", heading.group(1)).strip()
        if _starts_table(lines, i):
            header, rows, i = split_row(lines[i]), [], i + 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(split_row(lines[i]))
                i += 1
            tables.append({"title": title, "header": header, "rows": rows})
            continue
        i += 1
    return tables
