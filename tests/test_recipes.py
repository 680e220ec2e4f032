"""The shipped recipes against the reference scripts (uclaml/SPPO commit 5e61c4e), and what they need to behave as
the reference stack did: no gradient clipping, sampling without top-k, eager attention for Gemma-2.

Expected numbers are read from the reference repository's scripts (file:line beside each); none comes from the
toolkit's own configs.
"""

import dataclasses

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo.config import TrainingConfig, load_config
from sppo.errors import UserError
from sppo.models import load_model, load_tokenizer
from sppo.sequences import encode_examples
from sppo.train import accumulation_steps, deepspeed_config, make_schedule, micro_batch_loss, reference_logps, \
    train_iteration

REFERENCE_GPUS = 8  # recipes/accelerate_configs/deepspeed_zero3.yaml:16 num_processes: 8
UCLA_PROMPTS = "UCLA-AGI/data-mistral-7b-instruct-sppo-iter{iteration}"  # run_sppo_*.sh:10-11 PROMPT=...iter${i}

# recipe -> (model, prompt dataset, per-device batch, accumulation, num_train_epochs, stop_at_epoch)
RECIPES = {
    # scripts/pipeline.sh:15-16 BATCH_SIZE=8 ACCUMULATE=1; the cards' "18 epochs, stop at epoch 1"
    # (../shared/data/reference/Mistral7B-PairRM-SPPO-Iter2.README.md); snorkel's splits (the cards' data)
    "paper": ("mistralai/Mistral-7B-Instruct-v0.2", "snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset", 8, 1, 18, 1),
    # run_sppo_mistral.sh:6 model, :11 prompts, :15 --num 1 and pipeline.sh's defaults 8 x 1
    "paper-repo": ("mistralai/Mistral-7B-Instruct-v0.2", UCLA_PROMPTS, 8, 1, 1, None),
    # run_sppo_gemma-2.sh:5 model, :10 prompts, :14 --num 1 --batch_size 4 --accumulate 2
    "gemma-2": ("google/gemma-2-9b-it", UCLA_PROMPTS, 4, 2, 1, None),
    # run_sppo_gemma-2-27b.sh:5 model, :10 prompts, :18 --num 1 --batch_size 1 --accumulate 8
    "gemma-2-27b": ("google/gemma-2-27b-it", UCLA_PROMPTS, 1, 8, 1, None),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_has_the_reference_geometry_and_no_clipping(name):
    model, dataset, per_device, accumulation, epochs, stop = RECIPES[name]
    cfg = load_config(name)
    t = cfg.training
    assert cfg.model.name == model and cfg.prompts.dataset == dataset
    assert t.per_device_train_batch_size == per_device
    assert accumulation_steps(t, REFERENCE_GPUS) == accumulation
    assert per_device * accumulation * REFERENCE_GPUS == t.global_batch_size == 64
    assert (t.num_train_epochs, t.stop_at_epoch) == (epochs, stop)
    assert t.learning_rate == 5e-7 and t.warmup_ratio == 0.1  # pipeline.sh:6, config_full.yaml:42
    assert (t.optimizer, t.lr_scheduler_type, t.eta) == ("rmsprop", "linear", 1000)  # pipeline.sh:8-10, yaml:30
    assert (t.max_length, t.max_prompt_length) == (1024, 512)  # config_full.yaml:31-32
    assert (cfg.generation.k, cfg.generation.max_new_tokens) == (5, 2048)  # generate.sh:11, :56
    assert (cfg.generation.temperature, cfg.generation.top_p) == (0.7, 0.9)  # generate.py:93-94
    # no clipping: accelerate 0.27.2 (utils/dataclasses.py:707-708) writes no gradient_clipping, DeepSpeed 0.12.2
    # defaults it to 0 (runtime/constants.py:211)
    assert t.max_grad_norm == 0
    schedule = make_schedule(640, t, REFERENCE_GPUS)
    assert deepspeed_config(t, schedule, bf16=True)["gradient_clipping"] == 0.0
    if name.startswith("gemma"):
        assert cfg.model.attn_implementation == "eager" and cfg.model.dtype == "bfloat16"
        assert str(t.bf16).lower() == "true"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_print_config_shows_the_geometry_and_no_clipping(name, capsys):
    from sppo.cli import main

    _, _, per_device, accumulation, _, _ = RECIPES[name]
    assert main(["--config", name, "--print-config"]) == 0
    out = capsys.readouterr().out
    line = f"# 8 processes: {per_device} per device x accumulation {accumulation} x 8 = 64 pairs per step"
    assert line in out.splitlines()
    assert "# gradient clipping: none" in out.splitlines()
    assert "  max_grad_norm: 0.0" in out.splitlines()


def test_attn_implementation_is_checked_and_reaches_the_model(tmp_path):
    with pytest.raises(UserError, match="model.attn_implementation"):
        load_config("embedded", ["model.attn_implementation=softcap"])
    path = make_tiny_checkpoint(tmp_path / "m")
    assert load_model(str(path), dtype="float32", attn_implementation="eager").config._attn_implementation == "eager"


def test_gemma2_soft_capping_needs_eager_attention():
    """Why the Gemma-2 recipes load with eager attention: transformers' SDPA path skips the attention-logit
    soft-capping, so the same weights give other log-probabilities."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, attn_logit_softcapping=0.5,
                          initializer_range=0.5)
    ids = torch.randint(0, 64, (1, 12))
    logits = {}
    for impl in ("eager", "sdpa"):
        config._attn_implementation = impl
        model = Gemma2ForCausalLM(config).eval()
        if impl == "sdpa":
            model.load_state_dict(state)
        state = model.state_dict()
        with torch.no_grad():
            logits[impl] = model(ids).logits
    assert (logits["eager"] - logits["sdpa"]).abs().max() > 1e-3


# uclaml/SPPO README.md:16, 50-60: the published models' Hub names (UCLA-AGI/<family>-IterN)
PUBLISHED_NAMES = {"paper": "Mistral7B-PairRM-SPPO-Iter3", "paper-repo": "Mistral7B-PairRM-SPPO-Iter3",
                   "gemma-2": "Gemma-2-9B-It-SPPO-Iter3",
                   "gemma-2-27b": "Gemma-2-27B-It-SPPO-Iter3"}  # unpublished: the 9B pattern


@pytest.mark.parametrize("name", sorted(PUBLISHED_NAMES))
def test_release_names_each_recipe_as_the_published_cards(name):
    from release.card import ReleaseInfo, default_family, default_license
    from release.run import Iteration
    from release_testutil import manifest as seed_manifest
    from sppo.checkpoint import CheckpointManifest
    from sppo.checkpoint import base_model_id

    cfg = load_config(name)
    manifest = CheckpointManifest.from_dict(
        dict(seed_manifest(3), base_model=base_model_id(cfg.model.name), ranker=cfg.ranking.model), name)
    it = Iteration(manifest)
    assert ReleaseInfo(family=default_family([it])).model_name(it) == PUBLISHED_NAMES[name]
    assert default_license([it]) == ("gemma" if name.startswith("gemma") else "apache-2.0")  # the cards' metadata
    # another ranker or base model is no published family: the generic <base>-<ranker>-SPPO
    other = Iteration(dataclasses.replace(manifest, ranker="local-judge:embedded"))
    assert default_family([other]) == f"{cfg.model.name.split('/')[-1]}-LocalJudge-SPPO"


def test_llama3_runs_are_named_as_the_published_cards():
    from benchmarks.tables import family_name

    # uclaml/SPPO README.md:54-56: UCLA-AGI/Llama-3-Instruct-8B-SPPO-Iter{1,2,3}
    assert family_name("meta-llama/Meta-Llama-3-8B-Instruct", "llm-blender/PairRM") == "Llama-3-Instruct-8B-SPPO"


# ------------------------------------------------------------------------------------------ no clipping

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=3))


def _examples(tiny):
    tok = load_tokenizer(tiny, padding_side="right")
    rows = [{"prompt": p, "chosen": "The quick brown fox jumps.", "rejected": "def add(a, b): return a + b",
             "p_win": 0.8, "p_lose": 0.2} for p in ("Why is the sky blue?", "A poem about the sea.")]
    examples, _ = encode_examples(tok, rows, TrainingConfig(max_length=128, max_prompt_length=64))
    return tok, examples


def _one_step(tiny, max_grad_norm):
    tok, examples = _examples(tiny)
    model = load_model(tiny, dtype="float32")
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=2, progress=False)
    cfg = TrainingConfig(learning_rate=1e-3, eta=10, num_train_epochs=1, stop_at_epoch=None, warmup_ratio=0.0,
                         lr_scheduler_type="constant", per_device_train_batch_size=2, gradient_checkpointing=False,
                         max_grad_norm=max_grad_norm)
    logs = []
    result = train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, on_log=logs.append,
                             progress=False)
    return result.unwrapped(), logs[0]["grad_norm"], (examples, ref, tok.pad_token_id, cfg)


def _unclipped_step(tiny, examples, ref, pad_id, cfg):
    """The same step by hand with plain torch: loss, backward, RMSprop at the learning rate, no clipping."""
    model = load_model(tiny, dtype="float32")
    model.train()
    loss, _ = micro_batch_loss(model, examples, ref, pad_id, cfg, torch.device("cpu"))
    loss.backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    torch.optim.RMSprop(model.parameters(), lr=cfg.learning_rate).step()
    return model, norm


def _share_moved_differently(a, b) -> float:
    """Share of weights where two models differ by more than 1e-6 (an RMSprop step moves each weight by about
    10 x lr = 1e-2 here; a weight whose gradient is near RMSprop's eps may round either way)."""
    diffs = [(x - y).abs().flatten() for x, y in zip(a.parameters(), b.parameters())]
    return (torch.cat(diffs) > 1e-6).float().mean().item()


def test_max_grad_norm_zero_trains_without_clipping(tiny):
    trained, logged_norm, args = _one_step(tiny, max_grad_norm=0)
    manual, norm = _unclipped_step(tiny, *args)
    assert logged_norm == pytest.approx(norm, rel=1e-4)
    assert _share_moved_differently(trained, manual) < 1e-3
    # the same step with a clip far below the gradient norm moves nearly every weight differently
    clipped, _, _ = _one_step(tiny, max_grad_norm=norm * 1e-9)
    assert _share_moved_differently(clipped, manual) > 0.9


# ------------------------------------------------------------------------------------------ no top-k

@pytest.mark.parametrize("own_loop", [True, False], ids=["sppo.decode", "generate"])
@pytest.mark.parametrize("top_k", [0, 50])
def test_hf_sampling_applies_exactly_the_requested_top_k(tmp_path, top_k, own_loop):
    """transformers samples with top_k=50 unless told otherwise, and a model's generation_config.json may set its
    own; vLLM (the reference's sampler) applies none. 64 first tokens sampled from a near-uniform tiny model must
    differ from one another although the checkpoint says top_k=1, and include tokens ranked below the 50 most
    likely exactly when no top-k was asked for (top_k=50: FastChat's MT-Bench sampling)."""
    from transformers import GenerationConfig

    from sppo.generate import HFGenerator, SamplingParams, encode_prompts

    path = make_tiny_checkpoint(tmp_path / "m", seed=5)
    saved = GenerationConfig.from_pretrained(path)
    saved.do_sample, saved.top_k = True, 1  # as a checkpoint may ship it (Llama-3 ships do_sample and top_p)
    saved.save_pretrained(path)
    tok, model = load_tokenizer(str(path)), load_model(str(path), dtype="float32")
    assert model.generation_config.top_k == 1
    seen = []
    gen = HFGenerator(model, tok, batch_size=64)
    gen.own_loop = own_loop  # sppo.decode, or transformers' generate: the same sampling rule either way
    real_new_tokens = gen._new_tokens

    def spy(*args):  # the new tokens the generator decodes, kept
        out = real_new_tokens(*args)
        seen.append(out)
        return out

    gen._new_tokens = spy
    gen.sample(["Name a colour."], SamplingParams(n=64, temperature=0.7, top_p=1.0, top_k=top_k, max_new_tokens=1,
                                                  seed=1), progress=False)
    (prompt_ids,) = encode_prompts(tok, ["Name a colour."], None)
    first = seen[0][:, 0].tolist()
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0, -1]
    rank = {t: r for r, t in enumerate(torch.argsort(logits, descending=True).tolist())}
    assert len(set(first)) > 10
    assert (max(rank[t] for t in first) >= 50) == (top_k == 0)
