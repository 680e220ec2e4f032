"""The published Mistral7B-PairRM-SPPO release, kept as data: ``mistral7b_pairrm_sppo.json`` holds the figures
of the published cards (transcribed from their tables) and the iterations' manifests; ``model_cards/`` holds the
cards the toolkit renders from it.

    python -m release.published            # regenerate model_cards/Mistral7B-PairRM-SPPO-Iter{1,2,3}/README.md
    python -m release.published --check    # exit 1 if a card differs from what the source renders
"""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path
from typing import Any

from benchmarks.store import DEFAULT_VARIANT, SuiteResult
from sppo.checkpoint import CheckpointManifest
from sppo.errors import UserError
from sppo.files import read_json, write_text

from ..card import CARD_FILE, ReleaseInfo, Results, card_path, render_all
from ..run import Iteration

SOURCE_NAME = "mistral7b_pairrm_sppo.json"


def source_path() -> Path:
    return Path(str(resources.files(__name__) / SOURCE_NAME))


def _release_info(d: dict[str, Any], source: str) -> ReleaseInfo:
    if "/" not in d.get("repo", ""):
        raise UserError(f"{source}: field 'release.repo' must be ORG/NAME")
    org, family = d["repo"].split("/", 1)
    extra = {k: d[k] for k in ("license", "language", "pipeline_tag", "tags", "model_type", "links") if k in d}
    notes = {int(k): v for k, v in d.get("notes", {}).items()}
    return ReleaseInfo(family=family, org=org, notes=notes, **extra)


def _results(doc: dict[str, Any], iterations: list[Iteration], source: str) -> Results:
    """SuiteResults from ``{"IterN": {"suite[.variant]": metrics}}``; no checkpoint behind them."""
    by_name = doc.get("results", {})
    out: Results = {}
    for it in iterations:
        out[it.number] = []
        for key, metrics in by_name.get(it.name, {}).items():
            suite, _, variant = key.partition(".")
            out[it.number].append(SuiteResult.from_dict(
                {"model": it.name, "suite": suite, "variant": variant or DEFAULT_VARIANT, "metrics": metrics,
                 "versions": dict(doc.get("versions", {})), "created_at": ""}, source=f"{source}: {it.name}"))
    return out


def load_published(path: str | os.PathLike | None = None) -> tuple[ReleaseInfo, list[Iteration], Results]:
    """The release, its iterations and their published figures."""
    path = Path(path) if path else source_path()
    doc = read_json(path)
    for key in ("release", "iterations", "results"):
        if key not in doc:
            raise UserError(f"{path}: missing field {key!r}")
    iterations = [Iteration(CheckpointManifest.from_dict(m, f"{path}: iterations[{i}]"))
                  for i, m in enumerate(doc["iterations"])]
    iterations.sort(key=lambda it: it.number)
    return _release_info(doc["release"], str(path)), iterations, _results(doc, iterations, str(path))


def render_published(path: str | os.PathLike | None = None) -> dict[str, str]:
    """``{"<model name>/README.md": card text}`` for every iteration of the published release."""
    release, iterations, results = load_published(path)
    cards = render_all(release, iterations, results)
    return {f"{release.model_name(it)}/{CARD_FILE}": str(cards[it.number]) for it in iterations}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m release.published", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="model_cards", help="directory of the cards (default: model_cards)")
    p.add_argument("--source", default=None, help=f"source file (default: the packaged {SOURCE_NAME})")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when a card differs")
    args = p.parse_args(argv)
    changed = []
    for rel, text in render_published(args.source).items():
        target = card_path(args.out, rel.partition("/")[0])
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        changed.append(str(target))
        if not args.check:
            write_text(target, text)
    verb = "differ" if args.check else "written"
    print(f"{len(changed)} card(s) {verb}" + (": " + ", ".join(changed) if changed else ""))
    return 1 if (args.check and changed) else 0

