"""The edge of `sppo-bench`: every read, download and glob of judgment, answer and annotation files, shared by
`sppo-bench run` (the suites) and `sppo-bench score`, so `benchmarks.scoring` only computes on plain records.

    read_json_file, read_jsonl_lines, read_records    one JSON / JSONL / either file (UTF-8; one-line errors)
    judgment_files, read_judgments                    Arena-Hard's judgment directories, fitted together
    answers_by_model                                  a ``model_answer/`` directory, one file per model
    question_records, judge_prompts                   question.jsonl, FastChat's judge_prompts.jsonl
    hub_file, read_df_gamed                           AlpacaEval's ``df_gamed.csv``: a local copy or the Hub's
    alpaca_eval_model_configs                         the ``models_configs`` shipped in the alpaca-eval package

The benchmarks' own data files (questions, baselines, judge prompts, pinned downloads) are read by
`benchmarks.data.DataSource`; the results store by `benchmarks.store`.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

from sppo.errors import UserError
from sppo.files import read_json, read_jsonl_numbered

log = logging.getLogger(__name__)

# --- JSON and JSONL -------------------------------------------------------------------------------------------------

def read_json_file(path: str | os.PathLike) -> object:
    """A UTF-8 JSON file; a missing file, a directory, bad bytes or bad JSON raise UserError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: file not found (it is a directory)")
    return read_json(path)


def read_jsonl_lines(path: str | os.PathLike) -> tuple[list[dict], list[int]]:
    """A JSONL file of objects as (rows, line numbers), blank lines skipped; a bad line or a line that is not a JSON
    object raises UserError naming file and line (the parsing is `sppo.files.read_jsonl_numbered`'s)."""
    rows, lines = [], []
    for lineno, row in read_jsonl_numbered(path):
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        lines.append(lineno)
    return rows, lines


def read_records(path: Path) -> tuple[list[dict], list[int] | None]:
    """A JSON array of objects (alpaca_eval's annotations.json) or a JSONL file: (records, line numbers or None)."""
    if path.is_file() and path.read_bytes()[:4096].lstrip().startswith(b"["):
        data = read_json_file(path)
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of records")
        for i, r in enumerate(data):
            if not isinstance(r, dict):
                raise UserError(f"{path}: record {i + 1}: expected a JSON object")
        return data, None
    return read_jsonl_lines(path)


def question_records(path: Path | None) -> list[dict] | None:
    """The records of a question.jsonl (None when no file is named)."""
    return read_jsonl_lines(path)[0] if path else None


def judge_prompts(path: str | os.PathLike) -> dict[str, dict]:
    """FastChat's ``judge_prompts.jsonl`` as ``{name: prompt record}``."""
    return {r["name"]: r for r in read_jsonl_lines(path)[0]}


# --- judgment and answer directories --------------------------------------------------------------------------------

def judgment_files(own_dir: Path, others: Sequence[Path] = ()) -> list[Path]:
    """The judgment files fitted together: ``<model>.jsonl`` of ``own_dir`` and of each ``--with-judgments``
    directory, all in sorted file-name order, as if they were one judgment directory (the official show_result.py
    reads ``glob(dir/*jsonl)`` in filesystem order, arena-hard-auto show_result.py @e883410:123; sorting makes the
    fit, whose bootstrap depends on the order, reproducible). A model of ``own_dir`` wins over the same name
    elsewhere."""
    by_name: dict[str, Path] = {}
    for d in [own_dir, *others]:
        for f in Path(d).glob("*.jsonl"):
            by_name.setdefault(f.name, f)
    return [by_name[name] for name in sorted(by_name)]


@dataclass
class Judgments:
    """Judgment rows read from several files, each with its file and line (for one-line errors)."""

    rows: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def read_judgments(files: Iterable[Path], question_ids: set[str] | None = None) -> Judgments:
    """Every row of `files` in order (only those of `question_ids` when given), with where each came from."""
    out = Judgments()
    for f in files:
        rows, lines = read_jsonl_lines(f)
        keep = [i for i, row in enumerate(rows) if question_ids is None or str(row.get("question_id")) in question_ids]
        out.rows += [rows[i] for i in keep]
        out.lines += [lines[i] for i in keep]
        out.sources += [str(f)] * len(keep)
    return out


