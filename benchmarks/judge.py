"""Judge clients: an OpenAI-compatible chat-completions endpoint, or a local chat model in-process.

Both backends share one interface::

    judge.complete([JudgeRequest(messages, max_tokens, temperature, top_logprobs)]) -> [JudgeReply]

and one on-disk cache (SQLite, one committed row per finished request, so a crash loses at most the requests in
flight). The cache key is (judge identity - backend, base URL and model -, messages, generation parameters): a
rerun of the same benchmark makes zero repeated judge calls, and another endpoint serving a model of the same name
never answers from this one's replies. Failed requests (after retries) and empty replies are returned with
``error`` set and are *not* cached, so a later run tries them again; the suites never record them as judgments.

Ctrl-C / SIGTERM while a batch is in flight: no further request is sent (queued ones are cancelled, retries stop),
every reply that has arrived is already cached, and ``complete`` raises KeyboardInterrupt at once.
Every reply, cached row, error text and log line passes through ``sppo.scrub`` (the API key in any encoding,
``Authorization`` values, URL passwords removed); a base URL's userinfo is used for the requests only, never
recorded (``base_url`` in results, keys and logs is the URL without it).

- ``OpenAIJudge``: httpx POST ``{base_url}/chat/completions``; a thread pool bounds the requests in flight;
  429, 5xx, timeouts and connection errors are retried with exponential backoff (honouring ``Retry-After``);
  other 4xx fail at once. The API key is read from an environment variable whose *name* is configured; the key
  itself is never printed, logged, stored in results or written to the cache.
- ``LocalJudge``: ``sppo.local_judge.LocalChatModel``: requests with ``top_logprobs`` get the first-token
  distribution (AlpacaEval's weighted judge), the others greedy text (MT-Bench / Arena-Hard verdicts).

Counters (``judge.stats``): calls (requests sent, retries included), cache_hits, retries, errors, prompt and
completion tokens, cost in USD (from a price table or ``price_per_million``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from sppo.errors import UserError, described, io_errors
from sppo.files import refuse_symlink, utc_now
from sppo.scrub import install_log_scrubber, public_url, register_secret, scrub, scrub_obj, url_credentials

__all__ = ["install_log_scrubber", "register_secret", "scrub"]  # the shared scrubber, as the suites import it

log = logging.getLogger(__name__)

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
CACHE_FILE = "judge_cache.sqlite3"


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


def cache_key(judge_identity: dict[str, Any], request: JudgeRequest) -> str:
    """The cache key of one request to one judge (``Judge.identity()``: backend, base URL, model)."""
    blob = json.dumps({"judge": judge_identity, "messages": list(request.messages), "params": request.params()},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """SQLite key -> reply. Every insert is committed on its own (WAL journal): crash-safe, many threads. A file
    the machine cannot write (full disk, read-only, no permission) is one line naming it (``MachineError``); a
    failed insert is rolled back, so the cache never holds half a row."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            refuse_symlink(self.path)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, judge TEXT NOT NULL, "
                             "request TEXT NOT NULL, reply TEXT NOT NULL, created_at TEXT NOT NULL)")
            self._db.commit()

    @contextlib.contextmanager
    def _errors(self):
        """SQLite's errors as one line naming the cache file; a corrupt file is the user's to remove."""
        try:
            with io_errors(self.path):
                yield
        except sqlite3.DatabaseError as e:
            if getattr(self, "_db", None) is not None:
                self._db.rollback()
            raise UserError(f"{self.path}: unusable judge cache ({e}); remove it to start a new one") from None

    def get(self, key: str) -> JudgeReply | None:
        with self._lock, self._errors():
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        d = json.loads(row[0])
        return JudgeReply(**{**d, "cached": True})

    def put(self, key: str, judge_model: str, request: JudgeRequest, reply: JudgeReply) -> None:
        d = scrub_obj(asdict(reply))
        d.pop("cached")
        req = json.dumps(scrub_obj({"messages": list(request.messages), "params": request.params()}),
                         ensure_ascii=False)
        with self._lock, self._errors():
            try:
                self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                                 (key, judge_model, req, json.dumps(d, ensure_ascii=False), utc_now()))
                self._db.commit()
            except sqlite3.Error:
                self._db.rollback()
                raise

    def __len__(self) -> int:
        with self._lock, self._errors():
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Judge:
    """Base class: cache lookup, accounting and progress around a backend's ``_complete_uncached``."""

    backend = "base"

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
                with self._stats_lock:
                    self.stats.cache_hits += 1
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

    # -- for backends ------------------------------------------------------------------------------------------------
    def _complete_uncached(self, requests, indices, done, progress) -> None:
        raise NotImplementedError

    def _account(self, reply: JudgeReply) -> None:
        with self._stats_lock:
            self.stats.prompt_tokens += reply.prompt_tokens
            self.stats.completion_tokens += reply.completion_tokens
            if reply.error:
                self.stats.errors += 1
            if self.price:
                self.stats.cost_usd += (reply.prompt_tokens * self.price[0]
                                        + reply.completion_tokens * self.price[1]) / 1e6


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIJudge(Judge):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, ``vllm serve``, llama.cpp server, ...)."""

    backend = "openai"

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1",
                 api_key_env: str | None = "OPENAI_API_KEY", cache: JudgeCache | None = None,
                 max_concurrency: int = 8, max_retries: int = 6, timeout: float = 120.0,
                 backoff_base: float = 1.0, backoff_max: float = 60.0,
                 price_per_million: tuple[float, float] | None = None):
        super().__init__(model, cache, price_per_million)
        self.base_url = public_url(base_url.rstrip("/"))  # without user:password, which never reaches a record,
        self._auth = url_credentials(base_url)  # a key or a log line: it goes as basic authentication
        self.api_key_env = api_key_env
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout = float(timeout)
        self.backoff_base, self.backoff_max = float(backoff_base), float(backoff_max)
        self._client = None
        self._stop = threading.Event()  # set on Ctrl-C / SIGTERM: no new request, no retry
        register_secret(os.environ.get(api_key_env) if api_key_env else None)

    def __repr__(self) -> str:  # no key here, ever
        return f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def info(self) -> dict[str, Any]:
        return {**super().info(), "base_url": self.base_url, "api_key_env": self.api_key_env,
                "max_concurrency": self.max_concurrency, "max_retries": self.max_retries}

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "base_url": self.base_url}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            register_secret(key)
            headers["Authorization"] = "Bearer " + key
        return headers

    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout,
                                        limits=httpx.Limits(max_connections=self.max_concurrency))
        return self._client

    def _complete_uncached(self, requests, indices, done, progress) -> None:
        """Requests in a thread pool; each reply is handed to ``done`` (cached) by the worker that received it.
        On KeyboardInterrupt: queued requests are cancelled, retries stop, connections are closed, and the
        interrupt propagates without waiting for the requests in flight."""
        from tqdm.auto import tqdm

        bar = tqdm(total=len(requests), desc=f"judge {self.model}", unit="req", disable=not progress)
        self._stop.clear()

        def work(request: JudgeRequest, j: int) -> None:
            if self._stop.is_set():
                return
            reply = self._one(request)
            if not self._stop.is_set() or reply.ok:
                done(j, reply)

        pool = ThreadPoolExecutor(max_workers=self.max_concurrency)
        try:
            futures = [pool.submit(work, r, j) for r, j in zip(requests, indices)]
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
        except BaseException:
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            if self._client is not None:
                self._client.close()  # aborts the requests in flight
                self._client = None
            raise
        finally:
            bar.close()
        pool.shutdown(wait=True)

    def _one(self, request: JudgeRequest) -> JudgeReply:
        import httpx

        payload = {"model": self.model, "messages": list(request.messages), **request.params()}
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                return JudgeReply(None, error="interrupted")
            if attempt:
                with self._stats_lock:
                    self.stats.retries += 1
            with self._stats_lock:
                self.stats.calls += 1
            try:
                try:
                    resp = self._http().post(f"{self.base_url}/chat/completions", json=payload,
                                             headers=self._headers(), auth=self._auth)
                except httpx.TimeoutException:
                    raise _Retryable("timeout") from None
                except (httpx.TransportError, RuntimeError, AttributeError) as e:  # also: client closed on Ctrl-C
                    raise _Retryable(f"connection error ({type(e).__name__})") from None
                if resp.status_code == 429 or resp.status_code >= 500:
                    raise _Retryable(f"HTTP {resp.status_code}: {_short(resp.text)}",
                                     _retry_after(resp.headers.get("retry-after")))
                if resp.status_code >= 400:
                    error = f"HTTP {resp.status_code}: {_short(resp.text)}"
                    log.warning("judge request failed: %s", error)
                    return JudgeReply(None, error=error)
                try:
                    return _parse_completion(resp.json())
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    raise _Retryable(f"malformed response ({_short(str(e))})") from None
            except _Retryable as e:
                last = str(e)
                if attempt == self.max_retries:
                    break
                delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
                if e.retry_after is not None:
                    delay = min(self.backoff_max, max(delay, e.retry_after))
                log.debug("judge request failed (%s); retry %d in %.2fs", last, attempt + 1, delay)
                if self._stop.wait(delay):
                    return JudgeReply(None, error="interrupted")
        log.warning("judge request failed after %d attempts: %s", self.max_retries + 1, last)
        return JudgeReply(None, error=f"failed after {self.max_retries + 1} attempts: {last}")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(text: str, n: int = 200) -> str:
    """One scrubbed line of at most ``n`` characters (error bodies may echo the request, key included)."""
    text = scrub(" ".join(text.split()))
    return text if len(text) <= n else text[:n] + "..."


def _parse_completion(body: dict) -> JudgeReply:
    choice = body["choices"][0]
    text = choice["message"]["content"]
    if text is not None and not isinstance(text, str):
        raise TypeError("message content is not text")
    top = None
    lp = choice.get("logprobs")
    if lp and lp.get("content"):
        first = lp["content"][0]
        # no alternatives listed: an empty list, which alpaca_eval's logprob_parser turns into NaN
        # (alpaca_eval 0.6.6 completion_parsers.py:281-284), never the sampled token as a hard verdict
        top = [{"token": t["token"], "logprob": float(t["logprob"])} for t in (first.get("top_logprobs") or [])]
    usage = body.get("usage") or {}
    prompt_tokens, completion_tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if not text and not top:  # null or empty content: nothing was judged (a failure, never cached)
        return JudgeReply(None, None, prompt_tokens, completion_tokens,
                          error=f"empty reply (finish_reason {choice.get('finish_reason')!r})")
    return JudgeReply(text or "", top, prompt_tokens, completion_tokens)


class LocalJudge(Judge):
    """A local chat model in-process (``sppo.local_judge.LocalChatModel``); costs nothing, works offline.

    ``max_new_tokens`` caps the length of text verdicts (the official judges may write 2048-4096 tokens; on a CPU
    a small model is given fewer)."""

    backend = "local"

    def __init__(self, chat_model, name: str | None = None, cache: JudgeCache | None = None,
                 max_new_tokens: int | None = None, source: tuple[str, int] | None = None):
        super().__init__(name or f"local:{chat_model.name}", cache, (0.0, 0.0))
        self.chat_model = chat_model
        self.max_new_tokens = max_new_tokens
        self.source = source  # (name or path, batch size) it was loaded from: how the other ranks load it

    @classmethod
    def load(cls, name_or_path: str, cache: JudgeCache | None = None, max_new_tokens: int | None = None,
             batch_size: int = 4) -> "LocalJudge":
        from sppo.local_judge import LocalChatModel

        try:
            chat = LocalChatModel.load(name_or_path, batch_size=batch_size)
        except (UserError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # corrupt weights, missing tokenizer files, unknown Hub id, ...
            raise UserError(f"--judge local:{name_or_path}: cannot load the judge model ({described(e)})") from None
        return cls(chat, name=local_judge_name(name_or_path), cache=cache, max_new_tokens=max_new_tokens,
                   source=(name_or_path, batch_size))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_new_tokens": self.max_new_tokens}

    def verdict_from_logprobs(self, messages: Sequence[dict], prefix: str, choices: Sequence[str]) -> str:
        """The choice the model finds most likely right after ``prefix`` in its reply: ``messages`` + an assistant
        turn starting with ``prefix`` (its verdict text and the official verdict opener, ``[[`` / ``Rating: [[``),
        each choice scored by the summed log-probability of its tokens. Only local judges offer this: a small
        model that writes no valid label still yields a verdict (recorded as ``verdict_source: logprobs``)."""
        import torch

        from sppo.generate import encode_prompt, left_padded

        tok, model = self.chat_model.tokenizer, self.chat_model.model
        base = encode_prompt(tok, list(messages)) + tok(prefix, add_special_tokens=False)["input_ids"]
        base = base[-self.chat_model.max_prompt_length:]
        conts = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        ids, mask = left_padded([base + c for c in conts], tok.pad_token_id)
        keep = max(len(c) for c in conts) + 1
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=((mask.cumsum(-1) - 1).clamp(min=0)).to(device),
                           logits_to_keep=keep).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)  # position j predicts the token at keep - 1 - ... + j + 1
        scores = []
        for row, c in enumerate(conts):
            steps = range(keep - 1 - len(c), keep - 1)
            scores.append(sum(float(logprobs[row, j, t]) for j, t in zip(steps, c)))
        return choices[max(range(len(choices)), key=lambda i: scores[i])]

    def _prompt_tokens(self, messages) -> int:
        from sppo.generate import encode_prompt

        return min(len(encode_prompt(self.chat_model.tokenizer, list(messages))), self.chat_model.max_prompt_length)

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
            with self._stats_lock:
                self.stats.calls += len(members)
            limit = min(arg, self.max_new_tokens) if kind == "text" and self.max_new_tokens else arg
            job = LocalJudgeJob(self.source, kind, limit, tuple(tuple(requests[n].messages) for n in members),
                                progress)
            replies = parallel.run("local_judge", job, here=lambda j: _local_judge_replies(self.chat_model, j))
            for n, reply in zip(members, replies):
                reply.prompt_tokens = self._prompt_tokens(requests[n].messages)
                done(indices[n], reply)


# requests per chunk of a local judge job: at most LOCAL_JUDGE_CHUNK, fewer when a job has under 8 x that many,
# at least LOCAL_JUDGE_MIN_CHUNK (batched together)
LOCAL_JUDGE_CHUNK, LOCAL_JUDGE_MIN_CHUNK = 16, 4


@dataclass(frozen=True)
class LocalJudgeJob:
    source: tuple[str, int] | None  # LocalJudge.source: how a rank loads the judge model
    kind: str  # "logprobs": first-token top-k (arg = k); "text": greedy reply (arg = max new tokens)
    arg: int
    conversations: tuple
    progress: bool


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

    name, batch_size = job.source
    chat = parallel.loaded("local_judge", job.source, lambda: LocalChatModel.load(name, batch_size=batch_size))
    return _local_judge_replies(chat, job)


def local_judge_name(model: str | None) -> str:
    """The judge name of a local model (its cache key and results label): ``local:embedded`` or ``local:MODEL``."""
    from sppo.models import EMBEDDED_ALIASES

    return "local:embedded" if model is None or model in EMBEDDED_ALIASES else f"local:{model}"


def parse_judge_spec(spec: str | None) -> tuple[str, str | None]:
    """``--judge`` values: ``local`` / ``local:MODEL`` -> ("local", MODEL or None); ``openai`` -> ("openai", None)."""
    if spec is None or spec == "openai":
        return "openai", None
    if spec == "local":
        return "local", None
    if spec.startswith("local:"):
        return "local", spec[len("local:"):] or None
    raise UserError(f"--judge: unknown value {spec!r}; use local, local:MODEL or openai")
