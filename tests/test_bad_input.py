"""Bad input to sppo-train and sppo-release (issue 14): each case exits 2 with exactly one line on stderr that
names the file or field, no traceback, and a start that fails its checks writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
from release_testutil import make_run

from release import cli as release_cli
from sppo.cli import main as train_main
from sppo.testing import make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=1)


def _prompts(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"split": "train_iteration_1", **r}) + "\n" for r in rows))
    return path


def _train(tmp_path: Path, tiny: Path, *extra: str, model: Path | None = None, prompts: Path | None = None) -> list[str]:
    """sppo-train argv for a one-iteration run of the tiny model in tmp_path/run (its inputs replaceable)."""
    prompts = prompts or _prompts(tmp_path, [{"prompt": "Explain why the sky is blue."}])
    return [f"run.output_dir={tmp_path / 'run'}", "run.iterations=1", f"model.name={model or tiny}",
            f"prompts.source={prompts}", "generation.backend=hf", "generation.k=2", "generation.max_new_tokens=4",
            "ranking.kind=python:sppo.testing:LengthRanker", "ranking.model=none", "training.max_length=96",
            "training.max_prompt_length=48", *extra]


def _copy_model(tiny: Path, tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    d = tmp_path / "model"
    shutil.copytree(tiny, d)
    edit(d)
    return d


def _truncate(d: Path) -> None:
    """Cut the last bytes of the weights, as an interrupted download or copy does."""
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


def _garble(d: Path) -> None:
    f = d / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    f.write_bytes(bytes(data))


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _manifest_edit(run: Path, n: int, **changes) -> None:
    path = run / "checkpoints" / f"Iter{n}" / "sppo_manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


# name -> builder(tmp_path, tiny) -> (main, argv, text the error line must contain). Train cases write nothing.
TRAIN_CASES: dict[str, Callable] = {
    "config is a directory": lambda t, m: (["--config", str(t)], f"{t}: --config expects a YAML file"),
    "config is a string": lambda t, m: (["--config", str(_write(t / "c.yaml", "just words\n"))],
                                        "c.yaml: a config must be a YAML mapping"),
    "section is a string": lambda t, m: (["--config", str(_write(t / "c.yaml", "training: fast\n"))],
                                         "c.yaml: 'training' must be a mapping"),
    "config not UTF-8": lambda t, m: (["--config", str(_write(t / "c.yaml", b"run:\n  seed: \xe9\n"))],
                                      "c.yaml: not a UTF-8 text file"),
    "negative learning rate": lambda t, m: (_train(t, m, "training.learning_rate=-1e-6"), "training.learning_rate"),
    "warmup 1": lambda t, m: (_train(t, m, "training.warmup_ratio=1.0"), "training.warmup_ratio"),
    "chunk size 0": lambda t, m: (_train(t, m, "run.chunk_size=0"), "run.chunk_size"),
    "max_new_tokens 0": lambda t, m: (_train(t, m, "generation.max_new_tokens=0"), "generation.max_new_tokens"),
    "unknown dtype": lambda t, m: (_train(t, m, "model.dtype=int4"), "model.dtype"),
    "unknown backend": lambda t, m: (_train(t, m, "generation.backend=jax"), "generation.backend"),
    "unknown ranker": lambda t, m: (_train(t, m, "ranking.kind=gpt4"), "ranking.kind"),
    "truncated safetensors": lambda t, m: (_train(t, m, model=_copy_model(m, t, _truncate)),
                                           "model.safetensors: corrupt or truncated"),
    "corrupt safetensors": lambda t, m: (_train(t, m, model=_copy_model(m, t, _garble)),
                                         "model.safetensors: corrupt or truncated"),
    "no tokenizer.json": lambda t, m: (_train(t, m, model=_copy_model(m, t, lambda d: (d / "tokenizer.json").unlink())),
                                       "checkpoint has no tokenizer"),
    "run dir is a file": lambda t, m: (_train(t, m) if _write(t / "run", "x") else None,
                                       "run.output_dir is a file"),
}
# Cases that fail at their first stage: the run's config.yaml may exist, nothing else.
LATE_TRAIN_CASES: dict[str, Callable] = {
    "prompt is a number": lambda t, m: (_train(t, m, prompts=_prompts(t, [{"prompt": "ok"}, {"prompt": 42}])),
                                        "prompts.jsonl: line 2: field 'prompt' must be a string, got 42"),
    "prompt is null": lambda t, m: (_train(t, m, prompts=_prompts(t, [{"prompt": None}])),
                                    "prompts.jsonl: line 1: field 'prompt' must be a string, got None"),
}


def _release_case(edit: Callable[[Path, Path], list[str]]) -> Callable:
    def build(t: Path, m: Path):
        run = make_run(t)
        return edit(t, run)
    return build


RELEASE_CASES: dict[str, Callable] = {
    "manifest name escapes": _release_case(lambda t, r: (
        _manifest_edit(r, 2, name="x/../.."), ["--run-dir", str(r)])[1]),
    "manifest name ..": _release_case(lambda t, r: (_manifest_edit(r, 1, name=".."), ["--run-dir", str(r)])[1]),
    "manifest k is a string": _release_case(lambda t, r: (_manifest_edit(r, 1, k="five"), ["--run-dir", str(r)])[1]),
    "manifest not UTF-8": _release_case(lambda t, r: (
        _write(r / "checkpoints" / "Iter1" / "sppo_manifest.json", b'{"name": "\xe9"}'), ["--run-dir", str(r)])[1]),
    "run dir is a file": _release_case(lambda t, r: ["--run-dir", str(_write(t / "file", "x"))]),
    "results dir is a file": _release_case(lambda t, r: ["--run-dir", str(r), "--results-dir",
                                                         str(_write(t / "results.json", "{}"))]),
    "out is a file": _release_case(lambda t, r: ["--run-dir", str(r), "--out", str(_write(t / "out", "x"))]),
    "template is a directory": _release_case(lambda t, r: ["--run-dir", str(r), "--template", str(t)]),
    "template not UTF-8": _release_case(lambda t, r: ["--run-dir", str(r), "--template",
                                                      str(_write(t / "card.j2", b"---\n\xff\n"))]),
    "push truncated safetensors": _release_case(lambda t, r: (
        _truncate(r / "checkpoints" / "Iter2"), ["--run-dir", str(r), "--push", "org/fam", "--require", "lm_eval"])[1]),
    "push checkpoint without tokenizer.json": _release_case(lambda t, r: (
        (r / "checkpoints" / "Iter1" / "tokenizer.json").unlink(),
        ["--run-dir", str(r), "--push", "org/fam", "--require", "lm_eval"])[1]),
}
RELEASE_MESSAGES = {
    "manifest name escapes": "Iter2/sppo_manifest.json: field 'name': 'x/../..' is not a valid name",
    "manifest name ..": "Iter1/sppo_manifest.json: field 'name': '..' is not a valid name",
    "manifest k is a string": "Iter1/sppo_manifest.json: field 'k' must be an integer",
    "manifest not UTF-8": "Iter1/sppo_manifest.json: not a UTF-8 text file",
    "run dir is a file": "--run-dir: ",
    "results dir is a file": "--results-dir: ",
    "out is a file": "--out:",
    "template is a directory": "template not found (it is a directory)",
    "template not UTF-8": "card.j2: template is not a UTF-8 text file",
    "push truncated safetensors": "refusing to push: Iter2: ",
    "push checkpoint without tokenizer.json": "refusing to push: Iter1: ",
}
RELEASE_DETAILS = {  # the rest of the line: the file and what is wrong with it
    "run dir is a file": "file is a file, expected a directory",
    "results dir is a file": "results.json is a file, expected a directory",
    "push truncated safetensors": "Iter2/model.safetensors: corrupt or truncated safetensors file",
    "push checkpoint without tokenizer.json": "Iter1: checkpoint has no tokenizer",
}


def _one_error_line(capsys, message: str, detail: str = "") -> None:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and message in lines[0] and detail in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_sppo_train_bad_input(case, tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory either (runs/latest, ...)
    argv, message = TRAIN_CASES[case](tmp_path, tiny)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert train_main(argv) == 2
    _one_error_line(capsys, message)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # wrote nothing


@pytest.mark.parametrize("case", sorted(LATE_TRAIN_CASES))
def test_sppo_train_bad_prompts(case, tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, message = LATE_TRAIN_CASES[case](tmp_path, tiny)
    assert train_main(argv) == 2
    _one_error_line(capsys, message)
    assert not list((tmp_path / "run").glob("iter*/*/manifest.json"))


@pytest.mark.parametrize("case", sorted(RELEASE_CASES))
def test_sppo_release_bad_input(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sentinel = _write(tmp_path / "README.md", "the user's own README\n")
    argv = RELEASE_CASES[case](tmp_path, None)
    assert release_cli.main(argv) == 2
    _one_error_line(capsys, RELEASE_MESSAGES[case], RELEASE_DETAILS.get(case, ""))
    assert sentinel.read_text() == "the user's own README\n"
    if "--push" not in argv:
        assert not (tmp_path / "run" / "cards").exists()  # no card is written when one of them is refused
        assert not (tmp_path / "model_cards").exists()
