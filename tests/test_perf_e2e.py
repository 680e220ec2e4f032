"""perf.bench_e2e's per-stage table, from hand-made tool output and manifests (expected seconds worked out by hand).
The end-to-end run itself is `python -m perf --stages e2e` (minutes; never part of the test suite)."""

import json

from perf.bench_e2e import Command, Line, bench_rows, train_rows


def rows_of(rows):
    return {(r.where, r.stage): r.seconds for r in rows}


def test_bench_output_cut_into_answers_judging_scoring():
    out = [(1.0, "12:00:01 INFO benchmarks.run_cmd: local judge: answers limited to 128 new tokens"),
           (4.0, "12:00:04 INFO benchmarks.run_cmd: Iter1: alpaca_eval"),
           (6.0, "generate: 100%|##########| 1/1 [00:02<00:00]"),
           (9.0, "12:00:09 INFO sppo.chunks: judge text: chunk 1/2 on rank 0 (4 items)"),
           (11.0, "generate: 100%|##########| 1/1 [00:02<00:00]"),
           (11.5, "12:00:11 INFO sppo.chunks: judge text: chunk 2/2 on rank 0 (2 items)"),
           (15.0, "generate: 100%|##########| 1/1 [00:03<00:00]"),
           (15.2, "12:00:15 INFO benchmarks.suites.common: verdict from log-probabilities"),
           (16.5, "12:00:16 INFO benchmarks.run_cmd: Iter1: lm_eval"),
           (20.0, "12:00:20 INFO benchmarks.suites.lm_eval: lm-eval arc (25-shot) on Iter1"),
           (30.0, "Iter1/alpaca_eval                        LC 1.2 %"),
           (30.1, "judge local:embedded: 2 calls, 0 cache hits"),
           (30.2, "results: /tmp/x/results")]
    rows = rows_of(bench_rows(Command(["sppo-bench"], 0, 31.0, [Line(t, s) for t, s in out])))
    assert rows == {("all", "start-up (imports, data, judge load)"): 4.0,
                    ("Iter1", "alpaca_eval/answers"): 5.0, ("Iter1", "alpaca_eval/judging"): 6.0,
                    ("Iter1", "alpaca_eval/scoring"): 1.5,
                    ("Iter1", "lm_eval/all (no judge job ran: lm-eval, or every verdict cached)"): 3.5,
                    ("all", "after the last suite's output: Arena-Hard fit over all checkpoints"): 10.0,
                    ("all", "summary and exit"): 1.0}


def test_train_stages_from_manifests(tmp_path):
    run = tmp_path / "runs" / "embedded"
    for it, secs in ((1, (10, 20, 3)), (2, (11, 21, 4))):
        for stage, s in zip(("generate", "rank", "reference"), secs):
            (run / f"iter{it}" / stage).mkdir(parents=True)
            (run / f"iter{it}" / stage / "manifest.json").write_text(json.dumps({"seconds": s}))
        (run / "checkpoints" / f"Iter{it}").mkdir(parents=True)
        (run / "checkpoints" / f"Iter{it}" / "sppo_manifest.json").write_text(json.dumps({"seconds": 30 + it}))
    rows = rows_of(train_rows(run, wall=200.0))
    assert rows[("iter1", "rank")] == 20 and rows[("iter2", "train")] == 32
    assert rows[("all", "other")] == 200 - (10 + 20 + 3 + 31) - (11 + 21 + 4 + 32)


def test_the_stage_reports_the_table_under_its_name(tmp_path, monkeypatch):
    """`python -m perf --stages e2e` plumbing: the stage's case and table reach latest.md (run_e2e stubbed: the
    real run takes minutes)."""
    import perf.bench_e2e as e2e
    from perf.__main__ import write_results

    fake = {"commands": {"sppo-train": {"argv": [], "rc": 0, "seconds": 400.0},
                         "sppo-bench": {"argv": [], "rc": 0, "seconds": 300.0}},
            "rows": [], "report_md": "| tool | iteration / checkpoint | stage | seconds |\n", "error": None}
    monkeypatch.setattr(e2e, "run_e2e", lambda work: fake)
    stage = e2e.run({"work": str(tmp_path)})
    assert stage["cases"][0]["ours"]["median"] == 700.0 and stage["cases"][0]["target_met"] is False
    meta = {"date": "d", "machine": "m", "threads": 1, "threads_reason": "r", "load_average_start": 0.0,
            "quick": False, "repeats": 1, "gpu": "none", "total_seconds": 700.0}
    md = write_results({"meta": meta, "stages": {"e2e": {"stage": "e2e", **stage}}}, tmp_path)
    assert "## e2e" in md and "| tool | iteration / checkpoint | stage | seconds |" in md
    assert (tmp_path / "latest.md").read_text() == md
