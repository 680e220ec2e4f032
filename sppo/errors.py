"""The two kinds of error the CLIs print as a single line: bad input (``UserError``, exit status 2) and a machine
that cannot do what was asked (``MachineError``, exit status 1: no space left, read-only file system, no
permission). ``io_failure`` recognises an I/O failure in any exception (an ``OSError``, or a library's error that
carries one: safetensors' "os error 28", SQLite's "database or disk is full") and turns it into one of them."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import reprlib
from typing import Iterator


class UserError(Exception):
    """Bad input (file, field, model path...). The message is one line naming what is wrong."""


class MachineError(Exception):
    """The machine cannot do what was asked (full disk, read-only file system, missing permission). The message
    is one line naming the path and what to do."""


_ADVICE = {
    errno.ENOSPC: "no space left on device; free some space (or choose another directory) and rerun the same command",
    errno.EDQUOT: "disk quota exceeded; free some space (or choose another directory) and rerun the same command",
    errno.EIO: "input/output error (is the disk full or failing?); free some space or choose another directory",
    errno.EROFS: "read-only file system; choose a writable directory",
    errno.EACCES: "permission denied; give this user access to it, or choose another path",
    errno.EPERM: "operation not permitted; give this user access to it, or choose another path",
}
_INPUT = {errno.ENOENT: "no such file or directory", errno.ENOTDIR: "not a directory",
          errno.EISDIR: "is a directory, not a file"}
# what libraries without an OSError say (Rust's io::Error, SQLite, C++ stream writers)
_TEXT = [(re.compile(r"os error (\d+)"), None),
         (re.compile(r"(?i)no space left on device|database or disk is full|file write failed"), errno.ENOSPC),
         (re.compile(r"(?i)disk I/O error"), errno.EIO),
         # torch.save (PyTorchStreamWriter) on a full disk: the stream's error, then its position check
         (re.compile(r"(?i)basic_ios::clear: iostream error|unexpected pos \d+ vs \d+"), errno.EIO),
         (re.compile(r"(?i)read-only file system|attempt to write a readonly database"), errno.EROFS),
         (re.compile(r"(?i)permission denied|unable to open database file"), errno.EACCES)]


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _errno_and_path(e: BaseException) -> tuple[int | None, str | None]:
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno is not None:
            return x.errno, x.filename if isinstance(x.filename, str) else None
    for x in _chain(e):
        for pattern, code in _TEXT:
            m = pattern.search(str(x))
            if m:
                return (int(m.group(1)) if code is None else code), None
    return None, None


def io_failure(e: BaseException, path: str | os.PathLike | None = None) -> UserError | MachineError | None:
    """The one-line error for an I/O failure in `e` (naming `path`, else the file the error names), or None when
    `e` is no I/O failure. Missing files are input errors; space, permission and read-only are the machine's."""
    if isinstance(e, (UserError, MachineError)):
        return e
    code, named = _errno_and_path(e)
    if code is None:
        return None
    where = str(path) if path is not None else (named or "(file not named)")
    if code in _INPUT:
        return UserError(f"{where}: {_INPUT[code]}")
    return MachineError(f"{where}: {_ADVICE.get(code, os.strerror(code).lower())}")


@contextlib.contextmanager
def io_errors(path: str | os.PathLike) -> Iterator[None]:
    """Inside the block, an I/O failure (see ``io_failure``) becomes a one-line error naming `path`."""
    try:
        yield
    except (UserError, MachineError, KeyboardInterrupt):
        raise
    except Exception as e:
        err = io_failure(e, path)
        if err is None:
            raise
        raise err from None


def first_line(e: BaseException) -> str:
    """The first line of `e`'s message, or its type name when the message is empty: what a one-line error
    quotes from the exception it replaces."""
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def described(e: BaseException) -> str:
    """``Type: first line`` of `e` (only the type name when the message is empty)."""
    return f"{type(e).__name__}: {first_line(e)}" if str(e).strip() else type(e).__name__


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict, _SHOWN.maxset = 3, 4, 4, 4, 4
_SHOWN.maxlong, _SHOWN.maxother = 40, 60


def shown(value: object, limit: int = 60) -> str:
    """A bounded ``repr`` of `value` for an error message: at most `limit` characters, built without ever
    making the whole repr of a huge or deeply nested value (a YAML alias bomb, a 100 MB string)."""
    _SHOWN.maxstring = limit
    try:
        text = _SHOWN.repr(value)
    except Exception:  # a value whose repr fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cause(e: BaseException) -> str:
    """The one line that says why `e` stopped a command: its own message for a UserError or MachineError, the
    I/O failure's line (``io_failure``), else ``Type: first line``."""
    err = io_failure(e)
    return str(err) if err is not None else described(e)
