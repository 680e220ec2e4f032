"""How a release names things: the family, each iteration's model name, Hub ids and card file, the license, and
which names are Hugging Face Hub ids at all."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.tables import family_name
from sppo.errors import UserError
from sppo.files import safe_name, under

from ..run import Iteration

HUB_URL = "https://huggingface.co"
CARD_FILE = "README.md"  # a card's file, in its model's directory as on the Hub
LICENSE_NAMES = {"apache-2.0": "Apache-2.0", "mit": "MIT", "cc-by-4.0": "CC-BY-4.0", "cc-by-nc-4.0": "CC-BY-NC-4.0",
                 "gemma": "Gemma"}
# Gemma's terms carry over to models trained from it: the published Gemma-2-9B-It-SPPO cards say `license: gemma`
BASE_LICENSES = {"google/gemma-2-9b-it": "gemma", "google/gemma-2-27b-it": "gemma"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".tsv", ".txt", ".yaml", ".yml", ".arrow", ".gguf")


@dataclass
class ReleaseInfo:
    """What names and labels a release: ``family`` (``Mistral7B-PairRM-SPPO``), the Hub ``org`` (None for a
    local dry run), metadata defaults, extra links and per-iteration notes (Markdown)."""

    family: str
    org: str | None = None
    license: str = "apache-2.0"
    language: list[str] = field(default_factory=lambda: ["en"])
    pipeline_tag: str = "text-generation"
    tags: list[str] = field(default_factory=lambda: ["sppo", "self-play-preference-optimization", "alignment"])
    model_type: str = "A GPT-like model fine-tuned on synthetic datasets."
    links: list[dict[str, str]] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)
    datasets: bool = False  # each iteration's scored synthetic dataset is published as <repo id>-data

    def data_repo_id(self, it: Iteration) -> str | None:
        """``ORG/<family>-IterN-data``: the Hub dataset of an iteration's scored synthetic data, when published."""
        return f"{self.repo_id(it)}-data" if self.datasets and self.org else None

    def model_name(self, it: Iteration) -> str:
        """``<family>-IterN``: the card's title and the repository name."""
        return f"{self.family}-{it.name}"

    def repo_id(self, it: Iteration) -> str | None:
        return f"{self.org}/{self.model_name(it)}" if self.org else None

    def url(self, it: Iteration) -> str:
        """Hub page of an iteration, or the relative path of its local card when no org is set."""
        return f"{HUB_URL}/{self.repo_id(it)}" if self.org else f"../{self.model_name(it)}/README.md"

    @property
    def license_name(self) -> str:
        """The license as the card's prose names it (``Apache-2.0``)."""
        return LICENSE_NAMES.get(self.license, self.license)


def card_path(out: str | os.PathLike, model_name: str) -> Path:
    """``<out>/<model name>/README.md``, the name one path component and the path inside `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, expected a directory")
    return under(out, safe_name(model_name, "model name"), CARD_FILE, what="model card")


def default_license(iterations: list[Iteration]) -> str:
    """The license of the run's cards: its base model's where that binds derivatives (Gemma), else Apache-2.0."""
    return BASE_LICENSES.get(iterations[0].manifest.base_model, "apache-2.0")


def default_family(iterations: list[Iteration]) -> str:
    """The run's family name (``benchmarks.tables.family_name`` of its base model and ranker)."""
    m = iterations[0].manifest
    return family_name(m.base_model, m.ranker)


def hub_id(name: Any) -> str | None:
    """`name` when it is a Hugging Face Hub id (``owner/name``), else None: local paths (absolute, relative,
    with a file suffix), ``embedded`` and None are not."""
    if not isinstance(name, str) or not _HUB_ID.match(name) or ".." in name:
        return None
    return None if name.lower().endswith(_FILE_SUFFIXES) else name
