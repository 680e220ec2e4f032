"""The judge base class: cache lookup, accounting and progress around a backend's ``_complete_uncached``.

Failed requests (after retries) and empty replies are returned with ``error`` set and are *not* cached, so a later
run tries them again; the suites never record them as judgments. Every reply passes through ``sppo.scrub`` before
it is counted or cached.

Counters (``judge.stats``): calls (requests sent, retries included), cache_hits, retries, errors, prompt and
completion tokens, cost in USD (from a price table or ``price_per_million``).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any, Sequence

from sppo.scrub import scrub_obj

from .cache import JudgeCache, cache_key
from .types import JudgeReply, JudgeRequest, JudgeStats

# USD per 1M tokens (input, output), for cost accounting of well-known judges
PRICES_PER_MILLION = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-0125-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-turbo-2024-04-09": (10.0, 30.0),
    "gpt-4": (30.0, 60.0),
    "gpt-4-0613": (30.0, 60.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-2024-08-06": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o-mini-2024-07-18": (0.15, 0.6),
}


class Judge:
    """Base class: cache lookup, accounting and progress around a backend's ``_complete_uncached``."""

    backend = "base"
    reads_logprob_verdicts = False  # whether `verdict_from_logprobs` reads a verdict the judge's text lacks

    def __init__(self, model: str, cache: JudgeCache | None = None,
                 price_per_million: tuple[float, float] | None = None):
        self.model = model
        self.cache = cache
        self.price = price_per_million or PRICES_PER_MILLION.get(model)
        self.stats = JudgeStats()
        self._stats_lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------------------------------
    def complete(self, requests: Sequence[JudgeRequest], progress: bool = False) -> list[JudgeReply]:
        out: list[JudgeReply | None] = [None] * len(requests)
        identity = self.identity()
        keys = [cache_key(identity, r) for r in requests]
        todo: dict[str, list[int]] = {}  # identical requests in one batch are sent once
        for i, (k, r) in enumerate(zip(keys, requests)):
            hit = self.cache.get(k) if self.cache is not None else None
            if hit is not None and not hit.text and not hit.top_logprobs:
                hit = None  # an empty reply is never an answer: ask again
            if hit is not None:
                out[i] = hit
                self._tally(cache_hits=1)
            else:
                todo.setdefault(k, []).append(i)
        if todo:
            firsts = [idx[0] for idx in todo.values()]

            def done(j: int, reply: JudgeReply) -> None:  # called as soon as each reply arrives
                k = keys[j]
                reply = JudgeReply(**scrub_obj(asdict(reply)))  # a judge or proxy may echo the key
                self._account(reply)
                if reply.ok and self.cache is not None:
                    self.cache.put(k, self.model, requests[j], reply)
                for i in todo[k]:
                    out[i] = reply

            self._complete_uncached([requests[j] for j in firsts], firsts, done, progress)
        return [r if r is not None else JudgeReply(None, error="no reply") for r in out]

    def info(self) -> dict[str, Any]:
        """What the results store records about this judge (never a secret)."""
        return {"backend": self.backend, "model": self.model}

    def identity(self) -> dict[str, Any]:
        """What makes two judges the same judge: part of every cache key and results key."""
        return {"backend": self.backend, "model": self.model}

    def cost(self, reply: JudgeReply) -> float:
        """USD one reply cost at this judge's price: nothing when it came from the cache or no price is known."""
        if not self.price or reply.cached:
            return 0.0
        return (reply.prompt_tokens * self.price[0] + reply.completion_tokens * self.price[1]) / 1e6

    def verdict_from_logprobs(self, messages: Sequence[dict], prefix: str, choices: Sequence[str]) -> str:
        """The choice the judge finds most likely right after ``prefix`` in its reply (judges with
        ``reads_logprob_verdicts`` only: local models; an endpoint's replies carry no such distribution)."""
        raise NotImplementedError(f"{type(self).__name__} reads no verdict from token probabilities")

    # -- for backends ------------------------------------------------------------------------------------------------
    def _complete_uncached(self, requests, indices, done, progress) -> None:
        raise NotImplementedError

    def _tally(self, **counts: int) -> None:
        """Add to counters of ``stats`` (``calls=1``, ``retries=1``, ...); backends count from several threads."""
        with self._stats_lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _account(self, reply: JudgeReply) -> None:
        with self._stats_lock:
            self.stats.prompt_tokens += reply.prompt_tokens
            self.stats.completion_tokens += reply.completion_tokens
            if reply.error:
                self.stats.errors += 1
            self.stats.cost_usd += self.cost(reply)
