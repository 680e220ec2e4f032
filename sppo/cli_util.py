"""What every console script shares: one-line errors, non-zero exit codes, Ctrl-C handling."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from .errors import MachineError, UserError, io_failure
from .scrub import install_log_scrubber, scrub


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("SPPO_LOG_LEVEL", "INFO").upper(), 20)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    install_log_scrubber()


def run_cli(fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Call `fn(argv)`; turn UserError into one line on stderr with exit code 2, MachineError and any other I/O
    failure (full disk, read-only file system, no permission: ``errors.io_failure``) into one line with exit code
    1, Ctrl-C into 130."""
    try:
        return int(fn(argv) or 0)
    except UserError as e:
        print(f"error: {scrub(str(e))}", file=sys.stderr)
        return 2
    except MachineError as e:
        print(f"error: {scrub(str(e))}", file=sys.stderr)
        return 1
    except Exception as e:
        err = io_failure(e)
        if err is None:
            raise
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2 if isinstance(err, UserError) else 1
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130
