"""sppo.sampling.SamplingWarper keeps exactly the scores transformers' own warpers keep (temperature, top-k,
top-p, in that order), and HFGenerator's samples equal those of `generate` with transformers' warpers, token for
token, for the same seed."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from sppo.sampling import TOP_CANDIDATES, SamplingWarper, top_p


def transformers_warpers(scores, temperature, top_k, top_p_value):
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    return TopPLogitsWarper(top_p_value)(None, scores) if top_p_value < 1.0 else scores


@pytest.mark.parametrize("temperature,top_k,top_p_value", [(0.7, 0, 0.9), (1.0, 0, 0.95), (1.3, 50, 0.5),
                                                           (0.7, 3, 0.99), (0.7, 0, 1.0), (0.7, 0, 0.0)])
@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0])  # flat (nucleus > the candidates: full sort) to peaked
def test_same_scores_as_transformers(temperature, top_k, top_p_value, scale):
    g = torch.Generator().manual_seed(int(scale * 10) + top_k)
    scores = torch.randn(16, 3000, generator=g) * scale
    scores[:4] = scores[:4].bfloat16().float()  # coarse values: many ties
    scores[4, :5] = scores[4].max() + 3  # five tied best tokens
    expected = transformers_warpers(scores.clone(), temperature, top_k, top_p_value)
    assert torch.equal(SamplingWarper(temperature, top_k, top_p_value)(None, scores.clone()), expected)


def test_rows_the_candidates_cannot_decide_are_sorted_in_full():
    """A nucleus longer than the candidates, and a tie at the nucleus boundary, both go to the full sort; the
    result is transformers' either way."""
    flat = torch.zeros(2, 1000)
    flat[1, :TOP_CANDIDATES // 2] = 1.0  # the boundary falls inside a tie
    flat[0] = torch.linspace(0, 0.01, 1000)  # near-uniform: the nucleus has ~900 tokens
    assert torch.equal(top_p(flat.clone(), 0.9), TopPLogitsWarper(0.9)(None, flat.clone()))
    peaked = torch.tensor([[5.0, 4.0, 1.0, 0.5, 0.0]])
    assert torch.isinf(top_p(peaked, 0.7)[0, 1:]).all() and top_p(peaked, 0.7)[0, 0] == 5.0


@pytest.fixture(scope="module")
def real_vocabulary_model(tmp_path_factory):
    """A tiny random Llama over SmolLM2's real 49k-token vocabulary, its (tied) embeddings scaled so that its
    next-token distributions range from one clear favourite to thousands of candidates (at T=0.7, top-p 0.9:
    median nucleus 1 token, 90th percentile ~1400): both the fast path and the full sort are taken."""
    from perf.fixtures import make_tiny_checkpoint
    from sppo.models import load_model, load_tokenizer

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("vocab") / "m", seed=1, hidden_size=32, layers=1,
                                tokenizer=load_tokenizer("embedded"))
    model = load_model(str(path), dtype="float32", inference=True)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(15.0)
    return model, load_tokenizer(str(path))


def test_generator_samples_equal_transformers_sampling(real_vocabulary_model, monkeypatch):
    """HFGenerator (our warper) and `generate` with transformers' own warpers: the same tokens for the same seed,
    over a real 49k-token vocabulary, batched and left-padded; most rows take the fast path."""
    from sppo import sampling
    from sppo.generate import HFGenerator, SamplingParams, encode_prompt, left_padded

    model, tok = real_vocabulary_model
    sorted_rows = []
    full_sort = sampling.top_p_full_sort
    monkeypatch.setattr(sampling, "top_p_full_sort", lambda s, p: sorted_rows.append(len(s)) or full_sort(s, p))
    prompts = ["Name three primary colors.", "Write a haiku about autumn rain in a quiet city.",
               "What is the capital of France?"]
    params = SamplingParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=24, seed=7)
    ours = HFGenerator(model, tok, batch_size=None).sample(prompts, params, progress=False)
    encoded = [encode_prompt(tok, [{"role": "user", "content": p}]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # HFGenerator's length-sorted batch
    ids, mask = left_padded([encoded[i] for i in order], tok.pad_token_id)
    torch.manual_seed(params.seed)
    gen = HFGenerator(model, tok)._generate(ids, mask, params.n, dict(
        do_sample=True, max_new_tokens=24, num_return_sequences=params.n, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, temperature=0.7, top_p=0.9, top_k=0))
    theirs = gen[:, ids.shape[1]:]
    for row, i in enumerate(order):
        expected = [tok.decode(t, skip_special_tokens=True) for t in theirs[row * params.n:(row + 1) * params.n]]
        assert [s.text.strip() for s in ours[i]] == [e.strip() for e in expected]
    steps = 24 * len(prompts) * params.n
    assert 0 < sum(sorted_rows) < steps / 2  # the fast path decided most rows, the full sort the others
    assert len({t.tolist().__str__() for t in theirs}) > 1  # samples, not one repeated string
