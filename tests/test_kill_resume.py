"""A real `kill -9` of `sppo-train` mid-run, then the same command again: it resumes and keeps finished work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perf.fixtures import make_tiny_checkpoint

from test_pipeline import PROMPTS, overrides


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["generate", "rank", "train"])
def test_sigkill_then_rerun_resumes(tmp_path, stage):
    tiny = str(make_tiny_checkpoint(tmp_path / "model", seed=5))
    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as f:
        for i, p in enumerate(PROMPTS):
            f.write(json.dumps({"id": f"p{i}", "prompt": p, "split": "train_iteration_1"}) + "\n")
    args = overrides(tmp_path, tiny, prompts, iterations=1, **{"run.chunk_size": 2,
                                                               "generation.max_new_tokens": 24})
    cmd = [sys.executable, "-m", "sppo.cli", *args]
    tests = Path(__file__).resolve().parent  # the ranker plug-in (sppo_doubles) is imported from here
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run" / "iter1"
    # the moment to kill: a chunk of the stage is on disk (generate/rank), or training has started
    chunk_dir = {"generate": run / "generate" / "chunks", "rank": run / "rank" / "chunks"}.get(stage)
    marker = run / "reference" / "manifest.json"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240

    def reached():
        return any(chunk_dir.glob("*.jsonl")) if chunk_dir and chunk_dir.is_dir() else marker.exists()

    while time.time() < deadline and proc.poll() is None and not reached():
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = [json.loads(x) for f in sorted(chunk_dir.glob("*.jsonl")) for x in f.read_text().splitlines()] \
        if chunk_dir else []
    assert not (tmp_path / "run" / "checkpoints" / "Iter1" / "sppo_manifest.json").exists()

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "Iter1" / "sppo_manifest.json").exists()
    if chunk_dir:  # every chunk finished before the kill is in the final file, unchanged, and was not redone
        assert kept
        final = (run / stage / ("responses.jsonl" if stage == "generate" else "comparisons.jsonl")).read_text()
        final_rows = {json.loads(x)["id"]: json.loads(x) for x in final.splitlines()}
        for row in kept:
            assert final_rows[row["id"]] == row
        assert "resuming" in result.stderr
