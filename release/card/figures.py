"""The figures a card publishes, read back from its text: what two cards must share to show the same results."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from .markdown import parse_tables


def card_figures(text: str) -> dict[str, Any]:
    """The numbers a card publishes: every table cell keyed by (table, row, column), and the model-index.
    Two cards with equal figures show the same results, whatever their prose."""
    out: dict[str, Any] = {}
    try:
        card = ModelCard(text, ignore_metadata_errors=True)
        body, eval_results = card.text, card.data.get("eval_results") or []
    except Exception:  # unreadable metadata (hand-edited card): its tables still count
        body, eval_results = text, []
    for t in parse_tables(body):
        for row in t["rows"]:
            for col, cell in zip(t["header"][1:], row[1:]):
                out[f"{t['title']} | {row[0]} | {col}"] = cell
    for r in eval_results:
        key = f"model-index | {r.dataset_type} {r.dataset_config or ''} | {r.metric_type} {r.metric_config or ''}"
        out[key] = r.metric_value
    return out
