"""Iteration checkpoints and their manifest: the one contract between `sppo-train` and `sppo-release`.

    <run>/checkpoints/IterN/                 Hugging Face checkpoint (config, weights, tokenizer)
    <run>/checkpoints/IterN/sppo_manifest.json   `CheckpointManifest`, versioned by `schema_version`

The manifest records what produced the checkpoint as it really ran (the world size, per-device batch,
accumulation and global batch of the processes present, not of the config's intentions). `release/` reads it
through `CheckpointManifest.read` instead of re-declaring field names.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError, io_errors
from .export import write_compatible
from .files import fresh_dir, package_versions, read_json, safe_name, utc_now, write_json

MANIFEST_NAME = "sppo_manifest.json"
SCHEMA_VERSION = 2  # 2: real world size, global batch, mixed precision; 1 (unversioned): num_devices from config

# The hyperparameters a model card lists, in its order (the reference card's keys).
CARD_HYPERPARAMETERS = ("learning_rate", "eta", "per_device_train_batch_size", "gradient_accumulation_steps",
                        "seed", "distributed_type", "num_devices", "optimizer", "lr_scheduler_type",
                        "lr_scheduler_warmup_ratio", "num_train_epochs")


@dataclass
class CheckpointManifest:
    iteration: int
    name: str  # IterN; names the card's directory, so one path component
    base_model: str
    prompt_dataset: str | None
    prompt_source_dataset: str | None
    k: int
    ranker: str
    hyperparameters: dict
    init_model: str | None = None
    prompt_split: str | None = None
    training: dict = field(default_factory=dict)
    pairs: int = 0
    truncated_responses: int = 0
    seconds: float = 0.0
    config: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    finished_at: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "CheckpointManifest":
        """Validate and build; raises UserError naming `source` and the first bad field. Unknown keys are
        ignored (a newer writer), a missing `schema_version` means version 1."""
        _check(data, source)
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.setdefault("schema_version", 1)
        return cls(**kwargs)

    @classmethod
    def read(cls, checkpoint: str | os.PathLike) -> "CheckpointManifest":
        path = Path(checkpoint) / MANIFEST_NAME
        return cls.from_dict(read_json(path), str(path))


def ranker_record(kind: str, model: str) -> str:
    """The manifest's ``ranker``: a PairRM model's id or path as is, any other ranker ``KIND:MODEL``
    (``local-judge:embedded``)."""
    return model if kind == "pairrm" else f"{kind}:{model}"


def local_judge_model(ranker: str) -> str | None:
    """The chat model of a local-judge ranker as `ranker_record` writes it, else None."""
    kind, sep, model = ranker.partition(":")
    return model if sep and kind == "local-judge" else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object")
    version = data.get("schema_version", 1)
    if not _is_int(version) or version < 1:
        raise UserError(f"{source}: field 'schema_version' must be a positive integer")
    if version > SCHEMA_VERSION:
        raise UserError(f"{source}: schema_version {version} is newer than this toolkit's {SCHEMA_VERSION}; "
                        "upgrade sppo-toolkit")
    required = [f.name for f in dataclasses.fields(CheckpointManifest)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for key in required:
        if key not in data:
            raise UserError(f"{source}: missing field {key!r}")
    if not _is_int(data["iteration"]) or data["iteration"] < 1:
        raise UserError(f"{source}: field 'iteration' must be a positive integer")
    safe_name(data["name"], f"{source}: field 'name'")
    for key in ("base_model", "ranker"):
        if not isinstance(data[key], str) or not data[key]:
            raise UserError(f"{source}: field {key!r} must be a non-empty string")
    for key in ("prompt_dataset", "prompt_source_dataset"):
        if data[key] is not None and not isinstance(data[key], str):
            raise UserError(f"{source}: field {key!r} must be a string or null")
    if not _is_int(data["k"]):
        raise UserError(f"{source}: field 'k' must be an integer")
    if not isinstance(data["hyperparameters"], dict):
        raise UserError(f"{source}: field 'hyperparameters' must be an object")
    for key in CARD_HYPERPARAMETERS:
        if key not in data["hyperparameters"]:
            raise UserError(f"{source}: missing field 'hyperparameters.{key}'")


def is_finished(checkpoint: str | os.PathLike) -> bool:
    """A checkpoint exists once its manifest does (it is written last, and the directory renamed into place)."""
    return (Path(checkpoint) / MANIFEST_NAME).exists()


def save_checkpoint(target: Path, model, tokenizer, state_dict, manifest: CheckpointManifest) -> Path:
    """Write weights, tokenizer and manifest to a temporary sibling directory, then rename it onto `target`. The
    config, tokenizer and generation files are written in the form transformers 4.42+ and 5 read alike. A failed
    write (full disk, ...) removes the temporary directory and is one line naming `target`."""
    tmp = target.parent / f".{target.name}.tmp"
    with io_errors(target):
        try:
            fresh_dir(tmp)
            model.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.padding_side = "left"
            tokenizer.save_pretrained(tmp)
            # files every transformers from 4.42 on reads as this one does (sppo/export.py)
            write_compatible(tmp, clean_up_tokenization_spaces=bool(getattr(tokenizer, "clean_up_tokenization_spaces",
                                                                              False)))
            manifest.versions = manifest.versions or package_versions()
            manifest.finished_at = utc_now()
            write_json(tmp / MANIFEST_NAME, manifest.to_dict())
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
