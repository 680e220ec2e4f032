"""Test doubles for the training pipeline: a whole-word tokenizer and deterministic plug-in rankers.

The rankers are loaded as ``ranking.kind = python:sppo_doubles:LengthRanker`` (this directory on the import path,
as pytest puts it and the tests' subprocesses are given it).
"""

from __future__ import annotations

from perf.fixtures import CHAT_TEMPLATE
from sppo.rankers import PreferLonger


def make_word_tokenizer(words):
    """A whole-word tokenizer: `words` (split at whitespace, decoded joined by spaces), the chat template's
    `[INST]` and `[/INST]`, and the special tokens; any other word reads as `<unk>`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {}
    for w in ["<pad>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]", *words]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


class LengthRanker(PreferLonger):
    """A deterministic plug-in ranker for tests and benchmarks: longer responses win (`PreferLonger`), and
    it counts its calls. Use as ranking.kind = python:sppo_doubles:LengthRanker."""

    name = "length"

    def __init__(self, model=None, batch_size: int = 16, scale: float = 10.0):
        super().__init__(model, batch_size, scale)
        self.calls = 0

    def compare(self, prompts, candidates):
        self.calls += 1
        return super().compare(prompts, candidates)


class TieRanker(LengthRanker):
    """A ranker with no preference at all (every comparison 0): for the all-ties path."""

    name = "ties"

    def compare(self, prompts, candidates):
        import numpy as np

        return [np.zeros((len(c), len(c))) for c in candidates]


class FailingRanker(LengthRanker):
    """A ranker that raises on one rank only: the rank named by SPPO_TEST_FAIL_RANK (every call there), for the
    tests where one rank of a multi-process run fails and the others must not wait for it."""

    name = "failing"

    def compare(self, prompts, candidates):
        import os

        if os.environ.get("RANK", "0") == os.environ.get("SPPO_TEST_FAIL_RANK"):
            raise RuntimeError(f"ranker failed on rank {os.environ['RANK']} (test)")
        return super().compare(prompts, candidates)
