"""sppo.prompt_cache: a prompt that extends one read before reads only its new tokens, and gives what reading it
whole gives: the same greedy continuation (sppo.decode), the same log-probabilities (LocalChatModel)."""

from __future__ import annotations

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo import decode
from sppo.generate import encode_prompt, left_padded
from sppo.local_judge import LocalChatModel
from sppo.models import load_model, load_tokenizer
from sppo.prompt_cache import PromptCache, common_prefix_length

FIRST = [[{"role": "user", "content": "Which response is better? Answer A or B."}],
         [{"role": "user", "content": "Explain why the sky is blue, in one short sentence please."}]]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("cache") / "m", seed=4)
    return LocalChatModel(load_model(str(path), dtype="float32", inference=True), load_tokenizer(str(path)))


def read_tokens(model):
    """A counter of the token positions the model reads (input ids through the embedding, padding included)."""
    seen = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    return seen, handle


def greedy(model, tok, conversations, store):
    ids, mask = left_padded([encode_prompt(tok, c) for c in conversations], tok.pad_token_id)
    return decode.decode(model, ids, mask, 1, decode.DecodeSettings(12, (tok.eos_token_id,), tok.pad_token_id,
                                                                    prompt_cache=store))


def second_attempts(first, replies):
    return [c + [{"role": "assistant", "content": r}, {"role": "user", "content": "Continue: A or B?"}]
            for c, r in zip(first, replies)]


def test_a_second_attempt_reads_only_its_new_tokens(chat_model):
    model, tok = chat_model.model, chat_model.tokenizer
    store = PromptCache()
    greedy(model, tok, FIRST, store)
    assert len(store.entries) == 2
    later = second_attempts(FIRST, ["A is better", "Because of scattering, the sky looks blue to us"])
    later.append([{"role": "user", "content": "A prompt read for the first time."}])  # no stored prompt: read whole
    seen, handle = read_tokens(model)
    with_cache = greedy(model, tok, later, store)
    read_with = sum(seen)
    seen.clear()
    whole = greedy(model, tok, later, PromptCache())
    handle.remove()
    assert torch.equal(with_cache, whole)
    assert store.hits == 2 and read_with < sum(seen)  # fewer tokens through the model (padding included)


def test_prompts_that_open_alike_read_their_opening_once(chat_model):
    model, tok = chat_model.model, chat_model.tokenizer
    system = {"role": "system", "content": "You are an impartial judge. Compare the two answers below with care, "
                                           "and end with a verdict label such as [[A>B]] or [[B>A]]."}
    prompts = [[system, {"role": "user", "content": q}] for q in
               ("Answer A: blue. Answer B: red.", "Answer A: red, as the sun sets. Answer B: blue.", "A: 4. B: 5.")]
    encoded = [encode_prompt(tok, c) for c in prompts]
    shared = common_prefix_length(encoded)
    assert shared >= decode.SHARED_OPENING_MIN
    store = PromptCache()
    seen, handle = read_tokens(model)
    opened = greedy(model, tok, prompts, store)
    read_opened = sum(seen)
    seen.clear()
    whole = greedy(model, tok, prompts, None)
    handle.remove()
    assert torch.equal(opened, whole)
    assert read_opened < sum(seen) and tuple(encoded[0][:shared]) in store.entries


def test_log_probabilities_after_a_judgment_read_it_from_the_cache(chat_model):
    replies = chat_model.chat(FIRST, max_new_tokens=8)
    hits = chat_model.prompt_cache.hits
    got = [chat_model.continuation_logprobs(c, r + " [[", ["A]]", "B]]", "C]]"]) for c, r in zip(FIRST, replies)]
    assert chat_model.prompt_cache.hits == hits + 2
    chat_model.prompt_cache = PromptCache()  # nothing stored: every prompt read whole
    whole = [chat_model.continuation_logprobs(c, r + " [[", ["A]]", "B]]", "C]]"]) for c, r in zip(FIRST, replies)]
    assert chat_model.prompt_cache.hits == 0
    for a, b in zip(got, whole):
        assert a == pytest.approx(b, abs=1e-4)


def test_least_recently_used_prompts_leave_first():
    kv = [(torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8))]  # 512 bytes an entry
    store = PromptCache(max_bytes=1200)
    store.put([1, 2, 3, 4], kv)
    store.put([5, 6, 7, 8], kv)
    assert store.longest([1, 2, 3, 4, 9])[0] == 4  # used: now the most recent
    store.put([9, 9, 9, 9], kv)  # over the limit: [5, 6, 7, 8] goes
    assert list(store.entries) == [(1, 2, 3, 4), (9, 9, 9, 9)]
    assert store.longest([1, 2, 3, 4]) == (0, None)  # a prompt must extend a stored one by at least one token
