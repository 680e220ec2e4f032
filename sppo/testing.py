"""Tiny, randomly initialised chat models for tests and benchmarks, built offline in seconds.

`make_tiny_checkpoint(path)` writes a Llama-architecture causal LM (a few hundred thousand parameters) with a
byte-level BPE tokenizer trained on a small built-in corpus and a Mistral-style chat template
(`<s>[INST] ... [/INST]` ... `</s>`): a checkpoint directory every loader of the toolkit accepts.
`make_word_tokenizer(words)` is a whole-word tokenizer over a few words, for a tiny model whose EOS is likely
from the start (a vocabulary of a few dozen instead of ~400), so that response lengths vary.
"""

from __future__ import annotations

from pathlib import Path

from .rankers import PreferLonger

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}\n{% endif %}{% endfor %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Explain why the sky is blue. Write a short poem about the sea.",
    "Which response is better? Answer with a single letter: A or B.",
    "Hello! How can I help you today? Thank you, goodbye.",
    "def add(a, b): return a + b  # numbers 0 1 2 3 4 5 6 7 8 9",
    "[INST] [/INST] Assistant A Assistant B [[A>B]] [[B>A]] [[A=B]] [[5]] Rating: m M",
]


def make_tiny_tokenizer(vocab_size: int = 384, bos: str = "<s>", eos: str = "</s>", pad: str = "<pad>",
                        extra_special: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer; `bos`, `eos`, `pad` and `extra_special` (e.g. Gemma's `<start_of_turn>`) are
    single special tokens, also when written in text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[pad, bos, eos, *extra_special],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   additional_special_tokens=list(extra_special))
    fast.chat_template = CHAT_TEMPLATE
    return fast


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


def make_tiny_checkpoint(path: str | Path, seed: int = 0, hidden_size: int = 64, layers: int = 2,
                         tokenizer=None) -> Path:
    """A random tiny Llama with `tokenizer` (default: `make_tiny_tokenizer()`)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = tokenizer if tokenizer is not None else make_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class LengthRanker(PreferLonger):
    """A deterministic plug-in ranker for tests and benchmarks: longer responses win (`PreferLonger`), and
    it counts its calls. Use as ranking.kind = python:sppo.testing:LengthRanker."""

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
