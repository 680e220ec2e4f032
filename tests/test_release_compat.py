"""Checkpoints the toolkit writes read the same in transformers 4.42.4 as in the toolkit's transformers 5.

The expected values are the toolkit's own transformers reading the checkpoint as plain `save_pretrained` wrote
it (the model as trained); transformers 4.42.4 runs in its own environment (`scripts/compat_env.sh`, built once,
cached in .venv-compat/) through `scripts/compat_probe.py`, which prints what each version reads: config values,
ids of ~30 strings, decoded text, chat renders, rope frequencies and logits. The same files without the
compatible rewrite read differently there — each rule of the release check is shown to matter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from release.checkpoint_check import compat_problems
from sppo.checkpoint import CheckpointManifest, save_checkpoint
from sppo.export import RULES_FILE

# Two stacks each load every checkpoint (about two minutes on 2 busy cores, plus a few minutes once to build the
# environment), so the whole module is `slow`; .ci/run runs it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "scripts" / "compat_probe.py"
LOGIT_TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def old_python() -> Path:
    """The python of the transformers 4.42.4 environment, built on first use (a few minutes, then cached)."""
    try:
        r = subprocess.run(["bash", str(REPO / "scripts" / "compat_env.sh")], capture_output=True, text=True,
                           timeout=1200, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"transformers 4.42.4 environment cannot be built: {e}")
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"transformers 4.42.4 environment cannot be built (scripts/compat_env.sh: {tail})")
    return REPO / r.stdout.strip().splitlines()[-1]


def probe(python: Path | str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": ""}  # the probe imports only transformers, never the toolkit
    r = subprocess.run([str(python), str(PROBE), *args], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def manifest() -> CheckpointManifest:
    return CheckpointManifest(iteration=1, name="Iter1", base_model="test/tiny", prompt_dataset=None,
                              prompt_source_dataset=None, k=2, ranker="test",
                              hyperparameters={}, versions={"test": "1"})


def tiny_model(tokenizer, source_config: dict, dtype: str = "float32", model_type: str = "llama"):
    """A tiny random Llama (or Mistral) whose computation-relevant values (rope, eps, ids, tied embeddings) come
    from `source_config`, with small sizes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    keep = ("rms_norm_eps", "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings",
            "rope_parameters", "max_position_embeddings", "sliding_window")
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  **{k: source_config[k] for k in keep if k in source_config})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    return model


