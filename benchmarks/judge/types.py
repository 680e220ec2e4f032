"""What passes between a suite and a judge: one request, one reply, and the judge's counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class JudgeRequest:
    messages: tuple  # ({"role": ..., "content": ...}, ...) - a tuple so requests are hashable
    max_tokens: int
    temperature: float = 0.0
    top_logprobs: int | None = None  # ask for logprobs of the first output token, top-k alternatives

    @classmethod
    def make(cls, messages: Sequence[dict], max_tokens: int, temperature: float = 0.0,
             top_logprobs: int | None = None) -> "JudgeRequest":
        return cls(tuple({"role": m["role"], "content": m["content"]} for m in messages), int(max_tokens),
                   float(temperature), top_logprobs)

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.top_logprobs:
            p.update(logprobs=True, top_logprobs=self.top_logprobs)
        return p


@dataclass
class JudgeReply:
    text: str | None
    top_logprobs: list[dict] | None = None  # first output token's alternatives: [{"token", "logprob"}]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class JudgeStats:
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
