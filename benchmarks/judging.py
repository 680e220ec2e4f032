"""The judging engine: the one resumable judging loop behind every judged suite.

A judged suite describes one model's judging as a `JudgedTask`: its items (an instruction, a question, one turn of a
question: one row of the judgment file each, with the requests the judge is asked about it), its verdict parser
(`Verdicts`), how a judged item becomes a row, and the file the rows live in. The engine does the rest, the same way
for every suite:

- **reuse of keyed rows** - each item's key digests the judge's identity and the exact requests
  (`judgment_key`); a row of the file under the item's current key is reused, any other is judged again;
- **batching** - the items still to judge go to the judge ``JUDGE_BATCH`` requests at a time, through its cache
  (``Judge.complete``: a repeated request is answered without a call);
- **follow-ups** - a reply without a verdict may be continued in the same conversation (``Verdicts.attempts``,
  ``Verdicts.follow_up``; Arena-Hard's second attempt);
- **verdicts from token probabilities** - a local judge whose text holds no verdict gets the label it finds most
  likely after its own text and the official opener (``Verdicts.opener``; ``verdict_source: logprobs``);
- **write-through** - the file is rewritten after every batch (atomically), so an interrupted run keeps every
  judgment it received; rows of other items (beyond ``--limit``, other models of a shared file) are kept;
- **failure records** - a failed request (after the client's retries) is counted, its item is not written, and the
  task ends with `JudgeFailed` after the other items are saved: a rerun sends exactly the failed requests again.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from sppo.files import open_no_follow, read_json, read_jsonl, write_json, write_jsonl

from benchmarks.judge import Judge, JudgeReply, JudgeRequest, cache_key, scrub
from benchmarks.store import digest

LOGPROB_VERDICT = "logprobs"  # verdict_source of a verdict read from a local judge's token probabilities
JUDGE_BATCH = 64  # judge requests per batch; the judgment file is rewritten after each


class JudgeFailed(Exception):
    """Judge requests of one suite on one model failed (after retries): nothing is recorded as a result, the
    judgments that did succeed are kept, and a rerun sends exactly the failed requests again."""

    def __init__(self, suite: str, model: str, count: int, first_error: str):
        super().__init__(f"{suite} on {model}: {count} judge request{'s' if count != 1 else ''} failed "
                         f"(first: {scrub(first_error)}); no result recorded, rerun the same command to retry them")
        self.suite, self.model, self.count = suite, model, count


class Failures:
    """Counts failed replies of one suite run; ``raise_if_any`` ends the suite with JudgeFailed."""

    def __init__(self, suite: str, model: str):
        self.suite, self.model, self.count, self.first = suite, model, 0, None

    def check(self, reply: JudgeReply) -> bool:
        """True when the reply is usable; a failed reply is counted."""
        if reply.ok:
            return True
        self.count += 1
        self.first = self.first or reply.error or "unknown error"
        return False

    def raise_if_any(self) -> None:
        if self.count:
            raise JudgeFailed(self.suite, self.model, self.count, self.first)


def judgment_key(judge: Judge, requests: Sequence[JudgeRequest]) -> str:
    """What produced a judgment: the judge's identity (backend, base URL, model) and the exact requests, which hold
    the prompt version and the judged answers. A stored judgment is reused only under the same key."""
    return digest({"judge": judge.identity(), "requests": [cache_key(judge.identity(), r) for r in requests]})


# --- what a suite supplies ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One row of a judgment file to produce: its id in the file, the requests the judge is asked (one
    conversation each: Arena-Hard's two games, one request elsewhere) and whatever the suite's parser and row need
    (``data``). ``decided`` is a row settled without a judge (AlpacaEval's identical outputs)."""

    id: Hashable
    requests: tuple[JudgeRequest, ...] = ()
    data: Any = None
    decided: dict | None = None


@dataclass
class Conversation:
    """One conversation with the judge about an item: the request, the replies, and the verdict read from them."""

    item: Item
    request: JudgeRequest
    replies: list[JudgeReply] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)  # the request's messages and every turn since
    verdict: Any = None
    verdict_source: str | None = None
    open: bool = True
    failed: bool = False

    def __post_init__(self) -> None:
        self.messages = self.messages or [dict(m) for m in self.request.messages]

    @property
    def text(self) -> str:
        """The judge's text: every reply, each after a newline (Arena-Hard's ``judgment``)."""
        return "".join("\n" + r.text for r in self.replies)

    def next_request(self) -> JudgeRequest:
        return replace(self.request, messages=tuple(self.messages))


@dataclass(frozen=True)
class Verdicts:
    """A suite's verdict parser. ``parse(conversation)`` reads the verdict from the replies so far: ``(verdict or
    None, ask again?)``. ``attempts``: how many requests a conversation may take, each further one after
    ``follow_up`` (a user turn). ``opener`` and ``labels``: for local judges, a conversation left without a verdict
    gets the label (of ``labels``) whose ``<label>]]`` the judge finds most likely right after its first reply and
    ``opener`` (``" [["``, ``"\\n\\nRating: [["``); None: never."""

    parse: Callable[[Conversation], tuple[Any, bool]]
    attempts: int = 1
    follow_up: str = ""
    opener: str | None = None
    labels: tuple[str, ...] = ()


