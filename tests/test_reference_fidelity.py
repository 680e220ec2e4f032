"""Training pairs tokenized exactly as uclaml/SPPO did (commit 5e61c4e), generation prompts with its special
tokens, and finish reasons.

The expected values come from `reference_tokenize_row` below: a re-creation, written here from the reference's
sppo/trainer.py (tokenize_row, build_tokenized_answer, get_batch_logps) and alignment/data.py
(apply_chat_template), of what the reference computes. It shares no code with sppo.sequences.
"""

from types import SimpleNamespace

import pytest
import torch

from perf.fixtures import make_tiny_tokenizer
from sppo.generate import HFGenerator, SamplingParams, VLLMGenerator, encode_prompt, reference_prompt_text
from sppo.sequences import collate, encode_examples, encode_pair, encode_preference, summed_logps

LABEL_PAD = -100  # the reference's label_pad_token_id


# ------------------------------------------------------------------------------ the reference, re-created

def reference_texts(tok, prompt, response):
    """alignment/data.py:53-65 with skip_system_message=True (run_sppo.py:59) on the messages that
    scripts/compute_prob.py:58-65 stores: text_prompt, and text_chosen = the rest of the full template."""
    messages = [{"content": prompt, "role": "user"}, {"content": response, "role": "assistant"}]
    text_prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generate_prompt=True)
    full = tok.apply_chat_template(messages, tokenize=False, add_generate_prompt=True)
    return text_prompt, full[len(text_prompt):]


def reference_answer(tok, prompt, answer):
    """build_tokenized_answer: joint tokenization, the split moved one token left when the prompt's last token
    merged with the answer's first."""
    full = tok(prompt + answer, add_special_tokens=False)["input_ids"]
    alone = tok(prompt, add_special_tokens=False)["input_ids"]
    split = len(alone)
    if alone != full[:split]:
        split -= 1
    return {"prompt_input_ids": full[:split], "input_ids": full[split:]}


def reference_tokenize_row(tok, prompt, chosen, rejected, max_length, max_prompt_length):
    """tokenize_row for a decoder-only model, truncation_mode keep_end: input ids and labels of both sides."""
    text_prompt, text_chosen = reference_texts(tok, prompt, chosen)
    _, text_rejected = reference_texts(tok, prompt, rejected)
    sides = [reference_answer(tok, text_prompt, text_chosen), reference_answer(tok, text_prompt, text_rejected)]
    for s in sides:
        s["prompt_input_ids"] = [tok.bos_token_id] + s["prompt_input_ids"]
        s["input_ids"] = s["input_ids"] + [tok.eos_token_id]
    longer = max(len(s["input_ids"]) for s in sides)
    for s in sides:
        if len(s["prompt_input_ids"]) + longer > max_length:
            s["prompt_input_ids"] = s["prompt_input_ids"][-max_prompt_length:]
    for s in sides:
        if len(s["prompt_input_ids"]) + longer > max_length:
            s["input_ids"] = s["input_ids"][:max_length - max_prompt_length]
    out = []
    for s in sides:
        ids = s["prompt_input_ids"] + s["input_ids"]
        labels = [LABEL_PAD] * len(s["prompt_input_ids"]) + s["input_ids"]
        out.append((ids, labels))
    return out


def reference_batch_logps(logits, labels):
    """get_batch_logps with average_log_prob=False."""
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    mask = labels != LABEL_PAD
    labels[labels == LABEL_PAD] = 0
    per_token = torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)
    return (per_token * mask).sum(-1)


# ------------------------------------------------------------------------------ fixtures and helpers

@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


def settings(max_length, max_prompt_length, truncation="reference", special_tokens="reference", loss="sppo"):
    return SimpleNamespace(max_length=max_length, max_prompt_length=max_prompt_length, truncation=truncation,
                           special_tokens=special_tokens, loss=loss)


