"""``LocalJudge``: a local chat model in-process (``sppo.local_judge.LocalChatModel``); costs nothing, works offline.

Requests with ``top_logprobs`` get the first-token distribution (AlpacaEval's weighted judge), the others greedy
text (MT-Bench / Arena-Hard verdicts). Under several processes each request group is one job whose chunks are
shared by every rank (`benchmarks.parallel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sppo.errors import UserError, described

from .base import Judge
from .cache import JudgeCache
from .spec import local_judge_name
from .types import JudgeReply


class LocalJudge(Judge):
    """A local chat model in-process (``sppo.local_judge.LocalChatModel``); costs nothing, works offline.

    ``max_new_tokens`` caps the length of text verdicts (the official judges may write 2048-4096 tokens; on a CPU
    a small model is given fewer)."""

    backend = "local"
    reads_logprob_verdicts = True

    def __init__(self, chat_model, name: str | None = None, cache: JudgeCache | None = None,
                 max_new_tokens: int | None = None, source: tuple[str, int, str] | None = None):
        super().__init__(name or f"local:{chat_model.name}", cache, (0.0, 0.0))
        self.chat_model = chat_model
        self.max_new_tokens = max_new_tokens
        self.source = source  # (name or path, batch size, dtype) it was loaded from: how the other ranks load it

    @classmethod
    def load(cls, name_or_path: str, cache: JudgeCache | None = None, max_new_tokens: int | None = None,
             batch_size: int = 8, dtype: str = "auto") -> "LocalJudge":
        from sppo.local_judge import LocalChatModel

        try:
            chat = LocalChatModel.load(name_or_path, dtype=dtype, batch_size=batch_size)
        except (UserError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # corrupt weights, missing tokenizer files, unknown Hub id, ...
            raise UserError(f"--judge local:{name_or_path}: cannot load the judge model ({described(e)})") from None
        return cls(chat, name=local_judge_name(name_or_path), cache=cache, max_new_tokens=max_new_tokens,
                   source=(name_or_path, batch_size, dtype))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_new_tokens": self.max_new_tokens, "dtype": self.chat_model.dtype}

    def identity(self) -> dict[str, Any]:
        """The model and the dtype it computes in: a bf16 judge's verdicts are not an fp32 judge's."""
        return {**super().identity(), "dtype": self.chat_model.dtype}

    def verdict_from_logprobs(self, messages: Sequence[dict], prefix: str, choices: Sequence[str]) -> str:
        """The choice the model finds most likely right after ``prefix`` in its reply: ``messages`` + an assistant
        turn starting with ``prefix`` (its verdict text and the official verdict opener, ``[[`` / ``Rating: [[``),
        each choice scored by the summed log-probability of its tokens. Only local judges offer this: a small
        model that writes no valid label still yields a verdict (recorded as ``verdict_source: logprobs``)."""
        scores = self.chat_model.continuation_logprobs(messages, prefix, choices)
        return choices[max(range(len(choices)), key=lambda i: scores[i])]

    def _prompt_tokens(self, messages) -> int:
        return self.chat_model.prompt_length(list(messages))

    def _complete_uncached(self, requests, indices, done, progress) -> None:
        """Requests grouped by kind (first-token logprobs, or text up to a length), each group one job shared
        by every rank (`benchmarks.parallel`)."""
        from benchmarks import parallel
        from sppo import distributed

        if distributed.world_size() > 1 and self.source is None:
            raise RuntimeError("a local judge shared by several processes must be made by LocalJudge.load")
        groups: dict[tuple, list[int]] = {}
        for n, r in enumerate(requests):
            groups.setdefault(("logprobs", r.top_logprobs) if r.top_logprobs else ("text", r.max_tokens), []).append(n)
        for (kind, arg), members in groups.items():
            self._tally(calls=len(members))
            limit = min(arg, self.max_new_tokens) if kind == "text" and self.max_new_tokens else arg
            job = LocalJudgeJob(self.source, kind, limit, tuple(tuple(requests[n].messages) for n in members),
                                progress)
            replies = parallel.run(job, here=lambda j: _local_judge_replies(self.chat_model, j))
            for n, reply in zip(members, replies):
                reply.prompt_tokens = self._prompt_tokens(requests[n].messages)
                done(indices[n], reply)


# requests per chunk of a local judge job: at most LOCAL_JUDGE_CHUNK, fewer when a job has under 8 x that many,
# at least LOCAL_JUDGE_MIN_CHUNK (one batch of the judge model: a text verdict's decoding steps cost nearly the same
# for 8 sequences as for 4)
LOCAL_JUDGE_CHUNK, LOCAL_JUDGE_MIN_CHUNK = 16, 8


@dataclass(frozen=True)
class LocalJudgeJob:
    """One group of local-judge requests, run by every rank together (``benchmarks.parallel``)."""

    source: tuple[str, int, str] | None  # LocalJudge.source: how a rank loads the judge model
    kind: str  # "logprobs": first-token top-k (arg = k); "text": greedy reply (arg = max new tokens)
    arg: int
    conversations: tuple
    progress: bool

    def serve(self) -> list[JudgeReply]:
        """A `benchmarks.parallel.Job`: a serving rank's part of the replies (`serve_local_judge_job`)."""
        return serve_local_judge_job(self)


def _local_judge_replies(chat_model, job: LocalJudgeJob) -> list[JudgeReply]:
    """The replies of a local judge job, its chunks spread over the ranks (`sppo.chunks.share`); every rank
    returns all of them."""
    from sppo import chunks, distributed

    items = [{"id": f"{i:08d}"} for i in range(len(job.conversations))]
    progress = job.progress and distributed.is_main()

    def fn(chunk: list[dict]) -> list[dict]:
        convs = [[dict(m) for m in job.conversations[int(x["id"])]] for x in chunk]
        if job.kind == "logprobs":
            tops = chat_model.first_token_logprobs(convs, top_k=job.arg, progress=progress)
            return [{"id": x["id"], "top": top} for x, top in zip(chunk, tops)]
        texts = chat_model.chat(convs, max_new_tokens=job.arg, progress=progress)
        return [{"id": x["id"], "text": t} for x, t in zip(chunk, texts)]

    rows = chunks.share(items, fn, LOCAL_JUDGE_CHUNK, f"judge {job.kind}", LOCAL_JUDGE_MIN_CHUNK)
    if job.kind == "logprobs":
        return [JudgeReply(r["top"][0][0] if r["top"] else "", [{"token": t, "logprob": v} for t, v in r["top"]],
                           completion_tokens=1) for r in rows]
    tok = chat_model.tokenizer
    return [JudgeReply(r["text"], None, completion_tokens=len(tok(r["text"], add_special_tokens=False)["input_ids"]))
            for r in rows]


def serve_local_judge_job(job: LocalJudgeJob) -> list[JudgeReply]:
    """A serving rank's part of a local judge job (its own copy of the judge model, one held at a time)."""
    from benchmarks import parallel
    from sppo.local_judge import LocalChatModel

    name, batch_size, dtype = job.source
    chat = parallel.loaded("local_judge", job.source,
                           lambda: LocalChatModel.load(name, dtype=dtype, batch_size=batch_size))
    return _local_judge_replies(chat, job)
