"""Config loading, documentation of every field, and the shipped paper recipe against the seed card."""

import dataclasses
import re

import pytest

from sppo.config import Config, documented_yaml, load_config
from sppo.errors import UserError
from sppo.pipeline import hyperparameters


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
    ("training.lr=1", "unknown config key 'training.lr'"),
    ("generation.max_new_tokens=4096", "does not fit"),
    ("training.optimizer=sgd", "unknown 'sgd'"),
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
    with pytest.raises(UserError, match="'generation.k' must be a number"):
        load_config("embedded", ["generation.k=many"])
    with pytest.raises(UserError, match="'training.gradient_checkpointing' must be true or false"):
        load_config("embedded", ["training.gradient_checkpointing=maybe"])