class RowFile:
    """Where one model's judgment rows live. `JsonListFile`, `JsonlFile` and `SharedJsonlFile` are the kinds."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        raise NotImplementedError

    def write(self, rows: list[dict]) -> None:
        raise NotImplementedError


class JsonListFile(RowFile):
    """A JSON list of rows (AlpacaEval's annotations.json)."""

    def read(self) -> list[dict]:
        return [r for r in (read_json(self.path) if self.path.exists() else []) if isinstance(r, dict)]

    def write(self, rows: list[dict]) -> None:
        write_json(self.path, rows)


class JsonlFile(RowFile):
    """One JSON object per line, this model's alone (Arena-Hard's ``model_judgment/<judge>/<model>.jsonl``)."""

    def read(self) -> list[dict]:
        return read_jsonl(self.path) if self.path.exists() else []

    def write(self, rows: list[dict]) -> None:
        write_jsonl(self.path, rows)


class SharedJsonlFile(RowFile):
    """A JSONL file every model writes its rows into (MT-Bench's ``<judge>_single.jsonl``): this model's rows are
    those whose ``model`` is it; they are replaced under a lock, everybody else's re-read and kept, so concurrent
    runs lose nothing."""

    def __init__(self, path: Path, model: str):
        super().__init__(path)
        self.model = model

    def read(self) -> list[dict]:
        return [r for r in (read_jsonl(self.path) if self.path.exists() else []) if r.get("model") == self.model]

    def write(self, rows: list[dict]) -> None:
        with locked(self.path):
            others = [r for r in (read_jsonl(self.path) if self.path.exists() else [])
                      if r.get("model") != self.model]
            write_jsonl(self.path, others + rows)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock beside ``path`` (``<path>.lock``) for read-modify-write of a file that several models (and
    several bench processes) share; waits for another holder."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(open_no_follow(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class JudgedTask:
    """One model's judging, as a suite describes it: the items, the verdict parser, ``row(item, conversations,
    key)`` (the file's row of a judged item; ``conversations`` in the order of ``item.requests``), the file, how a
    row names its item (``row_id``) and the file's rows in order (``ordered(rows by id)``; a row left out is
    dropped from the file)."""

    suite: str
    model: str
    items: list[Item]
    verdicts: Verdicts
    row: Callable[[Item, list[Conversation], str], dict]
    file: RowFile
    row_id: Callable[[dict], Hashable]
    ordered: Callable[[dict[Hashable, dict]], list[dict]]


@dataclass
class Judged:
    """The engine's outcome: every row of the file by id (the items' and the others kept), and how many items
    needed no judge request (reused under their key, or decided)."""

    rows: dict[Hashable, dict]
    n_reused: int

    def of(self, items: Sequence[Item]) -> list[dict]:
        return [self.rows[i.id] for i in items if i.id in self.rows]


# --- the engine -----------------------------------------------------------------------------------------------------

def judge_task(judge: Judge, task: JudgedTask, progress: bool = False) -> Judged:
    """Reuse, judge in batches, write through, record failures (see the module's docstring)."""
    read = task.file.read()
    old = {task.row_id(r): r for r in read}
    wanted = {item.id for item in task.items}
    rows = {i: r for i, r in old.items() if i not in wanted}  # beyond --limit: kept
    pending: list[tuple[Item, str]] = []
    for item in task.items:
        if item.decided is not None:
            rows[item.id] = item.decided
            continue
        key = judgment_key(judge, item.requests)
        if old.get(item.id, {}).get("sppo_key") == key:
            rows[item.id] = old[item.id]
        else:
            pending.append((item, key))
    failures = Failures(task.suite, task.model)
    written = read
    per_batch = max(1, JUDGE_BATCH // max(1, len(pending[0][0].requests))) if pending else 1
    for start in range(0, len(pending), per_batch):
        batch = pending[start:start + per_batch]
        convs = [[Conversation(item, r) for r in item.requests] for item, _ in batch]
        _converse(judge, [c for cs in convs for c in cs], task.verdicts, failures, progress)
        for (item, key), cs in zip(batch, convs):
            if not any(c.failed for c in cs):
                rows[item.id] = task.row(item, cs, key)
        written = task.ordered(rows)
        task.file.write(written)
    if task.ordered(rows) != written:  # reused or decided rows the file does not hold yet, or rows it drops
        task.file.write(task.ordered(rows))
    failures.raise_if_any()
    return Judged(rows, len(task.items) - len(pending))


def _converse(judge: Judge, convs: list[Conversation], verdicts: Verdicts, failures: Failures,
              progress: bool) -> None:
    """Every conversation of a batch to a verdict: up to ``verdicts.attempts`` requests each (the live ones of all
    conversations sent together), then - local judges only - the verdicts read from token probabilities."""
    for _ in range(verdicts.attempts):
        live = [c for c in convs if c.open]
        if not live:
            break
        replies = judge.complete([c.next_request() for c in live], progress=progress)
        for c, reply in zip(live, replies):
            if not failures.check(reply):
                c.open, c.failed = False, True
                continue
            c.replies.append(reply)
            c.verdict, again = verdicts.parse(c)
            c.messages.append({"role": "assistant", "content": reply.text})
            if again:
                c.messages.append({"role": "user", "content": verdicts.follow_up})
            else:
                c.open = False
    logprob_verdicts(judge, convs, verdicts)


def logprob_verdicts(judge: Judge, convs: Sequence[Conversation], verdicts: Verdicts) -> None:
    """Local judges only: a conversation with a reply but no verdict gets the label the judge finds most likely
    after its first reply and ``verdicts.opener`` (``verdict_source: logprobs``). Official (endpoint) judges: a reply
    without a verdict stays without one, as upstream."""
    if verdicts.opener is None or not judge.reads_logprob_verdicts:
        return
    for c in convs:
        if c.verdict is None and not c.failed and c.replies:
            prefix = c.replies[0].text.rstrip() + verdicts.opener
            label = judge.verdict_from_logprobs(list(c.request.messages), prefix,
                                                [v + "]]" for v in verdicts.labels])
            c.verdict, c.verdict_source = label[:-2], LOGPROB_VERDICT
