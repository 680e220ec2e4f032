"""One training process per run directory: an exclusive ``flock`` on ``<run>/.lock``.

The lock belongs to the open file, so the operating system releases it when the process exits, however it
exits (return, exception, Ctrl-C, kill -9): a crashed run never leaves a stale lock behind. A second
``sppo-train`` on the same run directory fails at once with a one-line error naming the holder's pid.

In a multi-process (torchrun / DeepSpeed) run every rank works in the same directory; only rank 0 takes the
lock (``rank`` argument, else the ``RANK`` environment variable; unset means a single process, rank 0).
Taking the lock again in the process that holds it is a no-op, so the pipeline and its callers may both ask.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import UserError
from .files import open_no_follow
from .run_dir import RunLayout

_held: dict[Path, int] = {}  # resolved lock path -> open file descriptor, for this process's lifetime


def _rank(rank: int | None) -> int:
    if rank is not None:
        return rank
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _lock_path(run_dir: str | os.PathLike) -> Path:
    """The lock file of a run directory (the directory resolved, the lock file itself never)."""
    return RunLayout(Path(run_dir).resolve()).lock


def acquire_run_lock(run_dir: str | os.PathLike, rank: int | None = None) -> Path | None:
    """Lock `run_dir` for the rest of this process (rank 0 only; other ranks return None). Creates the
    directory. Raises UserError when another process holds the lock. Returns the lock file's path."""
    if _rank(rank) != 0:
        return None
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: run.output_dir is a file, not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = _lock_path(run_dir)
    if path in _held:
        return path
    fd = open_no_follow(path)  # a link planted at <run>/.lock is refused, never followed
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"{run_dir}: another sppo-train (pid {holder}) is using this run directory; wait for it "
                        f"to finish or choose another run.output_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[path] = fd
    return path
