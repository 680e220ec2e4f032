"""Models and inputs for the benchmarks and the tests, built offline: tiny random Llama chat models (the one
tiny-checkpoint builder, `make_tiny_checkpoint`: a Llama-architecture causal LM of a few hundred thousand
parameters with a byte-level BPE tokenizer trained on a small built-in corpus and a Mistral-style chat template
`<s>[INST] ... [/INST] ... </s>`, a checkpoint directory every loader of the toolkit accepts), a randomly
initialised ranker of PairRM's architecture (DeBERTa-v2 backbone + llm-blender's pair head, in llm-blender's
directory layout, so it loads through the same code path as llm-blender/PairRM), and fixed prompts/responses."""

from __future__ import annotations

import json
import string
from pathlib import Path

PROMPTS = [
    "What is 2+2?",
    "Name a primary color and say why it is called primary.",
    "Write a haiku about autumn leaves falling slowly in the evening wind, then explain its imagery.",
    "Explain why the sky is blue to a ten-year-old, in three short sentences, without using the word light.",
    "Give me three tips for writing clear emails at work.",
    "Translate 'good morning, how are you?' into French and Spanish.",
    "Summarise the plot of a story about a fox who learns to share.",
    "List the planets of the solar system in order from the sun.",
]

RESPONSES = [
    "4",
    "It is four, because two plus two makes four.",
    "Red is a primary color: it cannot be mixed from other colors, and other colors are mixed from it.",
    "Leaves drift down slowly / amber in the evening wind / autumn says goodbye. The leaves stand for time passing.",
    "Hello! Here are three tips: keep it short, put the request first, and end with a clear next step.",
    "Bonjour, comment allez-vous ? Buenos dias, como estas?",
    "A young fox hoards berries all summer, learns in winter that the others starve, and shares his store.",
    "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune.",
    "no",
    "I like trees and the sea and the quick brown fox that jumps over the lazy dog every single morning.",
]


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}\n{% endif %}{% endfor %}"
)

TOKENIZER_CORPUS = [
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
    tok.train_from_iterator(TOKENIZER_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   additional_special_tokens=list(extra_special))
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


def tiny_llama(path: Path, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """`make_tiny_checkpoint`, built once per path."""
    path = Path(path)
    if not (path / "config.json").exists():
        make_tiny_checkpoint(path, seed=seed, hidden_size=hidden_size, layers=layers)
    return path


# DeBERTa-v2 backbone sizes: "tiny" for the smoke test; "small" (hidden 256, 4 layers; ~4M parameters with the
# character-level vocabulary) keeps the default suite inside its time budget on 2 shared cores. PairRM itself is
# deberta-v3-large (hidden 1024, 24 layers, ~0.4B parameters).
RANKER_SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
}


def pairrm_like_ranker(root: Path, size: str = "tiny", source_max_length: int = 128,
                       candidate_max_length: int = 64) -> Path:
    """A randomly initialised ranker with PairRM's architecture, saved as llm-blender expects
    (config.json naming ranker_type pairranker and the base model, plus model.safetensors)."""
    root = Path(root)
    ranker_dir = root / "ranker"
    if (ranker_dir / "model.safetensors").exists():
        return ranker_dir
    from sppo.package_shims import ensure_llm_blender

    ensure_llm_blender()
    import safetensors.torch
    import torch
    from llm_blender.pair_ranker.config import RankerConfig
    from llm_blender.pair_ranker.model_util import build_collator, build_ranker, build_tokenizer
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    base = root / "base"
    vocab = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] + [("▁", -2.0)]
    vocab += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    vocab += [("▁" + c, -2.5) for c in string.ascii_letters]
    DebertaV2Tokenizer(vocab=vocab).save_pretrained(base)
    config = DebertaV2Config(  # deberta-v3's structure (relative attention, p2c/c2p), at the chosen size
        vocab_size=len(vocab), max_position_embeddings=512, relative_attention=True, position_buckets=256,
        pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
        max_relative_positions=-1, type_vocab_size=0, pad_token_id=0, **RANKER_SIZES[size])
    torch.manual_seed(0)
    DebertaV2Model(config).save_pretrained(base)
    rc = RankerConfig(ranker_type="pairranker", model_type="deberta", model_name=str(base),
                      source_maxlength=source_max_length, candidate_maxlength=candidate_max_length, n_tasks=1,
                      drop_out=0.05, fp16=False)
    tokenizer = build_tokenizer(str(base))
    build_collator("pairranker", tokenizer, rc.source_maxlength, rc.candidate_maxlength)  # adds the markers
    ranker = build_ranker("pairranker", "deberta", str(base), None, rc, tokenizer)
    ranker_dir.mkdir(parents=True)
    safetensors.torch.save_model(ranker, str(ranker_dir / "model.safetensors"))
    cfg = {k: v for k, v in rc.to_dict().items() if v is not None}
    (ranker_dir / "config.json").write_text(json.dumps(cfg, indent=1))
    return ranker_dir


def candidates(n_prompts: int, k: int) -> tuple[list[str], list[list[str]]]:
    """n_prompts prompts with k responses each, of varied lengths (as sampled responses are)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_prompts)]
    cands = [[RESPONSES[(3 * n + i) % len(RESPONSES)] for i in range(k)] for n in range(n_prompts)]
    return prompts, cands
