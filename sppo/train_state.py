"""Resumable training state: `Accelerator.save_state` snapshots written atomically, found again, pruned.

    <train>/state/step-000050/    model, optimizer, scheduler, RNG states (accelerate's files) + the data position
                                  (``sppo_position.json``)
    <train>/state/.step-000100.tmp  a snapshot being written (ignored; removed by the next save)

Every rank takes part in saving and loading (DeepSpeed writes one shard per rank); rank 0 decides which
snapshot to load and renames a finished one into place, so all ranks always act on the same snapshot.

Nothing in a run directory is unpickled: the data position is JSON (it is not registered with accelerate's
``register_for_checkpointing``, whose ``custom_checkpoint_N.pkl`` accelerate loads with ``weights_only=False``),
and accelerate's and DeepSpeed's own files are loaded with ``torch.load(weights_only=True)`` only (forced for
every load, DeepSpeed's included), the few non-tensor types they hold allowlisted. Before loading, rank 0 checks
the snapshot: a position file the toolkit did not write, a pickle that is not a ``torch.save`` file, or one naming
any other Python object is refused with one line (never a silent restart at step 0).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Iterator

from . import distributed
from .errors import MachineError, UserError, described, io_errors, shown
from .files import fresh_dir, write_json

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d+)$")
POSITION = "sppo_position.json"
WRITTEN_BY = "sppo-train"
PICKLED = (".bin", ".pkl", ".pt", ".pth")  # files torch.load reads (accelerate's and DeepSpeed's)


class Progress:
    """The data position: optimizer steps taken. Saved as JSON beside accelerate's files (never pickled)."""

    def __init__(self) -> None:
        self.step = 0


def snapshots(state_dir: Path) -> list[tuple[int, Path]]:
    """Finished snapshots, oldest first."""
    if not state_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in state_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest(state_dir: Path) -> Path | None:
    """The newest finished snapshot, as rank 0 sees it (the same answer on every rank)."""
    def look():
        found = snapshots(state_dir)
        return str(found[-1][1]) if found else None

    path = distributed.decide(f"{state_dir}: looking for a training state to resume", look)
    return Path(path) if path else None


def save(accelerator, state_dir: Path, step: int, keep: int) -> Path:
    """Snapshot at optimizer step `step` (all ranks call this), then keep the newest `keep`."""
    target = state_dir / f"step-{step:06d}"
    tmp = state_dir / f".step-{step:06d}.tmp"
    if distributed.is_main():
        fresh_dir(tmp)
    distributed.wait("training state: temporary directory")
    try:
        with io_errors(target):
            accelerator.save_state(str(tmp))
            if distributed.is_main():
                write_json(tmp / POSITION, {"written_by": WRITTEN_BY, "step": step})
    except (UserError, MachineError):
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk leaves no partial snapshot behind
        raise
    distributed.wait("training state: every rank's files")
    if distributed.is_main():
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        for _, old in snapshots(state_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        log.info("training state saved: %s", target)
    distributed.wait("training state: renamed")
    return target


def safe_globals() -> list:
    """The non-tensor types accelerate's and DeepSpeed's state files hold, allowed to ``weights_only`` loads:
    numpy arrays of the RNG states (accelerate's own list) and DeepSpeed's ZeRO stage and loss scaler."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    allowed = list(TORCH_SAFE_GLOBALS)
    if "deepspeed" in sys.modules:  # a DeepSpeed run imported it already; never imported for nothing
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
        from deepspeed.runtime.zero.config import ZeroStageEnum

        allowed += [ZeroStageEnum, LossScaler, DynamicLossScaler]
    return allowed


def _refused(snapshot: Path, why: str) -> UserError:
    return UserError(f"{snapshot}: not a training state sppo-train wrote ({why}); nothing was loaded. Remove "
                     "that directory to train this iteration from its newest other state (or from the start)")


def _position(snapshot: Path) -> int:
    """The step recorded in the snapshot's position file, checked against its name."""
    path = snapshot / POSITION
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refused(snapshot, f"no {POSITION}") from None
    except (OSError, ValueError, RecursionError) as e:
        raise _refused(snapshot, f"{POSITION} is not readable JSON: {type(e).__name__}") from None
    step = data.get("step") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("written_by") != WRITTEN_BY or type(step) is not int:
        raise _refused(snapshot, f"{POSITION} holds {shown(data)}")
    named = _NAME.match(snapshot.name)
    if step < 0 or (named and int(named.group(1)) != step):
        raise _refused(snapshot, f"{POSITION} says step {step}, the directory another")
    return step


def _check_files(snapshot: Path) -> None:
    """Every file torch.load would read is a ``torch.save`` file naming only allowed types."""
    import torch

    with torch.serialization.safe_globals(safe_globals()):
        for path in sorted(p for p in snapshot.rglob("*") if p.suffix in PICKLED):
            rel = path.relative_to(snapshot)
            if path.is_symlink() or not path.is_file():
                raise _refused(snapshot, f"{rel} is not a regular file")
            try:
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            except Exception as e:  # not a torch.save zip file: a plain pickle, or anything else
                raise _refused(snapshot, f"{rel} is not a torch.save file ({type(e).__name__})") from None
            if unsafe:
                raise _refused(snapshot, f"{rel} names Python objects: {shown(unsafe[:3])}")


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Inside the block every ``torch.load`` reads with ``weights_only=True`` (DeepSpeed's engine asks for
    ``weights_only=False``: torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` overrides it), the types of
    ``safe_globals`` allowed."""
    import torch

    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with torch.serialization.safe_globals(safe_globals()):
            yield
    finally:
        if before is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


def load(accelerator, snapshot: Path) -> int:
    """Load a snapshot on every rank; returns its step. Rank 0 checks it first (``_position``, ``_check_files``)
    and every rank refuses alike; a file that still fails to load is refused with one line too."""
    def check() -> int:
        step = _position(snapshot)
        _check_files(snapshot)
        return step

    step = distributed.decide(f"{snapshot}: checking the training state", check)
    import pickle

    try:
        with io_errors(snapshot), weights_only_loads():
            accelerator.load_state(str(snapshot))
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{snapshot}: cannot load this training state ({described(e)}); remove that directory to "
                        "train this iteration from its newest other state (or from the start)") from None
    return step


class StopSignal:
    """Remembers a SIGTERM (preemption, `kill`) so training can save its state at the next step and exit."""

    def __init__(self) -> None:
        self.received = False
        self._previous = None

    def __enter__(self) -> "StopSignal":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, never set
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.received = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True on every rank once any rank got the signal (a collective: call it at the same step everywhere)."""
        return distributed.any_rank(self.received)
