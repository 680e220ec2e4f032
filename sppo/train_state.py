"""Resumable training state: `Accelerator.save_state` snapshots written atomically, found again, pruned.

    <train>/state/step-000050/    model, optimizer, scheduler, RNG states (accelerate's files) + the data position
    <train>/state/.step-000100.tmp  a snapshot being written (ignored; removed by the next save)

Every rank takes part in saving and loading (DeepSpeed writes one shard per rank); rank 0 decides which
snapshot to load and renames a finished one into place, so all ranks always act on the same snapshot.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
from pathlib import Path

from . import distributed
from .errors import MachineError, UserError, io_errors
from .files import fresh_dir

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d+)$")


class Progress:
    """The data position, registered with the Accelerator so `save_state`/`load_state` carry it."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def snapshots(state_dir: Path) -> list[tuple[int, Path]]:
    """Finished snapshots, oldest first."""
    if not state_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in state_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest(state_dir: Path) -> Path | None:
    """The newest finished snapshot, as rank 0 sees it (the same answer on every rank)."""
    def look():
        found = snapshots(state_dir)
        return str(found[-1][1]) if found else None

    path = distributed.decide(f"{state_dir}: looking for a training state to resume", look)
    return Path(path) if path else None


def save(accelerator, state_dir: Path, step: int, keep: int) -> Path:
    """Snapshot at optimizer step `step` (all ranks call this), then keep the newest `keep`."""
    target = state_dir / f"step-{step:06d}"
    tmp = state_dir / f".step-{step:06d}.tmp"
    if distributed.is_main():
        fresh_dir(tmp)
    distributed.wait("training state: temporary directory")
    try:
        with io_errors(target):
            accelerator.save_state(str(tmp))
    except (UserError, MachineError):
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk leaves no partial snapshot behind
        raise
    distributed.wait("training state: every rank's files")
    if distributed.is_main():
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        for _, old in snapshots(state_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        log.info("training state saved: %s", target)
    distributed.wait("training state: renamed")
    return target


class StopSignal:
    """Remembers a SIGTERM (preemption, `kill`) so training can save its state at the next step and exit."""

    def __init__(self) -> None:
        self.received = False
        self._previous = None

    def __enter__(self) -> "StopSignal":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, never set
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.received = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True on every rank once any rank got the signal (a collective: call it at the same step everywhere)."""
        return distributed.any_rank(self.received)
