"""Rankers (sppo/rank.py) on tiny random models built here: a PairRM-architecture ranker (DeBERTa-v2 + llm-blender's
pair head, saved in llm-blender's directory layout and loaded through the same code path as llm-blender/PairRM)
and a tiny Llama chat model for the local judge."""

from __future__ import annotations

import json
import string
import textwrap

import numpy as np
import pytest

from sppo.errors import UserError
from sppo.rank import (LocalJudgeRanker, PairRMRanker, answer_token_ids, candidate_logprobs, check_inputs,
                       checked_compare, checked_probabilities, make_ranker)

PROMPTS = [
    "What is 2+2?",
    "Name a primary color and say why it is called primary.",
    "Write a haiku about autumn leaves falling slowly in the evening wind.",
    "Hi",
]
CANDIDATES = [
    ["4", "five", "It is 4, because two plus two makes four."],
    ["red", "", "Blue is a primary color: it cannot be mixed from other colors."],
    ["Leaves drift down slowly / amber in the evening wind / autumn says goodbye", "no", "I like trees."],
    ["Hello! How can I help you today?", "Hi", "hey there"],
]


def scores_by_formula(C):
    C = np.asarray(C, dtype=np.float64)
    return (C - C.T).sum(axis=1) / C.shape[0]


# ------------------------------------------------------------------------------------------ tiny PairRM

@pytest.fixture(scope="module")
def pairrm_dir(tmp_path_factory):
    """A randomly initialised ranker with PairRM's architecture (DeBERTa-v2 backbone, CrossCompareReranker head),
    in llm-blender's layout: config.json (ranker_type pairranker, model_name = base model) + model.safetensors."""
    from sppo.package_shims import ensure_llm_blender

    ensure_llm_blender()
    import safetensors.torch
    import torch
    from llm_blender.pair_ranker.config import RankerConfig
    from llm_blender.pair_ranker.model_util import build_collator, build_ranker, build_tokenizer
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    root = tmp_path_factory.mktemp("pairrm")
    base, ranker_dir = root / "base", root / "ranker"
    vocab = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] + [("▁", -2.0)]
    vocab += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    vocab += [("▁" + c, -2.5) for c in string.ascii_letters]
    DebertaV2Tokenizer(vocab=vocab).save_pretrained(base)
    config = DebertaV2Config(  # deberta-v3-large's structure, tiny
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
        position_biased_input=False, norm_rel_ebd="layer_norm", max_relative_positions=-1, type_vocab_size=0,
        pad_token_id=0)
    torch.manual_seed(0)
    DebertaV2Model(config).save_pretrained(base)
    rc = RankerConfig(ranker_type="pairranker", model_type="deberta", model_name=str(base),
                      source_maxlength=48, candidate_maxlength=24, n_tasks=1, drop_out=0.05, fp16=True)
    tokenizer = build_tokenizer(str(base))
    build_collator("pairranker", tokenizer, rc.source_maxlength, rc.candidate_maxlength)  # adds the marker tokens
    ranker = build_ranker("pairranker", "deberta", str(base), None, rc, tokenizer)
    with torch.no_grad():  # random heads give ~1e-6 logits; make the differences visible
        for layer in ranker.head_layer:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.0)
    ranker_dir.mkdir()
    safetensors.torch.save_model(ranker, str(ranker_dir / "model.safetensors"))
    cfg = {k: v for k, v in rc.to_dict().items() if v is not None}  # as PairRM's: no checkpoint/cache/device
    (ranker_dir / "config.json").write_text(json.dumps(cfg, indent=1))
    return ranker_dir


@pytest.fixture(scope="module")
def pairrm(pairrm_dir):
    return PairRMRanker(str(pairrm_dir), device="cpu", batch_size=8, progress=False)


def test_pairrm_shapes_and_names(pairrm, pairrm_dir):
    mats = pairrm.compare(PROMPTS, CANDIDATES)
    assert len(mats) == len(PROMPTS)
    for C, cands in zip(mats, CANDIDATES):
        assert C.shape == (len(cands), len(cands))
        assert np.all(np.diag(C) == 0) and np.isfinite(C).all()
        assert np.abs(C).max() > 1e-3  # the random head is not degenerate
    assert pairrm.name == f"pairrm:{pairrm_dir}"
    assert (pairrm.source_max_length, pairrm.candidate_max_length) == (48, 24)  # read from the ranker's config


