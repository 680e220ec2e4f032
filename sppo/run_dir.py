"""The run directory: its layout (`RunLayout`, the one spelling of every path a run writes), the recorded config and
the policy for changing it, the `runs/latest` link, and which run the commands act on (`current_run_dir`).

Layout (everything written atomically; a stage is finished when its manifest.json exists)::

    <run>/config.yaml                       the resolved config of the run
    <run>/iter1/prompts/   prompts.jsonl    the split's prompts (ids, text)
    <run>/iter1/generate/  responses.jsonl  K responses per prompt      (resumes by chunk: chunks/)
    <run>/iter1/rank/      comparisons.jsonl  K x K preference matrices (resumes by chunk: chunks/)
    <run>/iter1/dataset/   sppo.jsonl       prompt, chosen, rejected, all K responses, scores, P, targets
    <run>/iter1/reference/ logps.jsonl      log pi_ref of chosen and rejected (pi_ref = pi_t, computed once)
    <run>/iter1/train/     log.jsonl        training metrics per logged step (state/: resumable training state)
    <run>/checkpoints/Iter1/                the policy after iteration 1 (+ sppo_manifest.json)
    <run>/learning_check/                   with learning_check.enabled: a property of every checkpoint's
                                            responses to held-out prompts, and its plot (sppo.learning_check)
    <run>/results/                          sppo-bench's results store (its own layout: benchmarks.store)
    <run>/cards/                            sppo-release's cards

`sppo-bench` and `sppo-release` find checkpoints, the results store, the cards and each iteration's dataset through
`RunLayout`; nothing else spells these paths.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from . import chunks
from .checkpoint import MANIFEST_NAME, is_finished
from .config import Config, LearningCheckConfig, read_yaml_mapping
from .errors import UserError
from .files import package_versions, utc_now, write_json, write_text

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
MANIFEST = "manifest.json"  # in each stage's directory: the stage is finished
LOCK = ".lock"  # held by the one sppo-train of the run (sppo.lock)
RUNS_ROOT = Path("runs")
# each stage's merged output file, in the stage's directory
STAGE_OUTPUTS = {"prompts": "prompts.jsonl", "generate": "responses.jsonl", "rank": "comparisons.jsonl",
                 "dataset": "sppo.jsonl", "reference": "logps.jsonl"}
TRAIN_LOG = "log.jsonl"  # in iterN/train/
TRAIN_STATE = "state"  # in iterN/train/: the resumable training state, removed once the checkpoint is saved
TRACKING = "tracking"  # in iterN/train/: experiment tracking (tensorboard)

# config fields that may change between invocations of the same run without changing its results
FREE_FIELDS = {"run.iterations", "run.first_iteration", "run.chunk_size", "generation.batch_size",
               "generation.backend", "generation.enforce_eager", "ranking.batch_size", "training.logging_steps",
               # learning-check figures are stored with the settings that produced them
               *(f"learning_check.{f.name}" for f in dataclasses.fields(LearningCheckConfig))}


def stage_path(iteration: int, stage: str) -> PurePosixPath:
    """`iterN/<stage>`, relative to the run directory."""
    return PurePosixPath(f"iter{iteration}", stage)


def stage_output(iteration: int, stage: str) -> PurePosixPath:
    """`iterN/<stage>/<output file>`, relative to the run directory."""
    return stage_path(iteration, stage) / STAGE_OUTPUTS[stage]


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run directory, spelt once: what `sppo-train` writes and what `sppo-bench` and `sppo-release`
    read and write beside it."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    def stage(self, iteration: int, name: str) -> Path:
        return self.root / stage_path(iteration, name)

    def stage_output(self, iteration: int, name: str) -> Path:
        return self.root / stage_output(iteration, name)

    def iterations(self) -> list[int]:
        """The iterations with a directory (``iterN``) in the run, in order."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := re.fullmatch(r"iter(\d+)", p.name)))

    @property
    def checkpoints(self) -> Path:
        """``<run>/checkpoints``: Iter1, Iter2, ..."""
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        """Where a checkpoint of the run lives: ``<run>/checkpoints/Iter1``, ..."""
        return self.checkpoints / name

    @property
    def learning_check(self) -> Path:
        return self.root / "learning_check"

    def learning_check_figure(self, name: str) -> Path:
        """One checkpoint's learning-check figure, with the settings that produced it: ``IterN.json``."""
        return self.learning_check / f"{name}.json"

    @property
    def learning_check_summary(self) -> Path:
        return self.learning_check / "summary.json"

    @property
    def learning_check_plot(self) -> Path:
        return self.learning_check / "learning_check.png"

    @property
    def results(self) -> Path:
        """sppo-bench's results store of the run (by default)."""
        return self.root / "results"

    @property
    def cards(self) -> Path:
        """Where sppo-release writes the run's cards (by default)."""
        return self.root / "cards"


def stage_done(stage_dir: str | os.PathLike) -> bool:
    return (Path(stage_dir) / MANIFEST).exists()


