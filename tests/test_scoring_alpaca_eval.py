"""AlpacaEval 2 scoring: the official leaderboard row from the official annotations, the judge parser against the
official raw completions, and the LC GLM on synthetic data with a hand-derivable outcome."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks import inputs
from benchmarks.scoring import alpaca_eval as ae
from sppo.errors import UserError

MODEL = "OpenHermes-2.5-Mistral-7B"


@pytest.fixture(scope="module")
def annotations(shared_data):
    return json.loads((shared_data / "alpaca_eval" / f"{MODEL}.annotations.json").read_text())


@pytest.fixture(scope="module")
def leaderboard(shared_data):
    return pd.read_csv(shared_data / "alpaca_eval" / "leaderboard_weighted_alpaca_eval_gpt4_turbo.csv", index_col=0)


def test_reproduces_official_leaderboard_row(annotations, leaderboard):
    scored = ae.score_annotations(annotations, source="annotations.json")
    assert list(scored) == [MODEL]
    got, row = scored[MODEL], leaderboard.loc[MODEL]
    for key in ("win_rate", "standard_error", "discrete_win_rate"):
        assert got[key] == pytest.approx(row[key], abs=1e-6), key
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total", "avg_length"):
        assert got[key] == int(row[key]), key
    assert got["n_invalid"] == 0
    assert got["baseline"] == ae.BASELINE
    # offline: no df_gamed.csv, so LC is absent and says why (never a made-up number)
    assert got["length_controlled_winrate"] is None and got["lc_standard_error"] is None
    assert any("df_gamed.csv" in n for n in got["notes"])


def _top_logprobs(raw_completion: dict) -> list[dict]:
    return raw_completion["logprobs"]["content"][0]["top_logprobs"]


def test_judge_parsing_reproduces_official_preferences(annotations):
    """Every stored preference follows from the stored judge logprobs: parser, switch seed and identical-output
    rule all agree with alpaca_eval's pipeline (802 judged examples, 3 identical pairs)."""
    n_judged = n_switched = 0
    for a in annotations:
        raw = a["raw_completion"]
        got = ae.annotate_preference(a["instruction"], a["output_1"], a["output_2"],
                                     None if raw is None else _top_logprobs(raw))
        assert got == pytest.approx(a["preference"], abs=1e-9), a["instruction"][:60]
        if raw is not None:
            n_judged += 1
            n_switched += ae.is_switched_outputs(a["instruction"])
    assert n_judged == 802
    assert 300 < n_switched < 500  # about half the prompts show the outputs swapped


def test_preference_from_top_logprobs_by_hand():
    lp = math.log
    # m names the prompt's output_1: preference = 2 - P(m) / (P(m) + P(M))
    assert ae.preference_from_top_logprobs([{"token": "m", "logprob": lp(0.2)}, {"token": "M", "logprob": lp(0.6)},
                                            {"token": "The", "logprob": lp(0.2)}]) == pytest.approx(1.75)
    assert ae.preference_from_top_logprobs([{"token": "M", "logprob": -0.01}]) == pytest.approx(2.0)
    assert ae.preference_from_top_logprobs([{"token": "m", "logprob": -3.0}]) == pytest.approx(1.0)
    assert ae.preference_from_top_logprobs([{"token": "Based", "logprob": -0.1}]) is None
    assert ae.unswitch_preference(1.25, switched=True) == pytest.approx(1.75)
    assert ae.unswitch_preference(1.25, switched=False) == 1.25
    assert ae.annotate_preference("q", "same", "same", None) == 1.5


def test_judge_messages_follow_the_official_template(shared_data):
    template = (shared_data / "alpaca_eval" / "alpaca_eval_clf.txt").read_text()
    msgs = ae.judge_messages(template, "Say {hi}", "first {answer}", "second answer")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("You are a highly efficient assistant")
    user = msgs[1]["content"]
    assert '"instruction": """Say {hi}"""' in user
    assert user.index('"output": """first {answer}"""') < user.index('"output": """second answer"""')
    assert user.rstrip().endswith("## Best Model Identifier")


def test_win_rate_counts_and_drops_missing_preferences():
    m = ae.win_rate_metrics([2.0, 1.0, 1.5, float("nan")])
    # by hand: valid prefs 2, 1, 1.5 -> (1 + 0 + 0.5) / 3
    assert m["win_rate"] == pytest.approx(50.0)
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"], m["n_invalid"]) == (1, 1, 1, 3, 1)
    assert m["standard_error"] == pytest.approx(np.std([1, 0, 0.5], ddof=1) / math.sqrt(3) * 100)


