"""Model cards: the rendered card's metadata and every table cell equal the published seed card's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from release_testutil import make_embedded_run, make_run, safetensors_bytes

from release import cli
from release.card import ReleaseInfo, card_figures, parse_tables, render_card, results_from_store
from release.published import load_published, render_published
from release.run import load_iteration, load_run
from sppo.errors import UserError
from benchmarks.store import ResultsStore

SEED = "reference/Mistral7B-PairRM-SPPO-Iter2.README.md"
REPO_ROOT = Path(__file__).resolve().parents[1]
RELEASE = ReleaseInfo(family="Mistral7B-PairRM-SPPO", org="UCLA-AGI")


def _seed_text(shared_data: Path) -> str:
    return (shared_data / SEED).read_text(encoding="utf-8")


def _metadata(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def _render(run: Path, number: int, template=None) -> str:
    iterations = load_run(run)
    results = results_from_store(ResultsStore(run / "results"), iterations, RELEASE)
    it = next(i for i in iterations if i.number == number)
    return str(render_card(RELEASE, iterations, it, results, template))


def _assert_tables_equal(seed_text: str, card_text: str) -> None:
    """Every table of the seed card appears in the card with the same title, header and cells."""
    seed_tables, tables = parse_tables(seed_text), {t["title"]: t for t in parse_tables(card_text)}
    assert [t["title"] for t in seed_tables] == [
        "AlpacaEval Leaderboard Evaluation Results", "Arena-Hard Evaluation Results",
        "Open LLM Leaderboard Evaluation Results", "MT-Bench Evaluation Results"]
    for seed in seed_tables:
        assert seed["title"] in tables, f"missing table {seed['title']!r}"
        table = tables[seed["title"]]
        assert table["header"] == seed["header"], seed["title"]
        assert len(table["rows"]) == len(seed["rows"]), seed["title"]
        for seed_row, row in zip(seed["rows"], table["rows"]):
            assert row == seed_row, f"{seed['title']}: {row} != {seed_row}"


def _assert_metadata(seed_text: str, card_text: str, iteration: int) -> None:
    seed_meta, meta = _metadata(seed_text), _metadata(card_text)
    for key, value in seed_meta.items():
        assert meta[key] == value, key
    assert meta["base_model"] == "mistralai/Mistral-7B-Instruct-v0.2"
    assert meta["tags"]
    # every figure of this iteration's rows, and nothing else, is in the model-index
    index = meta["model-index"][0]
    assert index["name"] == f"Mistral7B-PairRM-SPPO-Iter{iteration}"
    values = sorted((m["value"] if isinstance(m["value"], str) else float(m["value"]) for r in index["results"]
                     for m in r["metrics"]), key=repr)
    label = f"Iter {iteration}"
    cells = sorted((c if c.startswith("(") else float(c) for t in parse_tables(card_text) for row in t["rows"]
                    if label in row[0] or row[0].endswith(f"-Iter{iteration}") for c in row[1:]), key=repr)
    assert values == cells
    ModelCard(card_text)  # parses as a Hub card


def test_golden_card_equals_seed_card(tmp_path, shared_data):
    seed = _seed_text(shared_data)
    card = _render(make_run(tmp_path), 2)
    _assert_tables_equal(seed, card)
    _assert_metadata(seed, card, 2)
    assert "- num_train_epochs: 18.0 (stop at epoch=1.0)" in card
    for line in ("- learning_rate: 5e-07", "- eta: 1000", "- per_device_train_batch_size: 8",
                 "- gradient_accumulation_steps: 1", "- seed: 42", "- distributed_type: deepspeed_zero3",
                 "- num_devices: 8", "- optimizer: RMSProp", "- lr_scheduler_type: linear",
                 "- lr_scheduler_warmup_ratio: 0.1"):
        assert line in card.splitlines()
    for n in (1, 2, 3):
        assert f"(https://huggingface.co/UCLA-AGI/Mistral7B-PairRM-SPPO-Iter{n})" in card
    assert "@misc{wu2024self," in card and "eprint={2405.00675}" in card


def test_each_iteration_card_has_its_own_figures(tmp_path, shared_data):
    run, seed = make_run(tmp_path), _seed_text(shared_data)
    for n in (1, 3):
        card = _render(run, n)
        _assert_tables_equal(seed, card)  # same tables on every card of the release
        _assert_metadata(seed, card, n)
    iter3 = _metadata(_render(run, 3))["model-index"][0]["results"]
    assert any(r["dataset"]["name"] == "Arena-Hard v0.1" for r in iter3)


def test_published_cards_are_rendered_from_the_source(shared_data):
    """model_cards/ is what the toolkit renders from release/published/*.json: re-render and diff."""
    rendered = render_published()
    assert sorted(rendered) == [f"Mistral7B-PairRM-SPPO-Iter{n}/README.md" for n in (1, 2, 3)]
    for rel, text in rendered.items():
        assert (REPO_ROOT / "model_cards" / rel).read_text(encoding="utf-8") == text, \
            f"model_cards/{rel} is out of date: run `python -m release.published`"
    seed = _seed_text(shared_data)
    for n in (1, 2, 3):
        card = rendered[f"Mistral7B-PairRM-SPPO-Iter{n}/README.md"]
        _assert_tables_equal(seed, card)
        _assert_metadata(seed, card, n)
    assert "This is the model reported in the paper" in rendered["Mistral7B-PairRM-SPPO-Iter2/README.md"]


def test_published_source_matches_store_rendering(tmp_path):
    """The transcribed source and a results store holding the same figures give the same card figures."""
    release, iterations, results = load_published()
    published = str(render_card(release, iterations, iterations[1], results))
    assert card_figures(published) == card_figures(_render(make_run(tmp_path), 2))


def test_manifest_missing_field_names_file_and_field(tmp_path):
    run = make_run(tmp_path, results=False)
    path = run / "checkpoints" / "Iter2" / "sppo_manifest.json"
    m = json.loads(path.read_text())
    del m["hyperparameters"]["eta"]
    path.write_text(json.dumps(m))
    with pytest.raises(UserError, match=r"Iter2/sppo_manifest.json: missing field 'hyperparameters.eta'"):
        load_run(run)
    del m["ranker"]
    path.write_text(json.dumps(m))
    with pytest.raises(UserError, match=r"sppo_manifest.json: missing field 'ranker'"):
        load_iteration(path.parent)


def test_missing_metric_prints_na_and_is_reported(tmp_path, capsys):
    run = make_run(tmp_path)
    p = run / "results" / "Iter1" / "mt_bench.json"
    d = json.loads(p.read_text())
    d["metrics"]["turn_2"] = None  # e.g. judging of the 2nd turn not finished
    p.write_text(json.dumps(d))
    card = _render(run, 2)
    assert "| Mistral7B-PairRM-SPPO Iter 1 | 7.63 | n/a | 7.21 |" in card
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--require", "mt_bench"]) == 0
    assert "warning: Iter1: mt_bench metric 'turn_2' missing" in capsys.readouterr().out
    d["metrics"]["turn_2"] = "lots"
    p.write_text(json.dumps(d))
    with pytest.raises(UserError, match=r"Iter1 \(mt_bench, default\): metric 'turn_2' is not a number"):
        _render(run, 2)


def test_custom_template(tmp_path):
    run = make_run(tmp_path)
    tpl = tmp_path / "mine.md.j2"
    tpl.write_text("---\n{{ card_data }}\n---\n# {{ model_name }} by us\n\n"
                   "{% for t in tables %}## {{ t.title }}\n\n{{ t.markdown }}\n\n{% endfor %}")
    card = _render(run, 2, tpl)
    assert "# Mistral7B-PairRM-SPPO-Iter2 by us" in card
    assert [t["title"] for t in parse_tables(card)][0] == "AlpacaEval Leaderboard Evaluation Results"
    tpl.write_text("# {{ model_name }}\n")
    with pytest.raises(UserError, match="must start with the metadata block"):
        _render(run, 2, tpl)
    tpl.write_text("---\n{{ card_data }}\n---\n{{ no_such_variable }}\n")
    with pytest.raises(UserError, match="template error .*no_such_variable"):
        _render(run, 2, tpl)


def test_cli_dry_run_renders_cards_and_lists_uploads(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPPO_RUN_DIR", raising=False)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(run)
    assert cli.main(["--name", "UCLA-AGI/Mistral7B-PairRM-SPPO", "--require", "alpaca_eval,mt_bench,lm_eval"]) == 0
    out = capsys.readouterr().out
    for n in (1, 2, 3):
        card = run / "cards" / f"Mistral7B-PairRM-SPPO-Iter{n}" / "README.md"  # the default --out: <run-dir>/cards
        assert card.exists()
        assert f"Iter{n} -> UCLA-AGI/Mistral7B-PairRM-SPPO-Iter{n}" in out
    assert "model.safetensors" in out and "config.json" in out and "sppo_manifest.json" not in out
    assert "dry run: nothing uploaded; pass --push" in out
    assert "warning" not in out
    assert not (tmp_path / "model_cards").exists()  # model_cards/ holds only the published cards


def test_cli_dry_run_default_names_and_warnings(tmp_path, capsys):
    run = make_run(tmp_path)
    (run / "checkpoints" / "Iter1" / "model.safetensors").write_bytes(safetensors_bytes(9, 72))  # results now stale
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards")]) == 0
    out = capsys.readouterr().out
    name = "Mistral7B-PairRM-SPPO"  # the published family of Mistral-7B-Instruct-v0.2 ranked by PairRM
    assert (tmp_path / "cards" / f"{name}-Iter1" / "README.md").exists()
    assert "warning: Iter1: alpaca_eval results are stale" in out
    assert "warning: Iter1: arena_hard results missing" in out
    assert "--push would refuse" in out
    card = (tmp_path / "cards" / f"{name}-Iter2" / "README.md").read_text()
    assert f"](../{name}-Iter1/README.md)" in card  # no org: links between the local cards


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["--run-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    run = make_run(tmp_path)
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--iteration", "7"]) == 2
    assert "no iteration 7" in capsys.readouterr().err


HUB_LINK = re.compile(r"\]\((https://huggingface\.co/[^)]*)\)")
HUB_PATH = re.compile(r"^https://huggingface\.co/(datasets/)?[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def test_card_of_the_embedded_default_run_tells_the_truth(tmp_path):
    """The default run (no Hub prompt dataset, a local judge ranker, the tiny lm-eval task): every Hub link points
    at an owner/name id, the substitute task is no leaderboard figure, and the judge and annotator are named."""
    run = make_embedded_run(tmp_path)
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards")]) == 0
    card = (tmp_path / "cards" / "SmolLM2-135M-Instruct-LocalJudge-SPPO-Iter2" / "README.md").read_text()
    links = HUB_LINK.findall(card)
    assert "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct" in links
    for link in links:
        assert HUB_PATH.match(link), link
    for dead in ("/None)", "/embedded)", "local-judge:embedded)"):
        assert dead not in card
    assert "the toolkit's embedded prompt set" in card and "a local chat-model judge (`embedded`)" in card
    meta = _metadata(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "datasets" not in meta
    # every figure here comes from a local judge or the substitute task: none is leaderboard metadata
    assert "model-index" not in meta
    titles = [t["title"] for t in parse_tables(card)]
    assert "AlpacaEval Leaderboard Evaluation Results" in titles  # the local judge's figures stay in the tables
    assert "Open LLM Leaderboard Evaluation Results" not in titles
    assert "Judge: `local:embedded` (a local model, in process). AlpacaEval annotator config: " \
           "`weighted_alpaca_eval[local:embedded]`." in card
    other = card.split("## Other evaluations")[1].split("##")[0]
    assert "- Iter2, lm_eval (sppo-tiny-mc): sppo_tiny_mc 100.0, sppo_tiny_mc_acc 87.5, average 100.0" in other
    assert "not an Open LLM Leaderboard task" in other


def test_only_hub_ids_are_linked():
    from release.card import hub_id, prompts_md, ranker_md, source_md

    assert hub_id("openbmb/UltraFeedback") == "openbmb/UltraFeedback"
    for local in (None, "embedded", "data/prompts.jsonl", "/abs/model", "./ckpt", "a/b/c", "x/..", "runs/x/p.parquet"):
        assert hub_id(local) is None, local
    assert source_md("/data/m") == "`/data/m`"
    assert ranker_md("llm-blender/PairRM") == "[llm-blender/PairRM](https://huggingface.co/llm-blender/PairRM)"
    assert ranker_md("local-judge:Qwen/Qwen2.5-7B-Instruct") == \
        "a local chat-model judge ([Qwen/Qwen2.5-7B-Instruct](https://huggingface.co/Qwen/Qwen2.5-7B-Instruct))"
    text = prompts_md("openbmb/UltraFeedback", "my/prompts.jsonl", 3)
    assert "[openbmb/UltraFeedback](https://huggingface.co/datasets/openbmb/UltraFeedback)" in text
    assert "the local prompt file `my/prompts.jsonl`" in text and "/datasets/my" not in text


def test_published_cards_writer_stays_in_its_directory(tmp_path, capsys):
    """`python -m release.published` builds card paths from the source's release name: '..' cannot leave --out."""
    from release.published import main as published_main, source_path
    from sppo.cli_util import run_cli

    doc = json.loads(source_path().read_text())
    doc["release"]["repo"] = "UCLA-AGI/../../escaped"
    source = tmp_path / "source.json"
    source.write_text(json.dumps(doc))
    out = tmp_path / "a" / "b" / "cards"
    assert run_cli(published_main, ["--source", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a valid name" in err
    assert not list(tmp_path.rglob("README.md"))


def test_a_benchmark_without_any_figure_is_an_na_row_not_another_evaluation(tmp_path, capsys):
    """MT-Bench whose every judgment failed records null ratings: the table shows n/a and release reports it."""
    run = make_embedded_run(tmp_path)
    p = run / "results" / "Iter1" / "mt_bench.json"
    d = json.loads(p.read_text())
    d["metrics"].update(turn_1=None, turn_2=None, average=None)
    p.write_text(json.dumps(d))
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards")]) == 0
    out = capsys.readouterr().out
    assert "warning: Iter1: mt_bench metric 'turn_1' missing" in out
    card = (tmp_path / "cards" / "SmolLM2-135M-Instruct-LocalJudge-SPPO-Iter1" / "README.md").read_text()
    assert "| SmolLM2-135M-Instruct-LocalJudge-SPPO Iter 1 | n/a | n/a | n/a |" in card
    assert "mt_bench" not in card.split("## Other evaluations")[1]


def test_an_endpoint_judge_is_named_by_its_url_without_userinfo(tmp_path):
    """Figures judged at an endpoint: the table names the judge model and its URL, never the URL's user:password,
    and the figures are leaderboard metadata (a local judge's are not, see above)."""
    run = make_run(tmp_path)
    store = ResultsStore(run / "results")
    judge = {"backend": "openai", "model": "gpt-4-1106-preview", "base_url": "https://alice:pw@judge.example/v1"}
    for r in store.results("Iter1"):
        if r.suite == "mt_bench":
            r.judge = judge
            store.write(r)
    iterations = load_run(run)
    results = results_from_store(store, iterations, RELEASE)
    assert [r.judge for r in results[1] if r.suite == "mt_bench"] == [judge]
    card = str(render_card(RELEASE, iterations, iterations[0], results))
    mt_bench = card.split("## [MT-Bench")[1].split("\n## ")[0]
    assert "Judge: `gpt-4-1106-preview` at https://judge.example/v1." in mt_bench
    assert "alice" not in card and "pw@" not in card
    assert card_figures(card)["model-index | lmsys/mt_bench  | score "] == 7.21  # Iter1's MT-Bench average