def write_manifest(stage_dir: str | os.PathLike, **fields: Any) -> Path:
    """Mark a stage finished: settings, versions, counts, timings. Written last, atomically."""
    record = {"finished_at": utc_now(), "versions": package_versions(), **fields}
    return write_json(Path(stage_dir) / MANIFEST, record)


def train_log(train_dir: Path) -> Path:
    return train_dir / TRAIN_LOG


def state_dir(train_dir: Path) -> Path:
    """The resumable training states of one training stage (``state/step-N``)."""
    return train_dir / TRAIN_STATE


def tracking_dir(train_dir: Path) -> Path:
    return train_dir / TRACKING


def checkpoint_dir(run_dir: str | os.PathLike, name: str) -> Path:
    """Where iteration checkpoints live: <run_dir>/checkpoints/Iter1, Iter2, ..."""
    return RunLayout(Path(run_dir)).checkpoint(name)


RUNS_ROOT = Path("runs")


def current_run_dir(explicit: str | os.PathLike | None = None, runs_root: str | os.PathLike = RUNS_ROOT) -> Path:
    """The training run to act on: `explicit` if given, else $SPPO_RUN_DIR, else `runs/latest` (a link that
    `sppo-train` points at its run), else the most recently modified directory under `runs/`."""
    if explicit:
        p = Path(explicit)
        if not p.is_dir():
            raise UserError(f"{p}: run directory does not exist")
        return p
    if os.environ.get("SPPO_RUN_DIR"):
        return current_run_dir(os.environ["SPPO_RUN_DIR"])
    root = Path(runs_root)
    latest = root / "latest"
    if latest.is_dir():
        return latest.resolve()
    candidates = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    if not candidates:
        raise UserError(f"no training run found under {root}/ (run sppo-train first, or pass --run-dir)")
    return max(candidates, key=lambda d: d.stat().st_mtime)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


class Run:
    """A training run directory."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dir = Path(cfg.run.output_dir)
        self.layout = RunLayout(self.dir)

    def stage(self, iteration: int, name: str) -> Path:
        return self.layout.stage(iteration, name)

    def checkpoint(self, iteration: int) -> Path:
        return self.layout.checkpoint(f"Iter{iteration}")

    def policy_for(self, iteration: int) -> str:
        """pi_t: the initial model for iteration 1, else the previous iteration's checkpoint."""
        if iteration == 1:
            return self.cfg.model.name
        prev = self.checkpoint(iteration - 1)
        if not is_finished(prev):
            raise UserError(f"{prev}: checkpoint of iteration {iteration - 1} is missing; run that iteration first")
        return str(prev)

    def revision_of(self, policy: str) -> str | None:
        """model.revision pins the configured model; the run's own checkpoints have none."""
        return self.cfg.model.revision if policy == self.cfg.model.name else None

    def tokenizer(self, policy: str, padding_side: str = "left"):
        """The tokenizer of `policy` with model.tokenizer_config's template (unless model.revision pins one)."""
        from .models import load_tokenizer

        m = self.cfg.model
        return load_tokenizer(policy, padding_side=padding_side, revision=self.revision_of(policy),
                              tokenizer_config=m.tokenizer_config if m.revision is None else None)

    def prepare(self) -> None:
        """Lock the run dir (one sppo-train per run), record the config, refuse a config that would change
        finished results. While no stage has finished, a corrected config replaces the recorded one (chunks
        computed under the old one are discarded)."""
        from .lock import acquire_run_lock

        acquire_run_lock(self.dir)  # rank 0 only; also refuses a run.output_dir that is a file
        path = self.layout.config
        new = self.cfg.to_dict()
        if path.exists():
            self._accept_change(path, _flatten(read_yaml_mapping(path)), _flatten(new))
        text = yaml.safe_dump(new, sort_keys=False)
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
        point_latest(self.dir)

    def _accept_change(self, path: Path, old: dict, new: dict) -> None:
        """The config-change policy: a field that changes results may change only while no stage is finished."""
        changed = [k for k, v in new.items() if k not in FREE_FIELDS and k in old and old[k] != v]
        finished = (sorted(self.dir.glob(f"iter*/*/{MANIFEST}"))
                    + sorted(self.layout.checkpoints.glob(f"*/{MANIFEST_NAME}")))
        if changed and finished:
            key = changed[0]
            raise UserError(f"{path}: this run was started with {key}={old[key]!r}, now {new[key]!r} "
                            f"and {finished[0].parent} is finished; use another run.output_dir to change it")
        if changed:
            for stale in self.dir.glob(f"iter*/*/{chunks.CHUNKS}"):
                shutil.rmtree(stale)
            log.info("%s: no stage finished yet; the run restarts with the new config (%s changed)",
                     path, ", ".join(changed))


def point_latest(run_dir: Path) -> None:
    """runs/latest -> this run, when the run lives under ./runs (what sppo-bench/sppo-release look at)."""
    if run_dir.resolve().parent != RUNS_ROOT.resolve():
        return
    link = RUNS_ROOT / "latest"
    tmp = RUNS_ROOT / f".latest.{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)
