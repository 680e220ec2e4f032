"""Test plug-ins for the benchmark tests (the fake judge server itself is benchmarks.testing.FakeJudgeServer)."""

from __future__ import annotations


class LongestRanker:
    """A ranker plug-in (``--ranker python:bench_fake_judge:LongestRanker``): the longer candidate wins."""

    calls: list = []

    def __init__(self, model=None):
        self.name = "longest"

    def compare(self, prompts, candidates):
        import numpy as np

        LongestRanker.calls.append([list(c) for c in candidates])
        out = []
        for cands in candidates:
            n = np.array([len(c) for c in cands], dtype=float)
            out.append(np.sign(n[:, None] - n[None, :]))
        return out