def test_pairrm_batched_across_prompts_equals_one_prompt_at_a_time(pairrm_dir):
    batched = PairRMRanker(str(pairrm_dir), device="cpu", batch_size=64, progress=False).compare(PROMPTS, CANDIDATES)
    single = PairRMRanker(str(pairrm_dir), device="cpu", batch_size=1, progress=False)
    for n, (p, cands) in enumerate(zip(PROMPTS, CANDIDATES)):
        np.testing.assert_allclose(batched[n], single.compare([p], [cands])[0], atol=1e-5, rtol=0)


def test_pairrm_matrix_matches_llm_blender_compare(pairrm):
    """C[i, j] is llm-blender's logit for "i (left) beats j (right)" from Blender.compare(mode="[A,B]")."""
    C = pairrm.compare(PROMPTS[:2], CANDIDATES[:2])
    for n in range(2):
        k = len(CANDIDATES[n])
        pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
        logits = pairrm.blender.compare([PROMPTS[n]] * len(pairs), [CANDIDATES[n][i] for i, _ in pairs],
                                        [CANDIDATES[n][j] for _, j in pairs], batch_size=1, return_logits=True,
                                        mode="[A,B]", disable_tqdm=True)
        for (i, j), value in zip(pairs, logits):
            assert C[n][i, j] == pytest.approx(float(value), abs=1e-5)


def test_pairrm_scores_equal_llm_blender_rank_scores(pairrm):
    """s_i = (1/K) sum_j (C_ij - C_ji) is what Blender.rank(..., return_scores=True) returns (its
    get_scores_from_cmps: (C - C.T).mean(-1) over the full matrix from _full_predict, zero diagonal)."""
    ours = [scores_by_formula(C) for C in pairrm.compare(PROMPTS, CANDIDATES)]
    theirs = pairrm.blender.rank(PROMPTS, CANDIDATES, return_scores=True, batch_size=1, disable_tqdm=True)
    for n in range(len(PROMPTS)):
        np.testing.assert_allclose(ours[n], theirs[n], atol=1e-5, rtol=0)
        assert np.argmax(ours[n]) == np.argmax(theirs[n]) and np.argmin(ours[n]) == np.argmin(theirs[n])


def test_pairrm_scores_through_sppo_probs(pairrm):
    probs = pytest.importorskip("sppo.probs")
    theirs = pairrm.blender.rank(PROMPTS, CANDIDATES, return_scores=True, batch_size=1, disable_tqdm=True)
    for C, s in zip(pairrm.compare(PROMPTS, CANDIDATES), theirs):
        np.testing.assert_allclose(probs.scores_from_comparisons(C), s, atol=1e-5, rtol=0)


def test_pairrm_direct_probabilities(pairrm):
    mats = pairrm.compare(PROMPTS, CANDIDATES)
    for C, P in zip(mats, checked_probabilities(pairrm, PROMPTS, CANDIDATES)):
        np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)
        assert np.all(np.diag(P) == 0.5)
        np.testing.assert_allclose(P, 1 / (1 + np.exp(-(C - C.T) / 2)), atol=1e-12)


def test_pairrm_long_and_empty_candidates_are_truncated_not_fatal(pairrm):
    long_a = "word " * 2000
    prompts = ["Say something long. " * 200, "x"]
    cands = [[long_a, long_a + "a different tail far beyond the limit", ""], ["", "", "[SEP] <|source|> ok"]]
    C = pairrm.compare(prompts, cands)
    assert all(np.isfinite(m).all() for m in C)
    # both long candidates are cut at the ranker's candidate length: identical after truncation
    np.testing.assert_allclose(C[0][0, 2], C[0][1, 2], atol=1e-5)
    np.testing.assert_allclose(C[0][2, 0], C[0][2, 1], atol=1e-5)
    # two empty candidates: the same text on both sides
    np.testing.assert_allclose(scores_by_formula(C[1])[0], scores_by_formula(C[1])[1], atol=1e-5)


