"""A decoding step's attention for grouped-query models: the same computation, a fraction of the time on a CPU.

In a decoding step each sequence has one query per head. With grouped-query attention (SmolLM2, Llama-3, Mistral,
Gemma-2: several query heads share one key/value head), transformers' SDPA attention repeats every key/value head
for each of its query heads (`repeat_kv`: a copy of the whole cache, every layer, every step) and runs the fused
kernel once per query head. Here the query heads of a group become that group's queries instead: the kernel reads
each cached key and value once per group and nothing is copied. The step's single token sees every cached position,
so each of those queries computes the same sum as before; only the kernel's blocking of it differs, which moves
results by float rounding (~2e-5 in a float32 logit; within bf16's rounding in bf16), as a change of batch size or
padding does. On this 2-core CPU, for a judge's 6 rows x 1500 cached tokens in bf16 (SmolLM2: 9 query heads, 3
key/value heads), a layer's attention takes 0.087x the time of transformers' call, and 24 decoding steps of the
embedded model after prompts of 700-1300 tokens take 0.36x (`perf/results/attention/latest.md`, `python -m perf
--stages attention`): a local judge's verdict after Arena-Hard's long judgment prompt decodes ~3x as fast.

Every other call (a prompt's prefill, a mask per head, dropout, a position bias, a paged cache) is transformers' own
`sdpa_attention_forward`. `use_grouped_decoding` registers it with transformers' `AttentionInterface` (and SDPA's
mask with `AttentionMaskInterface`) for a model loaded for inference on a CPU (`sppo.models.load_model`); training
never uses it. `tests/test_attention.py` holds it to SDPA's values on the embedded SmolLM2 and a tiny Llama.
"""

from __future__ import annotations

GROUPED_DECODING = "sdpa_grouped_decoding"  # the registered name (config._attn_implementation)


def grouped_decoding_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                               scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' attention-function signature: query [batch, heads, q_len, dim], key/value [batch, kv_heads,
    kv_len, dim]; returns ([batch, q_len, heads, dim], None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    mask_ok = attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1
                                         and attention_mask.shape[2] == 1)
    if (query.shape[2] != 1 or groups == 1 or dropout or not mask_ok or kwargs.get("position_bias") is not None
            or kwargs.get("cache") is not None or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    # query head h reads key/value head h // groups (transformers' repeat_kv): [batch, kv_heads, groups, dim]
    grouped = query.reshape(batch, key.shape[1], groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask,
                                                           scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GROUPED_DECODING, grouped_decoding_attention)
    AttentionMaskInterface.register(GROUPED_DECODING, sdpa_mask)


def use_grouped_decoding(model) -> bool:
    """Switch `model` (SDPA attention, on a CPU) to `grouped_decoding_attention`; whether it now uses it. A model
    with another attention implementation, on a GPU, or one that cannot change its attention keeps its own."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl == GROUPED_DECODING:
        return True
    if impl != "sdpa" or next(model.parameters()).device.type != "cpu":
        return False
    _register()
    model.set_attn_implementation(GROUPED_DECODING)
    return model.config._attn_implementation == GROUPED_DECODING
