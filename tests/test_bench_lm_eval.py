"""`sppo-bench --lm-eval` is lm-evaluation-harness itself: per-sample log-likelihoods identical to calling
``lm_eval.simple_evaluate`` directly with the same model arguments, and no stray tool output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_lm_eval_equals_simple_evaluate(tmp_path):
    from sppo.models import embedded_checkpoint

    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "--lm-eval", "embedded", "--lm-eval-tasks", "tiny",
                           "--limit", "4", "--lm-eval-batch-size", "4", "--results-dir", str(results)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)  # cwd: not a git repo
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fatal:" not in proc.stderr and "not a git repository" not in proc.stderr
    ours = [json.loads(line) for line in (results / "lm_eval" / "embedded" / "samples_sppo_tiny_mc.jsonl")
            .read_text().splitlines()]
    stored = json.loads((results / "embedded" / "lm_eval.sppo-tiny-mc.json").read_text())
    assert stored["settings"]["dtype"] == "float32" and stored["settings"]["batch_size"] == 4
    assert stored["settings"]["num_fewshot"] == {"sppo_tiny_mc": 2}

    # the harness called directly: the documented settings (pretrained=<model>, dtype float32 on CPU, 2-shot,
    # batch size 4, limit 4) on the task file the run used
    from sppo.package_shims import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval.tasks
    from lm_eval import simple_evaluate

    lm_eval.tasks.initialize_tasks()
    lm_eval.tasks.include_path(str(results / "lm_eval_tasks"))
    direct = simple_evaluate(model="hf", model_args=f"pretrained={embedded_checkpoint()},dtype=float32",
                             tasks=["sppo_tiny_mc"], num_fewshot=2, batch_size=4, device="cpu", limit=4,
                             log_samples=True)
    theirs = direct["samples"]["sppo_tiny_mc"]
    assert [r["doc_id"] for r in ours] == [r["doc_id"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert [float(x[0]) for x in a["filtered_resps"]] == [float(x[0]) for x in b["filtered_resps"]]
        assert a["arguments"] == json.loads(json.dumps(b["arguments"]))
