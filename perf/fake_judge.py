"""A local stand-in for an OpenAI-compatible judge (stdlib HTTP server on 127.0.0.1, a free port).

Replies are a deterministic function of the request, in the shapes the suites parse:
- a request asking for logprobs (AlpacaEval's weighted judge): the token "m" or "M" with top logprobs;
- a system prompt listing the Arena-Hard verdict labels: "My final verdict is [[A>B]]" (or another label);
- anything else (MT-Bench): "Rating: [[n]]".
It counts the requests it answered: that count is the number of judge calls a run made.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")


def reply_for(body: dict) -> dict:
    messages = body.get("messages") or []
    digest = int(hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12], 16)
    message: dict = {"role": "assistant"}
    choice: dict = {"index": 0, "finish_reason": "stop", "message": message}
    if body.get("logprobs"):
        p = 0.1 + 0.8 * (digest % 997) / 996
        top = sorted([{"token": "m", "logprob": math.log(p)}, {"token": "M", "logprob": math.log(1 - p)}],
                     key=lambda t: -t["logprob"])
        message["content"] = top[0]["token"]
        choice["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                           "top_logprobs": top[:int(body.get("top_logprobs") or 2)]}]}
    elif messages and messages[0].get("role") == "system" and "[[A>>B]]" in messages[0].get("content", ""):
        message["content"] = f"Both are fine. My final verdict is [[{_LABELS[digest % 5]}]]"
    else:
        message["content"] = f"Brief and correct. Rating: [[{digest % 10 + 1}]]"
    n_in = sum(len(str(m.get("content", ""))) // 4 for m in messages)
    return {"id": "perf", "object": "chat.completion", "model": body.get("model"), "choices": [choice],
            "usage": {"prompt_tokens": n_in, "completion_tokens": 8, "total_tokens": n_in + 8}}


class FakeJudge:
    """`with FakeJudge() as judge:` serves on judge.url until the block ends; judge.calls counts requests."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with owner._lock:
                    owner.calls += 1
                status, data = (200, reply_for(body)) if self.path.rstrip("/").endswith("/chat/completions") \
                    else (404, {"error": {"message": "not found"}})
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FakeJudge":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
