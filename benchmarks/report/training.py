"""The training side of a run, per iteration: the optimizer's log (loss and learning rate per logged step,
``iterN/train/log.jsonl``) and the learning signal of its dataset (``iterN/dataset/sppo.jsonl``: the chosen and
rejected responses' win probabilities P_win / P_lose, and the mean length of the K sampled responses, the
chosen and the rejected ones), read through ``sppo.run_dir``'s one spelling of those paths."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sppo.run_dir import RunLayout, train_log


@dataclass
class IterationLog:
    number: int
    steps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    p_win: list[float] = field(default_factory=list)
    p_lose: list[float] = field(default_factory=list)
    response_chars: float | None = None  # mean length of all K sampled responses of the dataset's rows
    chosen_chars: float | None = None
    rejected_chars: float | None = None
    pairs: int = 0


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None


def _lines(path: Path):
    """The JSON objects of a JSONL file, one at a time (a dataset can be large); unreadable lines are skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row


def read_train_log(it: IterationLog, path: Path) -> None:
    for row in _lines(path):
        if isinstance(row.get("loss"), (int, float)) and isinstance(row.get("step"), (int, float)):
            it.steps.append(float(row["step"]))
            it.loss.append(float(row["loss"]))
            it.lr.append(float(row.get("lr") or 0.0))


def read_dataset(it: IterationLog, path: Path) -> None:
    total = n = chosen = rejected = 0
    for row in _lines(path):
        responses = [r for r in row.get("responses") or [] if isinstance(r, str)]
        total += sum(len(r) for r in responses)
        n += len(responses)
        chosen += len(str(row.get("chosen", "")))
        rejected += len(str(row.get("rejected", "")))
        it.pairs += 1
        for key, out in (("p_win", it.p_win), ("p_lose", it.p_lose)):
            if isinstance(row.get(key), (int, float)):
                out.append(float(row[key]))
    it.response_chars, it.chosen_chars, it.rejected_chars = (
        _mean(total, n), _mean(chosen, it.pairs), _mean(rejected, it.pairs))


def training_side(run_dir: Path | None) -> list[IterationLog]:
    """Every iteration of the run that has a training log or a dataset, in order; empty without a run."""
    if run_dir is None or not Path(run_dir).is_dir():
        return []
    layout = RunLayout(Path(run_dir))
    out = []
    for number in layout.iterations():
        it = IterationLog(number)
        log_path = train_log(layout.stage(number, "train"))
        data_path = layout.stage_output(number, "dataset")
        if log_path.is_file():
            read_train_log(it, log_path)
        if data_path.is_file():
            read_dataset(it, data_path)
        if it.steps or it.pairs:
            out.append(it)
    return out
