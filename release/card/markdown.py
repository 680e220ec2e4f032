"""Markdown written into cards (text from manifests, results and names escaped: ``md_text``, ``md_code``) and
Markdown tables, written (GitHub-flavoured) and read back from any card, hand-written ones included."""

from __future__ import annotations

import re
from typing import Any

_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_HEADING = re.compile(r"^#+\s*(.*?)\s*$")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MD_SPECIAL = re.compile(r"([\\`\[\]|])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def one_line(value: Any) -> str:
    """`value` as text on one line: newlines and other control characters become a space."""
    return _CONTROL.sub(" ", str(value)).strip()


def md_text(value: Any) -> str:
    """`value` as literal Markdown text inside a line: one line, no HTML (``<script>`` shows as text), no link,
    code span or table cell boundary of its own."""
    text = _MD_SPECIAL.sub(r"\\\1", one_line(value))
    return re.sub(r"[&<>]", lambda m: _HTML[m.group()], text)


def md_code(value: Any) -> str:
    """`value` as an inline code span whatever backticks it holds (the fence is longer than its longest run of
    backticks), on one line; a name holding ``<``, ``>`` or ``&`` as escaped text instead (a code span cannot
    escape them, and no raw HTML from a manifest enters a card)."""
    text = one_line(value)
    if re.search(r"[&<>]", text):
        return md_text(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns centred. A cell is one line, its ``|`` escaped."""
    def cell(text: str) -> str:
        return one_line(text).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
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