def llama_style_tokenizer():
    """A tokenizer built the way Mistral-7B-Instruct's loads in transformers 5 (LlamaTokenizer: Metaspace
    pre-tokenizer, byte fallback, BOS added by the post-processor), trained on the small test corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    from perf.fixtures import CHAT_TEMPLATE, TOKENIZER_CORPUS

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(TOKENIZER_CORPUS * 4, trainer=trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                                                     show_progress=False))
    trained = json.loads(tok.to_str())["model"]
    out = LlamaTokenizer(vocab=trained["vocab"], merges=[tuple(m) for m in trained["merges"]], add_bos_token=True)
    out.chat_template = CHAT_TEMPLATE
    return out


def save_both(root: Path, name: str, model, tokenizer) -> tuple[Path, Path]:
    """(plain save_pretrained, the toolkit's checkpoint) of the same model and tokenizer."""
    plain = root / f"{name}-plain"
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    toolkit = save_checkpoint(root / f"{name}-toolkit", model, tokenizer, None, manifest())
    return plain, toolkit


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """smol: the embedded SmolLM2 tokenizer and its config's rope_theta 100000 and eps (what a default run
    writes); tiny: the test tokenizer with an extra special token and a linearly scaled rope, in bfloat16;
    mistral: a Mistral model (rope_theta 1e6, untied) with a tokenizer built like Mistral-7B-Instruct's."""
    from sppo.models import embedded_checkpoint, load_tokenizer
    from perf.fixtures import make_tiny_tokenizer

    root = tmp_path_factory.mktemp("compat")
    embedded = embedded_checkpoint()
    smol_config = json.loads((embedded / "config.json").read_text())
    assert smol_config["rope_parameters"]["rope_theta"] == 100000.0  # the value 4.x misses without the rewrite
    smol_tok = load_tokenizer(str(embedded))
    tiny_tok = make_tiny_tokenizer()
    tiny_tok.add_special_tokens({"additional_special_tokens": ["<extra>"]})
    out = {}
    out["smol-plain"], out["smol"] = save_both(root, "smol", tiny_model(smol_tok, smol_config), smol_tok)
    scaled = {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 50000.0},
              "bos_token_id": tiny_tok.bos_token_id, "eos_token_id": tiny_tok.eos_token_id,
              "pad_token_id": tiny_tok.pad_token_id, "rms_norm_eps": 1e-6}
    out["tiny-plain"], out["tiny"] = save_both(root, "tiny", tiny_model(tiny_tok, scaled, "bfloat16"), tiny_tok)
    mistral_tok = llama_style_tokenizer()
    mistral = {"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "sliding_window": None,
               "bos_token_id": 1, "eos_token_id": 2, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    out["mistral-plain"], out["mistral"] = save_both(root, "mistral", tiny_model(mistral_tok, mistral,
                                                                                 model_type="mistral"), mistral_tok)
    return out


def _mutated(root: Path, source: Path, name: str, file: str, change) -> Path:
    target = root / name
    shutil.copytree(source, target)
    data = json.loads((target / file).read_text())
    change(data)
    (target / file).write_text(json.dumps(data))
    return target


# Each rule of the release check, broken on a compatible checkpoint: the file and field the check must name,
# and what transformers 4.42.4 then reads differently (a path into the probe's output).
MUTATIONS = {
    "no-rope-theta": ("smol", "config.json", lambda d: d.pop("rope_theta"), "'rope_theta'", ("config", "rope_theta")),
    "mistral-no-rope-theta": ("mistral", "config.json", lambda d: d.pop("rope_theta"), "'rope_theta'",
                              ("model", "logits")),
    "no-rope-scaling": ("tiny", "config.json", lambda d: d.pop("rope_scaling"), "'rope_scaling'",
                        ("config", "rope_scaling")),
    "no-torch-dtype": ("tiny", "config.json", lambda d: d.pop("torch_dtype"), "'torch_dtype'",
                       ("config", "torch_dtype")),
    "v5-tokenizer-class": ("tiny", "tokenizer_config.json", lambda d: d.update(tokenizer_class="TokenizersBackend"),
                           "'tokenizer_class'", ("tokenizer",)),
    "template-only-in-jinja": ("tiny", "tokenizer_config.json", lambda d: d.pop("chat_template"), "'chat_template'",
                               ("tokenizer",)),
    "no-clean-up-field": ("tiny", "tokenizer_config.json", lambda d: d.pop("clean_up_tokenization_spaces"),
                          "'clean_up_tokenization_spaces'", ("tokenizer", "decode")),
    "pair-merges": ("tiny", "tokenizer.json", lambda d: d["model"].update(merges=[m.split(" ") for m in
                                                                               d["model"]["merges"]]),
                    "'model.merges'", ("tokenizer",)),
    "no-additional-special": ("tiny", "tokenizer_config.json", lambda d: d.pop("additional_special_tokens"),
                              "'additional_special_tokens'", ("tokenizer", "all_special_ids")),
}


@pytest.fixture(scope="module")
def readings(checkpoints, old_python, tmp_path_factory) -> dict:
    """What each stack reads: {"new" | "old": {checkpoint name: probe output}} (one process per stack)."""
    root = tmp_path_factory.mktemp("mutated")
    paths = dict(checkpoints)
    for name, (source, file, change, _, _) in MUTATIONS.items():
        paths[name] = _mutated(root, checkpoints[source], name, file, change)
    names = {str(p): n for n, p in paths.items()}
    new = probe(sys.executable, "read", *[str(paths[n]) for n in checkpoints], "--weights")
    old = probe(old_python, "read", *map(str, paths.values()), "--weights")
    return {"new": {names[k]: v for k, v in new.items()}, "old": {names[k]: v for k, v in old.items()},
            "paths": paths}


def _same(old: dict, new: dict) -> None:
    """Equal readings, logits within LOGIT_TOLERANCE (two implementations of the same arithmetic)."""
    import numpy as np

    for part in ("config", "generation_config", "tokenizer"):
        assert "error" not in old[part], old[part]
        assert old[part] == new[part], part
    old_model, new_model = dict(old["model"]), dict(new["model"])
    assert "error" not in old_model, old_model
    np.testing.assert_allclose(old_model.pop("logits"), new_model.pop("logits"), atol=LOGIT_TOLERANCE, rtol=0)
    old_freq, new_freq = old_model.pop("inv_freq"), new_model.pop("inv_freq")
    if not new["config"]["rope_scaling"]:  # a scaled rope: 4.42 scales the positions, 5 the frequencies
        np.testing.assert_allclose(old_freq, new_freq, rtol=1e-6)
    assert old_model == new_model


@pytest.mark.parametrize("name", ["smol", "tiny", "mistral"])
def test_transformers_4_42_reads_what_the_toolkit_reads(readings, name):
    truth = readings["new"][f"{name}-plain"]  # the toolkit's transformers on plain save_pretrained files
    if "ModuleNotFoundError" in str(truth["tokenizer"].get("error")):  # e.g. a broken optional mistral-common
        pytest.skip(f"the toolkit's own environment cannot load this tokenizer: {truth['tokenizer']['error']}")
    assert readings["old"][name]["transformers"] == "4.42.4"
    _same(readings["new"][name], truth)  # the rewrite changes nothing the toolkit reads
    _same(readings["old"][name], truth)  # and transformers 4.42.4 reads exactly that
    assert compat_problems(readings["paths"][name]) == []


def test_the_check_covers_the_smol_checkpoint_of_a_default_run(readings):
    """Without the rewrite, 4.42.4 reads another rope and cannot build the tokenizer; the check says why."""
    plain = readings["old"]["smol-plain"]
    assert plain["config"]["rope_theta"] == 10000.0  # silently the default, not the model's 100000
    assert "error" in plain["tokenizer"]
    problems = compat_problems(readings["paths"]["smol-plain"])
    for field in ("'rope_theta'", "'torch_dtype'", "'tokenizer_class'", "'chat_template'",
                  "'clean_up_tokenization_spaces'", "'is_local'", "'local_files_only'"):
        assert any(field in p for p in problems), (field, problems)


def _at(reading: dict, path: tuple[str, ...]):
    for key in path:
        reading = reading[key]
    return reading


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_rule_of_the_check_is_a_difference_in_4_42(readings, name):
    source, file, _, field, where = MUTATIONS[name]
    problems = compat_problems(readings["paths"][name])
    assert problems and problems[0].startswith(f"{file}: field {field}"), problems
    assert _at(readings["old"][name], where) != _at(readings["new"][f"{source}-plain"], where)


def test_the_rules_file_is_what_transformers_4_42_reads(old_python):
    """sppo/transformers_4_42.json, the release check's table, equals what the 4.42.4 config classes take."""
    assert probe(old_python, "rules") == json.loads(RULES_FILE.read_text())


def test_the_embedded_model_saved_as_a_checkpoint_computes_the_same_in_4_42(old_python, tmp_path):
    """The whole SmolLM2-135M-Instruct (what a default run's IterN is made of) written by save_checkpoint:
    transformers 4.42.4 reads the same config, ids and template and computes the same logits as the toolkit
    does on the embedded checkpoint itself. About a minute (two loads of 540 MB in each stack)."""
    import numpy as np

    from sppo.models import embedded_checkpoint, load_model, load_tokenizer

    embedded = embedded_checkpoint()
    saved = save_checkpoint(tmp_path / "Iter1", load_model(str(embedded), device="cpu"),
                            load_tokenizer(str(embedded)), None, manifest())
    truth = probe(sys.executable, "read", str(embedded), "--weights")[str(embedded)]
    old = probe(old_python, "read", str(saved), str(embedded), "--weights")
    _same(old[str(saved)], truth)
    assert old[str(saved)]["config"]["rope_theta"] == 100000.0
    assert compat_problems(saved) == []
    plain = old[str(embedded)]  # the files as transformers 5 alone writes them: another model in 4.42
    assert plain["config"]["rope_theta"] == 10000.0
    assert np.abs(np.array(plain["model"]["logits"]) - np.array(truth["model"]["logits"])).max() > 0.1
