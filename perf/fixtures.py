"""Models and inputs for the benchmarks, built offline: tiny random Llama chat models (sppo.testing), a randomly
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


def tiny_llama(path: Path, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """A tiny random Llama chat checkpoint (sppo.testing.make_tiny_checkpoint), built once per path."""
    from sppo.testing import make_tiny_checkpoint

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
    from sppo.compat import ensure_llm_blender

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
