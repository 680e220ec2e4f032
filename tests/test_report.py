"""`sppo-bench report` without a browser: what it reads from a store, the judge's spread and its warning, the page's
safety (untrusted text never becomes markup), and subsets stated wherever a figure is shown (table, card,
model-index, push). The page in a real browser: tests/test_report_browser.py."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil

import pytest
from report_testutil import EVIL, EVIL_CATEGORY, EVIL_JUDGE, EVIL_PROMPT, SIZES, hostile_store, training_run

from benchmarks.tables import subset_annotation, table_spec
from benchmarks.cli import main as bench
from benchmarks.report import collect, render
from benchmarks.report import verdicts as v
from benchmarks.report.items import NO_QUESTION_FILE
from benchmarks.store import ResultsStore
from benchmarks.table_cmd import suite_frames


@pytest.fixture(scope="module")
def store(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("report")
    results, data = hostile_store(root, shared_data)
    training_run(root)
    return results, data


@pytest.fixture(scope="module")
def rendered(store):
    """(report, page) of the store, rendered once for the module."""
    report = collect(store[0])
    return report, render(report)


def data_of(page: str) -> dict:
    """The prompt browsers' data, decoded from the page as its script decodes it."""
    blob = re.search(r'<script type="text/plain" id="report-data"[^>]*>([^<]*)</script>', page).group(1)
    return json.loads(gzip.decompress(base64.b64decode(blob)))


# ------------------------------------------------------------------------------------------------- verdicts

def test_verdicts_in_words_from_the_models_side():
    assert [v.alpaca_outcome(p) for p in (2.0, 1.51, 1.5, 1.0, None, float("nan"), 0)] == [
        "wins", "wins", "ties", "loses", "no verdict", "no verdict", "no verdict"]
    # game 1 shows the baseline as A, game 2 the model as A: the same label means opposite things
    assert v.arena_game_view("B>>A", 0) == ("much better", 2) and v.arena_game_view("B>>A", 1) == ("much worse", -2)
    assert v.arena_game_view("A>B", 1) == ("better", 1) and v.arena_game_view("[[x]]", 0) is None
    assert v.arena_outcome(["B>A", "A>B"]) == "wins" and v.arena_outcome(["A>B", "A>B"]) == "ties"
    assert v.arena_outcome(["A>>B", "A=B"]) == "loses" and v.arena_outcome([None, None]) == "no verdict"
    assert v.mt_rating(7.0) == "7" and v.mt_rating(7.5) == "7.5" and v.mt_rating(-1) == "no rating"


def test_spread_warns_only_when_one_verdict_covers_nearly_everything():
    assert v.spread("mt_bench", "ratings", ["5"] * 9 + ["6"]).uninformative  # 90%
    assert not v.spread("mt_bench", "ratings", ["5"] * 8 + ["6", "7"]).uninformative
    assert not v.spread("mt_bench", "ratings", ["5"]).uninformative  # one verdict says nothing about spread
    s = v.spread("mt_bench", "ratings", ["5"] * 6 + ["no rating"])
    assert s.n == 6 and s.top == ("5", 6)
    assert s.warning("over 3 checkpoints") == ("mt_bench: the judge gave (nearly) one verdict to everything: 6 of 6 "
                                               "ratings were 5 (over 3 checkpoints); these figures cannot tell the "
                                               "answers apart")


# ------------------------------------------------------------------------------------------------- reading

