"""Benchmark data: read from a local directory, or downloaded once from the Hub into the user cache.

A data directory has the layout (and the official file formats) of ``../shared/data``::

    alpaca_eval/gpt4_1106_preview.model_outputs.json   805 instructions + the baseline's outputs (JSON list)
    alpaca_eval/alpaca_eval_clf.txt                    the weighted judge's prompt
    arena_hard_v0.1/question.jsonl                     500 questions
    arena_hard_v0.1/gpt-4-0314.answers.jsonl           the baseline's answers
    arena_hard_v0.1/judge_config.yaml                  judge settings, system prompt, prompt template
    mt_bench/question.jsonl                            80 questions, 2 turns
    mt_bench/reference_answer.gpt-4.jsonl              GPT-4 references (math, reasoning, coding)
    mt_bench/judge_prompts.jsonl                       single-v1, single-math-v1, ... (FastChat's file)

``--data-dir`` names such a directory; every file must be there. Without it the cache directory
``$SPPO_CACHE/benchmark_data`` is used and a missing file is downloaded (NETWORK CODE: the functions
``_download_*``) from its public home: the ``tatsu-lab/alpaca_eval`` dataset, the ``lmsys/arena-hard-browser`` and
``lmsys/mt-bench`` Spaces (at the revision named in ``HUB_REVISIONS``; ``main`` until a commit is pinned there), the
arena-hard-auto GitHub repository (judge config, pinned to a commit).
The AlpacaEval judge prompt ships inside the ``alpaca-eval`` package and needs no download.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sppo.errors import UserError
from sppo.files import atomic_path, read_json, read_jsonl, write_text

log = logging.getLogger(__name__)

ALPACA_DIR, ARENA_DIR, MT_DIR = "alpaca_eval", "arena_hard_v0.1", "mt_bench"
ALPACA_BASELINE_FILE = "gpt4_1106_preview.model_outputs.json"
ALPACA_PROMPT_FILE = "alpaca_eval_clf.txt"
ARENA_QUESTIONS, ARENA_BASELINE, ARENA_CONFIG = "question.jsonl", "gpt-4-0314.answers.jsonl", "judge_config.yaml"
MT_QUESTIONS, MT_REFERENCES, MT_PROMPTS = "question.jsonl", "reference_answer.gpt-4.jsonl", "judge_prompts.jsonl"

# public homes of the data (NETWORK CODE uses these)
ALPACA_HUB_DATASET = "tatsu-lab/alpaca_eval"
ALPACA_HUB_BASELINE = "alpaca_eval_gpt4_baseline.json"  # AlpacaEval 2's reference outputs (gpt4_1106_preview)
ARENA_HUB_SPACE = "lmsys/arena-hard-browser"
ARENA_HUB_FILES = {ARENA_QUESTIONS: "data/arena-hard-v0.1/question.jsonl",
                   ARENA_BASELINE: "data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl"}
ARENA_GITHUB_CONFIG = ("https://raw.githubusercontent.com/lmarena/arena-hard-auto/"
                       "7f1b7f5dd6ce53e1f8530220ceb452b7019a8056/config/judge_config.yaml")
MT_HUB_SPACE = "lmsys/mt-bench"
# the revision each Hub repo is downloaded at (a commit sha pins it; "main" follows the repo)
HUB_REVISIONS = {ALPACA_HUB_DATASET: "main", ARENA_HUB_SPACE: "main", MT_HUB_SPACE: "main"}
MT_HUB_FILES = {MT_QUESTIONS: "data/mt_bench/question.jsonl",
                MT_REFERENCES: "data/mt_bench/reference_answer/gpt-4.jsonl",
                MT_PROMPTS: "data/judge_prompts.jsonl"}


def default_cache_dir() -> Path:
    from sppo.models import cache_dir

    return cache_dir() / "benchmark_data"


@dataclass
class AlpacaEvalData:
    examples: list[dict]  # {"dataset", "instruction", "output" (baseline), "generator"}, evaluation-set order
    prompt_template: str
    source: str = ""


@dataclass
class ArenaHardData:
    questions: list[dict]
    baseline_answers: dict[str, dict]  # question_id -> answer record
    judge_config: dict[str, Any]
    source: str = ""


@dataclass
class MTBenchData:
    questions: list[dict]
    references: dict[int, dict]  # question_id -> reference answer record
    judge_prompts: dict[str, dict]  # name -> {"name", "type", "system_prompt", "prompt_template", ...}
    source: str = ""


@dataclass
class DataSource:
    """Where benchmark files come from: an explicit local directory (no downloads) or the download cache."""

    data_dir: Path | None = None
    cache: Path = field(default_factory=default_cache_dir)

    def file(self, sub: str, name: str, download: Callable[[Path], None] | None = None) -> Path:
        if self.data_dir is not None:
            p = self.data_dir / sub / name
            if not p.is_file():
                raise UserError(f"{p}: file not found (--data-dir must hold {sub}/{name}, as ../shared/data does)")
            return p
        p = self.cache / sub / name
        if not p.is_file():
            if download is None:
                raise UserError(f"{p}: file not found")
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise UserError(f"{sub}/{name} is not cached and HF_HUB_OFFLINE=1: pass --data-dir with local copies")
            log.info("downloading %s/%s into %s", sub, name, self.cache)
            try:
                download(p)
            except UserError:
                raise
            except Exception as e:  # no network, moved file, ...
                raise UserError(f"cannot download {sub}/{name} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                                "pass --data-dir with local copies") from None
        return p

    # -- loaders ---------------------------------------------------------------------------------------------------
    def alpaca_eval(self) -> AlpacaEvalData:
        path = self.file(ALPACA_DIR, ALPACA_BASELINE_FILE, _download_alpaca_baseline)
        examples = read_json(path)
        if not isinstance(examples, list) or not examples:
            raise UserError(f"{path}: expected a JSON list of AlpacaEval outputs")
        for i, ex in enumerate(examples):
            if not isinstance(ex, dict) or "instruction" not in ex or "output" not in ex:
                raise UserError(f"{path}: record {i + 1}: expected fields 'instruction' and 'output'")
        if self.data_dir is not None:
            prompt = self.file(ALPACA_DIR, ALPACA_PROMPT_FILE).read_text(encoding="utf-8")
        else:
            prompt = packaged_alpaca_prompt()
        return AlpacaEvalData(examples, prompt, str(path.parent))

    def arena_hard(self) -> ArenaHardData:
        import yaml

        qpath = self.file(ARENA_DIR, ARENA_QUESTIONS, _hub_space_download(ARENA_HUB_SPACE, ARENA_HUB_FILES[ARENA_QUESTIONS]))
        bpath = self.file(ARENA_DIR, ARENA_BASELINE, _hub_space_download(ARENA_HUB_SPACE, ARENA_HUB_FILES[ARENA_BASELINE]))
        cpath = self.file(ARENA_DIR, ARENA_CONFIG, _download_url(ARENA_GITHUB_CONFIG))
        questions = read_jsonl(qpath)
        by_id(questions, "question_id", qpath)
        baseline = {str(k): a for k, a in by_id(read_jsonl(bpath), "question_id", bpath).items()}
        try:
            config = yaml.safe_load(cpath.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise UserError(f"{cpath}: invalid YAML ({str(e).splitlines()[0]})") from None
        for key in ("system_prompt", "prompt_template", "regex_pattern"):
            if key not in (config or {}):
                raise UserError(f"{cpath}: missing field {key!r}")
        return ArenaHardData(questions, baseline, config, str(qpath.parent))

    def mt_bench(self) -> MTBenchData:
        qpath = self.file(MT_DIR, MT_QUESTIONS, _hub_space_download(MT_HUB_SPACE, MT_HUB_FILES[MT_QUESTIONS]))
        rpath = self.file(MT_DIR, MT_REFERENCES, _hub_space_download(MT_HUB_SPACE, MT_HUB_FILES[MT_REFERENCES]))
        ppath = self.file(MT_DIR, MT_PROMPTS, _hub_space_download(MT_HUB_SPACE, MT_HUB_FILES[MT_PROMPTS]))
        questions = read_jsonl(qpath)
        by_id(questions, "question_id", qpath)
        return MTBenchData(questions, by_id(read_jsonl(rpath), "question_id", rpath),
                           by_id(read_jsonl(ppath), "name", ppath), str(qpath.parent))


def by_id(rows: list, key: str, path: Path) -> dict:
    """``{row[key]: row}``; a record without `key`, or two records sharing one, is one line naming the file and the
    id (a benchmark file whose ids repeat would silently lose a question)."""
    out: dict = {}
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or key not in row:
            raise UserError(f"{path}: record {i}: missing field {key!r}")
        value = row[key]
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise UserError(f"{path}: record {i}: field {key!r} must be a string or an integer")
        if value in out:
            raise UserError(f"{path}: record {i}: {key} {value!r} is used twice")
        out[value] = row
    return out


def packaged_alpaca_prompt() -> str:
    """``alpaca_eval_clf.txt`` as shipped inside the installed alpaca-eval package (no download needed)."""
    import importlib.util

    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or spec.origin is None:
        raise UserError("alpaca-eval is not installed")
    p = Path(spec.origin).parent / "evaluators_configs" / "alpaca_eval_clf_gpt4_turbo" / ALPACA_PROMPT_FILE
    if not p.is_file():
        raise UserError(f"{p}: AlpacaEval judge prompt missing from the alpaca-eval package")
    return p.read_text(encoding="utf-8")


# --- NETWORK CODE: downloads (only reached without --data-dir, when a file is not cached yet) --------------------

def _hub_copy(repo_id: str, filename: str, repo_type: str, target: Path) -> None:
    """Download one file of a Hub repo at its ``HUB_REVISIONS`` revision (into the Hugging Face cache) and copy it
    atomically to `target`."""
    from huggingface_hub import hf_hub_download

    src = hf_hub_download(repo_id=repo_id, filename=filename, repo_type=repo_type, revision=HUB_REVISIONS[repo_id])
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)


def _download_alpaca_baseline(target: Path) -> None:
    _hub_copy(ALPACA_HUB_DATASET, ALPACA_HUB_BASELINE, "dataset", target)


def _hub_space_download(space: str, filename: str) -> Callable[[Path], None]:
    def download(target: Path) -> None:
        _hub_copy(space, filename, "space", target)

    return download


def _download_url(url: str) -> Callable[[Path], None]:
    def download(target: Path) -> None:
        import httpx

        resp = httpx.get(url, timeout=60, follow_redirects=True)
        resp.raise_for_status()
        write_text(target, resp.text)

    return download
