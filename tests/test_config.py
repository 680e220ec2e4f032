"""Config loading, documentation of every field, and the shipped paper recipe against the seed card."""

import dataclasses
import re

import pytest

from sppo.config import Config, documented_yaml, load_config
from sppo.errors import UserError
from sppo.checkpoint import hyperparameters


def _all_fields(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        yield f"{prefix}{f.name}", f
        if dataclasses.is_dataclass(value):
            yield from _all_fields(value, f"{prefix}{f.name}.")


def test_every_field_is_documented():
    for name, f in _all_fields(Config()):
        assert f.metadata.get("doc"), f"config field {name} has no documentation"
    text = documented_yaml(load_config("embedded"))
    for name, _ in _all_fields(Config()):
        assert re.search(rf"^\s*{name.split('.')[-1]}:", text, re.M), name


def test_overrides_are_parsed_as_yaml():
    cfg = load_config("embedded", ["training.learning_rate=1e-6", "generation.k=3", "prompts.limit=null",
                                   "training.lora.enabled=true"])
    assert cfg.training.learning_rate == 1e-6 and cfg.generation.k == 3
    assert cfg.prompts.limit is None and cfg.training.lora.enabled is True


@pytest.mark.parametrize("override, message", [
    ("training.lr=1", "unknown key 'training.lr'"),
    ("generation.max_new_tokens=4096", "does not fit"),
    ("training.optimizer=sgd", "training.optimizer: unknown value 'sgd'"),
    ("training", "expected key.sub=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config("embedded", [override])


def test_paper_recipe_matches_seed_card(shared_data):
    card = (shared_data / "reference" / "Mistral7B-PairRM-SPPO-Iter2.README.md").read_text()
    section = card.split("### Training hyperparameters")[1].split("## Citation")[0]
    published = dict(re.findall(r"^- (\w+): (.+)$", section, re.M))
    cfg = load_config("paper")
    hp = hyperparameters(cfg, world_size=8)
    assert float(published["learning_rate"]) == hp["learning_rate"]
    assert float(published["eta"]) == hp["eta"]
    assert int(published["per_device_train_batch_size"]) == hp["per_device_train_batch_size"]
    assert int(published["gradient_accumulation_steps"]) == hp["gradient_accumulation_steps"]
    assert int(published["seed"]) == hp["seed"]
    assert published["distributed_type"] == hp["distributed_type"]
    assert int(published["num_devices"]) == hp["num_devices"]
    assert published["optimizer"] == hp["optimizer"]
    assert published["lr_scheduler_type"] == hp["lr_scheduler_type"]
    assert float(published["lr_scheduler_warmup_ratio"]) == hp["lr_scheduler_warmup_ratio"]
    epochs, stop = re.match(r"([\d.]+) \(stop at epoch=([\d.]+)\)", published["num_train_epochs"]).groups()
    assert float(epochs) == hp["num_train_epochs"] and float(stop) == hp["stop_at_epoch"]
    assert cfg.model.name == "mistralai/Mistral-7B-Instruct-v0.2"
    assert cfg.generation.k == 5 and cfg.ranking.kind == "pairrm" and cfg.ranking.model == "llm-blender/PairRM"
    assert cfg.prompts.dataset == "snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset"
    assert cfg.prompts.source_dataset in card  # openbmb/UltraFeedback


def test_numbers_are_coerced_and_checked():
    cfg = load_config("embedded", ["training.learning_rate=1e-6", "training.eta='500'"])
    assert cfg.training.learning_rate == 1e-6 and cfg.training.eta == 500.0
    with pytest.raises(UserError, match="generation.k: must be an integer"):
        load_config("embedded", ["generation.k=many"])
    with pytest.raises(UserError, match="training.gradient_checkpointing: must be true or false"):
        load_config("embedded", ["training.gradient_checkpointing=maybe"])


def test_paper_uses_the_reference_geometry(capsys):
    """uclaml/SPPO 5e61c4e: vLLM max_tokens 2048 (scripts/generate.sh:56), max_length 1024 and max_prompt_length
    512 (recipes/uclaml-sppo/config_full.yaml:31-32), tokenize_row's truncation and tokens, PairRM fed the
    templated prompt (scripts/rank.py:65)."""
    from sppo.cli import main

    assert main(["--config", "paper", "--print-config"]) == 0
    printed = capsys.readouterr().out
    for line in ("max_new_tokens: 2048", "max_length: 1024", "max_prompt_length: 512", "truncation: reference",
                 "special_tokens: reference", "source: template"):
        assert re.search(rf"^\s+{line}$", printed, re.M), line
    embedded = load_config("embedded")
    assert (embedded.training.truncation, embedded.training.special_tokens, embedded.ranking.source) == \
        ("toolkit", "clean", "prompt")


def test_paper_repo_is_the_public_scripts_recipe(monkeypatch):
    import sys
    from types import SimpleNamespace

    from sppo.prompts import load_split

    cfg = load_config("paper-repo", ["prompts.revision=abc123"])
    assert cfg.training.num_train_epochs == 1 and cfg.training.stop_at_epoch is None  # run_sppo_mistral.sh:15
    assert (cfg.generation.max_new_tokens, cfg.training.max_length, cfg.training.max_prompt_length) == \
        (2048, 1024, 512)
    calls = []

    class FakeDataset:
        column_names = ["prompt"]

        def __getitem__(self, key):
            return ["Say hi.", "Say bye."]

    def load_dataset(name, split, revision=None):
        calls.append((name, split, revision))
        return FakeDataset()

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    rows = load_split(cfg.prompts, 2)
    assert calls == [("UCLA-AGI/data-mistral-7b-instruct-sppo-iter2", "train", "abc123")]
    assert [r["prompt"] for r in rows] == ["Say hi.", "Say bye."]


def test_reference_truncation_lifts_the_length_check():
    cfg = load_config("embedded", ["training.truncation=reference", "generation.max_new_tokens=4096"])
    assert cfg.generation.max_new_tokens == 4096
    with pytest.raises(UserError, match="training.truncation toolkit"):
        load_config("embedded", ["generation.max_new_tokens=4096"])


@pytest.mark.parametrize("override, message", [
    ("training.truncation=left", "training.truncation: unknown value 'left'; use toolkit, reference"),
    ("training.special_tokens=none", "training.special_tokens: unknown value 'none'; use clean, reference"),
    ("ranking.source=raw", "ranking.source: unknown value 'raw'; use prompt, template"),
    ("training.loss=kto", "training.loss: unknown value 'kto'; use sppo, sppo_hard, sppo_single, dpo, ipo"),
])
def test_bad_training_data_settings(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config("embedded", [override])


@pytest.mark.parametrize("loss", ["sppo", "sppo_hard", "sppo_single", "dpo", "ipo"])
def test_every_paper_baseline_loss_is_accepted(loss):
    assert load_config("embedded", [f"training.loss={loss}"]).training.loss == loss


# Each value is outside the documented range or choices; the message must name the field.
@pytest.mark.parametrize("override, field", [
    ("training.learning_rate=-1e-6", "training.learning_rate"), ("training.learning_rate=0", "training.learning_rate"),
    ("training.warmup_ratio=-0.1", "training.warmup_ratio"), ("training.warmup_ratio=1", "training.warmup_ratio"),
    ("run.chunk_size=0", "run.chunk_size"), ("generation.max_new_tokens=0", "generation.max_new_tokens"),
    ("generation.batch_size=0", "generation.batch_size"), ("ranking.batch_size=0", "ranking.batch_size"),
    ("training.per_device_train_batch_size=0", "training.per_device_train_batch_size"),
    ("training.gradient_accumulation_steps=0", "training.gradient_accumulation_steps"),
    ("training.eta=0", "training.eta"), ("training.eta=-5", "training.eta"),
    ("training.weight_decay=-0.01", "training.weight_decay"), ("training.logging_steps=0", "training.logging_steps"),
    ("training.num_train_epochs=0", "training.num_train_epochs"), ("training.max_grad_norm=-1", "training.max_grad_norm"),
    ("training.lora.r=0", "training.lora.r"), ("training.lora.dropout=1", "training.lora.dropout"),
    ("model.dtype=int8", "model.dtype"), ("generation.backend=tpu", "generation.backend"),
    ("ranking.kind=gpt4", "ranking.kind"), ("ranking.kind=python:mod", "ranking.kind"),
    ("ranking.kind=python:a-b:C", "ranking.kind"), ("training.loss=dpo2", "training.loss"),
    ("training.optimizer=sgd", "training.optimizer"), ("training.lr_scheduler_type=cosine", "training.lr_scheduler_type"),
    ("training.distributed=fsdp", "training.distributed"), ("training.bf16=maybe", "training.bf16"),
    ("ranking.probabilities=both", "ranking.probabilities"),
    # types
    ("training.learning_rate=.inf", "training.learning_rate"), ("training.learning_rate=.nan", "training.learning_rate"),
    ("run.chunk_size=1.5", "run.chunk_size"), ("generation.k=.inf", "generation.k"),
    ("model.name=5", "model.name"), ("model.dtype=[float32]", "model.dtype"),
    ("prompts.splits=abc", "prompts.splits"), ("prompts.splits=[1, 2, 3]", "prompts.splits"),
    ("training.lora.target_modules=[]", "training.lora.target_modules"),
])
def test_out_of_range_and_wrong_type_values_name_the_field(override, field):
    with pytest.raises(UserError) as e:
        load_config("embedded", [override])
    assert field in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("override", ["ranking.kind=python:my_pkg.rankers:Mine", "ranking.kind=pairrm",
                                      "training.bf16=true", "training.warmup_ratio=0", "training.weight_decay=0",
                                      "model.dtype=bfloat16", "generation.backend=vllm", "generation.max_new_tokens=1"])
def test_values_at_the_edges_of_the_ranges_are_accepted(override):
    load_config("embedded", [override])


def test_config_file_errors(tmp_path):
    cases = {"a string\n": "must be a YAML mapping", "- 1\n- 2\n": "must be a YAML mapping",
             "training: fast\n": "'training' must be a mapping", "run:\n  chunk_size: [1]\n": "run.chunk_size"}
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        with pytest.raises(UserError, match=re.escape(message)):
            load_config(str(path))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("run:\n  output_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not a UTF-8 text file"):
        load_config(str(bad))
    with pytest.raises(UserError, match="expects a YAML file, got a directory"):
        load_config(str(tmp_path))


def _prepared(tmp_path, *overrides):
    from sppo.run_dir import Run

    cfg = load_config("embedded", [f"run.output_dir={tmp_path / 'run'}", *overrides])
    Run(cfg).prepare()
    return (tmp_path / "run" / "config.yaml").read_text()


def test_config_may_change_until_a_stage_finishes(tmp_path):
    """A run whose first stage never finished restarts with a corrected config; after that the change is refused."""
    import yaml

    assert yaml.safe_load(_prepared(tmp_path, "generation.k=3"))["generation"]["k"] == 3
    partial = tmp_path / "run" / "iter1" / "generate" / "chunks" / "8-000000.jsonl"
    partial.parent.mkdir(parents=True)
    partial.write_text('{"id": "p0", "responses": ["a", "b", "c"]}\n')  # computed with k=3
    assert yaml.safe_load(_prepared(tmp_path, "generation.k=4"))["generation"]["k"] == 4
    assert not partial.exists()  # chunks of the old config are not reused
    (tmp_path / "run" / "iter1" / "prompts").mkdir()
    (tmp_path / "run" / "iter1" / "prompts" / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=r"generation.k=4, now 5 and .*iter1/prompts is finished"):
        _prepared(tmp_path, "generation.k=5")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["generation"]["k"] == 4
    _prepared(tmp_path, "generation.k=4", "run.chunk_size=2")  # free fields may still change


def test_llama3_is_the_public_llama3_script(capsys):
    """uclaml/SPPO run_sppo_llama-3.sh (5e61c4e) with scripts/pipeline.sh's defaults and config_full.yaml."""
    from sppo.cli import main

    assert main(["--config", "llama-3", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in printed
    cfg = load_config("llama-3")
    t = cfg.training
    assert cfg.model.name == "meta-llama/Meta-Llama-3-8B-Instruct"  # run_sppo_llama-3.sh:5
    assert cfg.prompts.dataset == "UCLA-AGI/data-mistral-7b-instruct-sppo-iter{iteration}"  # :10
    assert cfg.prompts.splits == ["train"] * 3 and cfg.run.iterations == 3  # :2, generate.py:64
    assert (cfg.generation.k, cfg.generation.temperature, cfg.generation.top_p, cfg.generation.max_new_tokens) == \
        (5, 0.7, 0.9, 2048)  # generate.sh:11, generate.py:93-95
    assert (t.loss, t.eta, t.optimizer, t.learning_rate) == ("sppo", 1000, "rmsprop", 5e-7)  # pipeline.sh:6-10
    assert (t.per_device_train_batch_size, t.global_batch_size) == (8, 64)  # pipeline.sh:15-16, 8 GPUs
    assert (t.num_train_epochs, t.stop_at_epoch, t.lr_scheduler_type, t.warmup_ratio) == (1, None, "linear", 0.1)
    assert (t.max_length, t.max_prompt_length, t.max_grad_norm) == (1024, 512, 0)
    assert (t.truncation, t.special_tokens, cfg.ranking.source, cfg.prompts.rows, cfg.generation.response_text) == \
        ("reference", "reference", "template", "reference", "verbatim")
    assert cfg.model.tokenizer_config == "meta-llama-3-8b-instruct"


# Overrides that are not YAML, or that YAML cannot read safely, or that are wrong for their field: one line naming
# the override (never the config file it was applied to).
@pytest.mark.parametrize("override, words", [
    ("run.seed=[1,", ["override 'run.seed=[1,'", "invalid YAML"]),
    ("run.seed=!!python/object/apply:os.system [echo hi]", ["override 'run.seed=!!python", "invalid YAML"]),
    (b"run.seed=\xff".decode("utf-8", "surrogateescape"), ["override 'run.seed=\\udcff'", "invalid YAML"]),
    ("training.learnig_rate=1e-6", ["override 'training.learnig_rate=1e-6'", "unknown key"]),
    ("run.iterations=2.5", ["override 'run.iterations=2.5'", "must be an integer"]),
    ("run.iterations=0", ["override 'run.iterations=0'", "run.iterations"]),
    ("run.seed=-1", ["override 'run.seed=-1'", "run.seed"]),
    ("training=5", ["override 'training=5'", "mapping"]),
    ("=5", ["override '=5'", "key.sub=value"]),
])
def test_override_errors_name_the_override(override, words):
    with pytest.raises(UserError) as e:
        load_config("embedded", ["generation.k=3", override])
    message = str(e.value)
    assert "\n" not in message and "embedded.yaml" not in message, message
    for w in words:
        assert w in message, message


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("run:\n  iterations: 0\n")
    with pytest.raises(UserError, match=re.escape(f"{bad}: run.iterations: must be >= 1, got 0")):
        load_config(str(bad), ["generation.k=3"])


@pytest.mark.parametrize("content", [b"5", b"run: [", b"\xff\xfe", b"- a\n- b\n"])
def test_corrupt_run_config_names_the_file(tmp_path, content):
    """A damaged <run>/config.yaml (the run's recorded config) is one line naming it, not a traceback."""
    from sppo.run_dir import Run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(content)
    cfg = load_config("embedded", [f"run.output_dir={run}"])
    with pytest.raises(UserError, match=re.escape(str(run / "config.yaml"))):
        Run(cfg).prepare()
    assert (run / "config.yaml").read_bytes() == content


def test_choice_types_match_their_implementations():
    """The losses and learning-check measures the config accepts are the ones sppo.loss and sppo.rankers
    implement."""
    from typing import get_args

    from sppo.config import LearningMeasure, Loss
    from sppo.loss import LOSSES
    from sppo.rankers import MEASURES

    assert get_args(Loss) == LOSSES and get_args(LearningMeasure) == tuple(MEASURES)
