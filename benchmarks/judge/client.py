"""``OpenAIJudge``: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, ``vllm serve``, llama.cpp server).

httpx POST ``{base_url}/chat/completions`` (a query string of the base URL kept after the path); worker threads bound
the requests in flight; 429, 5xx, timeouts and connection errors are retried with exponential backoff (honouring
``Retry-After``); other 4xx fail at once. Each attempt has a total deadline, ``timeout`` seconds for the whole reply
(a judge that drips a byte a second is abandoned at the deadline, not kept alive by every byte), and a reply larger
than ``max_reply_bytes`` fails the request unread past the cap. A reply whose JSON is not a chat completion
(``parse_completion``: every field's shape checked) is retried, then fails with one line naming the field.

The API key is read from an environment variable whose *name* is configured; the key itself is never printed,
logged, stored in results or written to the cache. Every reply, error text and log line passes through
``sppo.scrub`` (the API key in any encoding, ``Authorization`` values, URL passwords and secret query values
removed); a base URL's userinfo is used for the requests only and its secret query values are never recorded
(``base_url`` in results, keys and logs is ``sppo.scrub.public_url`` of it).

Ctrl-C / SIGTERM while a batch is in flight: no further request is sent (queued ones are dropped, retries stop),
every reply that has arrived is already cached, and ``complete`` raises KeyboardInterrupt at once; the worker
threads are daemon threads, so a request still hanging on a silent endpoint never keeps the process alive.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from sppo.scrub import public_url, register_secret, scrub, url_credentials

from .base import Judge
from .cache import JudgeCache
from .types import JudgeReply, JudgeRequest

MAX_REPLY_BYTES = 4_000_000  # a judgment with logprobs is a few kB

log = logging.getLogger(__package__)  # "benchmarks.judge": the name every log line of the judge carries


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Failed(Exception):
    """A request that fails at once, without a retry (a reply over the size cap)."""


def recorded_base_url(base_url: str) -> str:
    """The base URL as results, cache keys and logs record it: ``sppo.scrub.public_url`` (no userinfo, secret
    query values replaced) without a trailing ``/``."""
    parts = urlsplit(public_url(base_url))
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def completions_url(base_url: str) -> str:
    """Where requests go: the base URL's path + ``/chat/completions``, its query string kept after it
    (``http://h/v1?api_key=K`` -> ``http://h/v1/chat/completions?api_key=K``); userinfo goes as basic
    authentication instead, never in the URL."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2],
                                     path=parts.path.rstrip("/") + "/chat/completions", fragment=""))


class OpenAIJudge(Judge):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, ``vllm serve``, llama.cpp server, ...)."""

    backend = "openai"

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1",
                 api_key_env: str | None = "OPENAI_API_KEY", cache: JudgeCache | None = None,
                 max_concurrency: int = 8, max_retries: int = 6, timeout: float = 120.0,
                 backoff_base: float = 1.0, backoff_max: float = 60.0,
                 price_per_million: tuple[float, float] | None = None, max_reply_bytes: int = MAX_REPLY_BYTES):
        super().__init__(model, cache, price_per_million)
        self.base_url = recorded_base_url(base_url)  # no user:password or secret query value: never recorded,
        self._url = completions_url(base_url)  # the request URL (its secrets registered by recorded_base_url)
        self._auth = url_credentials(base_url)  # user:password goes as basic authentication
        self.api_key_env = api_key_env
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout = float(timeout)
        self.max_reply_bytes = int(max_reply_bytes)
        self.backoff_base, self.backoff_max = float(backoff_base), float(backoff_max)
        self._client = None
        self._stop = threading.Event()  # set on Ctrl-C / SIGTERM: no new request, no retry
        self._api_key()  # registered as a secret before anything could print it

    def __repr__(self) -> str:  # no key here, ever
        return f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def info(self) -> dict[str, Any]:
        return {**super().info(), "base_url": self.base_url, "api_key_env": self.api_key_env,
                "max_concurrency": self.max_concurrency, "max_retries": self.max_retries}

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "base_url": self.base_url}

    def _api_key(self) -> str | None:
        """The key in the environment variable named ``api_key_env`` (registered with ``sppo.scrub``), or None."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        register_secret(key)
        return key

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}  # the size cap is on bytes
        key = self._api_key()
        if key:
            headers["Authorization"] = "Bearer " + key
        return headers

    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout,
                                        limits=httpx.Limits(max_connections=self.max_concurrency))
        return self._client

    def _complete_uncached(self, requests, indices, done, progress) -> None:
        """Requests on daemon worker threads; each reply is handed to ``done`` (cached) by the worker that received
        it. On KeyboardInterrupt: queued requests are dropped, retries stop, connections are closed, and the
        interrupt propagates without waiting for the requests in flight."""
        from tqdm.auto import tqdm

        bar = tqdm(total=len(requests), desc=f"judge {self.model}", unit="req", disable=not progress)
        self._stop.clear()

        def work(request: JudgeRequest, j: int) -> None:
            reply = self._one(request)
            if not self._stop.is_set() or reply.ok:
                done(j, reply)

        try:
            run_on_daemon_threads([lambda r=r, j=j: work(r, j) for r, j in zip(requests, indices)],
                                  self.max_concurrency, self._stop, lambda: bar.update(1))
        except BaseException:
            self._stop.set()
            if self._client is not None:
                self._client.close()  # aborts the requests in flight
                self._client = None
            raise
        finally:
            bar.close()

    def _one(self, request: JudgeRequest) -> JudgeReply:
        payload = {"model": self.model, "messages": list(request.messages), **request.params()}
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                return JudgeReply(None, error="interrupted")
            self._tally(calls=1, retries=1 if attempt else 0)
            try:
                return self._attempt(payload)
            except _Failed as e:
                log.warning("judge request failed: %s", e)
                return JudgeReply(None, error=str(e))
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

    def _attempt(self, payload: dict) -> JudgeReply:
        """One POST; the reply parsed, or _Retryable / _Failed (or a JudgeReply with the error of a 4xx)."""
        status, retry_after, body = self._post(payload)
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}: {_short(body)}", _retry_after(retry_after))
        if status >= 400:
            error = f"HTTP {status}: {_short(body)}"
            log.warning("judge request failed: %s", error)
            return JudgeReply(None, error=error)
        try:
            return parse_completion(json.loads(body))
        except (ValueError, RecursionError) as e:  # not JSON, nested past Python's limit, or not a completion
            raise _Retryable(f"malformed response ({_short(str(e) or type(e).__name__)})") from None

    def _post(self, payload: dict) -> tuple[int, str | None, str]:
        """(status, Retry-After, body text) of one POST, the body read under the total deadline and size cap."""
        import httpx

        deadline = time.monotonic() + self.timeout
        try:
            with self._http().stream("POST", self._url, json=payload, headers=self._headers(),
                                     auth=self._auth) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > self.max_reply_bytes:
                        raise _Failed(f"reply larger than {self.max_reply_bytes} bytes (--judge-max-reply-bytes)")
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("total deadline")
                    if self._stop.is_set():
                        raise _Retryable("interrupted")
                return resp.status_code, resp.headers.get("retry-after"), body.decode("utf-8", errors="replace")
        except httpx.TimeoutException:
            raise _Retryable(f"timeout (no complete reply within {self.timeout:g} s)") from None
        except (httpx.TransportError, httpx.StreamError, RuntimeError, AttributeError) as e:  # client closed
            raise _Retryable(f"connection error ({type(e).__name__})") from None


