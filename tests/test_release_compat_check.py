"""Offline: the files a checkpoint is written with, and the release's compatibility check refusing what an older
or newer transformers would read differently (exit 2, one line naming the file and field).
tests/test_release_compat.py shows in a real transformers 4.42.4 that each of these rules matters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from release_testutil import make_run

from release import cli
from release.checkpoint_check import compat_problems

# Keys that name the machine a checkpoint came from (what transformers 5 writes after a local load).
MACHINE_LOCAL = ("local_files_only", "is_local", "_model_name_or_path", "_name_or_path")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """(a plain transformers 5 checkpoint with rope_theta 100000, the same model and tokenizer loaded the way
    sppo-train loads a policy and saved as its checkpoint)."""
    from sppo.checkpoint import CheckpointManifest, save_checkpoint
    from sppo.models import load_model, load_tokenizer
    from perf.fixtures import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("saved")
    src = make_tiny_checkpoint(root / "src")
    config = json.loads((src / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 100000.0
    (src / "config.json").write_text(json.dumps(config))
    manifest = CheckpointManifest(iteration=1, name="Iter1", base_model="tiny", prompt_dataset=None,
                                  prompt_source_dataset=None, k=2, ranker="test", hyperparameters={})
    out = save_checkpoint(root / "Iter1", load_model(str(src), device="cpu"), load_tokenizer(str(src)), None,
                          manifest)
    return src, out


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_written_config_reads_the_same_in_old_readers(saved):
    config = _json(saved[1] / "config.json")
    assert config["rope_theta"] == 100000.0  # 4.x reads the top-level value (default 10000 without it)
    assert config["rope_parameters"] == {"rope_theta": 100000.0, "rope_type": "default"}  # 5.x's, kept
    assert config["rope_scaling"] is None
    assert config["torch_dtype"] == config["dtype"] == "float32"
    assert "rope_theta" not in _json(saved[0] / "config.json")  # what transformers 5 alone writes


def test_written_tokenizer_names_a_class_old_readers_know(saved):
    tc = _json(saved[1] / "tokenizer_config.json")
    assert tc["tokenizer_class"] == "PreTrainedTokenizerFast"  # 5.x writes TokenizersBackend, unknown to 4.x
    assert tc["chat_template"] == (saved[1] / "chat_template.jinja").read_text()
    assert tc["clean_up_tokenization_spaces"] is False
    merges = _json(saved[1] / "tokenizer.json")["model"]["merges"]
    assert merges and all(isinstance(m, str) and len(m.split(" ")) == 2 for m in merges)


def test_no_machine_local_keys_in_any_written_file(saved, tmp_path):
    from sppo.models import load_tokenizer

    load_tokenizer(str(saved[0])).save_pretrained(tmp_path)  # transformers 5 records the local load
    assert set(MACHINE_LOCAL) & set(_json(tmp_path / "tokenizer_config.json"))
    for f in saved[1].glob("*.json"):
        if f.name != "sppo_manifest.json":
            assert not set(MACHINE_LOCAL) & set(_json(f)), f.name


def test_the_check_passes_what_the_toolkit_writes_and_not_plain_files(saved):
    assert compat_problems(saved[1]) == []
    problems = compat_problems(saved[0])
    assert any(p.startswith("config.json: field 'rope_theta'") for p in problems), problems
    assert any(p.startswith("tokenizer_config.json: field 'tokenizer_class'") for p in problems), problems


def _safetensors(name: str, dtype: str, nbytes: int = 16) -> bytes:
    header = json.dumps({name: {"dtype": dtype, "shape": [nbytes // {"F32": 4, "BF16": 2}.get(dtype, 1)],
                                "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + bytes(nbytes)


def _edit(file: str, change):
    def apply(ckpt: Path) -> None:
        data = _json(ckpt / file)
        change(data)
        (ckpt / file).write_text(json.dumps(data))
    return apply


def _write(file: str, content: bytes):
    return lambda ckpt: (ckpt / file).write_bytes(content)


# what breaks Iter2 -> the start of the line the refusal must print after "Iter2: "
BROKEN = {
    "rope only in rope_parameters": (_edit("config.json", lambda d: d.pop("rope_theta")),
                                     "config.json: field 'rope_theta'"),
    "scaled rope 4.42 ignores": (_edit("config.json", lambda d: d["rope_parameters"].update(rope_type="linear",
                                                                                           factor=2.0)),
                                 "config.json: field 'rope_parameters' has rope_type 'linear'"),
    "head_dim 4.42 ignores": (_edit("config.json", lambda d: d.update(hidden_size=4096, num_attention_heads=32,
                                                                       head_dim=160)),
                              "config.json: field 'head_dim' 160"),
    "model type unknown to 4.42": (_edit("config.json", lambda d: d.update(model_type="gemma3")),
                                   "config.json: field 'model_type' 'gemma3'"),
    "torch_dtype differs": (_edit("config.json", lambda d: d.update(torch_dtype="float16")),
                            "config.json: field 'torch_dtype'"),
    "machine-local key": (_edit("config.json", lambda d: d.update(_name_or_path="/home/me/ckpt")),
                          "config.json: field '_name_or_path' is machine-local"),
    "unknown tokenizer class": (_edit("tokenizer_config.json", lambda d: d.update(tokenizer_class="TokenizersBackend")),
                                "tokenizer_config.json: field 'tokenizer_class'"),
    "template only in .jinja": (_edit("tokenizer_config.json", lambda d: d.pop("chat_template")),
                                "tokenizer_config.json: field 'chat_template' missing (only in chat_template.jinja"),
    "template differs from .jinja": (_write("chat_template.jinja", b"{{ messages }}"),
                                     "tokenizer_config.json: field 'chat_template' differs"),
    "local tokenizer key": (_edit("tokenizer_config.json", lambda d: d.update(local_files_only=True)),
                            "tokenizer_config.json: field 'local_files_only' is machine-local"),
    "clean-up default": (_edit("tokenizer_config.json", lambda d: d.pop("clean_up_tokenization_spaces")),
                         "tokenizer_config.json: field 'clean_up_tokenization_spaces'"),
    "tokenizer eos": (_edit("tokenizer_config.json", lambda d: d.update(eos_token="<s>")),
                      "tokenizer_config.json: field 'eos_token' has id 1"),
    "pair merges": (_edit("tokenizer.json", lambda d: d["model"].update(merges=[["a", "b"]])),
                    "tokenizer.json: field 'model.merges'"),
    "generation eos": (_edit("generation_config.json", lambda d: d.update(eos_token_id=[5])),
                       "generation_config.json: field 'eos_token_id' [5] lacks config.json's"),
    "generation eos missing": (_edit("generation_config.json", lambda d: d.pop("eos_token_id")),
                               "generation_config.json: field 'eos_token_id' missing"),
    "sampling without do_sample": (_edit("generation_config.json", lambda d: d.update(temperature=0.7)),
                                   "generation_config.json: field 'temperature' 0.7 is ignored"),
    "top_p out of range": (_edit("generation_config.json", lambda d: d.update(do_sample=True, top_p=1.5)),
                           "generation_config.json: field 'top_p' 1.5"),
    "adapter file": (_write("adapter_config.json", b"{}"), "adapter_config.json: an adapter file"),
    "peft tensor": (_write("model.safetensors", _safetensors("base_model.model.lm_head.lora_A.weight", "BF16")),
                    "model.safetensors: tensor 'base_model.model.lm_head.lora_A.weight' is a PEFT/LoRA weight"),
    "weights in another dtype": (_write("model.safetensors", _safetensors("w", "F32")),
                                 "model.safetensors: tensor 'w' is float32"),
}


def _run(run: Path, tmp_path: Path, *extra: str) -> int:
    return cli.main(["--run-dir", str(run), "--out", str(tmp_path / "cards"), *extra])


def test_dry_run_reports_the_check_per_checkpoint(tmp_path, capsys):
    run = make_run(tmp_path)
    BROKEN["rope only in rope_parameters"][0](run / "checkpoints" / "Iter2")
    assert _run(run, tmp_path) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compatibility ")]
    assert len(lines) == 3
    assert lines[0].startswith("compatibility Iter1: ok") and lines[2].startswith("compatibility Iter3: ok")
    assert lines[1].startswith("compatibility Iter2: config.json: field 'rope_theta' is None but "
                               "rope_parameters.rope_theta is 1000000.0")


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_push_refuses_a_checkpoint_read_differently(tmp_path, capsys, monkeypatch, what):
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a request would fail otherwise
    run = make_run(tmp_path)
    breaks, expected = BROKEN[what]
    breaks(run / "checkpoints" / "Iter2")
    assert _run(run, tmp_path, "--push", "UCLA-AGI/Mistral7B-PairRM-SPPO") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: refusing to push: Iter2: {expected}"), err


def test_lora_run_names_the_merge(tmp_path):
    run = make_run(tmp_path)
    ckpt = run / "checkpoints" / "Iter1"
    (ckpt / "adapter_model.safetensors").write_bytes(_safetensors("w", "BF16"))
    assert compat_problems(ckpt, lora=True)[0] == ("adapter_model.safetensors: an adapter file; training.lora "
                                                   "merges the adapters; a release uploads merged full weights only")


def test_a_lora_checkpoint_is_released_as_merged_full_weights(saved, tmp_path):
    """training.lora: the pipeline merges the adapters before save_checkpoint, which the check accepts; the
    adapter as PEFT saves it is refused."""
    from sppo.checkpoint import CheckpointManifest, save_checkpoint
    from sppo.config import LoraConfig
    from sppo.models import load_model, load_tokenizer, with_lora

    peft_model = with_lora(load_model(str(saved[0]), device="cpu"), LoraConfig(enabled=True, r=4, alpha=8))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    manifest = CheckpointManifest(iteration=1, name="Iter1", base_model="tiny", prompt_dataset=None,
                                  prompt_source_dataset=None, k=2, ranker="test", hyperparameters={"lora": True})
    merged = save_checkpoint(tmp_path / "Iter1", peft_model.merge_and_unload(), load_tokenizer(str(saved[0])),
                             None, manifest)
    assert compat_problems(merged, lora=True) == []
    assert not list(merged.glob("adapter*"))
    problems = compat_problems(adapter, lora=True)
    assert "adapter_config.json: an adapter file; training.lora merges the adapters; a release uploads merged " \
           "full weights only" in problems, problems
