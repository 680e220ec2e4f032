"""Arena-Hard v0.1 scoring on judgments built here, with outcomes derived by hand, and avg_tokens against the
official leaderboard's figure for the baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.scoring import arena_hard as ah
from sppo.errors import UserError

BASE = ah.BASELINE


def judgment(qid, model, g1, g2):
    return {"question_id": qid, "model": model, "judge": ah.JUDGE,
            "games": [{"user_prompt": "..", "judgment": "..", "score": g1},
                      {"user_prompt": "..", "judgment": "..", "score": g2}]}


def model_strong_wins(n_win, n_tie, model="m"):
    """n_win questions where the model is much better in both positions, n_tie questions judged a tie."""
    rows = [judgment(f"w{i}", model, "B>>A", "A>>B") for i in range(n_win)]
    return rows + [judgment(f"t{i}", model, "A=B", "A=B") for i in range(n_tie)]


def mirrored(rows):
    flip = {"A>>B": "B>>A", "B>>A": "A>>B", "A>B": "B>A", "B>A": "A>B", "A=B": "A=B"}
    return [{**r, "games": [{**g, "score": flip[g["score"]]} for g in r["games"]]} for r in rows]


def test_game_two_is_read_with_positions_swapped_and_strong_verdicts_weigh_three():
    battles, counts = ah.battles_from_judgments([judgment("q1", "m", "A>B", "A>B"),
                                                 judgment("q2", "m", "B>>A", "A=B")])
    # q1: game 1 baseline (A) better; game 2 the model sits in position A, so A>B means the model is better
    assert battles["winner"].tolist() == ["model_a", "model_b", "model_b", "model_b", "model_b", "tie"]
    assert set(battles["model_a"]) == {BASE} and set(battles["model_b"]) == {"m"}
    assert counts == {"m": {"n_judgments": 2, "n_null_verdicts": 0, "n_unknown_verdicts": 0}}


def test_mostly_strong_wins_score_near_100_with_ci_around_it():
    """95 questions won strongly in both games (6 battles each), 5 ties (2 tie battles each). Bradley-Terry on
    one pair = the tie-as-half win fraction: (570 + 10/2) / 580 = 99.1379...%."""
    got = ah.score_judgments(model_strong_wins(95, 5), num_rounds=30)
    m = got["m"]
    assert m["score"] == pytest.approx(round(100 * 575 / 580, 2), abs=1e-9)
    assert m["rating_q025"] <= m["score"] <= m["rating_q975"]
    assert m["lower"] <= 0 <= m["upper"] and m["lower"] < 0
    assert m["n_battles"] == 95 * 6 + 5 * 2 and m["n_judgments"] == 100
    assert got[BASE]["score"] == 50.0


def test_all_strong_wins_is_the_limit_100():
    """Every battle won: the MLE diverges (the official script stops with an sklearn error); report the limit."""
    m = ah.score_judgments(model_strong_wins(20, 0), num_rounds=5)["m"]
    assert (m["score"], m["rating_q025"], m["rating_q975"], m["CI"]) == (100.0, 100.0, 100.0, "(-0.00, +0.00)")


def test_mirrored_judgments_give_the_mirrored_result():
    rows = model_strong_wins(60, 40) + [judgment(f"l{i}", "m", "A>B", "B>A") for i in range(25)]
    a = ah.score_judgments(rows, num_rounds=30)["m"]
    b = ah.score_judgments(mirrored(rows), num_rounds=30)["m"]
    assert a["score"] + b["score"] == pytest.approx(100.0, abs=0.011)
    assert a["rating_q025"] + b["rating_q975"] == pytest.approx(100.0, abs=0.011)
    assert a["rating_q975"] + b["rating_q025"] == pytest.approx(100.0, abs=0.011)
    assert a["lower"] == pytest.approx(-b["upper"], abs=0.11) and a["upper"] == pytest.approx(-b["lower"], abs=0.11)


def test_ties_and_the_baseline_against_itself_give_50():
    ties = ah.score_judgments(model_strong_wins(0, 50), num_rounds=20)["m"]
    assert ties["score"] == 50.0 and ties["lower"] == 0.0 and ties["upper"] == 0.0
    self_only = ah.score_judgments([judgment(f"q{i}", BASE, "A=B", "A>B") for i in range(5)], num_rounds=5)
    assert list(self_only) == [BASE] and self_only[BASE]["score"] == 50.0


def test_several_models_in_one_directory_are_scored_together():
    """A star design (every model meets only the baseline): each score is the model's own win fraction.
    m1 wins 30 of 40 weak battles pairs -> 75%; m2 wins 10 of 40 -> 25%."""
    rows = [judgment(f"a{i}", "m1", "B>A", "A>B") for i in range(15)]
    rows += [judgment(f"b{i}", "m1", "A>B", "B>A") for i in range(5)]
    rows += [judgment(f"a{i}", "m2", "B>A", "A>B") for i in range(5)]
    rows += [judgment(f"b{i}", "m2", "A>B", "B>A") for i in range(15)]
    got = ah.score_judgments(rows, num_rounds=10)
    assert got["m1"]["score"] == pytest.approx(75.0, abs=1e-6)
    assert got["m2"]["score"] == pytest.approx(25.0, abs=1e-6)
    assert got["m1"]["elo"] == pytest.approx(1000 + 400 * np.log10(3), abs=1e-3)


def test_win_rate_vs_baseline_by_hand():
    assert ah.win_rate_vs_baseline({BASE: 1000.0, "m": 1400.0}) == {BASE: 50.0, "m": round(100 / 1.1, 2)}


def test_bootstrap_draws_the_official_resamples():
    """``RandomState(42)`` passed to ``sample`` gives the same resamples as the official ``np.random.seed(42)``."""
    battles, _ = ah.battles_from_judgments(model_strong_wins(30, 10) + [judgment("x", "m", "A>>B", "B>A")])
    np.random.seed(42)
    official = pd.DataFrame([ah.compute_mle_elo(battles.sample(frac=1.0, replace=True)) for _ in range(5)])
    ours = ah.bootstrap_ratings(battles, num_rounds=5, seed=42)
    pd.testing.assert_frame_equal(ours, official)


def test_ci_strings_follow_the_official_formats():
    m = ah.score_judgments(model_strong_wins(60, 40) + [judgment(f"l{i}", "m", "A>B", "B>A") for i in range(25)],
                           num_rounds=30)["m"]
    s, lo, hi = m["score"], m["rating_q025"], m["rating_q975"]
    assert m["CI"] == f"(-{s - lo:.2f}, +{hi - s:.2f})"
    assert (m["lower"], m["upper"]) == (round(lo - s, 1), round(hi - s, 1))


def test_invalid_verdicts_are_dropped_and_counted():
    rows = model_strong_wins(30, 10) + [judgment(f"l{i}", "m", "A>B", "B>A") for i in range(10)]
    noisy = rows + [judgment("n1", "m", None, "A>B"), judgment("n2", "m", "A<B", None),
                    {"question_id": "n3", "model": "m", "games": [None, {"score": "B>A"}]}]
    clean = ah.score_judgments(rows, num_rounds=10)["m"]
    dirty = ah.score_judgments(noisy, num_rounds=10)["m"]
    # the valid games of the noisy rows add 1 model win (n1 game 2) and 1 baseline win (n3 game 2)
    assert dirty["n_null_verdicts"] == 3 and dirty["n_unknown_verdicts"] == 1 and dirty["n_invalid_games"] == 4
    assert dirty["n_battles"] == clean["n_battles"] + 2
    assert any("dropped" in n for n in dirty["notes"])


def test_model_without_any_valid_verdict_is_listed_without_a_score():
    got = ah.score_judgments(model_strong_wins(5, 5) + [judgment("q", "broken", None, "??")], num_rounds=5)
    assert got["broken"]["score"] is None and got["broken"]["n_invalid_games"] == 2


@pytest.mark.parametrize("row, message", [
    ({"model": "m", "games": [{"score": "A=B"}] * 2}, "f.jsonl:7: missing field 'question_id'"),
    ({"question_id": "q", "games": [{"score": "A=B"}] * 2}, "f.jsonl:7: missing field 'model'"),
    ({"question_id": "q", "model": "m", "games": [{"score": "A=B"}]}, "f.jsonl:7: expected 2 games"),
    ({"question_id": "zzz", "model": "m", "games": [{"score": "A=B"}] * 2}, "f.jsonl:7: question_id 'zzz' is not"),
    ({"question_id": "q0", "model": "m", "games": [{"score": "A=B"}] * 2}, "f.jsonl:7: duplicate judgment"),
])
def test_malformed_judgments_name_file_and_line(row, message):
    rows = [judgment("q0", "m", "A=B", "A=B"), row]
    with pytest.raises(UserError, match=message):
        ah.battles_from_judgments(rows, question_ids={"q0", "q"}, source="f.jsonl", lines=[3, 7])


def test_parse_verdict_as_gen_judgment():
    assert ah.parse_verdict("blah\nMy final verdict is: [[B>>A]]") == ("B>>A", False)
    assert ah.parse_verdict("[[A>B]] ... again [[A>B]]") == ("A>B", False)
    assert ah.parse_verdict("[[A>B]] or maybe [[A=B]]") == (None, False)
    assert ah.parse_verdict("no label yet") == (None, True)


def test_judge_messages_swap_positions_in_game_two(shared_data):
    import yaml

    cfg = yaml.safe_load((shared_data / "arena_hard_v0.1" / "judge_config.yaml").read_text())
    g1 = ah.judge_messages("Q?", "MODEL", "BASE", 0, cfg["system_prompt"], cfg["prompt_template"][0])
    g2 = ah.judge_messages("Q?", "MODEL", "BASE", 1, cfg["system_prompt"], cfg["prompt_template"][0])
    assert g1[0] == {"role": "system", "content": cfg["system_prompt"]}
    assert g1[1]["content"].index("BASE") < g1[1]["content"].index("MODEL")
    assert g2[1]["content"].index("MODEL") < g2[1]["content"].index("BASE")
    assert g1[1]["content"].startswith("<|User Prompt|>\nQ?\n")


def test_token_count_uses_cl100k_base():
    # the OpenAI Cookbook's "How to count tokens with tiktoken": cl100k_base encodes this as
    # [83, 1609, 5963, 374, 2294, 0]
    assert ah.count_tokens("tiktoken is great!") == 6
    # gen_answer counts with disallowed_special=(): special-token text is ordinary text (not 1 token, no error)
    assert ah.count_tokens("<|endoftext|>") > 1


def test_avg_tokens_reproduces_the_baseline_leaderboard_figure(shared_data):
    d = shared_data / "arena_hard_v0.1"
    answers = [json.loads(line) for line in (d / "gpt-4-0314.answers.jsonl").read_text().splitlines() if line]
    official = pd.read_csv(d / "leaderboard_20240731.csv").set_index("model").loc[BASE, "avg_tokens"]
    assert ah.avg_tokens(answers) == int(official) == 423
    stripped = [{**a, "choices": [{"turns": [{"content": a["choices"][0]["turns"][0]["content"]}]}]}
                for a in answers[:50]]
    with_len = answers[:50]
    assert ah.avg_tokens(stripped) == ah.avg_tokens(with_len)  # recomputed token_len agrees with the official


def test_win_rates_equal_the_official_table_bit_for_bit():
    """The official get_win_rate_column builds a full pairwise table with predict_win_rate (later writes win)
    and reads the baseline's column; this test rebuilds that table the official way for ratings of models that
    sort before and after the baseline, and compares the rounded figures exactly."""
    rng = np.random.default_rng(7)
    names = ["Alpha-7B", "gpt-3.5", BASE, "gpt-4o", "zeta", "Mistral7B-PairRM-SPPO-Iter3"]
    for _ in range(50):
        ratings = {n: (1000.0 if n == BASE else float(1000 + rng.normal(0, 150))) for n in names}
        wins: dict[str, dict[str, float]] = {a: {} for a in ratings}
        ordered = sorted(ratings)
        for a in ordered:
            for b in ordered:
                ea = 1 / (1 + 10 ** ((ratings[b] - ratings[a]) / 400))
                wins[a][b] = ea
                wins[b][a] = 1 - ea
        table = pd.DataFrame({a: [wins[a][b] if a != b else np.nan for b in ordered] for a in ordered},
                             index=ordered).T
        official = table[BASE].fillna(0.5).apply(lambda x: round(x * 100, 2)).to_dict()
        assert ah.win_rate_vs_baseline(ratings) == official


def test_judge_settings_and_records_follow_the_official_config(shared_data):
    import yaml

    cfg = yaml.safe_load((shared_data / "arena_hard_v0.1" / "judge_config.yaml").read_text())
    assert (cfg["judge_model"], cfg["baseline_model"]) == (ah.JUDGE, BASE)
    assert ah.JUDGE_PARAMS == {"max_tokens": cfg["max_tokens"], "temperature": cfg["temperature"]}
    assert ah.JUDGMENT_ATTEMPTS == cfg["number_of_judgment_attempts"]
    assert ah.VERDICT_PATTERN.pattern == cfg["regex_pattern"]
    # a first reply without a label, then the continuation (texts joined as gen_judgment does); two labels
    g1 = {"user_prompt": "p", "judgment": "\nthinking...\nMy final verdict: [[B>A]]"}
    g2 = {"user_prompt": "p", "judgment": "\n[[A>B]] no wait [[B>A]]"}
    for g in (g1, g2):
        g["score"] = ah.parse_verdict(g["judgment"])[0]
    assert (g1["score"], g2["score"]) == ("B>A", None)
    judgment = {"question_id": "q", "model": "m", "judge": ah.JUDGE, "games": [g1, g2]}
    battles, counts = ah.battles_from_judgments([judgment])
    assert battles["winner"].tolist() == ["model_b"] and counts["m"]["n_null_verdicts"] == 1


def test_percentile_with_diverged_bootstrap_rounds():
    """np.percentile gives NaN when an infinite rating meets a zero interpolation weight; the limit is used."""
    import numpy as np
    import pandas as pd

    from benchmarks.scoring.arena_hard import bootstrap_percentile

    finite = pd.Series([3.0, 1.0, 2.0, 4.0, 5.0])
    for q in (2.5, 50, 97.5):  # no infinity: numpy's linear percentile, unchanged
        assert bootstrap_percentile(finite, q) == np.percentile(finite.to_numpy(), q)
    with_inf = pd.Series([1.0, np.inf, 2.0])  # sorted 1, 2, inf; q=50 sits exactly on 2 (by hand)
    assert np.isnan(np.percentile(with_inf.to_numpy(), 50))  # numpy alone: the CI would read "+nan"
    assert bootstrap_percentile(with_inf, 50) == 2.0
    assert bootstrap_percentile(with_inf, 97.5) == np.inf  # between 2 and inf: the infinite side
    assert bootstrap_percentile(pd.Series([-np.inf, 0.0, 1.0]), 25) == -np.inf  # between -inf and 0
