"""The judge cache: SQLite, one committed row per finished request, so a crash loses at most the requests in flight.

The key is (judge identity - backend, base URL and model -, messages, generation parameters): a rerun of the same
benchmark makes zero repeated judge calls, and another endpoint serving a model of the same name never answers from
this one's replies. Every stored row passes through ``sppo.scrub``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sppo.errors import UserError, io_errors
from sppo.files import refuse_symlink, utc_now
from sppo.scrub import scrub_obj

from .types import JudgeReply, JudgeRequest

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