def run_on_daemon_threads(jobs: list[Callable[[], None]], workers: int, stop: threading.Event,
                          on_done: Callable[[], None]) -> None:
    """Run `jobs` on up to `workers` daemon threads, calling `on_done` in this thread after each; the first job
    error is raised here. Daemon threads are never joined at exit, so an interrupted run ends at once even while
    a job hangs; `stop` tells the threads to take no further job."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    finished: queue.SimpleQueue = queue.SimpleQueue()

    def worker() -> None:
        while not stop.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                job()
                finished.put(None)
            except BaseException as e:  # handed to the caller
                finished.put(e)

    for _ in range(min(workers, len(jobs))):
        threading.Thread(target=worker, name="judge-request", daemon=True).start()
    for _ in jobs:
        while True:
            try:
                error = finished.get(timeout=0.5)  # a timed wait: Ctrl-C and SIGTERM reach this thread at once
                break
            except queue.Empty:
                continue
        if error is not None:
            raise error
        on_done()


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _short(text: str, n: int = 200) -> str:
    """One scrubbed line of at most ``n`` characters (error bodies may echo the request, key included)."""
    text = scrub(" ".join(text[:20 * n].split()))
    return text if len(text) <= n else text[:n] + "..."


def _field(value: Any, where: str, kind: type | tuple, optional: bool = False) -> Any:
    if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise ValueError(f"field '{where}' is {type(value).__name__}, not {getattr(kind, '__name__', 'a number')}")


def _count(usage: dict, name: str) -> int:
    value = _field(usage.get(name), f"usage.{name}", int, optional=True) or 0
    if value < 0:
        raise ValueError(f"field 'usage.{name}' is negative")
    return value


def _top_logprobs(lp: Any) -> list[dict] | None:
    """The first output token's alternatives (``logprobs.content[0].top_logprobs``), or None without logprobs."""
    lp = _field(lp, "choices[0].logprobs", dict, optional=True)
    content = _field((lp or {}).get("content"), "choices[0].logprobs.content", list, optional=True)
    if not content:
        return None
    first = _field(content[0], "choices[0].logprobs.content[0]", dict)
    # no alternatives listed: an empty list, which alpaca_eval's logprob_parser turns into NaN
    # (alpaca_eval 0.6.6 completion_parsers.py:281-284), never the sampled token as a hard verdict
    alternatives = _field(first.get("top_logprobs"), "top_logprobs", list, optional=True) or []
    top = []
    for t in alternatives:
        t = _field(t, "top_logprobs[]", dict)
        top.append({"token": _field(t.get("token"), "top_logprobs[].token", str),
                    "logprob": float(_field(t.get("logprob"), "top_logprobs[].logprob", (int, float)))})
    return top


def parse_completion(body: Any) -> JudgeReply:
    """A chat-completion reply as a ``JudgeReply``; any field of another shape than the API's (``"usage":
    "lots"``, ``"logprobs": "nope"``, a list for an object) raises ValueError naming the field."""
    body = _field(body, "(reply)", dict)
    choices = _field(body.get("choices"), "choices", list)
    if not choices:
        raise ValueError("field 'choices' is empty")
    choice = _field(choices[0], "choices[0]", dict)
    message = _field(choice.get("message"), "choices[0].message", dict)
    text = _field(message.get("content"), "choices[0].message.content", str, optional=True)
    top = _top_logprobs(choice.get("logprobs"))
    usage = _field(body.get("usage"), "usage", dict, optional=True) or {}
    prompt_tokens, completion_tokens = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    if not text and not top:  # null or empty content: nothing was judged (a failure, never cached)
        reason = choice.get("finish_reason")
        return JudgeReply(None, None, prompt_tokens, completion_tokens,
                          error=f"empty reply (finish_reason {reason if isinstance(reason, str) else None!r})")
    return JudgeReply(text or "", top, prompt_tokens, completion_tokens)
