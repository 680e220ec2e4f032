"""Interleaved timing, summaries and memory readings shared by the stage benchmarks."""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
from typing import Callable


def summary(values: list[float]) -> dict:
    """median / min / max of a list of measurements (the samples are kept too)."""
    vals = [float(v) for v in values]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "samples": [round(v, 6) for v in vals]}


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each variant, run alternately: warm-up rounds first (not recorded), then `repeats` rounds.
    The order inside a round alternates (A,B then B,A ...) so a slow drift of the machine hits both alike."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            gc.collect()
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Per-round ratios numerator[i] / denominator[i] (same round, so the same machine load), summarised."""
    return summary([a / b for a, b in zip(numerator, denominator)])


def rates(work: float, seconds: list[float]) -> list[float]:
    return [work / s for s in seconds]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and the children it has waited for (a stage's launches)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: /proc/self/clear_refs "5" resets VmHWM and ru_maxrss), so that a
    later `window_peak_rss_mb` covers only what ran after it. False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def window_peak_rss_mb() -> float | None:
    """VmHWM (peak RSS since the last reset) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / (1024 * 1024)


def cuda_max_allocated_mb() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / (1024 * 1024)


def case(name: str, metric: str, ours: list[float], reference: list[float] | None, ratio: dict | None,
         higher_is_better: bool, target: str | None = None, target_met: bool | None = None,
         settings: dict | None = None, notes: list[str] | None = None, **extra) -> dict:
    """One row of the results: our figure, the reference's, their per-round ratio, and the target."""
    return {"name": name, "metric": metric, "higher_is_better": higher_is_better,
            "ours": summary(ours), "reference": summary(reference) if reference else None,
            "ratio": ratio, "target": target, "target_met": target_met, "settings": settings or {},
            "notes": notes or [], **extra}
