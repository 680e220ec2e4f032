"""What every console script shares: one-line errors, non-zero exit codes, Ctrl-C handling."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from typing import Callable

from .errors import UserError, cause, io_failure
from .files import printable
from .scrub import install_log_scrubber, register_secret, scrub


# loggers of the libraries we drive: on ranks other than 0 they say only errors (rank 0 says the rest once)
LIBRARY_LOGGERS = ("transformers", "DeepSpeed", "accelerate", "lm-eval", "torch", "datasets", "huggingface_hub")


def launched_rank() -> int:
    """This process's global rank as the launcher set it (RANK; 0 without a launcher). Known before the
    process group exists, so logging can be set up first."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def setup_logging(verbose: bool = False) -> None:
    """INFO (DEBUG with -v) on global rank 0; other ranks log warnings only, each line prefixed with the rank,
    and leave library warnings and progress to rank 0 (`quiet_other_ranks`)."""
    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("SPPO_LOG_LEVEL", "INFO").upper(), 20)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    rank = launched_rank()
    if rank > 0:
        level, fmt = (level if verbose else max(level, logging.WARNING)), f"[rank {rank}] {fmt}"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S")
    install_log_scrubber()
    register_hub_token()
    quiet_other_ranks()


def register_hub_token() -> None:
    """The Hugging Face token every Hub request of this process may carry (``HF_TOKEN`` or the cached login) is
    registered with the scrubber before any request can echo it, raw or base64-encoded."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        register_secret(os.environ.get(name))
    try:
        from huggingface_hub import get_token

        register_secret(get_token())
    except Exception:  # no huggingface_hub, an unreadable token file: nothing to register
        pass


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def quiet_other_ranks() -> None:
    """On ranks other than 0: Python warnings ignored and library loggers at ERROR, so that a library warning is
    printed once (by rank 0), not once per rank. Idempotent; call again after importing a library that sets its
    logger's level at import (DeepSpeed)."""
    if launched_rank() == 0:
        return
    import warnings

    warnings.filterwarnings("ignore")
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        if _errors_only not in logger.filters:  # stays when a library resets the level at import (DeepSpeed)
            logger.addFilter(_errors_only)
    if "transformers" in sys.modules:  # transformers keeps its own verbosity setting
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block SIGTERM (a scheduler's preemption, a launcher stopping its ranks) behaves as Ctrl-C: the
    command stops where it is, keeps what is finished and says so (`run_cli`); training, which saves its state
    first, handles SIGTERM itself (`train_state.StopSignal`). Only in the main thread; the handler is restored."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_cli(fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Call `fn(argv)`; turn UserError into one line on stderr with exit code 2, MachineError and any other I/O
    failure (full disk, read-only file system, no permission: ``errors.io_failure``) into one line with exit code
    1, Ctrl-C (and SIGTERM where the command turns it into Ctrl-C) into 130.

    Under a launcher (several processes) the line names the rank: ``rank 1: <cause>`` on the rank that failed
    (which leaves the cause for the others, `peers.report`, and prints the traceback of an unexpected error
    first), ``rank 0 stopped: rank 1 failed: <cause>`` (or ``... rank 1 died``, ``... went silent``) on a rank
    that stops because of another one (exit code 1)."""
    try:
        return int(fn(argv) or 0)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:
        several = _several_processes()
        blame = _blame(e) if several else None
        if blame:
            return _stopped(blame)
        err = io_failure(e)
        if err is None and not several:
            raise
        if err is None:
            traceback.print_exc()
        line, code = cause(e), (1 if err is None or not isinstance(err, UserError) else 2)
        if several:
            _failed_here(scrub(line), code)
        else:
            _say_error(line)
        return code


def _say_error(line: str) -> None:
    """``error: <line>`` on a line of its own: after a progress bar the error interrupted (tqdm leaves its line
    open, and the error would be read as part of it)."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        sys.stderr.write("\n")
    print(f"error: {printable(scrub(line))}", file=sys.stderr)


# a rank that failed exits within this many seconds even if something (a library's thread) holds its exit up:
# the others may be waiting for it inside a collective
EXIT_GRACE_SECONDS = 20.0


def _several_processes() -> bool:
    """Whether this process is one rank of several (a launcher's WORLD_SIZE first: no torch import otherwise)."""
    if os.environ.get("WORLD_SIZE", "1").strip() in ("", "0", "1"):
        return False
    from . import distributed

    return distributed.world_size() > 1


def _blame(e: Exception) -> str | None:
    """Another rank's failure that `e` is a consequence of (None: `e` is this rank's own failure). The look takes
    a few seconds at most; the SIGTERM a launcher sends meanwhile (it stops every rank once one has failed) waits."""
    from . import peers

    if isinstance(e, peers.RankFailed):
        return str(e)
    if not peers.is_collective_failure(e):
        return None
    try:
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        previous = None
    try:
        return peers.culprit()
    except KeyboardInterrupt:
        return None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _failed_here(line: str, code: int) -> None:
    """This rank failed: say so, naming the rank, then tell the others, and make sure the process ends. The line
    comes first: once the others know, they stop, and the launcher may end this process before it prints."""
    import threading

    from . import distributed, peers

    _say_error(f"rank {distributed.rank()}: {line}")
    sys.stderr.flush()
    peers.report(line)
    timer = threading.Timer(EXIT_GRACE_SECONDS, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def _stopped(blame: str) -> int:
    """This rank stops because of another one: one line, then exit at once. It has nothing left to finish (what it
    wrote is complete: every write is atomic), and the interpreter's teardown of a broken process group takes
    seconds that the launcher, and the job, would wait for."""
    from . import distributed

    _say_error(f"rank {distributed.rank()} stopped: {blame}")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _interrupted() -> int:
    if _several_processes():
        from . import peers

        peers.leaving("interrupted")
        failed = peers.failed_elsewhere(every=0.0) or peers.died_here()
        if failed:  # a launcher stops the other ranks when one has failed or died: say why
            return _stopped(failed)
    print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
    return 130
