"""Read a training run as `sppo-train` leaves it: one checkpoint per iteration, each with its manifest.

Layout::

    <run_dir>/checkpoints/Iter1/        HF checkpoint (config.json, model.safetensors, tokenizer files)
    <run_dir>/checkpoints/Iter1/sppo_manifest.json
    <run_dir>/checkpoints/Iter2/ ...
    <run_dir>/results/                  benchmark results store (see benchmarks.store)

Only the manifest fields a model card needs are required; extra keys are kept and ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sppo.errors import UserError
from sppo.files import read_json, safe_name

MANIFEST_NAME = "sppo_manifest.json"
REQUIRED_FIELDS = ("iteration", "name", "base_model", "prompt_dataset", "prompt_source_dataset", "k", "ranker",
                   "hyperparameters")
# In the order the model card lists them.
HYPERPARAMETERS = ("learning_rate", "eta", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
                   "distributed_type", "num_devices", "optimizer", "lr_scheduler_type", "lr_scheduler_warmup_ratio",
                   "num_train_epochs")


@dataclass
class Iteration:
    """One SPPO iteration of a run: its number, checkpoint name (``IterN``), checkpoint dir and manifest."""

    number: int
    name: str
    manifest: dict[str, Any]
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.manifest["hyperparameters"]


def validate_manifest(manifest: Any, source: str) -> dict[str, Any]:
    """Check the fields a model card needs; raise UserError naming `source` and the first missing field."""
    if not isinstance(manifest, dict):
        raise UserError(f"{source}: expected a JSON object")
    for key in REQUIRED_FIELDS:
        if key not in manifest:
            raise UserError(f"{source}: missing field {key!r}")
    hp = manifest["hyperparameters"]
    if not isinstance(hp, dict):
        raise UserError(f"{source}: field 'hyperparameters' must be an object")
    for key in HYPERPARAMETERS:
        if key not in hp:
            raise UserError(f"{source}: missing field 'hyperparameters.{key}'")
    if not isinstance(manifest["iteration"], int) or isinstance(manifest["iteration"], bool) \
            or manifest["iteration"] < 1:
        raise UserError(f"{source}: field 'iteration' must be a positive integer")
    safe_name(manifest["name"], f"{source}: field 'name'")  # it names the card's directory
    for key in ("base_model", "ranker"):
        if not isinstance(manifest[key], str) or not manifest[key]:
            raise UserError(f"{source}: field {key!r} must be a non-empty string")
    for key in ("prompt_dataset", "prompt_source_dataset"):
        if manifest[key] is not None and not isinstance(manifest[key], str):
            raise UserError(f"{source}: field {key!r} must be a string or null")
    if not isinstance(manifest["k"], int) or isinstance(manifest["k"], bool):
        raise UserError(f"{source}: field 'k' must be an integer")
    return manifest


def read_manifest(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The training manifest of a checkpoint, ``<checkpoint>/sppo_manifest.json``, as sppo-train writes it: the
    one place release reads that contract (swap in sppo's own reader here when it has one)."""
    path = Path(checkpoint) / MANIFEST_NAME
    try:
        return read_json(path)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a JSON file") from None


def load_iteration(checkpoint: str | os.PathLike) -> Iteration:
    """Read ``<checkpoint>/sppo_manifest.json``."""
    checkpoint = Path(checkpoint)
    manifest = validate_manifest(read_manifest(checkpoint), str(checkpoint / MANIFEST_NAME))
    return Iteration(number=manifest["iteration"], name=str(manifest["name"]), manifest=manifest,
                     checkpoint=checkpoint)


def load_run(run_dir: str | os.PathLike) -> list[Iteration]:
    """All iterations of a run, sorted by iteration number."""
    run_dir = Path(run_dir)
    ckpt_root = run_dir / "checkpoints"
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

