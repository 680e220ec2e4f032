"""Benchmark data: read from a local directory, or downloaded once, pinned to a commit, into the user cache.

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
``$SPPO_CACHE/benchmark_data`` is used and a missing file is downloaded (NETWORK CODE: ``_download_pinned``) from
its public home at a fixed commit (``PINNED``: lm-sys/FastChat for MT-Bench, lmarena/arena-hard-auto for
Arena-Hard, tatsu-lab/alpaca_eval for the AlpacaEval baseline), and refused unless its SHA-256 is the pinned one.
The AlpacaEval judge prompt ships inside the ``alpaca-eval`` package and needs no download. ``DataSource.digest``
fingerprints the files a suite reads; it is part of each result's key.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sppo.errors import UserError, described
from sppo.files import atomic_path, load_yaml, read_json, read_jsonl

log = logging.getLogger(__name__)

ALPACA_DIR, ARENA_DIR, MT_DIR = "alpaca_eval", "arena_hard_v0.1", "mt_bench"
ALPACA_BASELINE_FILE = "gpt4_1106_preview.model_outputs.json"
ALPACA_PROMPT_FILE = "alpaca_eval_clf.txt"
ARENA_QUESTIONS, ARENA_BASELINE, ARENA_CONFIG = "question.jsonl", "gpt-4-0314.answers.jsonl", "judge_config.yaml"
MT_QUESTIONS, MT_REFERENCES, MT_PROMPTS = "question.jsonl", "reference_answer.gpt-4.jsonl", "judge_prompts.jsonl"


@dataclass(frozen=True)
class Pinned:
    """A benchmark file's public home at a fixed commit and its SHA-256 (a download must match it)."""

    repo: str
    commit: str
    path: str
    sha256: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"


# the commits: FastChat's MT-Bench files are unchanged since 7ad1d63 (July 2023); arena-hard-auto 3071ef9 and this
# alpaca_eval commit hold the files of ../shared/data (tests/test_bench_data.py checks the digests against them)
FASTCHAT = ("lm-sys/FastChat", "0e6d3e4beaab66f4d3f93db72541a4abab8af28d")
ARENA_HARD = ("lmarena/arena-hard-auto", "3071ef95d913bb5cd632641db336a3b6c7fe4bdd")
ALPACA_EVAL = ("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20")
_MT, _ARENA = "fastchat/llm_judge/data/", "data/arena-hard-v0.1/"
PINNED = {
    (MT_DIR, MT_QUESTIONS): Pinned(*FASTCHAT, _MT + "mt_bench/question.jsonl",
                                   "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"),
    (MT_DIR, MT_REFERENCES): Pinned(*FASTCHAT, _MT + "mt_bench/reference_answer/gpt-4.jsonl",
                                    "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f"),
    (MT_DIR, MT_PROMPTS): Pinned(*FASTCHAT, _MT + "judge_prompts.jsonl",
                                 "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"),
    (ARENA_DIR, ARENA_QUESTIONS): Pinned(*ARENA_HARD, _ARENA + "question.jsonl",
                                         "4daad38811161c3ba5c248f26b90c3cef89634f4c772002ed9138c1e13f63e9f"),
    (ARENA_DIR, ARENA_BASELINE): Pinned(*ARENA_HARD, _ARENA + "model_answer/gpt-4-0314.jsonl",
                                        "245109b8fe7c3bef0304f1c559d29da377f97f61535ad1170b46a61a08eb9ac7"),
    (ARENA_DIR, ARENA_CONFIG): Pinned(*ARENA_HARD, "config/judge_config.yaml",
                                      "6e001736bacacdb1591ffca7eec953a7089f8f5604872d1ca4f9a6f9de1ee451"),
    (ALPACA_DIR, ALPACA_BASELINE_FILE): Pinned(*ALPACA_EVAL, "results/gpt4_1106_preview/model_outputs.json",
                                               "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4"),
}
SUITE_FILES = {"alpaca_eval": ((ALPACA_DIR, ALPACA_BASELINE_FILE),),
               "arena_hard": ((ARENA_DIR, ARENA_QUESTIONS), (ARENA_DIR, ARENA_BASELINE), (ARENA_DIR, ARENA_CONFIG)),
               "mt_bench": ((MT_DIR, MT_QUESTIONS), (MT_DIR, MT_REFERENCES), (MT_DIR, MT_PROMPTS))}


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
    _digests: dict = field(default_factory=dict, repr=False, compare=False)

    def file(self, sub: str, name: str) -> Path:
        if self.data_dir is not None:
            p = self.data_dir / sub / name
            if not p.is_file():
                raise UserError(f"{p}: file not found (--data-dir must hold {sub}/{name}, as ../shared/data does)")
            return p
        p = self.cache / sub / name
        if not p.is_file():
            if (sub, name) not in PINNED:
                raise UserError(f"{p}: file not found")
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise UserError(f"{sub}/{name} is not cached and HF_HUB_OFFLINE=1: pass --data-dir with local copies")
            log.info("downloading %s/%s into %s", sub, name, self.cache)
            try:
                _download_pinned(PINNED[sub, name], p)
            except UserError:
                raise
            except Exception as e:  # no network, moved file, ...
                raise UserError(f"cannot download {sub}/{name} ({described(e)}); "
                                "pass --data-dir with local copies") from None
        return p

    def digest(self, suite: str) -> str | None:
        """SHA-256 over the files `suite` reads (its data's identity in the results key); None for a suite
        without data files here (lm-eval)."""
        files = SUITE_FILES.get(suite)
        if files and suite not in self._digests:
            h = hashlib.sha256()
            for sub, name in files:
                h.update(f"{sub}/{name}\0{_sha256(self.file(sub, name))}\0".encode())
            self._digests[suite] = h.hexdigest()
        return self._digests.get(suite)

    # -- loaders ---------------------------------------------------------------------------------------------------
    def alpaca_eval(self) -> AlpacaEvalData:
        path = self.file(ALPACA_DIR, ALPACA_BASELINE_FILE)
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
        qpath, bpath, cpath = (self.file(sub, name) for sub, name in SUITE_FILES["arena_hard"])
        questions = read_jsonl(qpath)
        by_id(questions, "question_id", qpath)
        baseline = {str(k): a for k, a in by_id(read_jsonl(bpath), "question_id", bpath).items()}
        config = load_yaml(cpath.read_text(encoding="utf-8"), str(cpath))
        for key in ("system_prompt", "prompt_template", "regex_pattern"):
            if not isinstance(config, dict) or key not in config:
                raise UserError(f"{cpath}: missing field {key!r}")
        return ArenaHardData(questions, baseline, config, str(qpath.parent))

    def mt_bench(self) -> MTBenchData:
        qpath, rpath, ppath = (self.file(sub, name) for sub, name in SUITE_FILES["mt_bench"])
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- NETWORK CODE: downloads (only reached without --data-dir, when a file is not cached yet) --------------------

def _download_pinned(pin: Pinned, target: Path) -> None:
    """Fetch `pin` at its commit; refuse it unless its SHA-256 is the pinned one; write it atomically."""
    import httpx

    resp = httpx.get(pin.url, timeout=60, follow_redirects=True)
    resp.raise_for_status()
    got = hashlib.sha256(resp.content).hexdigest()
    if got != pin.sha256:
        raise UserError(f"{pin.url}: SHA-256 {got[:12]}... is not the pinned {pin.sha256[:12]}...; nothing written")
    with atomic_path(target) as tmp:
        tmp.write_bytes(resp.content)
