"""The other processes of a multi-process run: are they alive, and why did one stop? So that no rank waits for a
dead one, and the run ends with one line naming the rank and the cause.

Every rank keeps a few keys in the launcher's rendezvous store (`distributed.rendezvous_store`; torchrun's agent
on the first node holds it):

    sppo/peer/<rank>      "<host> <pid>" of the rank, set once at setup
    sppo/alive/<rank>     "<count> <unix time>" of its last heartbeat, every HEARTBEAT_SECONDS from a thread of
                          its own (a process stopped with SIGSTOP, or whose node froze, stops beating)
    sppo/failed/<rank>    the one-line cause of its failure, set by the failing rank before it exits
    sppo/left/<rank>      "interrupted" (Ctrl-C, SIGTERM) or "done": the rank left without failing
    sppo/failures         how many ranks have reported a failure (what a waiting rank polls, once a second)

What the others see when one rank fails:
- the rank raises (bad input, full disk, a bug): it reports the cause and exits; a rank waiting in
  `distributed.wait` sees the report within a second (`failed_elsewhere`), a rank inside another collective gets
  the broken connection at once; either way it stops with ``rank N stopped: rank M failed: <cause>``;
- the rank is killed (kill -9, out of memory): the connection breaks at once; `culprit` names the rank whose
  process is gone (same host) or whose heartbeat stopped;
- the rank stops answering without dying (SIGSTOP, a hung node): the others wait until the collective timeout
  (`run.collective_timeout_minutes`, `--collective-timeout-minutes`), then `culprit` names the silent rank.

Everything here is best effort: a store that cannot be reached only makes the line vaguer.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from datetime import timedelta

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5
# a heartbeat that has not moved for this long, while this rank watched, means the rank went silent
SILENT_AFTER_SECONDS = 2.0
# how long a rank whose collective broke looks for the rank to blame before it gives up
LOOK_SECONDS = 8.0
_STORE_TIMEOUT = timedelta(seconds=10)
_FAILURES = "sppo/failures"

_beating: threading.Event | None = None
_last_poll = 0.0
_client = None  # this thread's own connection to the store (the heartbeat thread has another)

# what torch.distributed's backends say when a collective cannot complete (a peer gone, a timeout)
_COLLECTIVE = re.compile(r"(?i)gloo|nccl|connection (closed|reset|refused)|broken pipe|timed out|timeout|"
                         r"process ?group|c10d|socket")


class RankFailed(Exception):
    """This rank stops because another one failed or went silent. The message names that rank and why; it is
    never reported as this rank's own failure."""


def _store(own: bool = False):
    """A connection to the rendezvous store with a short timeout (None without one): the main thread's, kept, or
    with `own` a new one (for the heartbeat thread)."""
    global _client
    if _client is not None and not own:
        return _client
    from . import distributed

    store = distributed.rendezvous_store()
    if store is not None:
        try:
            store.set_timeout(_STORE_TIMEOUT)
        except Exception:  # noqa: BLE001
            pass
    if not own:
        _client = store
    return store


def _me() -> tuple[int, int]:
    from . import distributed

    return distributed.rank(), distributed.world_size()


def start() -> None:
    """Say who this rank is and start its heartbeat (several processes only; once per process)."""
    global _beating
    rank, world = _me()
    if world == 1 or _beating is not None:
        return
    store = _store(own=True)
    if store is None:
        return
    try:
        store.set(f"sppo/peer/{rank}", f"{socket.gethostname()} {os.getpid()}")
        store.set(f"sppo/alive/{rank}", f"0 {time.time()}")
    except Exception as e:  # noqa: BLE001
        log.debug("no heartbeat: %s", e)
        return
    _beating = threading.Event()
    threading.Thread(target=_beat, args=(store, rank, _beating), name="sppo-heartbeat", daemon=True).start()


def _beat(store, rank: int, stop: threading.Event) -> None:
    count = 0
    while not stop.wait(HEARTBEAT_SECONDS):
        count += 1
        try:
            store.set(f"sppo/alive/{rank}", f"{count} {time.time()}")
        except Exception:  # noqa: BLE001 - the store is gone: the run is ending
            return


def stop() -> None:
    """Stop this rank's heartbeat (at the end of the run)."""
    global _beating
    if _beating is not None:
        _beating.set()
        _beating = None
        leaving("done")


def leaving(why: str) -> None:
    """This rank leaves without failing (`why`: "interrupted" or "done"), so that no other rank blames it."""
    rank, world = _me()
    store = _store() if world > 1 else None
    try:
        if store is not None:
            store.set(f"sppo/left/{rank}", why)
    except Exception:  # noqa: BLE001
        pass


def died_here() -> str | None:
    """"rank M died without a word" for a rank on this host whose process is gone without having reported a
    failure or said it leaves (killed, out of memory), else None. Instant: what an interrupted rank checks (a
    launcher stops every rank once one has died)."""
    rank, world = _me()
    store = _store() if world > 1 else None
    try:
        return _died_here(store, rank, world) if store is not None else None
    except Exception:  # noqa: BLE001
        return None


