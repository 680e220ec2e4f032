"""Test doubles for the benchmark tests and the perf suite: a fake OpenAI-compatible chat-completions server
(stdlib only, 127.0.0.1), a ranker plug-in, tiny checkpoints and the `sppo-bench` arguments of a quick run.

The server's verdicts are a deterministic function of the request's messages:
- requests with ``logprobs`` (AlpacaEval's weighted judge): content ``m`` or ``M`` with top-5 logprobs where
  P(m) = a value in (0.05, 0.95) derived from a hash of the messages;
- an Arena-Hard system prompt (it lists ``[[A>>B]]``): ``My final verdict is [[<label>]]``;
- a request naming the labels ``[[A]]`` and ``[[B]]`` (and ``[[C]]``), a pairwise suite of your own:
  ``My verdict: [[<label>]]``;
- otherwise (MT-Bench): ``Rating: [[<1..10>]]``.

Faults are injected with ``server.faults``: a list consumed one per request, items ``429``, ``500``, ``"timeout"``
(sleeps past the client's timeout), ``"garbage"`` (HTTP 200 with a body that is not a completion), ``"no-verdict"``
(a reply without any verdict/rating), ``"empty"`` (HTTP 200 whose message content is null), ``401`` (an error body
that echoes the request headers, API key included, as some endpoints do), ``"no-logprobs"`` (the verdict token
without any logprobs), ``"empty-top-logprobs"`` (logprobs with an empty ``top_logprobs`` list), ``"echo-auth"`` (a
normal HTTP 200 verdict whose text also echoes the ``Authorization`` header raw, URL-encoded and inside the request
headers as JSON, as a careless proxy might), or ``None`` (normal). Hostile replies: ``"drip"`` (a well-formed reply
sent one byte every 0.2 s), ``"hang"`` (headers, then nothing until the server stops), ``"huge"`` (a 5 MB
completion), ``("raw", TEXT)`` (HTTP 200 with the body TEXT). ``server.always`` applies one fault to every request;
``server.delay`` makes every reply wait that many seconds. The query string of each request is kept in
``server.queries``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARENA_LABELS = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]


def _h(messages) -> int:
    return int(hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest(), 16)


def verdict(body: dict) -> dict:
    """The deterministic completion (message text and, if asked, first-token top logprobs) for a request."""
    messages = body["messages"]
    h = _h(messages)
    if body.get("logprobs"):
        p = 0.05 + (h % 1000) / 1000 * 0.9
        token = "m" if p >= 0.5 else "M"
        top = [{"token": "m", "logprob": math.log(p)}, {"token": "M", "logprob": math.log(1 - p) - 0.01},
               {"token": "The", "logprob": -9.0}, {"token": "Output", "logprob": -10.0},
               {"token": " m", "logprob": -11.0}][:body.get("top_logprobs", 5)]
        top.sort(key=lambda t: -t["logprob"])
        return {"text": token, "logprobs": {"content": [{"token": token, "logprob": top[0]["logprob"],
                                                          "top_logprobs": top}]}}
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if "[[A>>B]]" in system:
        return {"text": f"Both answers are short. My final verdict is [[{ARENA_LABELS[h % 5]}]]"}
    asked = " ".join(m["content"] for m in messages)
    if "[[A]]" in asked and "[[B]]" in asked:  # a pairwise suite of your own (examples/pairwise-suite)
        labels = ["A", "B", "C"] if "[[C]]" in asked else ["A", "B"]
        return {"text": f"Both answers are short. My verdict: [[{labels[h % len(labels)]}]]"}
    return {"text": f"The answer is brief. Rating: [[{h % 10 + 1}]]"}


def _faulty_verdict(fault, body: dict, headers) -> dict:
    """The verdict of a request, altered by a fault that still answers HTTP 200 with a completion."""
    v = verdict(body)
    if fault == "no-verdict":
        v = {"text": "I cannot decide."}
    if fault == "empty":
        v = {"text": None}
    if fault == "echo-auth":
        auth = headers.get("Authorization") or ""
        v["text"] += (f" (your headers: {json.dumps(dict(headers))}; raw {auth}; "
                      f"url-encoded {urllib.parse.quote(auth, safe='')})")
    if fault == "no-logprobs":
        v.pop("logprobs", None)
    if fault == "empty-top-logprobs" and "logprobs" in v:
        first = v["logprobs"]["content"][0]
        v["logprobs"] = {"content": [{**first, "top_logprobs": []}]}
    return v


def _completion(body: dict, v: dict) -> dict:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": v["text"]}}
    if "logprobs" in v:
        choice["logprobs"] = v["logprobs"]
    n_prompt = sum(len(m["content"]) // 4 for m in body["messages"])
    return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": 7, "total_tokens": n_prompt + 7}}


class _Handler(BaseHTTPRequestHandler):
    """One request to the fake server (``self.server.fake``: the FakeJudgeServer holding the faults and logs)."""

    def log_message(self, *a):  # quiet
        pass

    def do_POST(self):
        fake = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        fault = fake.arrived(body, dict(self.headers))
        with fake.lock:
            fake.queries.append(urllib.parse.urlsplit(self.path).query)
        try:
            if fault in ("drip", "hang") or isinstance(fault, tuple):
                self._hostile(fake, fault, body)
            else:
                status, obj = self._reply(fake, fault, body)
                self._send(status, obj)
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _hostile(self, fake: "FakeJudgeServer", fault, body: dict) -> None:
        data = fault[1].encode() if isinstance(fault, tuple) else json.dumps(_completion(body, verdict(body))).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
            if fault == "hang":
                fake.stopped.wait()
            elif fault == "drip":
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    if fake.stopped.wait(0.2):
                        return
            else:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _reply(self, fake: "FakeJudgeServer", fault, body: dict) -> tuple[int, dict]:
        if urllib.parse.urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
            return 404, {"error": "not found"}
        if fake.delay:
            time.sleep(fake.delay)
        if fault == 401:
            echo = {"Authorization": self.headers.get("Authorization"), **dict(self.headers)}
            return 401, {"error": {"message": "invalid key", "echo": echo}}
        if fault in (429, 500, 503, 400):
            return fault, {"error": {"message": "injected"}}
        if fault == "timeout":
            time.sleep(fake.timeout_sleep)
            return 200, {"error": "too late"}
        if fault == "garbage":
            return 200, {"unexpected": True}
        if fault == "huge":
            return 200, _completion(body, {"text": "Rating: [[5]] " + "x" * 5_000_000})
        return 200, _completion(body, _faulty_verdict(fault, body, self.headers))

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FakeJudgeServer:
    def __init__(self, timeout_sleep: float = 2.0):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.faults: list = []
        self.always = None
        self.delay = 0.0
        self.timeout_sleep = timeout_sleep
        self.lock = threading.Lock()
        self.queries: list[str] = []
        self.stopped = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def arrived(self, body: dict, headers: dict):
        """Log a request and count it in flight; returns the fault to apply to it."""
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            fault = self.faults.pop(0) if self.faults else self.always
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return fault

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeJudgeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.requests)




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


class FailingRanker(LongestRanker):
    """`LongestRanker` that raises on one rank only, the one SPPO_TEST_FAIL_RANK names (`--ranker
    python:bench_fake_judge:FailingRanker`): one rank of a multi-process run fails, the others must not wait."""

    def compare(self, prompts, candidates):
        import os

        if os.environ.get("RANK", "0") == os.environ.get("SPPO_TEST_FAIL_RANK"):
            raise RuntimeError(f"ranker failed on rank {os.environ['RANK']} (test)")
        return super().compare(prompts, candidates)


def tiny_checkpoints(root, seeds=(0, 1)):
    """Tiny random Llama checkpoints with the embedded model's tokenizer (chat template included)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sppo.models import embedded_checkpoint

    tok = AutoTokenizer.from_pretrained(embedded_checkpoint())
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
        path = root / f"tiny{seed + 1}"
        LlamaForCausalLM(cfg).save_pretrained(path)
        tok.save_pretrained(path)
        out.append(path)
    return out


def bench_args(server, checkpoints, shared_data, results, *extra, limit=2, max_new_tokens=8, model="fake-judge"):
    """`sppo-bench` arguments for a run against the fake judge server (quick settings)."""
    return [*extra, *map(str, checkpoints), "--limit", str(limit), "--max-new-tokens", str(max_new_tokens),
            "--judge-base-url", server.url, "--judge-model", model, "--judge-api-key-env", "BENCH_KEY",
            "--judge-backoff", "0.01", "--judge-timeout", "0.5", "--data-dir", str(shared_data),
            "--results-dir", str(results), "--lm-eval-tasks", "tiny", "--generation-backend", "hf",
            "--batch-size", "4"]