def test_pairrm_cache_does_not_leak_mutation(pairrm):
    first = pairrm.compare(PROMPTS[:1], CANDIDATES[:1])
    first[0][0, 1] = 123.0
    assert pairrm.compare(PROMPTS[:1], CANDIDATES[:1])[0][0, 1] != 123.0


def test_pairrm_load_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        PairRMRanker(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(UserError, match="no config.json"):
        PairRMRanker(str(tmp_path), device="cpu")
    with pytest.raises(UserError, match="cannot download"):  # the Hub is off in tests
        PairRMRanker("llm-blender/surely-not-cached-here", device="cpu")
    with pytest.raises(UserError, match="batch_size"):
        PairRMRanker(str(tmp_path), device="cpu", batch_size=0)


def test_pairrm_revision_is_passed_to_the_hub(monkeypatch):
    import huggingface_hub

    asked = []

    def snapshot_download(repo_id, revision=None):
        asked.append((repo_id, revision))
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(UserError, match="cannot download"):
        PairRMRanker("llm-blender/PairRM", device="cpu", revision="0123abc")
    assert asked == [("llm-blender/PairRM", "0123abc")]


# ------------------------------------------------------------------------------------------ local judge

class ToyChat:
    """A LocalChatModel stand-in with `grouped_token_logprobs`: prefers the response containing 'good', and answers A
    with a position bias of +1 in logit."""

    name = "toy"

    def __init__(self):
        from transformers import PreTrainedTokenizerFast
        from tokenizers import Tokenizer, models, pre_tokenizers

        tk = Tokenizer(models.WordLevel({"[UNK]": 0, "A": 1, "B": 2, "x": 3}, unk_token="[UNK]"))
        tk.pre_tokenizer = pre_tokenizers.Whitespace()
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")
        self.seen = []

    def token_logprobs(self, conversations, token_ids, progress=False):
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            a = text.split("[Response A]")[1].split("[Response B]")[0]
            b = text.split("[Response B]")[1]
            logit_a = 1.0 + 2.0 * ("good" in a) - 2.0 * ("good" in b)
            self.seen.append(text)
            out.append([logit_a if t == 1 else 0.0 for t in token_ids])
        return out

    def grouped_token_logprobs(self, groups, token_ids, progress=False):
        return [self.token_logprobs(g, token_ids) for g in groups]


def test_local_judge_formula_and_position_bias_cancels():
    judge = LocalJudgeRanker(ToyChat(), progress=False)
    assert (judge.a_ids, judge.b_ids) == ([1], [2])
    P = judge.pairwise_probabilities(["q"], [["good answer", "bad", "meh"]])[0]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    # good as A: q=sig(3); good as B: q=sig(-1) -> P(good > bad) = (sig(3) + 1 - sig(-1)) / 2
    assert P[0, 1] == pytest.approx((sig(3) + 1 - sig(-1)) / 2)
    assert P[1, 2] == pytest.approx(0.5)  # bias of A is constant, so it cancels between two equal responses
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)
    C = judge.compare(["q"], [["good answer", "bad", "meh"]])[0]
    np.testing.assert_allclose(C[0, 1], np.log(P[0, 1] / (1 - P[0, 1])))
    assert np.all(np.diag(C) == 0)
    assert len(judge.chat.seen) == 6  # K(K-1) ordered pairs, computed once for compare + probabilities


def test_local_judge_truncates_long_responses():
    chat = ToyChat()
    judge = LocalJudgeRanker(chat, max_response_tokens=5, max_instruction_tokens=3, progress=False)
    judge.compare(["x " * 50], [["x " * 1000 + "good", "A B"]])
    assert all("good" not in t for t in chat.seen)  # the tail beyond 5 tokens never reached the judge
    assert all(t.count("x") < 20 for t in chat.seen)