def _died_here(store, rank: int, world: int) -> str | None:
    for r in range(world):
        if r == rank or not store.check([f"sppo/peer/{r}"]) or store.check([f"sppo/left/{r}"]):
            continue
        if _process_state(store.get(f"sppo/peer/{r}").decode()) == "gone" and not store.check([f"sppo/failed/{r}"]):
            return f"rank {r} died without a word (killed, or out of memory?)"
    return None


def report(cause: str) -> None:
    """This rank failed: leave the cause where the others look (best effort, a few milliseconds)."""
    rank, world = _me()
    if world == 1:
        return
    store = _store()
    if store is None:
        return
    try:
        store.set(f"sppo/failed/{rank}", cause)
        store.add(_FAILURES, 1)
    except Exception:  # noqa: BLE001
        pass


def _reports(store, rank: int, world: int) -> dict[int, str]:
    out = {}
    for r in range(world):
        if r != rank and store.check([f"sppo/failed/{r}"]):
            out[r] = store.get(f"sppo/failed/{r}").decode(errors="replace")
    return out


def failed_elsewhere(every: float = 1.0) -> str | None:
    """"rank M failed: <cause>" once another rank has reported a failure, else None. Cheap: it asks the store at
    most once per `every` seconds (one counter), so a waiting loop may call it each time round."""
    global _last_poll
    rank, world = _me()
    now = time.monotonic()
    if world == 1 or now - _last_poll < every:
        return None
    _last_poll = now
    store = _store()
    try:
        if store is None or store.add(_FAILURES, 0) == 0:
            return None
        reports = _reports(store, rank, world)
    except Exception:  # noqa: BLE001
        return None
    return _failed_line(reports) if reports else None


def _failed_line(reports: dict[int, str]) -> str:
    r = min(reports)
    return f"rank {r} failed: {reports[r]}"


def is_collective_failure(e: BaseException) -> bool:
    """Whether `e` (or an exception it came from) is a collective that could not complete: a peer's connection
    broke, or the collective timed out."""
    import torch.distributed as dist

    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, getattr(dist, "DistError", ())) or \
                (isinstance(e, RuntimeError) and _COLLECTIVE.search(str(e))):
            return True
        e = e.__cause__ or e.__context__
    return False


def _process_state(host_pid: str) -> str | None:
    """'gone' or 'stopped' for a process on this host that is not running normally, else None."""
    host, _, pid = host_pid.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
    return {"Z": "gone", "X": "gone", "T": "stopped", "t": "stopped"}.get(state)


def _heartbeats(store, ranks) -> dict[int, tuple[int, float]]:
    out = {}
    for r in ranks:
        if store.check([f"sppo/alive/{r}"]):
            count, _, when = store.get(f"sppo/alive/{r}").decode().partition(" ")
            out[r] = (int(count), float(when))
    return out


def _look_once(store, rank: int, world: int, last: dict, moved_at: dict) -> str | None:
    """One look for the rank to blame: a report, a process of this host gone or stopped, a silent heartbeat."""
    reports = _reports(store, rank, world)
    if reports:
        return _failed_line(reports)
    others = [r for r in range(world) if r != rank]
    for r in others:
        if store.check([f"sppo/left/{r}"]) and store.get(f"sppo/left/{r}") == b"interrupted":
            return f"rank {r} was interrupted (Ctrl-C or SIGTERM)"
    died = _died_here(store, rank, world)
    if died:
        return died
    for r in others:
        if store.check([f"sppo/peer/{r}"]) and _process_state(store.get(f"sppo/peer/{r}").decode()) == "stopped":
            return f"rank {r} went silent: its process is stopped (SIGSTOP?)"
    now = time.monotonic()
    for r, (count, when) in _heartbeats(store, others).items():
        if r not in last or last[r] != count:
            last[r], moved_at[r] = count, now
        elif now - moved_at[r] >= SILENT_AFTER_SECONDS:
            return (f"rank {r} went silent: no heartbeat for {max(0.0, time.time() - when):.0f} s (stopped, killed, "
                    f"or its node is down)")
    return None


def culprit(seconds: float = LOOK_SECONDS) -> str | None:
    """After a collective of this rank broke or timed out: which rank to blame and why ("rank 1 failed: <cause>",
    "rank 1 died ...", "rank 1 went silent ..."), looking for up to `seconds`; None if no rank can be blamed (the
    failure is then this rank's own)."""
    rank, world = _me()
    store = _store()
    if world == 1 or store is None:
        return None
    last: dict[int, int] = {}  # each rank's heartbeat count as last seen, and when it last moved
    moved_at: dict[int, float] = {}
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = _look_once(store, rank, world, last, moved_at)
        except Exception:  # noqa: BLE001 - the store itself is gone: its host (the first node) is down
            return "the other ranks cannot be reached (the rendezvous store on the first node is gone)"
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.25)
