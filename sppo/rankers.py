"""Scripted rankers: preferences decided by a property of the text that is cheap to measure, so that what
training should learn is known in advance (`sppo-train --config learning-check`, tests).

    ranking.kind: python:sppo.rankers:PreferShorter     the response with fewer characters wins
    ranking.kind: python:sppo.rankers:PreferLonger      the response with more characters wins

C[i, j] = sign * (m_i - m_j) / scale with m = `response_chars`; after SPPO's score and win-probability step
(`sppo.probs`) the chosen response is the shortest (longest) of the K and the rejected one the longest
(shortest). `MEASURES` names the properties the learning check (`sppo.learning_check`) can report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


def response_chars(text: str) -> float:
    """The response length in characters."""
    return float(len(text))


def response_words(text: str) -> float:
    """The response length in whitespace-separated words."""
    return float(len(text.split()))


@dataclass(frozen=True)
class Measure:
    label: str  # what the number is, for tables and plots
    of: Callable[[str], float]


MEASURES = {"chars": Measure("response length (characters)", response_chars),
            "words": Measure("response length (words)", response_words)}


class PreferLonger:
    """The longer response (in characters) wins: C[i, j] = (len_i - len_j) / scale."""

    name = "prefer-longer"
    sign = 1.0

    def __init__(self, model=None, batch_size: int = 16, scale: float = 10.0):
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = scale

    def compare(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        out = []
        for cands in candidates:
            m = np.array([response_chars(c) for c in cands], dtype=np.float64)
            out.append(self.sign * (m[:, None] - m[None, :]) / self.scale)
        return out


class PreferShorter(PreferLonger):
    """The shorter response (in characters) wins: C[i, j] = (len_j - len_i) / scale."""

    name = "prefer-shorter"
    sign = -1.0
