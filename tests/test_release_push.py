"""`sppo-release --push` against a fake Hub on 127.0.0.1 (see fake_hub.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import huggingface_hub.constants as hf_constants
import huggingface_hub.utils as hf_utils
import huggingface_hub.utils._http as hf_http
import pytest
from fake_hub import FakeHub, Repo
from release_testutil import add_datasets, make_run, safetensors_bytes

from release import cli

# huggingface_hub 2.4's LFS upload passes a file object as `data=`; httpx2 warns about it (not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

TOKEN = "hf_" + "sppoTestTokenDoNotLeak" + "0123456789"  # a fake token, built so no scanner mistakes it
FAMILY = "UCLA-AGI/Mistral7B-PairRM-SPPO"
REPOS = [f"{FAMILY}-Iter{n}" for n in (1, 2, 3)]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running fake Hub that huggingface_hub talks to, online, without Xet, with HF_TOKEN set."""
    with FakeHub(TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        # huggingface_hub reads these at import time: patch the constants it consults at call time.
        monkeypatch.setattr(hf_constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            fake.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
        hf_utils.disable_progress_bars()  # upload bars would share stderr with the one-line errors
        try:
            yield fake
        finally:
            hf_utils.enable_progress_bars()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


class _NoSleep:
    """The `time` module without waiting."""

    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(time, name)


def push(run: Path, tmp_path: Path, *extra: str) -> int:
    return cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards"), "--push", FAMILY, *extra])


def assert_no_token_leak(hub: FakeHub, tmp_path: Path, logs, capsys) -> None:
    """The token is only ever in the Authorization header: not in any URL, other header or body, log line,
    console output or file written."""
    assert hub.requests
    for r in hub.requests:
        assert TOKEN not in r.path
        assert TOKEN.encode() not in r.body
        assert all(TOKEN not in v for k, v in r.headers.items() if k != "authorization"), r.path
    assert {r.headers["authorization"] for r in hub.requests if "authorization" in r.headers} == {f"Bearer {TOKEN}"}
    assert TOKEN not in logs.text
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


def test_push_creates_repos_one_commit_each_tag_and_collection(hub, tmp_path, logs, capsys):
    run = make_run(tmp_path, all_suites=True)
    assert push(run, tmp_path, "--tag", "v1.0", "--collection", "UCLA-AGI/sppo-6650c7b2d1b6a0d3e3f3a3b1") == 0
    assert sorted(hub.repos) == REPOS
    for n, repo_id in enumerate(REPOS, 1):
        repo, ckpt = hub.repos[repo_id], run / "checkpoints" / f"Iter{n}"
        assert len(repo.commits) == 1  # weights and card in ONE commit
        commit = repo.commits[0]
        assert sorted(commit["files"]) == ["README.md", "chat_template.jinja", "config.json", "generation_config.json",
                                           "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        assert commit["files"]["model.safetensors"] == (ckpt / "model.safetensors").read_bytes()  # via LFS
        assert commit["files"]["config.json"] == (ckpt / "config.json").read_bytes()
        card = (tmp_path / "cards" / repo_id.split("/")[1] / "README.md").read_bytes()
        assert commit["files"]["README.md"] == card
        assert repo.tags == {"v1.0": commit["oid"]}
    assert hub.collections == {"UCLA-AGI/sppo-6650c7b2d1b6a0d3e3f3a3b1": REPOS}
    paths = [r.path for r in hub.requests]
    assert sum(p.startswith("/api/repos/create") for p in paths) == 3
    assert sum("/commit/main" in p for p in paths) == 3
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths)
    assert_no_token_leak(hub, tmp_path, logs, capsys)


def test_push_refuses_missing_or_stale_results_before_any_request(hub, tmp_path, capsys):
    run = make_run(tmp_path)  # Arena-Hard only for Iter3
    assert push(run, tmp_path) == 2
    err = capsys.readouterr().err
    assert err == "error: refusing to push: Iter1: arena_hard results missing (and 1 more problem(s))\n"
    assert hub.requests == []

    run2 = make_run(tmp_path / "b", all_suites=True)
    (run2 / "checkpoints" / "Iter2" / "model.safetensors").write_bytes(safetensors_bytes(7, 80))
    assert push(run2, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to push: Iter2: alpaca_eval") and "results are stale" in err
    assert hub.requests == []

    # results that record no checkpoint cannot be trusted either
    run3 = make_run(tmp_path / "c", all_suites=True)
    p = run3 / "results" / "Iter3" / "mt_bench.json"
    d = json.loads(p.read_text())
    d["checkpoint"] = {}
    p.write_text(json.dumps(d))
    assert cli.main(["--run-dir", str(run3), "--out", str(tmp_path / "c"), "--push", FAMILY, "--iteration", "3"]) == 2
    assert capsys.readouterr().err == ("error: refusing to push: Iter3: mt_bench results record no checkpoint "
                                       "fingerprint\n")
    assert hub.requests == []


def test_push_refuses_to_overwrite_other_numbers_unless_forced(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    assert push(run, tmp_path) == 0
    assert push(run, tmp_path) == 0  # same numbers: a rerun is fine
    before = hub.snapshot()

    p = run / "results" / "Iter2" / "mt_bench.json"
    d = json.loads(p.read_text())
    d["metrics"]["turn_1"] = 8.5
    p.write_text(json.dumps(d))
    capsys.readouterr()
    assert push(run, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: UCLA-AGI/Mistral7B-PairRM-SPPO-Iter1: the model card on the Hub shows other numbers")
    assert "MT-Bench Evaluation Results | Mistral7B-PairRM-SPPO Iter 2 | 1st Turn: 7.90 -> 8.50" in err
    assert "pass --force" in err and err.count("\n") == 1
    assert hub.snapshot() == before  # nothing changed remotely

    assert push(run, tmp_path, "--force") == 0
    readme = hub.repos[REPOS[1]].files["README.md"].decode()
    assert "| Mistral7B-PairRM-SPPO Iter 2 | 8.50 | 7.08 | 7.49 |" in readme


def test_same_numbers_as_the_hand_written_card_may_replace_it(hub, tmp_path, shared_data, capsys):
    """The published Iter2 card (no model-index, other layout) holds the same figures: replacing it is fine;
    a card that differs in one cell is not."""
    seed = (shared_data / "reference" / "Mistral7B-PairRM-SPPO-Iter2.README.md").read_bytes()
    run = make_run(tmp_path, all_suites=True)
    hub.repos[REPOS[1]] = Repo(files={"README.md": seed.replace(b"| 7.90 | 7.08 |", b"| 7.91 | 7.08 |")},
                               commits=[{"oid": "1" * 40, "summary": "by hand", "description": "", "files": {}}])
    args = ["--run-dir", str(run), "--out", str(tmp_path / "c"), "--push", FAMILY, "--iteration", "2"]
    assert cli.main(args) == 2
    assert "1st Turn: 7.91 -> 7.90" in capsys.readouterr().err
    hub.repos[REPOS[1]].files["README.md"] = seed
    assert cli.main(args) == 0
    assert len(hub.repos[REPOS[1]].commits) == 2


def test_failed_commit_leaves_remote_unchanged_and_rerun_succeeds(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    hub.fail["commit"] = 1
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--push", FAMILY, "--iteration", "2",
                     "--tag", "v1.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: committing to {REPOS[1]} failed: ") and "500" in err and err.count("\n") == 1
    assert hub.repos[REPOS[1]].commits == [] and hub.repos[REPOS[1]].files == {} and hub.repos[REPOS[1]].tags == {}
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--push", FAMILY, "--iteration", "2",
                     "--tag", "v1.0"]) == 0
    repo = hub.repos[REPOS[1]]
    assert len(repo.commits) == 1 and "README.md" in repo.files and repo.tags == {"v1.0": repo.head}


def test_existing_tag_is_never_moved(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    assert push(run, tmp_path, "--tag", "v1.0") == 0
    assert push(run, tmp_path, "--tag", "v1.0") == 0  # a rerun: already published, nothing committed
    assert all(len(hub.repos[r].commits) == 1 for r in REPOS)
    before = hub.snapshot()

    p = run / "results" / "Iter1" / "lm_eval.json"  # new numbers under the same tag
    d = json.loads(p.read_text())
    d["metrics"]["gsm8k"] = 50.0
    p.write_text(json.dumps(d))
    capsys.readouterr()
    assert push(run, tmp_path, "--tag", "v1.0", "--force") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {REPOS[0]}: tag 'v1.0' already exists on another commit") and err.count("\n") == 1
    assert hub.snapshot() == before
    assert push(run, tmp_path, "--tag", "v1.1", "--force") == 0
    assert all(hub.repos[r].tags["v1.1"] == hub.repos[r].head != hub.repos[r].tags["v1.0"] for r in REPOS)


def test_rerun_after_a_failure_midway_finishes_the_release(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    collection = "UCLA-AGI/sppo-6650c7b2d1b6a0d3e3f3a3b1"
    hub.fail_commits_to.add(REPOS[1])
    assert push(run, tmp_path, "--tag", "v1.0", "--collection", collection) == 2
    assert capsys.readouterr().err.startswith(f"error: committing to {REPOS[1]} failed")
    assert len(hub.repos[REPOS[0]].commits) == 1 and hub.repos[REPOS[1]].commits == []
    assert REPOS[2] not in hub.repos
    hub.fail_commits_to.clear()
    assert push(run, tmp_path, "--tag", "v1.0", "--collection", collection) == 0
    assert all(len(hub.repos[r].commits) == 1 and hub.repos[r].tags == {"v1.0": hub.repos[r].head} for r in REPOS)
    assert hub.collections == {collection: REPOS}


@pytest.mark.parametrize("name", ["Mistral7B-PairRM-SPPO", "a/b/c", "org/bad..name", "org/-x", "/name"])
def test_bad_repo_id_is_a_one_line_error(hub, tmp_path, capsys, name):
    run = make_run(tmp_path, all_suites=True)
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--push", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid repository name") and err.count("\n") == 1
    assert hub.requests == []


def test_missing_token(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    run = make_run(tmp_path, all_suites=True)
    assert push(run, tmp_path) == 2
    assert capsys.readouterr().err == "error: no Hugging Face token: set HF_TOKEN or run `hf auth login`\n"
    assert hub.requests == []


def test_rejected_token_is_a_one_line_error_without_the_token(hub, tmp_path, monkeypatch, logs, capsys):
    hub.token = "hf_theOtherToken"
    run = make_run(tmp_path, all_suites=True)
    assert push(run, tmp_path) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "401" in err
    assert TOKEN not in err + out + logs.text
    assert hub.repos == {}


def test_network_error_is_a_one_line_error(hub, tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", dead)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_http, "time", _NoSleep())  # huggingface_hub retries with backoff: skip the waits
    run = make_run(tmp_path, all_suites=True)
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--push", FAMILY, "--iteration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: reading the model card of {REPOS[0]} failed") and err.count("\n") == 1
    assert TOKEN not in err


DATA_REPOS = [f"datasets/{r}-data" for r in REPOS]
SPLIT = "data/{}-00000-of-00001.parquet"


def _parquet_rows(data: bytes) -> list[dict]:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def test_push_datasets_publishes_each_iterations_scored_data(hub, tmp_path, logs, capsys):
    run = make_run(tmp_path, all_suites=True)
    written = add_datasets(run, {1: 520, 2: 7, 3: 12})
    assert push(run, tmp_path, "--datasets") == 0
    assert sorted(hub.repos) == REPOS + DATA_REPOS
    for n, rows in written.items():
        repo = hub.repos[f"datasets/{FAMILY}-Iter{n}-data"]
        assert len(repo.commits) == 1  # both splits and the card in one commit
        files = repo.commits[0]["files"]
        assert sorted(files) == ["README.md", SPLIT.format("test"), SPLIT.format("train")]
        assert _parquet_rows(files[SPLIT.format("train")]) == rows  # every row of sppo.jsonl, as written
        test = _parquet_rows(files[SPLIT.format("test")])
        # the reference's test split: 500 rows sampled from train (scripts/compute_prob.py:118), all when fewer
        assert len(test) == min(500, len(rows)) and len({r["id"] for r in test}) == len(test)
        assert all(r in rows for r in test)
        # a dataset loader reads both splits through the card's `configs`
        local = tmp_path / f"pulled{n}"
        for name, data in files.items():
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(data)
        import datasets

        loaded = datasets.load_dataset(str(local))
        assert loaded["train"].num_rows == len(rows) and loaded["test"].num_rows == len(test)
        card = hub.repos[f"{FAMILY}-Iter{n}"].files["README.md"].decode()
        url = f"https://huggingface.co/datasets/{FAMILY}-Iter{n}-data"
        assert f"]({url})" in card and f"{FAMILY}-Iter{n}-data" in card.split("---")[1]  # linked, in metadata
    commits = [r.path for r in hub.requests if "/commit/main" in r.path]
    assert all("/api/datasets/" in p for p in commits[:3]) and all("/api/models/" in p for p in commits[3:])
    out = capsys.readouterr().out
    assert f"published {FAMILY}-Iter1-data at " in out
    assert push(run, tmp_path, "--datasets") == 0  # a rerun commits nothing new
    assert all(len(hub.repos[r].commits) == 1 for r in DATA_REPOS)
    assert f"{FAMILY}-Iter1-data: already published, unchanged" in capsys.readouterr().out
    assert_no_token_leak(hub, tmp_path, logs, capsys)


def test_datasets_dry_run_lists_without_pushing_and_missing_data_is_refused(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    add_datasets(run, {1: 5, 2: 5})
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards"), "--name", FAMILY, "--datasets",
                     "--iteration", "1", "--iteration", "2"]) == 0
    out = capsys.readouterr().out
    assert f"Iter1 data -> {FAMILY}-Iter1-data  (dataset: 5 train rows, 5 test rows)" in out
    assert SPLIT.format("train") in out and "dry run: nothing uploaded" in out
    assert hub.requests == []
    card = (tmp_path / "cards" / f"{FAMILY.split('/')[1]}-Iter1" / "README.md").read_text()
    assert f"(https://huggingface.co/datasets/{FAMILY}-Iter1-data)" in card
    assert push(run, tmp_path, "--datasets") == 2  # Iter3 never finished its dataset stage
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "iter3/dataset/sppo.jsonl: no finished dataset of Iter3" in err
    assert hub.requests == []


def test_dataset_repo_name_is_checked_before_anything(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    add_datasets(run, {1: 2, 2: 2, 3: 2})
    name = "UCLA-AGI/" + "n" * 87  # NAME-Iter3 fits the Hub's 96 characters, NAME-Iter3-data does not
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards"), "--push", name, "--datasets"]) == 2
    assert capsys.readouterr().err.startswith("error: invalid repository name")
    assert hub.requests == [] and not (tmp_path / "cards").exists()


def test_hub_server_error_is_not_called_a_network_error(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hf_http, "time", _NoSleep())
    hub.fail["resolve"] = 100  # every download answers 500
    run = make_run(tmp_path, all_suites=True)
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "c"), "--push", FAMILY, "--iteration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: reading the model card of {REPOS[0]} failed: the Hub answered HTTP 500")
    assert "network error" not in err and err.count("\n") == 1 and TOKEN not in err
    assert hub.repos == {}


def test_push_refuses_a_subsets_figures_unless_told_and_the_card_states_the_count(hub, tmp_path, capsys):
    run = make_run(tmp_path, all_suites=True)
    p = run / "results" / "Iter2" / "alpaca_eval.json"
    d = json.loads(p.read_text())
    d["settings"] = {"limit": 3, "n_instructions": 3}  # sppo-bench --limit 3
    p.write_text(json.dumps(d))
    assert push(run, tmp_path) == 2
    assert capsys.readouterr().err == (
        "error: refusing to push: Iter2: alpaca_eval figures come from 3 of its 805 instructions (sppo-bench --limit "
        "3); pass --allow-subset-results to publish them, marked as such\n")
    assert hub.requests == []
    assert push(run, tmp_path, "--allow-subset-results") == 0
    for repo_id in REPOS:  # every card shows Iter2's row, and says where it comes from
        card = hub.repos[repo_id].commits[0]["files"]["README.md"].decode()
        assert ("| Mistral7B-PairRM-SPPO Iter 2 | 26.89 (n = 3 of 805) | 27.62 (n = 3 of 805) | 2019 (n = 3 of 805) |"
                in card)
        assert "measured on the first n of the benchmark's 805 instructions" in card
    iter2 = hub.repos[REPOS[1]].commits[0]["files"]["README.md"].decode()
    assert "name: Win Rate (n = 3 of 805)" in iter2 and "name: LC Win Rate (n = 3 of 805)" in iter2
    assert "name: Win Rate\n" in hub.repos[REPOS[0]].commits[0]["files"]["README.md"].decode()
