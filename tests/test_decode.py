"""sppo.decode gives the tokens of transformers' `generate` (greedy and sampled, the same seed), while it drops
rows that have ended from the batch; groups of rows drawing from their own generators sample as each group would
alone; models with generation settings it does not apply go to `generate`."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from perf.fixtures import make_tiny_checkpoint
from sppo import decode
from sppo.generate import HFGenerator, SamplingParams, encode_prompt, left_padded
from sppo.models import load_model
from sppo.sampling import SamplingWarper
from sppo_doubles import make_word_tokenizer

WORDS = "why is the sky blue write a poem about sea how can i help you add numbers thank explain".split()
PROMPTS = ["why is the sky blue", "write a poem", "how can i help you thank you", "add the numbers",
           "explain the sea"]


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    """A random tiny Llama over a whole-word vocabulary whose EOS is likely: rows end at very different steps."""
    tok = make_word_tokenizer(WORDS)
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("decode") / "m", seed=3, tokenizer=tok)
    return load_model(str(path), dtype="float32", inference=True), tok


def batch(tok):
    return left_padded([encode_prompt(tok, [{"role": "user", "content": p}]) for p in PROMPTS], tok.pad_token_id)


def ends(tokens, tok) -> list[int | None]:
    """The step at which each row produced EOS (None: it ran to the end)."""
    return [int((r == tok.eos_token_id).nonzero()[0]) if (r == tok.eos_token_id).any() else None for r in tokens]


def transformers_tokens(model, tok, ids, mask, n, max_new, sample, seed=0):
    torch.manual_seed(seed)
    kwargs = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                  logits_processor=LogitsProcessorList([SamplingWarper(0.9, 0, 0.95)])) if sample else \
        dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, num_return_sequences=n,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kwargs)
    return gen[:, ids.shape[1]:]


def our_tokens(model, tok, ids, mask, n, max_new, sample, seed=0, min_new=0):
    groups = [decode.Group(0, len(ids) * n, torch.Generator().manual_seed(seed))]
    return decode.decode(model, ids, mask, n, decode.DecodeSettings(
        max_new, (tok.eos_token_id,), tok.pad_token_id, SamplingWarper(0.9, 0, 0.95) if sample else None,
        min_new_tokens=min_new, groups=groups))


@pytest.mark.parametrize("n,sample", [(1, False), (1, True), (4, True)])
def test_same_tokens_as_generate(model_and_tokenizer, monkeypatch, n, sample):
    model, tok = model_and_tokenizer
    ids, mask = batch(tok)
    dropped = []
    keep = decode._Batch.keep
    monkeypatch.setattr(decode._Batch, "keep", lambda self, k: dropped.append(int((~k).sum())) or keep(self, k))
    ours = our_tokens(model, tok, ids, mask, n, 40, sample)
    theirs = transformers_tokens(model, tok, ids, mask, n, 40, sample)
    assert torch.equal(ours, theirs)
    if sample:  # (greedy, this random model never ends: see test_greedy_rows_that_end_leave_the_batch)
        assert len(set(ends(ours, tok))) > 1  # rows end at different steps ...
        assert sum(dropped) > 0  # ... and the ended ones left the batch


def test_greedy_rows_that_end_leave_the_batch(model_and_tokenizer, monkeypatch):
    """Greedy, with the EOS logit raised by the median gap to the best token at the prompt's end (a hook on the
    head, seen by both loops): rows end at different steps; the tokens are generate's."""
    model, tok = model_and_tokenizer
    ids, mask = batch(tok)
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=mask).logits[:, -1, :]
    bias = float((last.max(-1).values - last[:, tok.eos_token_id]).median()) + 1e-3

    def raise_eos(module, args, output):
        output[..., tok.eos_token_id] += bias
        return output

    handle = model.get_output_embeddings().register_forward_hook(raise_eos)
    dropped = []
    keep = decode._Batch.keep
    monkeypatch.setattr(decode._Batch, "keep", lambda self, k: dropped.append(int((~k).sum())) or keep(self, k))
    try:
        ours = our_tokens(model, tok, ids, mask, 1, 30, False)
        theirs = transformers_tokens(model, tok, ids, mask, 1, 30, False)
    finally:
        handle.remove()
    assert torch.equal(ours, theirs)
    assert len(set(ends(ours, tok))) > 1 and sum(dropped) > 0


