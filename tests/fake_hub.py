"""A fake Hugging Face Hub for the release tests: stdlib http.server on 127.0.0.1, in a thread.

It implements what `sppo-release --push` uses, the way huggingface_hub 2.4 calls it: repo creation, README
metadata validation, preupload (``*.safetensors`` go through LFS: batch + PUT, the rest as regular files), the
NDJSON commit (atomic: applied only if every line is valid), tags, collection items, and ``resolve`` for
downloads — for model repositories and for dataset repositories (kept as ``datasets/ORG/NAME`` in ``repos``). Every request is recorded (method, path, headers, body) so tests can look for the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class FakeHub:
    """State of the fake Hub plus the server serving it. Use as a context manager."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.collections: dict[str, list[str]] = {}
        self.requests: list[Request] = []
        self.fail: dict[str, int] = {}  # endpoint name -> how many next calls answer 500
        self.fail_commits_to: set[str] = set()  # repos whose commits answer 500
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> dict[str, Any]:
        """Everything a push could have changed, to compare before/after."""
        with self.lock:
            repos = {k: {"files": {p: hashlib.sha256(b).hexdigest() for p, b in r.files.items()},
                         "commits": [c["oid"] for c in r.commits], "tags": dict(r.tags)}
                     for k, r in self.repos.items()}
            return {"repos": repos, "collections": {k: list(v) for k, v in self.collections.items()}}


