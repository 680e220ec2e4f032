"""Open LLM Leaderboard v1 figures from an lm-evaluation-harness v0.4.1 results JSON.

The harness writes ``{"results": {task: {"<metric>,<filter>": value, "<metric>_stderr,<filter>": ..., "alias":
...}}, "groups": {...}, "configs": ..., "versions": ..., "n-shot": {task: shots}, "config": ...}``. The six
figures of the model card, all x 100:

    arc_challenge   acc_norm,none         25-shot
    hellaswag       acc_norm,none         10-shot
    truthfulqa_mc2  acc,none               0-shot
    mmlu            acc,none               5-shot  (v0.4.1's group figure: subtasks weighted by their sizes)
    winogrande      acc,none               5-shot
    gsm8k           exact_match,get-answer 5-shot  (the ``get-answer`` regex filter of gsm8k.yaml)

``average`` is the mean of the six. The Open LLM Leaderboard v1 averaged MMLU's 57 subjects without weights; when
the subtasks are in the file that figure is kept as ``mmlu_unweighted`` (the table shows the harness's ``mmlu``).
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any, Mapping

from sppo.errors import UserError

TASKS: dict[str, tuple[str, int]] = {
    "arc_challenge": ("acc_norm,none", 25),
    "hellaswag": ("acc_norm,none", 10),
    "truthfulqa_mc2": ("acc,none", 0),
    "mmlu": ("acc,none", 5),
    "winogrande": ("acc,none", 5),
    "gsm8k": ("exact_match,get-answer", 5),
}
MMLU_CATEGORIES = ("mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities")
MMLU_SUBJECTS = 57


def _metric(results: Mapping[str, Any], task: str, key: str, source: str) -> float:
    if task not in results:
        raise UserError(f"{source}: task {task!r} is missing from the results")
    value = results[task].get(key) if isinstance(results[task], Mapping) else None
    if value is None:
        raise UserError(f"{source}: task {task!r} has no {key!r} (the Open LLM Leaderboard v1 metric)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{source}: task {task!r} {key!r} is {value!r}, not a number")
    if not 0 <= value <= 1:
        raise UserError(f"{source}: task {task!r} {key!r} is {value!r}; the harness writes fractions in [0, 1]")
    return float(value)


def mmlu_subtasks(results: Mapping[str, Any], groups: Mapping[str, Any] | None = None) -> list[str]:
    """The MMLU subject tasks present (``mmlu_<subject>``, not the group or its four category groups)."""
    groups = groups or {}
    return sorted(t for t in results if t.startswith("mmlu_") and t not in MMLU_CATEGORIES and t not in groups)


def score_results(data: Mapping[str, Any], source: str = "<results>") -> dict[str, Any]:
    """``{arc_challenge, hellaswag, truthfulqa_mc2, mmlu, winogrande, gsm8k, average, mmlu_unweighted, n_shot,
    notes}`` (percentages) from a v0.4.1 results JSON. A missing task or metric raises UserError naming the file
    and the task; a few-shot count other than the Open LLM Leaderboard v1 setting is reported in ``notes``."""
    results = data.get("results") if isinstance(data, Mapping) else None
    if not isinstance(results, Mapping):
        raise UserError(f"{source}: not an lm-evaluation-harness results file (no 'results' object)")
    n_shot = data.get("n-shot") or {}
    if not isinstance(n_shot, Mapping):
        raise UserError(f"{source}: 'n-shot' must be an object {{task: shots}}, got {type(n_shot).__name__}")
    groups = data.get("groups")
    for key in ("groups", "config"):
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise UserError(f"{source}: {key!r} must be an object, got {type(data[key]).__name__}")
    out: dict[str, Any] = {task: _metric(results, task, key, source) * 100 for task, (key, _) in TASKS.items()}
    out["average"] = fmean(out[t] for t in TASKS)
    notes = []
    subjects = mmlu_subtasks(results, groups)
    if subjects:
        out["mmlu_unweighted"] = fmean(_metric(results, t, "acc,none", source) for t in subjects) * 100
        if len(subjects) != MMLU_SUBJECTS:
            notes.append(f"mmlu_unweighted averages {len(subjects)} subjects, not {MMLU_SUBJECTS}")
    else:
        out["mmlu_unweighted"] = None
        notes.append("mmlu_unweighted not computed: the file has no MMLU subtasks")
    out["n_shot"] = {t: n_shot.get(t) for t in TASKS}
    for task, (_, shots) in TASKS.items():
        if task in n_shot and n_shot[task] != shots:
            notes.append(f"{task} ran {n_shot[task]}-shot; the Open LLM Leaderboard v1 setting is {shots}-shot")
    out["notes"] = notes
    return out