def test_every_judged_prompt_with_each_checkpoints_answer_and_verdict(store):
    results, _ = store
    report = collect(results)
    by = {b.suite: b for b in report.browsers}
    assert [len(by[s].items) for s in ("alpaca_eval", "arena_hard", "mt_bench")] == [
        SIZES["alpaca"], SIZES["arena"], SIZES["mt"]]
    for b in report.browsers:
        assert b.columns == ["Iter1", "Iter2", "Iter3"]
        assert all(set(item.cells) == set(b.columns) for item in b.items)
    annotations = json.loads((results / "alpaca_eval" / "Iter2" / "annotations.json").read_text())
    first = by["alpaca_eval"].items[0]
    assert first.prompt == [annotations[0]["instruction"]] and first.cells["Iter2"].answer == [EVIL]
    assert first.cells["Iter2"].verdicts == [v.alpaca_outcome(annotations[0]["preference"])]
    assert first.baseline == [annotations[0]["output_1"]]
    # Arena-Hard: both games, each with the judge's own text; MT-Bench: both turns and both judgments
    arena = by["arena_hard"].items[0].cells["Iter1"]
    assert [n[1] for n in arena.notes][0] == EVIL_JUDGE and len(arena.notes) == 2
    assert arena.notes[0][0].startswith("game 1 (A = the baseline, B = this answer)")
    mt = by["mt_bench"].items[0]
    assert mt.prompt[0] == EVIL_PROMPT and mt.category == EVIL_CATEGORY and len(mt.prompt) == 2
    assert len(mt.cells["Iter1"].answer) == 2 and [n[0][:6] for n in mt.cells["Iter1"].notes] == ["turn 1", "turn 2"]
    judged = [json.loads(x) for x in (results / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl").open()]
    ratings = {(r["model"], r["question_id"], r["turn"]): r["score"] for r in judged}
    qid = int(mt.id)
    assert mt.cells["Iter3"].badge == f"turn 1: {ratings['Iter3', qid, 1]:g} · turn 2: {ratings['Iter3', qid, 2]:g}"
    # "changed between iterations" is exactly: the verdicts differ between two checkpoints
    for b in report.browsers:
        for item in b.items:
            assert item.changed() == (len({tuple(c.verdicts) for c in item.cells.values()}) > 1)
    assert any(item.changed() for item in by["alpaca_eval"].items)


def test_a_moved_store_still_reads(tmp_path, shared_data):
    hostile_store(tmp_path / "a", shared_data)
    (tmp_path / "a").rename(tmp_path / "b")  # every path the results record is gone
    moved, data = tmp_path / "b" / "results", tmp_path / "b" / "data"
    # answers and judgments are found at the same places under the store's own root, questions in --data-dir
    report = collect(moved, data_dir=data)
    assert [len(b.items) for b in report.browsers] == [SIZES["alpaca"], SIZES["arena"], SIZES["mt"]]
    by = {b.suite: b for b in report.browsers}
    assert by["mt_bench"].items[0].prompt[0] == EVIL_PROMPT and by["arena_hard"].items[0].baseline
    # without the question files: Arena-Hard's questions from the judge's prompt, MT-Bench's said to be missing
    by = {b.suite: b for b in collect(moved).browsers}
    assert [len(b.items) for b in by.values()] == [SIZES["alpaca"], SIZES["arena"], SIZES["mt"]]
    first = (data / "arena_hard_v0.1" / "question.jsonl").open().readline()
    assert by["arena_hard"].items[0].prompt == [json.loads(first)["turns"][0]["content"]]
    assert by["mt_bench"].items[0].prompt == [NO_QUESTION_FILE] and by["mt_bench"].items[0].category == "unknown"


def test_only_the_items_a_result_was_computed_on(store, tmp_path):
    results, _ = store
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    p = copy / "Iter1" / "mt_bench.json"
    d = json.loads(p.read_text())
    d["settings"]["n_questions"] = 2  # as a rerun with --limit 2 records it; the judgment file keeps the rest
    p.write_text(json.dumps(d))
    by = {b.suite: b for b in collect(copy).browsers}
    assert sum("Iter1" in item.cells for item in by["mt_bench"].items) == 2


def test_training_side_per_iteration(rendered):
    report, page = rendered
    assert [it.number for it in report.training] == [1, 2]
    it1 = report.training[0]
    assert it1.steps == [1, 2, 3, 4] and it1.loss[0] == pytest.approx(0.5) and it1.lr[-1] == pytest.approx(5e-7)
    assert it1.p_win == [pytest.approx(0.65)] * 3 and it1.response_chars == pytest.approx(20.0)
    for title in ("Training loss per step", "Training learning rate per step", "Chosen / rejected win probabilities",
                  "Sampled response length by iteration"):
        assert title in page


# ------------------------------------------------------------------------------------------------- the page

def test_page_is_self_contained_and_untrusted_text_never_becomes_markup(rendered):
    _, page = rendered
    # one inline script (and the inert data block), no external resource of any kind
    assert len(re.findall(r"<script\b", page)) == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    # hostile text is nowhere in the markup; it is in the data, intact, for the script to show as text
    for text in (EVIL, EVIL_PROMPT, EVIL_JUDGE, EVIL_CATEGORY, "window.__pwned", "javascript:"):
        assert text not in page
    data = data_of(page)
    texts = json.dumps(data, ensure_ascii=False)
    for text in (EVIL, EVIL_PROMPT, EVIL_JUDGE, EVIL_CATEGORY):
        assert json.dumps(text, ensure_ascii=False)[1:-1] in texts
    alpaca = data["browsers"][0]
    assert alpaca["items"][0]["cells"][1]["answer"] == [EVIL]


def test_secrets_are_scrubbed_before_encoding_and_the_encoded_data_never_corrupted(store, rendered, tmp_path):
    from benchmarks.report.cmd import write_report
    from sppo.scrub import register_secret

    page = rendered[1]
    report = collect(store[0])
    blob = re.search(r'id="report-data"[^>]*>([^<]*)<', page).group(1)
    # a registered secret (a short URL password, say) that the base64 happens to contain: scrubbing the written page
    # would corrupt the data; it is scrubbed from the data before encoding instead
    register_secret(blob[len(blob) // 2:len(blob) // 2 + 10])
    secret = "pw-" + blob[100:112]
    register_secret(secret)
    report.browsers[0].items[0].cells["Iter1"].answer = [f"the judge's password is {secret}"]
    path, _ = write_report(store[0], out=tmp_path / "r.html")  # read again: the cell above is not in the store
    assert data_of(path.read_text())["browsers"][0]["items"][0]["cells"][1]["answer"] == [EVIL]
    assert data_of(render(report))["browsers"][0]["items"][0]["cells"][0]["answer"] == [
        "the judge's password is [REDACTED]"]


def test_tables_hold_the_figures_of_sppo_bench_table(store, rendered):
    report, page = rendered
    frames = suite_frames(ResultsStore(store[0]))
    assert list(report.frames) == list(frames)
    for suite, df in frames.items():
        table = re.search(rf'<table class="card" id="table-{suite}">(.*?)</table>', page).group(1)
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", table.split("<tbody>")[1])
        expected = [str(x) for label, row in zip(df.index, df.itertuples(index=False)) for x in (label, *row)]
        assert [c.replace("&amp;", "&") for c in cells] == expected, suite
    assert "<td>24.60 (n = 7 of 805)</td>" in page and "<td>7.50 (n = 4 of 80)</td>" in page
    assert "Figures marked (n = ...) were measured on the first n of the benchmark&#x27;s 805 instructions" in page


def test_one_verdict_for_everything_is_a_plain_warning_in_the_page_and_printed(tmp_path, shared_data, capsys):
    results, _ = hostile_store(tmp_path, shared_data, one_verdict=True)
    assert bench(["report", "--results-dir", str(results), "--out", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out.splitlines()
    warnings = [x for x in out if x.startswith("warning: ")]
    assert warnings == [
        "warning: alpaca_eval: the judge gave (nearly) one verdict to everything: 21 of 21 preferences (P better "
        "than the baseline) were 0.50 (over 3 checkpoints); these figures cannot tell the answers apart",
        "warning: arena_hard: the judge gave (nearly) one verdict to everything: 30 of 30 game labels were A=B (over 3 "
        "checkpoints); these figures cannot tell the answers apart",
        "warning: mt_bench: the judge gave (nearly) one verdict to everything: 24 of 24 ratings were 5 (over 3 "
        "checkpoints); these figures cannot tell the answers apart"]
    assert out[-1].startswith(f"report: {tmp_path / 'r.html'} (") and "MT-Bench 4 prompts" in out[-1]
    assert "note: AlpacaEval 2: figures from 7 of the benchmark's 805 instructions" in "\n".join(out)
    page = (tmp_path / "r.html").read_text()
    assert page.count("one verdict for (nearly) everything") >= 3 and "Read before you publish" in page


def test_an_informative_judge_gets_no_warning(rendered):
    report, page = rendered
    assert "one verdict for (nearly) everything" not in page
    assert [w for w in report.warnings if "one verdict" in w] == []


def test_lm_eval_figures_equal_for_every_checkpoint_are_flagged():
    from benchmarks.store import SuiteResult

    rs = [SuiteResult(model=f"Iter{n}", suite="lm_eval", variant="sppo-tiny-mc", metrics={"sppo_tiny_mc": 100.0,
                                                                                        "n_docs": 3}) for n in (1, 2, 3)]
    assert v.flat_figures(rs) == ["lm_eval: every checkpoint (Iter1, Iter2, Iter3) got the same figures "
                                  "(sppo_tiny_mc 100.00); this task cannot tell them apart"]
    rs[2].metrics["sppo_tiny_mc"] = 66.67
    assert v.flat_figures(rs) == []


def test_report_command_errors_are_one_line(tmp_path, capsys):
    assert bench(["report", "--results-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'none'}: no benchmark results (run `sppo-bench --all ...` first)"]


# ------------------------------------------------------------------------------------------------- subsets

def test_subset_annotation_names_the_count_wherever_fewer_items_than_the_benchmark():
    alpaca, lm = table_spec("alpaca_eval"), table_spec("lm_eval")
    assert subset_annotation(alpaca, {"limit": 3, "n_instructions": 3}) == "n = 3 of 805"
    assert subset_annotation(alpaca, {"limit": None, "n_instructions": 805}) == ""
    assert subset_annotation(alpaca, {"limit": 1000, "n_instructions": 805}) == ""  # the limit was above the size
    assert subset_annotation(alpaca, {"limit": 3}) == "n = 3 of 805"  # a result that recorded only its limit
    assert subset_annotation(alpaca, {"n_instructions": 400}) == "n = 400 of 805"  # a smaller data file
    assert subset_annotation(table_spec("arena_hard"), {"limit": 3, "n_questions": 3}) == "n = 3 of 500"
    assert subset_annotation(lm, {"limit": 3}) == "n = 3 per task" and subset_annotation(lm, {"limit": None}) == ""


def test_sppo_bench_table_states_the_count(store, capsys):
    assert bench(["table", "--results-dir", str(store[0])]) == 0
    out = capsys.readouterr().out
    assert "| Iter2 | 35.81 (n = 7 of 805) | 37.81 (n = 7 of 805) | 516 (n = 7 of 805) |" in out
    assert "| Iter2 | 47.2 (n = 5 of 500) | (-12.1, 20.6) (n = 5 of 500) | 130 (n = 5 of 500)  |" in out
    assert "| Iter2 | 40.5            | 43.5             |" in out  # lm-eval: every task whole, no count
    assert out.count("Figures marked (n = ...) were measured on the first n of the benchmark's") == 3