def test_groups_draw_as_they_would_alone(model_and_tokenizer):
    """Two groups of rows in one batch, each with its own generator: each group's tokens are those of the group
    decoded alone with that seed."""
    model, tok = model_and_tokenizer
    ids, mask = batch(tok)
    first, second = slice(0, 2), slice(2, 5)
    n, s = 3, lambda groups: decode.DecodeSettings(40, (tok.eos_token_id,), tok.pad_token_id,
                                                   SamplingWarper(0.9, 0, 0.95), groups=groups)
    together = decode.decode(model, ids, mask, n, s([decode.Group(0, 2 * n, torch.Generator().manual_seed(5)),
                                                     decode.Group(2 * n, 5 * n, torch.Generator().manual_seed(9))]))
    alone = [decode.decode(model, ids[part], mask[part], n, s([decode.Group(0, len(ids[part]) * n,
                                                                            torch.Generator().manual_seed(seed))]))
             for part, seed in ((first, 5), (second, 9))]
    for got, want in zip((together[:2 * n], together[2 * n:]), alone):
        assert torch.equal(got[:, :want.shape[1]], want)
        assert (got[:, want.shape[1]:] == tok.pad_token_id).all()


def test_min_new_tokens_keeps_eos_away(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ids, mask = batch(tok)
    out = our_tokens(model, tok, ids, mask, 2, 12, True, min_new=12)
    assert out.shape == (10, 12) and not (out == tok.eos_token_id).any()


def test_unsupported_settings_go_to_generate(model_and_tokenizer, monkeypatch):
    """A repetition penalty in the model's generation config: sppo.decode does not apply it, so HFGenerator
    leaves the model to `generate` (the tokens then carry the penalty)."""
    model, tok = model_and_tokenizer
    assert decode.supported(model)
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.3)
    assert not decode.supported(model)
    calls = []
    monkeypatch.setattr(decode, "decode", lambda *a, **k: calls.append(1))
    out = HFGenerator(model, tok).sample(PROMPTS[:2], SamplingParams(n=2, temperature=0.0, max_new_tokens=8),
                                         progress=False)
    assert calls == [] and len(out) == 2


def test_sample_many_equals_each_request_alone(model_and_tokenizer):
    """HFGenerator.sample_many: requests (a stage's chunks, each with its own seed) share one decoding loop, and each
    request's samples are those of `sample` alone; a request that `sample` would decode in several batches goes
    alone."""
    model, tok = model_and_tokenizer
    requests = [(PROMPTS[:2], SamplingParams(n=3, temperature=0.9, top_p=0.95, max_new_tokens=30, seed=11)),
                (PROMPTS[2:], SamplingParams(n=3, temperature=0.9, top_p=0.95, max_new_tokens=30, seed=12)),
                (PROMPTS[1:4], SamplingParams(n=3, temperature=0.0, max_new_tokens=30, seed=13))]
    gen = HFGenerator(model, tok, batch_size=None)
    loops = []
    real = decode.decode
    decode.decode = lambda *a, **k: loops.append(len(a[1])) or real(*a, **k)
    try:
        together = gen.sample_many(requests)
        alone = [gen.sample(c, p, progress=False) for c, p in requests]
        small = HFGenerator(model, tok, batch_size=3)  # one prompt per batch: every request alone
        assert small.sample_many(requests[:2]) == [small.sample(c, p, progress=False) for c, p in requests[:2]]
    finally:
        decode.decode = real
    assert together == alone
    assert loops[:2] == [5, 3]  # the two sampled requests in one loop of 5 prompts, the greedy one (other settings) alone
    assert any(s.finish_reason == "stop" for r in together[0] for s in r)
