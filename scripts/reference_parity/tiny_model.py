"""A tiny float64 Llama (SDPA attention: float64 throughout, where the eager path softmaxes in float32) with
weights from a fixed integer formula: identical under the reference's stack
(torch 2.1.2, transformers 4.42.4) and the toolkit's, with no random generator involved."""

from __future__ import annotations

# cases whose longer sequence is at most this long get log-probs (the float64 logits of a 128k vocabulary
# over 1024 positions would need gigabytes)
LOGP_MAX_TOKENS = {"mistral": 1024, "llama-3": 160, "gemma-2": 100}


def formula_weights(numel: int, variant: int, index: int):
    """Values in [-0.5, 0.5) from integers only (exact in float64 on any version)."""
    import torch

    k = torch.arange(numel, dtype=torch.int64)
    ints = (k * 2654435761 + (index + 1) * 40503 + variant * 977) % 10007
    return (ints.to(torch.float64) - 5003.0) / 10007.0


def tiny_llama(vocab_size: int, variant: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(torch.float64).eval()
    with torch.no_grad():
        for index, (_, p) in enumerate(sorted(model.named_parameters())):
            p.copy_(formula_weights(p.numel(), variant, index).reshape(p.shape))
    return model


def float64_logits(model):
    """The model as a callable whose `.logits` stay float64: transformers' LlamaForCausalLM casts its logits
    to float32 (4.42), which would leave 1e-3 of rounding in a 1000-token sum. Both sides call this."""
    import types

    def forward(input_ids, attention_mask=None, **_):
        hidden = model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
        return types.SimpleNamespace(logits=model.lm_head(hidden))

    return forward