def answers_by_model(answers_dir: Path, question_ids: set[str] | None = None) -> dict[str, list[dict]]:
    """``model_answer/<model>.jsonl`` -> ``{model: answer records}`` (only those of `question_ids` when given),
    keyed by file name as the official loader does."""
    if not answers_dir.is_dir():
        raise UserError(f"{answers_dir}: not a directory of <model>.jsonl answer files")
    return {f.stem: [a for a in read_jsonl_lines(f)[0]
                     if question_ids is None or str(a.get("question_id")) in question_ids]
            for f in sorted(answers_dir.glob("*.jsonl"))}


# --- AlpacaEval's files outside the benchmark data ------------------------------------------------------------------

def hub_file(filename: str, local: str | os.PathLike | None = None) -> Path | None:
    """A file of the ``tatsu-lab/alpaca_eval`` Hub dataset: ``local`` if given (must exist), else the Hub copy
    (downloaded once into the Hugging Face cache), else None when the Hub is unreachable or offline."""
    if local is not None:
        path = Path(local)
        if not path.is_file():
            raise UserError(f"{path}: file not found (expected AlpacaEval's {filename})")
        return path
    return hub_download(filename)


@functools.cache
def hub_download(filename: str) -> Path | None:
    """One attempt per process: an unreachable Hub is not asked again for every model and suite. A copy in the
    Hugging Face cache is used as is; the Hub is asked only when its host accepts a connection (huggingface_hub
    retries an unreachable host five times with back-off, about 25 s, before giving up)."""
    from huggingface_hub import constants, hf_hub_download

    from benchmarks.scoring.alpaca_eval import HUB_DATASET

    kw = dict(repo_id=HUB_DATASET, filename=filename, repo_type="dataset")
    try:
        return Path(hf_hub_download(**kw, local_files_only=True))
    except Exception:  # not cached yet
        pass
    if constants.HF_HUB_OFFLINE or not host_reachable(constants.ENDPOINT):
        log.info("cannot get %s from the Hub dataset %s: %s unreachable", filename, HUB_DATASET,
                 constants.ENDPOINT)
        return None
    try:
        log.info("fetching %s from the Hub dataset %s (give a local copy to skip this)", filename, HUB_DATASET)
        return Path(hf_hub_download(**kw))
    except Exception as e:  # no network, gated, ...: the caller reports LC as unavailable
        log.info("cannot get %s from the Hub dataset %s: %s", filename, HUB_DATASET, e)
        return None


def host_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether the host of `url` resolves and accepts a TCP connection within `timeout` seconds."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def read_df_gamed(path: str | os.PathLike):
    """``df_gamed.csv`` (a pandas DataFrame): annotations of the two length-gamed baselines, with their GLM
    features."""
    import pandas as pd

    from benchmarks.scoring.alpaca_eval import DF_GAMED

    df = pd.read_csv(path)
    needed = {"index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise UserError(f"{path}: not AlpacaEval's {DF_GAMED} (missing column {missing[0]!r})")
    return df.drop(columns=["model"], errors="ignore")


def df_gamed(local: str | os.PathLike | None, data_dir: Path | None = None):
    """AlpacaEval's ``df_gamed.csv`` for the length-controlled win rate: `local`, else ``alpaca_eval/df_gamed.csv``
    of the data directory, else the Hub's; None when none is available."""
    from benchmarks.scoring.alpaca_eval import DF_GAMED

    if local is None and data_dir is not None:
        candidate = data_dir / "alpaca_eval" / DF_GAMED
        local = str(candidate) if candidate.is_file() else None
    path = hub_file(DF_GAMED, local)
    return None if path is None else read_df_gamed(path)


def alpaca_eval_model_configs() -> list[tuple[str, dict[str, Any]]]:
    """``(name, completions_kwargs)`` of every model config shipped in the alpaca-eval package
    (``models_configs/<name>/configs.yaml``), in name order; unreadable ones are skipped."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("alpaca_eval")
    root = Path(spec.origin).parent / "models_configs" if spec and spec.origin else None
    out = []
    for cfg_path in sorted(root.glob("*/configs.yaml")) if root else []:
        try:
            cfg = next(iter((yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}).values()))
            kw = cfg.get("completions_kwargs") or {}
        except (yaml.YAMLError, StopIteration, AttributeError):
            continue
        if isinstance(kw, dict):
            out.append((cfg_path.parent.name, kw))
    return out
