"""MT-Bench prompts reach the model with the token ids FastChat gave them: gen_model_answer.py (fschat 0.2.36,
lines 113-114) renders the conversation with its template and calls `tokenizer([prompt]).input_ids`, the
tokenizer's default special tokens included. Checked on Mistral-7B v0.2's real SentencePiece model (shipped in the
`mistral-common` package as tokenizer.model.v1), saved and reloaded as a toolkit checkpoint saves its tokenizer."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.answers import ModelAnswerer
from benchmarks.suites.mt_bench import _mt_turns, fastchat_prompt
from sppo.generate import HFGenerator

MISTRAL = "mistralai/Mistral-7B-Instruct-v0.2"


@pytest.fixture(scope="module")
def mistral_tokenizer(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "reference_parity"))
    from tokenizer_files import source_file

    try:
        model_file = source_file("mistral")  # the data file only; the package is not imported
    except FileNotFoundError as e:
        pytest.skip(str(e))
    from transformers import AutoTokenizer

    src = tmp_path_factory.mktemp("mistral-src")
    shutil.copyfile(model_file, src / "tokenizer.model")
    # Mistral-7B-Instruct-v0.2's tokenizer_config.json: LlamaTokenizer, BOS added, no EOS added
    (src / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True}))
    saved = tmp_path_factory.mktemp("mistral-checkpoint")
    AutoTokenizer.from_pretrained(src).save_pretrained(saved)  # as sppo-train saves IterN's tokenizer
    tok = AutoTokenizer.from_pretrained(saved)
    tok.pad_token = tok.eos_token
    return tok


class RecordingModel(torch.nn.Module):
    """Stands in for the policy: records the prompt ids `generate` receives and answers with fixed tokens."""

    def __init__(self, answer_ids: list[int]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.answer_ids, self.prompts = answer_ids, []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.prompts += [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
        answer = torch.tensor([self.answer_ids] * input_ids.shape[0])
        return torch.cat([input_ids, answer], dim=1)


def test_mt_bench_prompts_get_fastchats_bos(mistral_tokenizer):
    tok = mistral_tokenizer
    answer = tok("Paris is the capital.", add_special_tokens=False).input_ids + [tok.eos_token_id]
    model = RecordingModel(answer)
    answerer = ModelAnswerer(MISTRAL)
    answerer.adopt(HFGenerator(model, tok, batch_size=4))
    qs = [{"turns": ["What is the capital of France?", "And of Spain? Answer in one word."]}]
    first, second = _mt_turns(answerer, qs, 0.0, 16, "mistral")
    assert first == ["Paris is the capital."]
    turn1 = fastchat_prompt(MISTRAL, qs[0]["turns"][:1], [])
    turn2 = fastchat_prompt(MISTRAL, qs[0]["turns"], first)
    assert turn1 == "[INST] What is the capital of France? [/INST]"  # FastChat's mistral template, no BOS text
    assert model.prompts == [tok([turn1]).input_ids[0], tok([turn2]).input_ids[0]]
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert [ids.count(bos) for ids in model.prompts] == [1, 1] and model.prompts[0][0] == bos == 1
    assert model.prompts[1].count(eos) == 1  # the first answer's "</s>" in the second turn is the EOS token
