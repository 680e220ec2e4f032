"""The READMEs quote the committed results: every figures block of README.md and perf/README.md is exactly what
perf.readme renders from the file it names (perf/results/...), and the quoted blocks are all there."""

from __future__ import annotations

import json

import pytest

from perf import readme


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m["kind"], m["source"]) for m in readme.BLOCK.finditer(text)]


@pytest.mark.parametrize("doc", readme.DOCS, ids=lambda p: p.relative_to(readme.ROOT).as_posix())
def test_every_quoted_block_is_the_committed_results(doc):
    text = doc.read_text()
    assert readme.rendered(text) == text, (f"{doc.name} quotes figures that are not those of its results files: "
                                           "python -m perf.readme renders them again")


def test_the_readmes_quote_the_suite_the_quick_start_and_the_learning_check():
    quoted = {b for doc in readme.DOCS for b in blocks(doc.read_text())}
    assert quoted == {("suite", "perf/results/latest.json"), ("e2e", "perf/results/e2e/e2e.json"),
                      ("e2e-stages", "perf/results/e2e/e2e.json"),
                      ("learning", "perf/results/learning-check/latest.json")}
    suite = json.loads((readme.ROOT / "perf/results/latest.json").read_text())
    assert not suite["meta"]["quick"] and suite["meta"]["git_commit"] and suite["meta"]["date"]
    assert {"generation", "ranking", "training", "scoring", "ranks"} <= set(suite["stages"])


def test_a_changed_figure_is_caught(tmp_path):
    """Edit one figure in a rendered block, or a result the block quotes: the rendering differs."""
    results = {"meta": {"date": "2026-12-08 10:00 UTC", "git_commit": "abc1234", "load_average_start": 0.1,
                        "load_average_end": 0.2, "threads": 2, "repeats": 5, "quick": False, "total_seconds": 600.0},
               "stages": {"generation": {"stage": "generation", "seconds": 100.0, "error": None, "cases": [
                   {"name": "generation/embedded/default", "metric": "tokens/s", "target": ">= 2x",
                    "target_met": True, "ours": {"median": 50.0, "min": 40.0, "max": 60.0, "n": 5},
                    "ratio": {"median": 2.5, "min": 2.0, "max": 3.0, "n": 5}}]}}}
    (tmp_path / "r.json").write_text(json.dumps(results))
    text = readme.rendered(f"x\n<!-- figures: suite {tmp_path / 'r.json'} -->\nold\n<!-- /figures -->\ny\n")
    assert "| generation/embedded/default | tokens/s | 2.5× [2–3] | >= 2x | yes |" in text
    assert "2026-12-08 10:00 UTC, git abc1234, load average 0.1 at start, 0.2 at end" in text
    assert readme.rendered(text) == text
    assert readme.rendered(text.replace("2.5× [2–3]", "2.6× [2–3]")) != text.replace("2.5× [2–3]", "2.6× [2–3]")
    results["stages"]["generation"]["cases"][0]["ratio"]["median"] = 2.4
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert readme.rendered(text) != text
