"""Prompt splits, one per SPPO iteration.

- source "embedded": the project's own 45 varied instructions (sppo/data/prompts.jsonl), split in 3 like the
  UltraFeedback prompts that snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset splits into train_iteration_1..3,
  and 12 more in the split `held_out`, never trained on (the learning check's, `sppo.learning_check`).
- source "hub": `datasets.load_dataset(dataset, split=..., revision=...)`, column `prompt` (needs a network or a
  warm cache). `{iteration}` in `dataset` names one dataset per iteration: the reference scripts read
  UCLA-AGI/data-mistral-7b-instruct-sppo-iter{1,2,3}, split "train", column "prompt" (uclaml/SPPO
  run_sppo_mistral.sh:11, scripts/generate.py:64, 81).
- a local .jsonl/.json/.parquet file with the prompt column and a `split` column.
Each prompt gets a stable id (the dataset's `prompt_id` if present, else a hash of the text).
`rows` (prompts.rows): "clean" drops empty prompts and repeated prompts (same id, same text); "reference" keeps
every row, as the reference's scripts/generate.py:81 did. A repeated id gets a `#n` suffix so each row stays
addressable (in "clean" mode only a different prompt under an id already taken, with a warning).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .config import PromptsConfig
from .errors import UserError, described, first_line

log = logging.getLogger(__name__)

EMBEDDED_PROMPTS = Path(__file__).parent / "data" / "prompts.jsonl"


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _records_from_file(path: Path, split: str, column: str) -> list[dict]:
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{path}: prompt file not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix == ".jsonl":
            df = pd.read_json(path, lines=True)
        elif path.suffix == ".json":
            df = pd.read_json(path)
        else:
            raise UserError(f"{path}: unsupported prompt file type (use .jsonl, .json or .parquet)")
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read prompts ({first_line(e)})") from None
    except OSError as e:  # a directory, unreadable file, corrupt parquet
        raise UserError(f"{path}: cannot read prompts ({e.strerror or type(e).__name__})") from None
    for col in (column, "split"):
        if col not in df.columns:
            raise UserError(f"{path}: missing column '{col}'")
    rows = df[df["split"] == split]
    out = []
    for index, r in rows.iterrows():
        text = r[column]
        if not isinstance(text, str):  # a number, null (NaN in pandas), a list...
            where = f"line {index + 1}" if path.suffix == ".jsonl" else f"row {index + 1}"
            shown = None if _is_missing(text) else text
            raise UserError(f"{path}: {where}: field '{column}' must be a string, got {shown!r}")
        out.append({"id": str(r["id"]) if "id" in df.columns else prompt_id(text), "prompt": text})
    return out


def _is_missing(value) -> bool:
    """pandas reads a JSON null as None or NaN."""
    return value is None or (isinstance(value, float) and value != value)


def dataset_for(cfg: PromptsConfig, iteration: int) -> str:
    """The Hub dataset of iteration `iteration` (1-based): `dataset` with `{iteration}` replaced."""
    return cfg.dataset.replace("{iteration}", str(iteration))


def _records_from_hub(dataset: str, split: str, column: str, revision: str | None = None) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset, split=split, revision=revision)
    except Exception as e:  # offline, unknown split, ... : one line, the cause named
        raise UserError(f"prompts.dataset: cannot load {dataset} split {split} ({described(e)})") from None
    if column not in ds.column_names:
        raise UserError(f"prompts.column: {dataset} has no column '{column}' (columns: {', '.join(ds.column_names)})")
    ids = ds["prompt_id"] if "prompt_id" in ds.column_names else None
    return [{"id": ids[i] if ids else prompt_id(p), "prompt": p} for i, p in enumerate(ds[column])]


def _kept(records: list[dict], keep_all: bool, source: str) -> list[dict]:
    """clean: non-empty prompts, each (id, text) once. keep_all: every string prompt. A repeated id gets a ``#n``
    suffix so each row stays addressable; in clean mode that happens only to a different prompt under an id already
    taken (never lost), with a warning."""
    seen: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    out, renamed = [], []
    for r in records:
        text, rid = r["prompt"], str(r["id"])
        if not isinstance(text, str) or (not keep_all and (not text.strip() or (rid, text) in pairs)):
            continue
        pairs.add((rid, text))
        seen[rid] = seen.get(rid, 0) + 1
        if seen[rid] > 1 and not keep_all:
            renamed.append(rid)
        out.append({"id": rid if seen[rid] == 1 else f"{rid}#{seen[rid] - 1}", "prompt": text})
    if renamed:
        log.warning("prompts: %s: %d prompts share an id with a different prompt (first: %r); all are kept, the "
                    "later ones as <id>#1, <id>#2, ...", source, len(renamed), renamed[0])
    return out


def load_split(cfg: PromptsConfig, iteration: int) -> list[dict]:
    """Prompts of iteration `iteration` (1-based): a list of {"id", "prompt"} (prompts.rows decides what is
    dropped)."""
    split = cfg.splits[iteration - 1]
    if cfg.source == "embedded":
        records = _records_from_file(EMBEDDED_PROMPTS, split, "prompt")
    elif cfg.source == "hub":
        records = _records_from_hub(dataset_for(cfg, iteration), split, cfg.column, cfg.revision)
    else:
        records = _records_from_file(Path(cfg.source), split, cfg.column)
    out = _kept(records, keep_all=cfg.rows == "reference", source=cfg.source)
    if cfg.limit:
        out = out[: cfg.limit]
    if not out:
        raise UserError(f"prompts: split '{split}' of {cfg.source} is empty")
    return out
