"""The local judge always yields a verdict: when its text has none, the label it finds most likely after the official
opener, from its token probabilities (a re-computation written here, one unpadded forward pass per label)."""

from __future__ import annotations

import pytest

from benchmarks.judge import JudgeReply, JudgeRequest, LocalJudge, OpenAIJudge
from benchmarks.judging import LOGPROB_VERDICT, Conversation, Item, logprob_verdicts
from benchmarks.scoring import arena_hard as ah
from benchmarks.scoring import mt_bench as mt
from benchmarks.suites import mt_bench

MESSAGES = [{"role": "system", "content": "You judge answers."},
            {"role": "user", "content": "Question: what is 2+2?\nAnswer: 4.\nRate the answer from 1 to 10."}]


@pytest.fixture(scope="module")
def judge():
    # fp32: the cached-prefix scores are compared with a full recomputation to 1e-3, below bf16's rounding
    return LocalJudge.load("embedded", max_new_tokens=16, dtype="float32")


def reference_choice(chat, messages, prefix, choices):
    import torch

    from sppo.generate import encode_prompt

    tok = chat.tokenizer
    scores = []
    for c in choices:
        base = encode_prompt(tok, messages) + tok(prefix, add_special_tokens=False)["input_ids"]
        cont = tok(c, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([base + cont])
        with torch.no_grad():
            logp = torch.log_softmax(chat.model(input_ids=ids).logits[0].float(), dim=-1)
        scores.append(sum(float(logp[len(base) + k - 1, t]) for k, t in enumerate(cont)))
    return choices[max(range(len(choices)), key=scores.__getitem__)], scores


@pytest.mark.parametrize("prefix, choices", [
    ("The answer is correct. Rating: [[", [f"{r}]]" for r in range(1, 11)]),
    ("Assistant B is better. [[", [v + "]]" for v in ah.VERDICTS]),
])
def test_verdict_is_the_most_likely_label(judge, prefix, choices):
    want, scores = reference_choice(judge.chat_model, MESSAGES, prefix, choices)
    assert len(set(scores)) > 1
    assert judge.verdict_from_logprobs(MESSAGES, prefix, choices) == want
    got = judge.chat_model.continuation_logprobs(MESSAGES, prefix, choices)
    assert got == pytest.approx(scores, abs=1e-3)  # the shared prefix's cache gives each label's own sum


def _unrated() -> Conversation:
    """An MT-Bench conversation whose reply holds no rating."""
    request = JudgeRequest.make(MESSAGES, **mt.JUDGE_PARAMS)
    conv = Conversation(Item((81, 1), (request,)), request, [JudgeReply("I think it is fine.")])
    conv.verdict, _ = mt_bench.VERDICTS.parse(conv)
    return conv


def test_mt_bench_judgment_without_rating_gets_one_only_from_a_local_judge(judge):
    conv = _unrated()
    assert conv.verdict is None
    logprob_verdicts(judge, [conv], mt_bench.VERDICTS)
    want, _ = reference_choice(judge.chat_model, MESSAGES, "I think it is fine.\n\nRating: [[",
                               [f"{r}]]" for r in range(1, 11)])
    assert conv.verdict == want[:-2] and conv.verdict_source == LOGPROB_VERDICT
    official, conv = OpenAIJudge("gpt-4", base_url="http://127.0.0.1:9/v1", api_key_env=None), _unrated()
    logprob_verdicts(official, [conv], mt_bench.VERDICTS)
    assert conv.verdict is None and conv.verdict_source is None  # an official judge's invalid verdict stays so
