"""sppo.attention: a decoding step of a grouped-query model computes what transformers' SDPA attention computes, up
to float rounding (float32 and bf16), on the embedded SmolLM2 (9 query heads, 3 key/value heads) and a tiny Llama:
the same greedy tokens; a prompt's prefill is SDPA's own call, bit for bit; inference models on a CPU use it, training
models do not."""

from __future__ import annotations

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo.attention import GROUPED_DECODING, use_grouped_decoding
from sppo.generate import encode_prompt, left_padded
from sppo.models import load_model, load_tokenizer

PROMPTS = ["Write a haiku about the sea.", "Why is the sky blue? Answer in two sentences, then give an example.",
           "Add 2 and 3.", "Explain what a key/value cache is to someone who has never programmed."]


def steps(model, ids, mask, n: int, fed: list[torch.Tensor] | None = None):
    """The logits of a left-padded batch's prefill and of `n` decoding steps after it, each step fed the greedy token
    of the step before, or the tokens `fed` (another run's); returns (logits, tokens fed)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        logits, cache, tokens = [out.logits], out.past_key_values, []
        for step in range(n):
            tokens.append(fed[step] if fed else logits[-1][:, -1].argmax(-1, keepdim=True))
            mask = torch.cat([mask, torch.ones_like(tokens[-1])], dim=-1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=tokens[-1], attention_mask=mask, position_ids=positions, past_key_values=cache,
                        use_cache=True)
            logits.append(out.logits)
            cache = out.past_key_values
    return logits, tokens


def both(model, ids, mask, n=12):
    """`steps` with transformers' SDPA attention, then with grouped decoding fed the same tokens (the same weights)."""
    model.set_attn_implementation("sdpa")
    plain, tokens = steps(model, ids, mask, n)
    assert use_grouped_decoding(model)
    return plain, steps(model, ids, mask, n, fed=tokens)[0]


def assert_rounding_apart(plain, grouped, rel: float):
    """The prefill bit for bit; every decoding step's logits within `rel` of their scale, and the same greedy token
    unless the two best of SDPA's logits lie within that distance (a tie up to rounding)."""
    assert torch.equal(plain[0], grouped[0])
    for a, b in zip(plain[1:], grouped[1:]):
        a, b = a[:, -1].float(), b[:, -1].float()
        tol = rel * a.abs().max()
        assert (a - b).abs().max() <= tol
        picked = b.argmax(-1)
        assert bool((a.gather(1, picked[:, None])[:, 0] >= a.max(-1).values - 2 * tol).all())


@pytest.fixture(scope="module")
def embedded_batch():
    tok = load_tokenizer("embedded")
    return left_padded([encode_prompt(tok, [{"role": "user", "content": p}]) for p in PROMPTS], tok.pad_token_id)


def test_embedded_fp32(embedded_batch):
    model = load_model("embedded", dtype="float32", inference=True)
    assert model.config.num_attention_heads // model.config.num_key_value_heads == 3
    plain, grouped = both(model, *embedded_batch)
    assert_rounding_apart(plain, grouped, 1e-5)  # float32: 24 significant bits


def test_embedded_bf16(embedded_batch):
    model = load_model("embedded", dtype="bfloat16", inference=True)
    plain, grouped = both(model, *embedded_batch)
    assert_rounding_apart(plain, grouped, 0.05)  # bf16: 8 significant bits, over 30 layers


def test_tiny_llama_and_fallbacks(tmp_path):
    from perf.fixtures import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    model = load_model(str(make_tiny_checkpoint(tmp_path / "m", seed=5, tokenizer=tok)), dtype="float32",
                       inference=True)
    ids, mask = left_padded([encode_prompt(tok, [{"role": "user", "content": p}]) for p in PROMPTS],
                            tok.pad_token_id)
    plain, grouped = both(model, ids, mask, n=6)
    assert_rounding_apart(plain, grouped, 1e-5)


def test_only_inference_models_on_cpu_use_it():
    assert load_model("embedded", dtype="float32", inference=True).config._attn_implementation == GROUPED_DECODING
    training = load_model("embedded", dtype="float32")
    assert training.config._attn_implementation == "sdpa"
    training.set_attn_implementation("eager")
    assert not use_grouped_decoding(training)  # another implementation than SDPA keeps its own
    assert training.config._attn_implementation == "eager"
