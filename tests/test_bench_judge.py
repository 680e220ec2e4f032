"""The judge client against a fake OpenAI-compatible server: retries, failures, cache, accounting, no key leaks."""

from __future__ import annotations

import math

import pytest

from bench_fake_judge import FakeJudgeServer, verdict
from benchmarks.judge import JudgeCache, JudgeRequest, LocalJudge, OpenAIJudge, parse_judge_spec

MSG = [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": "Rate this."}]


@pytest.fixture
def server():
    with FakeJudgeServer(timeout_sleep=1.5) as s:
        yield s


def make(server, tmp_path, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 0.5)
    return OpenAIJudge("fake-judge", base_url=server.url, api_key_env="BENCH_TEST_KEY",
                       cache=JudgeCache(tmp_path / "cache.sqlite3"), **kw)


def test_text_and_logprobs(server, tmp_path):
    judge = make(server, tmp_path)
    text, lp = judge.complete([JudgeRequest.make(MSG, 100), JudgeRequest.make(MSG, 1, 1.0, top_logprobs=5)])
    assert text.ok and text.text == verdict({"messages": MSG})["text"]
    assert lp.top_logprobs and {t["token"] for t in lp.top_logprobs} >= {"m", "M"}
    body = server.requests[-1] if server.requests[-1].get("logprobs") else server.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    assert judge.stats.calls == 2 and judge.stats.prompt_tokens > 0 and judge.stats.completion_tokens == 14


def test_cache_makes_zero_calls_and_survives_reopen(server, tmp_path):
    judge = make(server, tmp_path)
    reqs = [JudgeRequest.make(MSG, 100), JudgeRequest.make(MSG, 50)]
    first = judge.complete(reqs)
    n = server.count()
    again = make(server, tmp_path)  # a new process would reopen the same file
    second = again.complete(reqs)
    assert server.count() == n and again.stats.calls == 0 and again.stats.cache_hits == 2
    assert [r.text for r in first] == [r.text for r in second] and all(r.cached for r in second)
    # identical requests inside one batch are sent once
    judge3 = make(server, tmp_path / "other")
    judge3.complete([JudgeRequest.make(MSG, 7)] * 3)
    assert judge3.stats.calls == 1


@pytest.mark.parametrize("fault", [429, 500, "timeout", "garbage"])
def test_transient_faults_are_retried(server, tmp_path, fault):
    server.faults = [fault, fault]
    judge = make(server, tmp_path)
    (reply,) = judge.complete([JudgeRequest.make(MSG, 100)])
    assert reply.ok and reply.text == verdict({"messages": MSG})["text"]
    assert judge.stats.retries == 2 and judge.stats.calls == 3


def test_persistent_failure_is_an_error_and_not_cached(server, tmp_path):
    server.always = 500
    judge = make(server, tmp_path, max_retries=2)
    (reply,) = judge.complete([JudgeRequest.make(MSG, 100)])
    assert not reply.ok and "HTTP 500" in reply.error and judge.stats.errors == 1 and judge.stats.calls == 3
    server.always = None
    (reply,) = judge.complete([JudgeRequest.make(MSG, 100)])  # tried again: failures are not cached
    assert reply.ok and judge.stats.cache_hits == 0


def test_client_errors_are_not_retried(server, tmp_path):
    server.faults = [400]
    judge = make(server, tmp_path)
    (reply,) = judge.complete([JudgeRequest.make(MSG, 100)])
    assert not reply.ok and "HTTP 400" in reply.error and judge.stats.calls == 1


def test_api_key_sent_but_never_recorded(server, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("BENCH_TEST_KEY", secret)
    judge = make(server, tmp_path)
    judge.complete([JudgeRequest.make(MSG, 100)])
    assert server.headers[-1]["Authorization"] == f"Bearer {secret}"
    assert secret not in repr(judge) and secret not in str(judge.info())
    assert secret.encode() not in (tmp_path / "cache.sqlite3").read_bytes()


def test_concurrency_limit_and_accounting(server, tmp_path):
    judge = make(server, tmp_path, max_concurrency=2, price_per_million=(10.0, 30.0))
    reqs = [JudgeRequest.make([{"role": "user", "content": f"q{i}" * 50}], 10) for i in range(12)]
    replies = judge.complete(reqs)
    assert all(r.ok for r in replies) and server.max_in_flight <= 2
    s = judge.stats
    assert math.isclose(s.cost_usd, (s.prompt_tokens * 10 + s.completion_tokens * 30) / 1e6)


def test_judge_spec():
    assert parse_judge_spec("local") == ("local", None)
    assert parse_judge_spec("local:some/model") == ("local", "some/model")
    assert parse_judge_spec(None) == ("openai", None)


class _FakeChat:
    """Stands in for sppo.local_judge.LocalChatModel."""

    name = "fake-local"
    dtype = "float32"

    class tokenizer:  # noqa: N801 - mimics a tokenizer object
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    tokenizer = tokenizer()
    max_prompt_length = 100

    def first_token_logprobs(self, convs, top_k=5, progress=False):
        return [[("m", -0.1), ("M", -2.4)][:top_k] for _ in convs]

    def chat(self, convs, max_new_tokens=256, progress=False):
        self.last_max = max_new_tokens
        return ["Rating: [[5]]" for _ in convs]


def test_local_judge_same_interface(tmp_path, monkeypatch):
    chat = _FakeChat()
    judge = LocalJudge(chat, cache=JudgeCache(tmp_path / "c.sqlite3"), max_new_tokens=16)
    monkeypatch.setattr(judge, "_prompt_tokens", lambda messages: 3)
    lp, text = judge.complete([JudgeRequest.make(MSG, 1, 1.0, top_logprobs=5), JudgeRequest.make(MSG, 2048)])
    assert lp.top_logprobs == [{"token": "m", "logprob": -0.1}, {"token": "M", "logprob": -2.4}]
    assert text.text == "Rating: [[5]]" and chat.last_max == 16
    again = judge.complete([JudgeRequest.make(MSG, 2048)])
    assert again[0].cached and judge.stats.calls == 2 and judge.stats.cache_hits == 1
