"""Read a training run as `sppo-train` leaves it: one checkpoint per iteration, each with its manifest.

Layout::

    <run_dir>/checkpoints/Iter1/        HF checkpoint (config.json, model.safetensors, tokenizer files)
    <run_dir>/checkpoints/Iter1/sppo_manifest.json
    <run_dir>/checkpoints/Iter2/ ...
    <run_dir>/results/                  benchmark results store (see benchmarks.store)
    <run_dir>/cards/<name>/README.md    the cards sppo-release renders (its default --out)

Each manifest is read as a `sppo.checkpoint.CheckpointManifest`; keys it does not declare are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppo.checkpoint import CARD_HYPERPARAMETERS, MANIFEST_NAME, CheckpointManifest
from sppo.errors import UserError
from sppo.files import read_json
from sppo.run_dir import RunLayout

# The card lists these hyperparameters, in this order (declared with the manifest contract in sppo.checkpoint).
HYPERPARAMETERS = CARD_HYPERPARAMETERS


@dataclass
class Iteration:
    """One SPPO iteration of a run: its manifest and, when read from a run, its checkpoint directory."""

    manifest: CheckpointManifest
    checkpoint: Path | None = None

    @property
    def number(self) -> int:
        return self.manifest.iteration

    @property
    def name(self) -> str:
        """The checkpoint's name, ``IterN``."""
        return self.manifest.name

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.manifest.hyperparameters


def cards_dir(run_dir: str | os.PathLike) -> Path:
    """Where sppo-release writes a run's cards unless told otherwise: ``<run_dir>/cards``."""
    return RunLayout(Path(run_dir)).cards


def read_manifest(checkpoint: str | os.PathLike) -> CheckpointManifest:
    """The training manifest of a checkpoint, ``<checkpoint>/sppo_manifest.json``, as sppo-train writes it,
    checked against the contract (`sppo.checkpoint.CheckpointManifest`): a bad one raises UserError naming the
    file and its first bad field. The one place release reads that file."""
    path = Path(checkpoint) / MANIFEST_NAME
    try:
        data = read_json(path)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a JSON file") from None
    return CheckpointManifest.from_dict(data, str(path))


def load_iteration(checkpoint: str | os.PathLike) -> Iteration:
    """Read ``<checkpoint>/sppo_manifest.json``."""
    return Iteration(read_manifest(checkpoint), Path(checkpoint))


def load_run(run_dir: str | os.PathLike) -> list[Iteration]:
    """All iterations of a run, sorted by iteration number."""
    run_dir = Path(run_dir)
    ckpt_root = RunLayout(run_dir).checkpoints
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run directory is " + ("a file" if run_dir.exists() else "missing"))
    if not ckpt_root.is_dir():
        raise UserError(f"{run_dir}: not a training run (no checkpoints/ directory)")
    iterations = [load_iteration(d) for d in sorted(ckpt_root.iterdir())
                  if d.is_dir() and (d / MANIFEST_NAME).is_file()]
    if not iterations:
        raise UserError(f"{ckpt_root}: no checkpoint with {MANIFEST_NAME} (has training finished an iteration?)")
    iterations.sort(key=lambda it: it.number)
    numbers = [it.number for it in iterations]
    if len(set(numbers)) != len(numbers):
        raise UserError(f"{ckpt_root}: several checkpoints claim the same iteration number ({numbers})")
    return iterations

