"""The results store: one directory per benchmark run, one versioned JSON per (model, suite, variant), and beside the
results the artifacts that produced them in the official tools' layouts. `StoreLayout` is the one spelling of every
path in it::

    <root>/<model>/<suite>.json              # variant "default"
    <root>/<model>/<suite>.<variant>.json    # e.g. alpaca_eval.best-of-16.json
    <root>/alpaca_eval[.<variant>]/<model>/model_outputs.json, annotations.json
    <root>/arena_hard[.<variant>]/model_answer/<model>.jsonl, model_judgment/<judge>/<model>.jsonl
    <root>/mt_bench[.<variant>]/model_answer/<model>.jsonl, model_judgment/<judge>_single.jsonl
    <root>/lm_eval/<model>/results.json, results_<task>.json, samples_<task>.jsonl; lm_eval_tasks/ (the tiny task)
    <root>/judge_cache.sqlite3, .chunks/ (answer jobs in progress), plots/ (sppo-bench table --plots),
    report.html (sppo-bench report)

Suites: ``SuiteName`` (``alpaca_eval``, ``arena_hard``, ``mt_bench``, ``lm_eval``), and a user's own suites
(``sppo-bench --suite FILE.yaml``) under the names their files give them. Metric keys are named as in the
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
from sppo.files import package_versions, read_json, under, utc_now, write_json

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


def with_variant(name: str, variant: str) -> str:
    """A file or directory name of a variant: ``alpaca_eval`` -> ``alpaca_eval.best-of-16``."""
    return name if variant == DEFAULT_VARIANT else f"{name}.{variant}"


@dataclass(frozen=True)
class StoreLayout:
    """Every path of a results store (see the module's docstring), spelt once. Paths built from names the store did
    not choose (models, variants, judges) are checked to stay inside it (`sppo.files.under`)."""

    root: Path

    def result(self, model: str, suite: str, variant: str = DEFAULT_VARIANT) -> Path:
        return self.root / model / f"{with_variant(suite, variant)}.json"

    def work(self, suite: str, variant: str = DEFAULT_VARIANT) -> Path:
        """A suite's artifacts (answers, judgments) of one variant."""
        return under(self.root, with_variant(suite, variant), what="variant")

    def model_dir(self, suite: str, variant: str, model: str) -> Path:
        """``<suite>[.<variant>]/<model>/`` (AlpacaEval's files, lm-eval's)."""
        return under(self.work(suite, variant), model, what="model name")

    def model_outputs(self, variant: str, model: str) -> Path:
        """AlpacaEval's ``model_outputs.json`` of a model."""
        return self.model_dir("alpaca_eval", variant, model) / "model_outputs.json"

    def annotations(self, variant: str, model: str) -> Path:
        """AlpacaEval's ``annotations.json`` of a model."""
        return self.model_dir("alpaca_eval", variant, model) / "annotations.json"

    def lm_eval_results(self, model: str, task: str | None = None) -> Path:
        """lm-eval's results of a model: every task merged (``results.json``), or one task's
        (``results_<task>.json``)."""
        return self.model_dir("lm_eval", DEFAULT_VARIANT, model) / (f"results_{task}.json" if task else "results.json")

    def lm_eval_samples(self, model: str, task: str) -> Path:
        return self.model_dir("lm_eval", DEFAULT_VARIANT, model) / f"samples_{task}.jsonl"

    def answers_dir(self, suite: str, variant: str) -> Path:
        return self.work(suite, variant) / "model_answer"

    def answers(self, suite: str, variant: str, model: str) -> Path:
        return under(self.work(suite, variant), "model_answer", f"{model}.jsonl", what="model name")

    def judgments_dir(self, suite: str, variant: str, judge: str) -> Path:
        """Arena-Hard's ``model_judgment/<judge>/`` (one file per model)."""
        return under(self.work(suite, variant), "model_judgment", judge, what="judge model")

    def judgments(self, suite: str, variant: str, judge: str, model: str) -> Path:
        return under(self.judgments_dir(suite, variant, judge), f"{model}.jsonl", what="model name")

    def shared_judgments(self, suite: str, variant: str, judge: str) -> Path:
        """MT-Bench's ``model_judgment/<judge>_single.jsonl`` (every model's rows)."""
        return under(self.work(suite, variant), "model_judgment", f"{judge}_single.jsonl", what="judge model")

    @property
    def lm_eval_tasks(self) -> Path:
        return self.root / "lm_eval_tasks"

    @property
    def judge_cache(self) -> Path:
        return self.root / "judge_cache.sqlite3"

    @property
    def scratch(self) -> Path:
        """Where the chunks of answer jobs in progress live."""
        return self.root / ".chunks"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report(self) -> Path:
        """``sppo-bench report``'s page."""
        return self.root / "report.html"


def plot_file(plots_dir: Path, suite: str) -> Path:
    """One benchmark's plot (``sppo-bench table --plots``), in the store's ``plots/`` or the given directory."""
    return plots_dir / f"{suite}.png"


class ResultsStore:
    """Read and write SuiteResult files under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.layout = StoreLayout(self.root)

    def path(self, model: str, suite: str, variant: str = DEFAULT_VARIANT) -> Path:
        _check_name("model", model)
        if suite not in SUITES:  # a user's own suite (sppo-bench --suite FILE.yaml): any name the store can hold
            _check_name("suite", suite)
        if variant != DEFAULT_VARIANT:
            _check_name("variant", variant)
        return self.layout.result(model, suite, variant)

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
