"""Smoke test of the performance suite (perf/): it runs at tiny sizes and writes complete results.

No timing is asserted here: performance figures are measured and reported by `python -m perf`, never checked
in unit tests (they depend on the machine and its load)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generation", "ranking", "training", "scoring", "ranks")
COMPARED = ("generation", "ranking", "training", "ranks")  # stages timed against the reference way


def _is_summary(s) -> bool:
    return isinstance(s, dict) and all(isinstance(s.get(k), (int, float)) for k in ("median", "min", "max")) \
        and s["min"] <= s["median"] <= s["max"]


def test_quick_suite_writes_every_stage(tmp_path, shared_data):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "perf", "--quick", "--repeats", "2", "--out", str(out),
                           "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((out / "latest.json").read_text())
    assert results["meta"]["quick"] and results["meta"]["repeats"] == 2
    assert set(results["stages"]) == set(STAGES)
    for name in STAGES:
        stage = results["stages"][name]
        assert stage["error"] is None, stage["error"]
        assert stage["cases"], name
        assert stage["peak_rss_mb"] > 0
        assert "cuda_max_allocated_mb" in stage
        for case in stage["cases"]:
            assert _is_summary(case["ours"]), case["name"]
            if name in COMPARED:
                assert _is_summary(case["reference"]) and _is_summary(case["ratio"]), case["name"]
                assert len(case["ours"]["samples"]) == len(case["reference"]["samples"]) == 2
                assert isinstance(case["target_met"], bool)
    assert results["stages"]["ranking"]["cases"][0]["scores_agree"] is True
    assert _is_summary(results["stages"]["training"]["cases"][0]["amortised_ratio"])
    runner = next(c for c in results["stages"]["scoring"]["cases"] if c.get("runner"))["runner"]
    assert runner["first_run"]["judge_calls"] > 0
    assert isinstance(runner["rerun_recompute_from_cache"]["judge_calls"], int)
    table = (out / "latest.md").read_text()
    assert table in proc.stdout
    for name in STAGES:
        assert f"| {name}/" in table
