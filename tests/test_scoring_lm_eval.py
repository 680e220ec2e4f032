"""lm-evaluation-harness v0.4.1 results -> Open LLM Leaderboard v1 figures, on a results JSON written here in the
harness's format."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import yaml

from benchmarks.scoring import lm_eval as le
from sppo.errors import UserError

# the shape v0.4.1's evaluator writes (results / groups / configs / versions / n-shot / config); values made up
RESULTS = {
    "results": {
        "arc_challenge": {"acc,none": 0.62, "acc_stderr,none": 0.014, "acc_norm,none": 0.65,
                          "acc_norm_stderr,none": 0.0139, "alias": "arc_challenge"},
        "hellaswag": {"acc,none": 0.66, "acc_stderr,none": 0.0047, "acc_norm,none": 0.85,
                      "acc_norm_stderr,none": 0.0036, "alias": "hellaswag"},
        "truthfulqa_mc2": {"acc,none": 0.69, "acc_stderr,none": 0.015, "alias": "truthfulqa_mc2"},
        "mmlu": {"acc,none": 0.588, "acc_stderr,none": 0.0039, "alias": "mmlu"},
        "mmlu_humanities": {"acc,none": 0.55, "acc_stderr,none": 0.0068, "alias": " - humanities"},
        "mmlu_formal_logic": {"acc,none": 0.5, "acc_stderr,none": 0.04, "alias": "  - formal_logic"},
        "mmlu_stem": {"acc,none": 0.6, "acc_stderr,none": 0.008, "alias": " - stem"},
        "mmlu_abstract_algebra": {"acc,none": 0.6, "acc_stderr,none": 0.05, "alias": "  - abstract_algebra"},
        "mmlu_anatomy": {"acc,none": 0.7, "acc_stderr,none": 0.04, "alias": "  - anatomy"},
        "winogrande": {"acc,none": 0.778, "acc_stderr,none": 0.0117, "alias": "winogrande"},
        "gsm8k": {"exact_match,get-answer": 0.44, "exact_match_stderr,get-answer": 0.0137, "alias": "gsm8k"},
    },
    "groups": {
        "mmlu": {"acc,none": 0.588, "acc_stderr,none": 0.0039, "alias": "mmlu"},
        "mmlu_humanities": {"acc,none": 0.55, "acc_stderr,none": 0.0068, "alias": " - humanities"},
        "mmlu_stem": {"acc,none": 0.6, "acc_stderr,none": 0.008, "alias": " - stem"},
    },
    "configs": {},
    "versions": {"arc_challenge": 1.0, "gsm8k": 2.0, "hellaswag": 1.0, "mmlu": "N/A", "truthfulqa_mc2": 2.0,
                 "winogrande": 1.0},
    "n-shot": {"arc_challenge": 25, "gsm8k": 5, "hellaswag": 10, "mmlu": 5, "mmlu_abstract_algebra": 5,
               "truthfulqa_mc2": 0, "winogrande": 5},
    "config": {"model": "hf", "model_args": "pretrained=/ckpt/Mistral7B-PairRM-SPPO-Iter1,dtype=bfloat16",
               "batch_size": "8"},
    "git_hash": "a0a2fec",
}


def test_figures_by_hand():
    got = le.score_results(RESULTS, source="results.json")
    expected = {"arc_challenge": 65.0, "hellaswag": 85.0, "truthfulqa_mc2": 69.0, "mmlu": 58.8,
                "winogrande": 77.8, "gsm8k": 44.0}
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), k
    assert got["average"] == pytest.approx((65 + 85 + 69 + 58.8 + 77.8 + 44) / 6)
    # unweighted mean over the subject tasks only (not the group or its categories): (50 + 60 + 70) / 3
    assert got["mmlu_unweighted"] == pytest.approx(60.0)
    assert any("3 subjects, not 57" in n for n in got["notes"])
    assert got["n_shot"]["arc_challenge"] == 25


def test_other_few_shot_settings_are_reported():
    data = copy.deepcopy(RESULTS)
    data["n-shot"]["arc_challenge"] = 0
    assert any("arc_challenge ran 0-shot" in n for n in le.score_results(data)["notes"])


def test_without_subtasks_mmlu_unweighted_is_none():
    data = copy.deepcopy(RESULTS)
    for k in [k for k in data["results"] if k.startswith("mmlu_")]:
        del data["results"][k]
    got = le.score_results(data)
    assert got["mmlu"] == pytest.approx(58.8) and got["mmlu_unweighted"] is None


@pytest.mark.parametrize("task", list(le.TASKS))
def test_missing_task_names_file_and_task(task):
    data = copy.deepcopy(RESULTS)
    del data["results"][task]
    with pytest.raises(UserError, match=f"results.json: task '{task}' is missing"):
        le.score_results(data, source="results.json")


def test_missing_metric_and_bad_files():
    data = copy.deepcopy(RESULTS)
    del data["results"]["gsm8k"]["exact_match,get-answer"]
    with pytest.raises(UserError, match="results.json: task 'gsm8k' has no 'exact_match,get-answer'"):
        le.score_results(data, source="results.json")
    data["results"]["gsm8k"]["exact_match,get-answer"] = "N/A"
    with pytest.raises(UserError, match="not a number"):
        le.score_results(data, source="results.json")
    with pytest.raises(UserError, match="not an lm-evaluation-harness results file"):
        le.score_results({"arc_challenge": 0.5}, source="results.json")


def test_metric_keys_match_the_installed_harness_task_configs():
    """The metric and filter names are those of lm-eval 0.4.1's own task YAMLs."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None:
        pytest.skip("lm-eval not installed")
    tasks = Path(spec.submodule_search_locations[0]) / "tasks"

    def metrics(rel):
        cfg = yaml.safe_load((tasks / rel).read_text().replace("!function", ""))
        return {m["metric"] for m in cfg.get("metric_list", [])}, [f["name"] for f in cfg.get("filter_list", [])]

    assert "acc_norm" in metrics("arc/arc_easy.yaml")[0]  # arc_challenge.yaml includes arc_easy.yaml
    assert "acc_norm" in metrics("hellaswag/hellaswag.yaml")[0]
    assert "acc" in metrics("truthfulqa/truthfulqa_mc2.yaml")[0]
    assert "acc" in metrics("winogrande/default.yaml")[0]
    gsm_metrics, gsm_filters = metrics("gsm8k/gsm8k.yaml")
    assert "exact_match" in gsm_metrics and gsm_filters == ["get-answer"]