def _key(repo_type: str, repo_id: str) -> str:
    """Where a repository is kept in ``FakeHub.repos``: models by id, datasets as ``datasets/<id>``."""
    return f"datasets/{repo_id}" if repo_type.startswith("dataset") else repo_id


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        # ------------------------------------------------------------------ plumbing
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str, code: str | None = None) -> None:
            headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
            self._send(status, {"error": message}, headers)

        def _handle(self) -> None:
            body = self._body() if self.command in ("POST", "PUT") else b""
            path = urlsplit(self.path).path
            with hub.lock:
                hub.requests.append(Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                            body))
                try:
                    self._route(unquote(path), body)
                except Exception as e:  # a bug in the fake: make it visible
                    self._error(500, f"fake hub error: {type(e).__name__}: {e}")

        do_GET = do_HEAD = do_POST = do_PUT = _handle

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._error(401, "Invalid credentials in Authorization header")
                return False
            return True

        def _failing(self, name: str) -> bool:
            if hub.fail.get(name, 0) > 0:
                hub.fail[name] -= 1
                self._error(500, f"Internal Error while handling {name}")
                return True
            return False

        def _repo(self, repo_id: str) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "Repository not found", "RepoNotFound")
            return repo

        # ------------------------------------------------------------------ routes
        def _route(self, path: str, body: bytes) -> None:
            if m := re.fullmatch(r"/((?:datasets/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._resolve(m.group(1), m.group(3))
            if m := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path):
                hub.lfs[m.group(1)] = body
                return self._send(200, {})
            if path == "/api/agent-harnesses":  # huggingface_hub's best-effort, unauthenticated registry fetch
                return self._error(404, "not served by the fake hub")
            if not self._authorized():
                return
            if path == "/api/repos/create":
                return self._create(json.loads(body))
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit|tag)/([^/]+)", path):
                return getattr(self, "_" + m.group(3))(_key(m.group(1), m.group(2)), body)
            if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/refs", path):
                if repo := self._repo(_key(m.group(1), m.group(2))):
                    self._send(200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head}],
                                     "converts": [], "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": oid}
                                                              for t, oid in repo.tags.items()]})
                return
            if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)", path):
                if repo := self._repo(_key(m.group(1), m.group(2))):
                    self._send(200, {"id": m.group(2), "sha": repo.head, "siblings": []})
                return
            if m := re.fullmatch(r"/((?:datasets/)?[^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                return self._lfs_batch(m.group(1), json.loads(body))
            if m := re.fullmatch(r"/api/collections/(.+)/items", path):
                return self._collection_item(m.group(1), json.loads(body))
            if (m := re.fullmatch(r"/api/collections/(.+)", path)) and self.command == "GET":
                return self._collection(m.group(1))
            self._error(404, f"no route {self.command} {path}")

        def _resolve(self, repo_id: str, filename: str) -> None:
            if self._failing("resolve"):
                return
            repo = self._repo(repo_id)
            if repo is None:
                return
            if filename not in repo.files:
                return self._error(404, "Entry not found", "EntryNotFound")
            data = repo.files[filename]
            etag = hashlib.sha1(data).hexdigest()
            self._send(200, data, {"X-Repo-Commit": repo.head, "ETag": f'"{etag}"',
                                   "Content-Type": "application/octet-stream"})

        def _create(self, payload: dict) -> None:
            repo_id = _key(payload.get("type") or "model", f"{payload['organization']}/{payload['name']}")
            if repo_id in hub.repos:  # the Hub answers 409 with the repo's url
                return self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"},
                                  {"X-Error-Message": "You already created this model repo"})
            hub.repos[repo_id] = Repo()
            self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def _preupload(self, repo_id: str, body: bytes) -> None:
            if self._repo(repo_id) is None:
                return
            files = json.loads(body)["files"]
            self._send(200, {"files": [{"path": f["path"], "shouldIgnore": False, "oid": None,
                                        "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular"}
                                       for f in files]})

        def _lfs_batch(self, repo_id: str, payload: dict) -> None:
            objects = [{"oid": o["oid"], "size": o["size"],
                        "actions": {"upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"}}}
                       for o in payload["objects"]]
            self._send(200, {"transfer": "basic", "objects": objects})

        def _commit(self, repo_id: str, body: bytes) -> None:
            repo = self._repo(repo_id)
            if repo is None or self._failing("commit"):
                return
            if repo_id in hub.fail_commits_to:
                return self._error(500, "Internal Error while committing")
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            header, changes = lines[0], {}
            if header.get("key") != "header":
                return self._error(400, "first line must be the header")
            for line in lines[1:]:
                value = line["value"]
                if line["key"] == "file":
                    changes[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "lfsFile":
                    if value["oid"] not in hub.lfs:
                        return self._error(422, f"LFS object {value['oid']} was not uploaded")
                    changes[value["path"]] = hub.lfs[value["oid"]]
                else:
                    return self._error(400, f"unsupported operation {line['key']}")
            oid = hashlib.sha1(f"{repo_id}{repo.head}{sorted(changes)}{len(repo.commits)}".encode()).hexdigest()
            repo.files.update(changes)  # atomic: only after the whole payload was valid
            repo.commits.append({"oid": oid, "summary": header["value"]["summary"],
                                 "description": header["value"].get("description", ""), "files": changes})
            self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                             "pullRequestUrl": None})

        def _tag(self, repo_id: str, body: bytes) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return
            tag = json.loads(body)["tag"]
            if tag in repo.tags:
                return self._error(409, f"Tag {tag} already exists")
            revision = unquote(urlsplit(self.path).path.rsplit("/", 1)[1])
            repo.tags[tag] = repo.head if revision == "main" else revision
            self._send(200, {})

        def _collection_item(self, slug: str, payload: dict) -> None:
            items = hub.collections.setdefault(slug, [])
            if payload["item"]["id"] in items:
                return self._error(409, "Item already in collection")
            items.append(payload["item"]["id"])
            self._collection(slug)

        def _collection(self, slug: str) -> None:
            if slug not in hub.collections:
                return self._error(404, "Collection not found")
            self._send(200, {"slug": slug, "title": "SPPO", "owner": {"name": slug.split("/")[0]},
                             "items": [{"_id": str(i), "id": item, "type": "model", "position": i}
                                       for i, item in enumerate(hub.collections[slug])],
                             "lastUpdated": "2026-11-25T00:00:00.000Z", "position": 0, "private": False,
                             "theme": "blue", "upvotes": 0})

    return Handler
