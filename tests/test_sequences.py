"""Tokenization gives exactly one BOS and one EOS; summed log-probs match a direct computation."""

import pytest
import torch

from perf.fixtures import make_tiny_tokenizer
from sppo.generate import encode_prompt
from sppo.sequences import collate, encode_pair, summed_logps


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


def test_one_bos_one_eos(tok):
    e = encode_pair(tok, "Explain why the sky is blue.", "Because of scattering.", max_length=512)
    assert e.input_ids.count(tok.bos_token_id) == 1 and e.input_ids[0] == tok.bos_token_id
    assert e.input_ids.count(tok.eos_token_id) == 1 and e.input_ids[-1] == tok.eos_token_id
    # the prompt part is exactly the generation prompt
    assert e.input_ids[:e.response_start] == encode_prompt(tok, "Explain why the sky is blue.")


def test_response_with_its_own_eos_gets_no_second_one(tok):
    e = encode_pair(tok, "Hi", "Hello!</s>", max_length=512)
    assert e.input_ids.count(tok.eos_token_id) == 1


def test_bos_added_when_template_lacks_it(tok):
    tok2 = make_tiny_tokenizer()
    tok2.chat_template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    tok2.add_bos_token = True
    ids = encode_prompt(tok2, "Hello")
    assert ids[0] == tok2.bos_token_id and ids.count(tok2.bos_token_id) == 1


def test_truncation_flags_long_responses(tok):
    e = encode_pair(tok, "Hi", "word " * 400, max_length=64)
    assert e.truncated and len(e.input_ids) == 64


def test_summed_logps_matches_direct_sum(tok):
    torch.manual_seed(0)
    a = encode_pair(tok, "Hi", "Hello there", 128)
    b = encode_pair(tok, "Explain the sea", "Blue", 128)
    batch = collate([a, b], tok.pad_token_id)
    V = len(tok)
    logits = torch.randn(2, batch["input_ids"].shape[1], V)
    got = summed_logps(logits, batch["input_ids"], batch["loss_mask"])
    for row, e in enumerate([a, b]):
        lp = torch.log_softmax(logits[row], -1)
        expected = sum(lp[t - 1, e.input_ids[t]].item() for t in range(e.response_start, len(e.input_ids)))
        assert got[row].item() == pytest.approx(expected, rel=1e-5)


def test_sequence_logps_run_the_head_only_where_a_response_token_is_predicted(tok, tmp_path):
    """Expected: the model's logits at every position, log_softmax, the response tokens' entries summed by hand
    (in float64, so only the order of the sums differs); the head sees one row per predicted response token."""
    from sppo.models import load_model
    from sppo.sequences import sequence_logps
    from perf.fixtures import make_tiny_checkpoint

    model = load_model(str(make_tiny_checkpoint(tmp_path / "m")), dtype="float32").double().eval()
    pairs = [("Hi", "Hello there"), ("Explain the sea in a few more words", "Blue"), ("Why?", "Because.")]
    encoded = [encode_pair(tok, p, r, 128) for p, r in pairs]
    batch = collate(encoded, tok.pad_token_id)
    rows_seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, out: rows_seen.append(out.shape[:2]))
    with torch.no_grad():
        got = sequence_logps(model, batch)
        hook.remove()
        full = torch.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    for row, e in enumerate(encoded):
        expected = sum(full[row, t - 1, e.input_ids[t]].item() for t in range(e.response_start, len(e.input_ids)))
        assert got[row].item() == pytest.approx(expected, abs=1e-9, rel=0)
    assert rows_seen == [(1, sum(len(e.input_ids) - e.response_start for e in encoded))]
