"""What a reader of the results expects: Arena-Hard printed as show_result.py prints it, plots with error bars on an
axis from 0, other models' judgments co-fitted on request, and Iter0 = the run's starting model."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.cli import main as bench
from benchmarks.store import ResultsStore, SuiteResult
from benchmarks.tables import table_spec
from benchmarks.table_cmd import plot_series, suite_frames


def _arena(model, score, q025, q975):
    # the fields as benchmarks.scoring.arena_hard.leaderboard writes them
    return SuiteResult(model=model, suite="arena_hard", metrics={
        "score": score, "rating_q025": q025, "rating_q975": q975, "lower": round(q025 - score, 1),
        "upper": round(q975 - score, 1), "CI": f"(-{score - q025:.2f}, +{q975 - score:.2f})", "avg_tokens": 100})


def test_arena_hard_table_prints_as_show_result_and_plots_carry_error_bars(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(_arena("Iter1", 23.34, 21.51, 25.13))
    store.write(SuiteResult(model="Iter0", suite="alpaca_eval", metrics={
        "length_controlled_winrate": None, "win_rate": 17.1, "standard_error": 1.3, "avg_length": 1500}))
    store.write(SuiteResult(model="Iter2", suite="alpaca_eval", metrics={
        "length_controlled_winrate": None, "win_rate": 31.0, "standard_error": 1.6, "avg_length": 2000}))
    row = suite_frames(store)["arena_hard"].loc["Iter1"]
    # show_result.py @e883410:252-253: round(score, 1) and str((round(lower - score, 1), round(upper - score, 1)))
    score, lower, upper = 23.34, 21.51, 25.13
    assert row["Score"] == str(round(score, 1)) == "23.3"
    assert row["95% CI"] == str((round(lower - score, 1), round(upper - score, 1))) == "(-1.8, 1.8)"
    results = store.results()
    metric, models, series = plot_series(results, table_spec("alpaca_eval"))
    assert metric == "win_rate" and models == ["Iter0", "Iter2"]  # the starting model first
    assert series["default"] == ([0, 1], [17.1, 31.0], [[1.3, 1.6], [1.3, 1.6]])
    _, _, arena = plot_series(results, table_spec("arena_hard"))
    xs, ys, yerr = arena["default"]
    assert ys == [23.34] and yerr == [[pytest.approx(23.34 - 21.51)], [pytest.approx(25.13 - 23.34)]]
    assert bench(["table", "--results-dir", str(tmp_path), "--plots"]) == 0


def _judgments(path, model, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question_id": f"q{i}", "model": model, "judge": "gpt-4-1106-preview",
                                        "games": [{"score": a}, {"score": b}]}) + "\n"
                            for i, (a, b) in enumerate(labels)))


def test_with_judgments_fits_like_one_directory_in_sorted_order(tmp_path, capsys):
    mine, others, together = tmp_path / "mine", tmp_path / "others", tmp_path / "together"
    labels = ["A>B", "B>A", "A=B", "B>>A", "A>>B", "B>A"]
    _judgments(mine / "m.jsonl", "m", list(zip(labels, reversed(labels))))
    _judgments(others / "a.jsonl", "a", list(zip(labels[1:] + labels[:1], labels)))
    _judgments(others / "z.jsonl", "z", list(zip(labels[2:] + labels[:2], labels[3:] + labels[:3])))
    together.mkdir()
    for f in [*mine.glob("*.jsonl"), *others.glob("*.jsonl")]:
        shutil.copy(f, together / f.name)

    def score(*argv):
        assert bench(["score", "arena-hard", *map(str, argv), "--num-rounds", "20"]) == 0
        return {r["model"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}

    alone, cofit, reference = score(mine), score(mine, "--with-judgments", others), score(together)
    assert set(cofit) == {"m", "a", "z", "gpt-4-0314"}
    assert cofit["m"] == reference["m"]  # same point estimate and same bootstrap as the one official directory
    assert alone["m"]["rating_q025"] != cofit["m"]["rating_q025"]  # the CI depends on the co-fitted set


def test_iter0_is_the_runs_starting_model(tmp_path, shared_data):
    from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints

    (start,) = tiny_checkpoints(tmp_path, seeds=(0,))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"model:\n  name: {start}\n")
    with FakeJudgeServer() as server:
        argv = bench_args(server, [], shared_data, run / "results", "--alpaca-eval", "Iter0", "--run-dir", str(run),
                          limit=1)
        assert bench(argv) == 0
    r = ResultsStore(run / "results").read("Iter0", "alpaca_eval")
    assert r.checkpoint["path"] == str(start) and r.checkpoint["ref"] == "Iter0"


def test_run_with_judgments_cofits_and_notes_pooled_judges(tmp_path, shared_data):
    from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
    from sppo.files import read_jsonl

    (ck,) = tiny_checkpoints(tmp_path, seeds=(0,))
    qids = [q["question_id"] for q in read_jsonl(shared_data / "arena_hard_v0.1" / "question.jsonl")[:2]]
    other = tmp_path / "official"
    other.mkdir()
    (other / "other-model.jsonl").write_text("".join(
        json.dumps({"question_id": q, "model": "other-model", "judge": "gpt-4-1106-preview",
                    "games": [{"score": "A>B"}, {"score": "A=B"}]}) + "\n" for q in qids))
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        assert bench(bench_args(server, [ck], shared_data, results, "--arena-hard", "--with-judgments",
                                str(other))) == 0
    r = ResultsStore(results).read("tiny1", "arena_hard")
    assert "other-model" in r.settings["models_fitted_together"]
    assert any("several judges" in n and "fake-judge, gpt-4-1106-preview" in n for n in r.metrics["notes"])


def test_table_prints_the_cards_row_names_and_figures(tmp_path, shared_data, capsys):
    """Every row of the published card (../shared/data/reference/Mistral7B-PairRM-SPPO-Iter2.README.md) appears in
    `sppo-bench table` under the card's name with the card's figures, from a run holding those results; lm-eval's
    unweighted MMLU stands beside the weighted one."""
    from release.card import parse_tables
    from release_testutil import make_run

    run = make_run(tmp_path)
    assert bench(["table", "--run-dir", str(run), "--no-plots"]) == 0
    ours = {t["title"]: t for t in parse_tables(capsys.readouterr().out)}
    card = parse_tables((shared_data / "reference" / "Mistral7B-PairRM-SPPO-Iter2.README.md").read_text())
    titles = {"AlpacaEval": "AlpacaEval 2", "Arena-Hard": "Arena-Hard v0.1", "Open LLM": "Open LLM Leaderboard "
              "(lm-evaluation-harness v0.4.1)", "MT-Bench": "MT-Bench"}
    checked = 0
    for table in card:
        mine = ours[next(v for k, v in titles.items() if table["title"].startswith(k))]
        rows = {r[0]: dict(zip(mine["header"][1:], r[1:])) for r in mine["rows"]}
        for row in table["rows"]:
            for header, cell in zip(table["header"][1:], row[1:]):
                assert rows[row[0]][header] == cell, (table["title"], row[0], header)
                checked += 1
    assert checked == 6 * 3 + 3 + 3 * 7 + 3 * 3
    lm = {r[0]: dict(zip(ours[titles["Open LLM"]]["header"][1:], r[1:])) for r in ours[titles["Open LLM"]]["rows"]}
    header = ours[titles["Open LLM"]]["header"]
    assert header[header.index("mmlu") + 1] == "mmlu (unweighted)"
    assert lm["Mistral7B-PairRM-SPPO Iter 1"]["mmlu (unweighted)"] == "59.14"  # 58.8402 + 0.3, as the card rounds


def test_one_name_per_suite_everywhere():
    """The run registry, the scorers, the card's tables and the results store name the same four suites; the
    command line spells them with dashes (``--alpaca-eval``, ``score alpaca-eval``)."""
    from benchmarks.tables import TABLES
    from benchmarks.cli import build_parser
    from benchmarks.score_cmd import SCORERS
    from benchmarks.store import SUITES
    from benchmarks.suites import REGISTRY

    assert SUITES == ("alpaca_eval", "arena_hard", "mt_bench", "lm_eval")
    assert tuple(REGISTRY) == tuple(SCORERS) == SUITES
    assert sorted(t.suite for t in TABLES) == sorted(SUITES)
    assert all(REGISTRY[s].table.suite == s and REGISTRY[s].name == s for s in SUITES)
    args = build_parser().parse_args(["score", "alpaca-eval", "a.json"])
    assert args.suite == "alpaca_eval"
    assert build_parser().parse_args(["run", "--arena-hard", "--lm-eval", "x"]).suites == ["arena_hard", "lm_eval"]


def test_console_and_card_print_the_same_cells(tmp_path):
    """One table model: every cell of the card's tables (and its model-index values) is the cell `sppo-bench table`
    prints for the same row and column; what differs (the unweighted MMLU column, the offline task's own columns,
    the `` *`` mark) is the declared View, and a result measured on other tasks is in the card's "elsewhere"."""
    from release.card.metadata import eval_results
    from release.card.results import card_table, results_from_store
    from release.card.naming import ReleaseInfo
    from release.run import load_run
    from release_testutil import make_run

    from benchmarks.table_cmd import run_names
    from benchmarks.tables import CARD, CONSOLE, TABLES, in_table

    run = make_run(tmp_path)
    store = ResultsStore(run / "results")
    store.write(SuiteResult(model="Iter2", suite="lm_eval", variant="sppo-tiny-mc",
                            metrics={"sppo_tiny_mc": 40.0, "average": 40.0}))
    frames = suite_frames(store, run_names(run))
    iterations = load_run(run)
    release = ReleaseInfo(family=run_names(run).family)
    results = results_from_store(store, iterations, release)
    checked = 0
    for spec in TABLES:
        table = card_table(spec, release.family, iterations, results)
        for row in table.rows:
            printed = frames[spec.suite].loc[row.label]
            for header, cell in zip(table.headers, row.cells):
                assert printed[header] == cell.text, (spec.suite, row.label, header)
                checked += 1
        assert all(in_table(spec, row.result) for row in table.rows)
    assert checked == 6 * 3 + 3 + 3 * 7 + 3 * 3 and "mmlu (unweighted)" in frames["lm_eval"].columns
    assert "Iter2 (sppo-tiny-mc)" not in [r.label for r in card_table(TABLES[2], release.family, iterations,
                                                                        results).rows]
    assert (CONSOLE.mmlu_unweighted, CARD.mmlu_unweighted) == (True, False)
    values = {(e.dataset_type, e.metric_type, e.metric_config): e.metric_value
              for it in iterations[-1:] for e in eval_results(release, it, results)}
    assert values[("tatsu-lab/alpaca_eval", "win_rate", None)] == float(frames["alpaca_eval"].iloc[2]["Win Rate"])
