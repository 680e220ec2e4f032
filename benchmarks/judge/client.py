"""``OpenAIJudge``: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, ``vllm serve``, llama.cpp server).

httpx POST ``{base_url}/chat/completions``; a thread pool bounds the requests in flight; 429, 5xx, timeouts and
connection errors are retried with exponential backoff (honouring ``Retry-After``); other 4xx fail at once. The API
key is read from an environment variable whose *name* is configured; the key itself is never printed, logged,
stored in results or written to the cache. Every reply, error text and log line passes through ``sppo.scrub`` (the
API key in any encoding, ``Authorization`` values, URL passwords removed); a base URL's userinfo is used for the
requests only, never recorded (``base_url`` in results, keys and logs is the URL without it).

Ctrl-C / SIGTERM while a batch is in flight: no further request is sent (queued ones are cancelled, retries stop),
every reply that has arrived is already cached, and ``complete`` raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from sppo.scrub import public_url, register_secret, scrub, url_credentials

from .base import Judge
from .cache import JudgeCache
from .types import JudgeReply, JudgeRequest

log = logging.getLogger(__package__)  # "benchmarks.judge": the name every log line of the judge carries


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
        headers = {"Content-Type": "application/json"}
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
            self._tally(calls=1, retries=1 if attempt else 0)
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