def n_tokens(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


LONG_PROMPT = "Explain why the sky is blue. " * 8
LONG_RESPONSE = "The quick brown fox jumps over the lazy dog. " * 8
CASES = {  # name: (prompt, chosen, rejected, max_length, max_prompt_length)
    "short": ("Explain the sea", "Blue water.", "def add(a, b): return a + b", 128, 64),
    "long prompt, pair fits": (LONG_PROMPT, "Blue.", "No.", 256, 16),
    "long prompt": (LONG_PROMPT, "Blue water and light.", "No.", 64, 24),
    "long chosen": ("Hi", LONG_RESPONSE, "Hello!", 64, 24),
    "long rejected": ("Hi", "Hello!", LONG_RESPONSE, 64, 24),
    "both long": (LONG_PROMPT, LONG_RESPONSE, LONG_RESPONSE[:60], 64, 24),
    # the rejected pair alone fits (35 + 3 tokens <= 64), but the LONGER response decides: its prompt is cut too
    "short side cut for the long one": ("Explain why the sky is blue. " * 2, LONG_RESPONSE, "No.", 64, 24),
    "prompt merges with answer": ("Rate it", "]] Rating: 5", "[[A>B]]", 128, 64),
}


@pytest.mark.parametrize("case", CASES)
def test_reference_mode_equals_tokenize_row(tok, case):
    prompt, chosen, rejected, max_length, max_prompt_length = CASES[case]
    expected = reference_tokenize_row(tok, prompt, chosen, rejected, max_length, max_prompt_length)
    got = encode_preference(tok, prompt, chosen, rejected, settings(max_length, max_prompt_length),
                            ("stop", "stop"))
    batch = collate(list(got), tok.pad_token_id)
    for row, (e, (ids, labels)) in enumerate(zip(got, expected)):
        assert e.input_ids == ids
        n = len(ids)
        assert batch["loss_mask"][row, :n].tolist() == [label != LABEL_PAD for label in labels]
        assert not batch["loss_mask"][row, n:].any()


def test_the_cases_exercise_every_branch(tok):
    """The cases above really reach each branch of the reference's truncation."""
    def lengths(case):  # (prompt tokens, response tokens) of chosen and rejected, per the re-creation
        prompt, chosen, rejected, max_length, max_prompt_length = CASES[case]
        sides = reference_tokenize_row(tok, prompt, chosen, rejected, max_length, max_prompt_length)
        return [(labels.count(LABEL_PAD), len(labels) - labels.count(LABEL_PAD)) for _, labels in sides]

    assert lengths("long prompt, pair fits")[0][0] > 16  # longer than max_prompt_length, yet kept whole
    assert [p for p, _ in lengths("long prompt")] == [24, 24]
    assert [a for _, a in lengths("long chosen")][0] == 64 - 24
    assert [p for p, _ in lengths("short side cut for the long one")] == [24, 24]
    (c_prompt, c_answer), (r_prompt, r_answer) = lengths("both long")
    assert (c_prompt, c_answer, r_prompt) == (24, 40, 24) and r_answer < 40  # the shorter response stays whole
    c, r = encode_preference(tok, *CASES["both long"][:3], settings(64, 24), ("stop", "stop"))
    assert c.prompt_truncated and c.truncated and r.prompt_truncated and not r.truncated
    assert c.input_ids[-1] != tok.eos_token_id  # the cut response lost its EOS
    c, _ = encode_preference(tok, *CASES["prompt merges with answer"][:3], settings(128, 64), ("stop", "stop"))
    alone = tok("<s>[INST] Rate it [/INST]", add_special_tokens=False)["input_ids"]
    assert c.response_start == 1 + len(alone) - 1  # the merged token moved into the answer


def test_reference_special_tokens_two_bos_two_eos(tok):
    c, _ = encode_preference(tok, "Explain the sea", "Blue water.", "No.", settings(256, 128), ("stop", "stop"))
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert c.input_ids[:2] == [bos, bos] and c.input_ids.count(bos) == 2
    assert c.input_ids[-2:] == [eos, eos] and c.input_ids.count(eos) == 2
    assert c.response_start < len(c.input_ids) - 2  # both EOS are response tokens (inside Delta)
    clean, _ = encode_preference(tok, "Explain the sea", "Blue water.", "No.",
                                 settings(256, 128, "toolkit", "clean"), ("stop", "stop"))
    assert clean.input_ids.count(bos) == 1 and clean.input_ids.count(eos) == 1


def test_reference_logps_equal_get_batch_logps(tok):
    prompt, chosen, rejected, max_length, max_prompt_length = CASES["both long"]
    expected = reference_tokenize_row(tok, prompt, chosen, rejected, max_length, max_prompt_length)
    got = encode_preference(tok, prompt, chosen, rejected, settings(max_length, max_prompt_length), ("stop", "stop"))
    batch = collate(list(got), tok.pad_token_id)
    width = batch["input_ids"].shape[1]
    labels = torch.full((2, width), LABEL_PAD)
    for row, (_, lab) in enumerate(expected):
        labels[row, :len(lab)] = torch.tensor(lab)
    torch.manual_seed(0)
    logits = torch.randn(2, width, len(tok))
    torch.testing.assert_close(summed_logps(logits, batch["input_ids"], batch["loss_mask"]),
                               reference_batch_logps(logits, labels))


def test_response_cut_at_generation_limit(tok):
    """A response that hit max_new_tokens (here longer than max_length, as 2048 > 1024 in the paper) is cut by
    the reference and loses both EOS; ours, told it finished by "length", gives the same tokens."""
    prompt, chosen, rejected = "Hi", LONG_RESPONSE, "Hello!"
    assert n_tokens(tok, chosen) >= 64
    (ids, labels), (r_ids, _) = reference_tokenize_row(tok, prompt, chosen, rejected, 64, 24)
    got_c, got_r = encode_preference(tok, prompt, chosen, rejected, settings(64, 24), ("length", "stop"))
    assert got_c.input_ids == ids and got_r.input_ids == r_ids
    assert tok.eos_token_id not in got_c.input_ids[got_c.response_start:]


def test_length_finished_response_gets_no_eos(tok):
    eos = tok.eos_token_id
    for mode in ("clean", "reference"):
        c, r = encode_preference(tok, "Hi", "Hello there", "Blue", settings(128, 64, "toolkit", mode),
                                 ("length", "stop"))
        assert eos not in c.input_ids[c.response_start:] and r.input_ids[-1] == eos
    c_old, _ = encode_preference(tok, "Hi", "Hello there", "Blue", settings(128, 64, "toolkit", "clean"))
    assert c_old.input_ids[-1] == eos  # rows of older runs, without a finish reason, keep today's EOS
    assert encode_pair(tok, "Hi", "Hello there", 128, finish_reason="length").input_ids == \
        encode_pair(tok, "Hi", "Hello there", 128).input_ids[:-1]


def test_encode_examples_reads_finish_reasons_and_targets(tok):
    rows = [{"id": "a", "prompt": "Hi", "chosen": "Hello there", "rejected": "Blue", "p_win": 0.7, "p_lose": 0.3,
             "p_chosen_rejected": 0.8, "chosen_finish_reason": "length", "rejected_finish_reason": "stop"}]
    (ex,), _ = encode_examples(tok, rows, settings(128, 64, "toolkit", "clean", loss="sppo_single"))
    assert ex.chosen.input_ids[-1] != tok.eos_token_id and ex.rejected.input_ids[-1] == tok.eos_token_id
    assert (ex.p_win, ex.p_lose, ex.p_chosen_rejected) == (0.7, 0.3, 0.8)
    del rows[0]["p_chosen_rejected"]
    from sppo.errors import UserError

    with pytest.raises(UserError, match="p_chosen_rejected"):
        encode_examples(tok, rows, settings(128, 64, "toolkit", "clean", loss="sppo_single"))


# ------------------------------------------------------------------------------ generation prompts

def llama_like(tok):
    """The tiny tokenizer, made to add a BOS itself like Llama/Mistral's (add_special_tokens=True)."""
    from tokenizers.processors import TemplateProcessing

    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    return tok


def test_reference_generation_prompt_has_two_bos():
    tok = llama_like(make_tiny_tokenizer())
    # scripts/generate.py:40-44 on the Mistral-style template, then vLLM's own tokenization (BOS added)
    assert reference_prompt_text(tok, "Explain the sea") == "<s>[INST] Explain the sea [/INST]"
    text_ids = tok("<s>[INST] Explain the sea [/INST]", add_special_tokens=False)["input_ids"]
    assert encode_prompt(tok, "Explain the sea", "reference") == [tok.bos_token_id] + text_ids
    assert encode_prompt(tok, "Explain the sea") == text_ids  # clean: the template's BOS only
    # the reference's "None" split also cuts a prompt that contains the word
    assert reference_prompt_text(tok, "Is None a value?") == "<s>[INST] Is "


class FakeModel(torch.nn.Module):
    """Returns fixed continuations: row 0 stops with EOS then pads, row 1 runs to max_new_tokens."""

    def __init__(self, continuations):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.continuations = continuations
        self.seen = []

    def generate(self, input_ids, attention_mask, max_new_tokens, num_return_sequences, **kw):
        self.seen.append(input_ids.tolist())
        rows = input_ids.repeat_interleave(num_return_sequences, 0)
        new = torch.tensor([c[:max_new_tokens] for c in self.continuations])
        return torch.cat([rows, new], dim=1)


def test_hf_generator_finish_reasons():
    tok = make_tiny_tokenizer()
    words = tok("Blue water", add_special_tokens=False)["input_ids"]
    pad, eos = tok.pad_token_id, tok.eos_token_id
    k = len(words) + 2
    model = FakeModel([words + [eos] + [pad], (words * 4)[:k]])
    gen = HFGenerator(model, tok, batch_size=2)
    (out,) = gen.sample(["Explain the sea"], SamplingParams(n=2, max_new_tokens=k), progress=False)
    assert [s.finish_reason for s in out] == ["stop", "length"]
    assert out[0].text == "Blue water"
    assert gen.generate(["Explain the sea"], SamplingParams(n=2, max_new_tokens=k), progress=False)[0][0] == \
        "Blue water"


def test_hf_generator_reference_prompt_tokens():
    tok = llama_like(make_tiny_tokenizer())
    eos = tok.eos_token_id
    model = FakeModel([[eos]])
    HFGenerator(model, tok, special_tokens="reference").sample(["Hi"], SamplingParams(n=1, max_new_tokens=1),
                                                               progress=False)
    assert model.seen[0][0][:2] == [tok.bos_token_id, tok.bos_token_id]


def test_vllm_generator_finish_reasons_and_prompt_tokens(monkeypatch):
    import sys

    tok = llama_like(make_tiny_tokenizer())
    seen = {}

    class LLM:
        def __init__(self, **kw):
            seen["init"] = kw

        def get_tokenizer(self):
            return tok

        def reset_prefix_cache(self):
            seen["calls"] = seen.get("calls", []) + ["reset_prefix_cache"]

        def generate(self, prompts, sp, use_tqdm=False):
            seen["calls"] = seen.get("calls", []) + ["generate"]
            seen["prompts"] = prompts
            outs = [SimpleNamespace(text=" Blue ", finish_reason="stop"),
                    SimpleNamespace(text="Blu", finish_reason="length")]
            return [SimpleNamespace(outputs=outs) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw))
    gen = VLLMGenerator("model-dir", special_tokens="reference", revision="abc123")
    (out,) = gen.sample(["Hi"], SamplingParams(n=2))
    # sample() keeps vLLM's text verbatim (generation.response_text decides); generate() strips it
    assert [(s.text, s.finish_reason) for s in out] == [(" Blue ", "stop"), ("Blu", "length")]
    assert gen.generate(["Hi"], SamplingParams(n=2))[0] == ["Blue", "Blu"]
    ids = seen["prompts"][0]["prompt_token_ids"]
    assert ids[:2] == [tok.bos_token_id, tok.bos_token_id]
    assert seen["init"]["revision"] == "abc123" and seen["init"]["tokenizer_revision"] == "abc123"
    # the prefix cache is emptied before every call, so a call's samples do not depend on what ran before it
    assert seen["calls"] == ["reset_prefix_cache", "generate"] * 2


# ------------------------------------------------------------------------------ pinned revisions

def test_model_revision_pins_the_configured_model_only(monkeypatch):
    import transformers

    from sppo.config import load_config
    from sppo.models import load_tokenizer
    from sppo.run_dir import Run

    run = Run(load_config("embedded", ["model.name=org/model", "model.revision=abc123"]))
    assert run.revision_of("org/model") == "abc123"
    assert run.revision_of("runs/x/checkpoints/Iter1") is None  # the run's own checkpoints have no revision
    asked = []

    def from_pretrained(path, revision=None, **kw):
        asked.append((path, revision))
        return make_tiny_tokenizer()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    load_tokenizer("org/model", revision="abc123")
    assert asked == [("org/model", "abc123")]
