"""The rows each pipeline stage writes (one JSON object per line of its output file, see `sppo.run_dir`).

`to_json` gives the object as it is on disk (an optional field that is None is left out), `from_json` reads one
back (keys it does not know are ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R", bound="Row")


class Row:
    """to_json / from_json for the dataclasses below."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None
                or f.default is dataclasses.MISSING}

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass
class PromptRow(Row):
    """prompts/prompts.jsonl: one prompt of the iteration's split."""

    id: str
    prompt: str


@dataclass
class ResponseRow(Row):
    """generate/responses.jsonl: the K responses sampled for a prompt, and why each stopped."""

    id: str
    prompt: str
    responses: list[str]
    finish_reasons: list[str] | None = None


@dataclass
class ComparisonRow(Row):
    """rank/comparisons.jsonl: the K x K preference matrix (and the ranker's direct P(i beats j), if asked)."""

    id: str
    comparisons: list[list[float]]
    probabilities: list[list[float]] | None = None


@dataclass
class DatasetRow(Row):
    """dataset/sppo.jsonl: a training pair with its SPPO targets, and everything it was chosen from."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    responses: list[str]
    scores: list[float]
    probabilities: list[list[float]]
    chosen_index: int
    rejected_index: int
    p_win: float
    p_lose: float
    p_chosen_rejected: float | None = None
    finish_reasons: list[str] | None = None
    chosen_finish_reason: str | None = None
    rejected_finish_reason: str | None = None


@dataclass
class ReferenceRow(Row):
    """reference/logps.jsonl: log pi_ref of the chosen and the rejected response."""

    id: str
    chosen: float
    rejected: float