def _records(prefs, len_model, model="mod"):
    return [{"instruction": f"q{i}", "output_1": "x" * 100, "output_2": "y" * n, "generator_1": "base",
             "generator_2": model, "preference": p} for i, (p, n) in enumerate(zip(prefs, len_model))]


def _df_gamed(n):
    """Two 'gamed' baselines that carry no signal (every preference 0.5)."""
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"index": i, "preference": 0.5, "std_delta_len": rng.normal(),
                          "instruction_difficulty": (i % 7) / 7 - 0.5, "not_gamed_baseline": False}
                         for _ in range(2) for i in range(n)])


def test_lc_removes_a_pure_length_effect():
    """The model wins (p=0.9) exactly when its output is longer (80% of instructions) and loses (p=0.1) when
    shorter: raw win rate 0.8*90 + 0.2*10 = 74; with equal lengths the GLM predicts 50."""
    n = 100
    longer = [i % 5 != 0 for i in range(n)]
    recs = _records([1.9 if l else 1.1 for l in longer], [150 if l else 50 for l in longer])
    got = ae.score_annotations(recs, df_gamed=_df_gamed(n))["mod"]
    assert got["win_rate"] == pytest.approx(74.0)
    assert got["length_controlled_winrate"] == pytest.approx(50.0, abs=0.5)
    assert got["lc_weights"]["np.tanh(std_delta_len)"] < 0  # longer model output (negative Δlen) -> model wins


def test_lc_keeps_a_length_independent_preference():
    """Preference 1.3 everywhere whatever the length: LC = raw win rate = 30 (L1 shrinkage negligible)."""
    n = 100
    got = ae.score_annotations(_records([1.3] * n, [50 + (i * 37) % 100 for i in range(n)]),
                               df_gamed=_df_gamed(n))["mod"]
    assert got["win_rate"] == pytest.approx(30.0)
    assert got["length_controlled_winrate"] == pytest.approx(30.0, abs=0.05)
    assert got["lc_weights"]["not_gamed_baseline.astype(float)"] == pytest.approx(math.log(0.3 / 0.7), abs=0.01)


def test_lc_of_the_baseline_against_itself_is_50():
    recs = _records([1.5] * 10, [100] * 10, model="base")
    got = ae.score_annotations(recs, df_gamed=_df_gamed(10))["base"]
    assert got["length_controlled_winrate"] == 50.0 and got["lc_standard_error"] == 0.0


def lc_winrate_from_weights(weights, instruction_difficulty, baseline_weights=None) -> float:
    """LC win rate (percent) predicted from published GLM weights, as ``glm_winrate.predict_winrate``: mean over
    instructions of ``logistic(Δw_not_gamed + Δw_difficulty * difficulty)``."""
    base = baseline_weights or {}
    d_ng = weights["not_gamed_baseline.astype(float)"] - base.get("not_gamed_baseline.astype(float)", 0.0)
    d_id = weights["instruction_difficulty"] - base.get("instruction_difficulty", 0.0)
    x = d_ng + d_id * np.asarray(instruction_difficulty, dtype=float)
    return float(np.mean(np.exp(-np.logaddexp(0, -x))) * 100)


def test_lc_from_weights_by_hand():
    w = {"not_gamed_baseline.astype(float)": math.log(3), "instruction_difficulty": 0.0}
    assert lc_winrate_from_weights(w, [0.1, 0.5]) == pytest.approx(75.0)
    w = {"not_gamed_baseline.astype(float)": 0.0, "instruction_difficulty": 1.0}
    assert lc_winrate_from_weights(w, [-math.log(3), math.log(3)]) == pytest.approx(50.0)
    assert lc_winrate_from_weights(w, [math.log(3)], baseline_weights=w) == pytest.approx(50.0)


@pytest.mark.parametrize("bad, message", [
    ({"preference": 3.2}, "outside [1, 2]"),
    ({"preference": "m"}, "not a number"),
    ({"preference": None, "output_2": None}, None),  # missing preference: allowed, counted as invalid
])
def test_malformed_annotations(bad, message):
    recs = _records([1.2, 1.8], [10, 20])
    recs[1].update(bad)
    if message is None:
        assert ae.score_annotations(recs)["mod"]["n_invalid"] == 1
        return
    with pytest.raises(UserError, match=rf"ann.json: record 2: .*{message.replace('[', '.').replace(']', '.')}"):
        ae.score_annotations(recs, source="ann.json")


