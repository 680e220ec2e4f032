"""What every console script shares: one-line errors, non-zero exit codes, Ctrl-C handling."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from .errors import MachineError, UserError, io_failure
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


def run_cli(fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Call `fn(argv)`; turn UserError into one line on stderr with exit code 2, MachineError and any other I/O
    failure (full disk, read-only file system, no permission: ``errors.io_failure``) into one line with exit code
    1, Ctrl-C into 130."""
    try:
        return int(fn(argv) or 0)
    except UserError as e:
        print(f"error: {printable(scrub(str(e)))}", file=sys.stderr)
        return 2
    except MachineError as e:
        print(f"error: {printable(scrub(str(e)))}", file=sys.stderr)
        return 1
    except Exception as e:
        err = io_failure(e)
        if err is None:
            raise
        print(f"error: {printable(scrub(str(err)))}", file=sys.stderr)
        return 2 if isinstance(err, UserError) else 1
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130