@pytest.fixture(scope="module")
def tiny_chat():
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from sppo.local_judge import LocalChatModel

    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    chars = list(string.printable)
    vocab = {t: i for i, t in enumerate(specials + chars + [" A", " B"])}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[(" ", "A"), (" ", "B")], unk_token="<unk>"))
    tk.add_special_tokens(specials)
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
                                  bos_token="<|im_start|>", chat_template=template, padding_side="left")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=4096, pad_token_id=0))
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 1.0)  # visible differences between tokens
    return LocalChatModel(model.eval(), tok, batch_size=4)


def test_answer_token_ids_reads_both_spellings(tiny_chat):
    tok = tiny_chat.tokenizer
    a, b = answer_token_ids(tok, "A"), answer_token_ids(tok, "B")
    assert sorted(tok.decode([t]) for t in a) == [" A", "A"]
    assert sorted(tok.decode([t]) for t in b) == [" B", "B"]


def test_common_prefix_length_by_hand():
    from sppo.local_judge import common_prefix_length

    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2, 7]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shortest row keeps its last token
    assert common_prefix_length([[5, 6]]) == 1
    assert common_prefix_length([[1, 2], [3, 4]]) == 0


@pytest.mark.parametrize("batch_size", [4, 2])
def test_candidate_logprobs_match_a_direct_forward(tiny_chat, batch_size):
    """Groups whose prompts open alike (a shared opening read once, rows of different lengths after it) and a
    group sharing nothing but the template: each row equals a forward pass over its own whole prompt."""
    import torch

    from sppo.generate import encode_prompt
    from sppo.local_judge import LocalChatModel

    chat = LocalChatModel(tiny_chat.model, tiny_chat.tokenizer, batch_size=batch_size)
    ids = answer_token_ids(chat.tokenizer, "A") + answer_token_ids(chat.tokenizer, "B")
    opening = "Compare these two answers to the question about rivers: "
    groups = [[[{"role": "user", "content": opening + t}] for t in ("short", "a much longer answer here?", "mid")],
              [[{"role": "user", "content": t}] for t in ("one", "another, longer one")],
              [[{"role": "user", "content": "alone"}]]]
    got = candidate_logprobs(chat, groups, ids)
    assert [g.shape for g in got] == [(3, len(ids)), (2, len(ids)), (1, len(ids))]
    for group, rows in zip(groups, got):
        for conv, row in zip(group, rows):
            x = torch.tensor([encode_prompt(chat.tokenizer, conv)])
            with torch.no_grad():
                logits = chat.model(input_ids=x).logits[0, -1, ids].double()
            np.testing.assert_allclose(row, torch.log_softmax(logits, -1).numpy(), atol=1e-5)


def test_local_judge_on_tiny_model_antisymmetric_and_batch_independent(tiny_chat):
    from sppo.local_judge import LocalChatModel

    judge = LocalJudgeRanker(tiny_chat, progress=False)
    Ps = judge.pairwise_probabilities(PROMPTS, CANDIDATES)
    for P, cands in zip(Ps, CANDIDATES):
        assert P.shape == (len(cands), len(cands))
        np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)
        assert np.all(np.diag(P) == 0.5) and ((P > 0) & (P < 1)).all()
    assert not np.allclose(Ps[0], 0.5)  # the random judge still has opinions
    one = LocalJudgeRanker(LocalChatModel(tiny_chat.model, tiny_chat.tokenizer, batch_size=1), progress=False)
    for n, (p, cands) in enumerate(zip(PROMPTS, CANDIDATES)):
        np.testing.assert_allclose(one.pairwise_probabilities([p], [cands])[0], Ps[n], atol=1e-5)
    for C, P in zip(judge.compare(PROMPTS, CANDIDATES), Ps):
        np.testing.assert_allclose(C, -C.T, atol=1e-9)
        np.testing.assert_allclose(1 / (1 + np.exp(-C)), P, atol=1e-9)


def test_local_judge_bad_template(tiny_chat):
    with pytest.raises(UserError, match="response_b"):
        LocalJudgeRanker(tiny_chat, template="{instruction} {response_a}")


