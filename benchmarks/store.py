"""The results store: one directory per benchmark run, one versioned JSON per (model, suite, variant).

Layout::

    <root>/<model>/<suite>.json              # variant "default"
    <root>/<model>/<suite>.<variant>.json    # e.g. alpaca_eval.best-of-16.json

Suites: ``SuiteName`` (``alpaca_eval``, ``arena_hard``, ``mt_bench``, ``lm_eval``). Metric keys are named as in the
official leaderboards (see each suite's scoring module). The release layer reads this store and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sppo.errors import UserError
from sppo.files import package_versions, read_json, utc_now, write_json

SCHEMA_VERSION = 1
SuiteName = Literal["alpaca_eval", "arena_hard", "mt_bench", "lm_eval"]
SUITES: tuple[SuiteName, ...] = get_args(SuiteName)  # every suite's one name, in run order


def cli_name(suite: SuiteName) -> str:
    """A suite's name on the command line: ``alpaca_eval`` -> ``alpaca-eval`` (``--alpaca-eval``,
    ``sppo-bench score alpaca-eval``)."""
    return suite.replace("_", "-")
DEFAULT_VARIANT = "default"


def variant_suffix(variant: str) -> str:
    """`` (best-of-16)`` after a name for a variant; nothing for the default (tables, cards, logs, summaries)."""
    return "" if variant == DEFAULT_VARIANT else f" ({variant})"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class SuiteResult:
    """Figures of one suite on one model, with everything needed to trust and reproduce them."""

    model: str
    suite: SuiteName
    metrics: dict[str, Any]
    variant: str = DEFAULT_VARIANT
    settings: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)  # {"path": ..., "fingerprint": ...}
    versions: dict[str, str] = field(default_factory=package_versions)
    created_at: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "SuiteResult":
        missing = [k for k in ("model", "suite", "metrics") if k not in d]
        if missing:
            raise UserError(f"{source}: missing field {missing[0]!r}")
        if d.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise UserError(f"{source}: schema_version {d['schema_version']} is newer than this toolkit's "
                            f"{SCHEMA_VERSION}; upgrade sppo-toolkit")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value or ""):
        raise UserError(f"invalid {kind} name {value!r}: use letters, digits, '.', '_' or '-'")
    return value


class ResultsStore:
    """Read and write SuiteResult files under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, model: str, suite: str, variant: str = DEFAULT_VARIANT) -> Path:
        _check_name("model", model)
        if suite not in SUITES:
            raise UserError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)}")
        name = suite if variant == DEFAULT_VARIANT else f"{suite}.{_check_name('variant', variant)}"
        return self.root / model / f"{name}.json"

    def write(self, result: SuiteResult) -> Path:
        return write_json(self.path(result.model, result.suite, result.variant), result.to_dict())

    def read(self, model: str, suite: str, variant: str = DEFAULT_VARIANT) -> SuiteResult | None:
        p = self.path(model, suite, variant)
        if not p.exists():
            return None
        return SuiteResult.from_dict(read_json(p), source=str(p))

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.json")))

    def results(self, model: str | None = None) -> list[SuiteResult]:
        out = []
        for m in ([model] if model else self.models()):
            for p in sorted((self.root / m).glob("*.json")):
                out.append(SuiteResult.from_dict(read_json(p), source=str(p)))
        return out


def digest(obj: Any) -> str:
    """A short stable digest of a JSON-able object: the key of a cached artifact (what produced it)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def checkpoint_fingerprint(path: str | os.PathLike) -> str | None:
    """A cheap identity of a local checkpoint: names, sizes and modification times of its weight and
    config files. Results whose fingerprint differs from the checkpoint's current one are stale.
    Returns None for paths that are not local directories (Hub ids are identified by revision)."""
    path = Path(path)
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in {".safetensors", ".bin", ".gguf"} or f.name == "config.json"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