def test_missing_field_and_duplicates_name_the_record():
    recs = _records([1.2, 1.8], [10, 20])
    del recs[0]["preference"]
    with pytest.raises(UserError, match="ann.json: record 1: missing field 'preference'"):
        ae.score_annotations(recs, source="ann.json")
    recs = _records([1.2, 1.8, 1.5], [10, 20, 30])
    recs[2]["instruction"] = recs[0]["instruction"]
    with pytest.raises(UserError, match="ann.json: record 3: duplicate annotation"):
        ae.score_annotations(recs, source="ann.json")


def test_hub_file_local_and_offline(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        inputs.hub_file(ae.DF_GAMED, tmp_path / "nope.csv")
    assert inputs.hub_file("no-such-file-in-the-dataset.csv") is None  # tests run with HF_HUB_OFFLINE=1


@pytest.mark.network
def test_lc_matches_the_leaderboard_with_hub_files(annotations, leaderboard, shared_data):
    """With the Hub's df_gamed.csv and instruction_difficulty.csv: the GLM fit reproduces the leaderboard LC, and
    the published GLM weights predict the same figure."""
    df_gamed = inputs.read_df_gamed(inputs.hub_file(ae.DF_GAMED))
    got = ae.score_annotations(annotations, df_gamed=df_gamed)[MODEL]
    row = leaderboard.loc[MODEL]
    assert got["length_controlled_winrate"] == pytest.approx(row["length_controlled_winrate"], abs=1e-4)
    weights = pd.read_csv(shared_data / "alpaca_eval" / "lc_weights_baseline_gpt4_1106_preview.csv", index_col=0)
    difficulty = pd.read_csv(inputs.hub_file("instruction_difficulty.csv"), index_col=0).squeeze("columns")
    lc = lc_winrate_from_weights(weights.loc[MODEL].to_dict(), difficulty.to_numpy(),
                                 weights.loc[ae.BASELINE].to_dict())
    assert lc == pytest.approx(row["length_controlled_winrate"], abs=1e-6)


def test_judge_settings_follow_the_official_config(shared_data):
    import yaml

    cfg = yaml.safe_load((shared_data / "alpaca_eval" / "weighted_alpaca_eval_gpt4_turbo.configs.yaml")
                         .read_text())[ae.ANNOTATOR]
    kw = cfg["completions_kwargs"]
    assert ae.JUDGE_MODEL == kw["model_name"]
    assert ae.JUDGE_PARAMS == {"max_tokens": kw["max_tokens"], "temperature": kw["temperature"],
                               "top_logprobs": kw["top_logprobs"]}
    parser = cfg["completion_parser_kwargs"]
    assert (ae.NUMERATOR_TOKEN, list(ae.DENOMINATOR_TOKENS)) == (parser["numerator_token"],
                                                                 parser["denominator_tokens"])
    assert parser["is_binarize"] is False


def test_annotation_records_round_trip():
    recs = [{"instruction": f"q{i}", "output_1": "base out", "generator_1": ae.BASELINE, "dataset": None,
             "output_2": "model out", "generator_2": "mine", "annotator": ae.ANNOTATOR, "preference": p,
             "raw_completion": None} for i, p in enumerate([1.0, 2.0])]
    got = ae.score_annotations(recs)["mine"]
    assert got["win_rate"] == 50.0 and got["baseline"] == ae.BASELINE


def test_an_unreachable_hub_is_not_retried(monkeypatch):
    """Not offline by setting, but the Hub's host refuses connections: the download is never attempted (it would
    retry five times with back-off), LC is simply unavailable."""
    import socket

    import huggingface_hub
    from huggingface_hub import constants

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        assert inputs.host_reachable(f"http://127.0.0.1:{srv.getsockname()[1]}")
    assert not inputs.host_reachable(closed)
    assert not inputs.host_reachable("https://no-such-host.invalid")

    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*a, **kw):
        calls.append(kw.get("local_files_only", False))
        return real(*a, **kw)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    inputs.hub_download.cache_clear()
    try:
        assert inputs.hub_download("not-cached-anywhere.csv") is None
    finally:
        inputs.hub_download.cache_clear()
    assert calls == [True]  # the cache was looked at; the network never