@pytest.mark.slow
def test_local_judge_embedded_model():
    judge = make_ranker("local-judge", "embedded", batch_size=8, progress=False)
    assert judge.name == "local-judge:embedded"
    prompts = ["What is the capital of France?", "Translate 'thank you' into Spanish."]
    cands = [["The capital of France is Paris.", "Banana.", ""], ["Gracias.", "Gracias."]]
    Ps = checked_probabilities(judge, prompts, cands)
    for P, c in zip(Ps, cands):
        assert P.shape == (len(c), len(c))
        np.testing.assert_allclose(P + P.T, 1.0, atol=1e-9)
        assert np.all(np.diag(P) == 0.5) and ((P > 0) & (P < 1)).all()
    assert Ps[1][0, 1] == pytest.approx(0.5, abs=1e-4)  # identical responses: the judge's A-bias cancels
    # (a 135M judge barely separates right from wrong answers, so no quality assertion here)


# ------------------------------------------------------------------------------------------ factory, errors

PLUGIN = textwrap.dedent('''
    import numpy as np

    class LengthReward:
        """A 'reward model': longer is better; C[i, j] = r_i - r_j."""
        def __init__(self, model=None, scale=1.0):
            self.model, self.scale = model, scale

        def compare(self, prompts, candidates):
            out = []
            for cands in candidates:
                r = self.scale * np.array([len(c) for c in cands], dtype=float)
                out.append(r[:, None] - r[None, :])
            return out

    class Broken:
        def compare(self, prompts, candidates):
            return [np.zeros((1, 1)) for _ in candidates]

    class NoCompare:
        pass
''')


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "sppo_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "sppo_test_plugin"


def test_factory_plugin(plugin_module):
    r = make_ranker(f"python:{plugin_module}:LengthReward", "my-rm", scale=2.0)
    assert (r.model, r.scale, r.name) == ("my-rm", 2.0, f"python:{plugin_module}:LengthReward")
    C = checked_compare(r, ["p"], [["a", "abc"]])[0]
    np.testing.assert_allclose(C, [[0, -4], [4, 0]])
    with pytest.raises(UserError, match="no direct pairwise probabilities"):
        checked_probabilities(r, ["p"], [["a", "abc"]])
    with pytest.raises(UserError, match=r"expected 2x2"):
        checked_compare(make_ranker(f"python:{plugin_module}:Broken"), ["p"], [["a", "b"]])


def test_factory_builtin_kinds(pairrm_dir, tiny_chat):
    assert isinstance(make_ranker("pairrm", str(pairrm_dir), device="cpu", progress=False), PairRMRanker)
    judge = make_ranker("local-judge", tiny_chat, progress=False)
    assert isinstance(judge, LocalJudgeRanker)


@pytest.mark.parametrize("kind, message", [
    ("bogus", "unknown ranker 'bogus'"),
    ("python:only-module", "python:module:Class"),
    ("python:sppo_no_such_module_xyz:X", "cannot import"),
    ("python:sppo.rank:NoSuchClass", "no class or function NoSuchClass"),
])
def test_factory_errors(kind, message):
    with pytest.raises(UserError, match=message) as e:
        make_ranker(kind, None)
    assert "\n" not in str(e.value)


def test_factory_plugin_without_compare(plugin_module):
    with pytest.raises(UserError, match="no compare"):
        make_ranker(f"python:{plugin_module}:NoCompare")
    with pytest.raises(UserError, match="cannot build"):
        make_ranker(f"python:{plugin_module}:NoCompare", "model-arg-it-does-not-take")


@pytest.mark.parametrize("prompts, candidates, message", [
    (["p"], [["only one"]], "K must be at least 2"),
    (["p"], [[]], "K must be at least 2"),
    (["p"], ["ab"], "K must be at least 2"),
    (["p", "q"], [["a", "b"]], "2 prompts but 1 candidate lists"),
    (["p"], [["a", None]], "not a string"),
    ("p", [["a", "b"]], "not a single string"),
])
def test_input_errors(prompts, candidates, message):
    with pytest.raises(UserError, match=message):
        check_inputs(prompts, candidates)


def test_rankers_reject_k_below_2(pairrm):
    with pytest.raises(UserError, match="K must be at least 2"):
        pairrm.compare(["p"], [["only"]])
    with pytest.raises(UserError, match="K must be at least 2"):
        LocalJudgeRanker(ToyChat(), progress=False).compare(["p"], [["only"]])
