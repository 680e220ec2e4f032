"""A decoding step's attention: `sppo.attention.grouped_decoding_attention` against transformers' SDPA attention
(`python -m perf --stages attention --out perf/results/attention`, opt-in).

kernel   one layer's attention for one decoding step at a local judge's shapes after Arena-Hard's judgment prompt:
         6 rows x 1500 cached tokens, SmolLM2-135M's 9 query heads over 3 key/value heads of 64, bf16, the rows
         left-padded (a boolean mask, as transformers builds it); ours: the grouped call; reference way:
         transformers' `sdpa_attention_forward` (each key/value head repeated for its query heads).
decoding the embedded SmolLM2-135M in bf16, 24 greedy decoding steps after 6 prompts of 700-1300 tokens (random
         token ids, left-padded), prefill excluded; the same weights with `sdpa` and with the grouped attention.

Both are seconds (lower is better); the ratio is ours over the reference way, per round.
"""

from __future__ import annotations

import time

import torch

from perf.timing import case, interleaved, paired_ratio

ROWS, CACHED, HEADS, KV_HEADS, HEAD_DIM = 6, 1500, 9, 3, 64
STEPS = 24


class _Layer:
    """What the attention functions read from a decoder layer."""
    num_key_value_groups = HEADS // KV_HEADS
    is_causal = True


def kernel_case(repeats: int) -> dict:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from sppo.attention import grouped_decoding_attention

    g = torch.Generator().manual_seed(0)
    q = torch.randn(ROWS, HEADS, 1, HEAD_DIM, generator=g).bfloat16()
    k, v = (torch.randn(ROWS, KV_HEADS, CACHED, HEAD_DIM, generator=g).bfloat16() for _ in range(2))
    mask = torch.ones(ROWS, 1, 1, CACHED, dtype=torch.bool)
    for row in range(ROWS):
        mask[row, ..., :row * 100] = False  # left padding of various widths
    layer, calls = _Layer(), 50

    def run(fn):
        return lambda: [fn(layer, q, k, v, mask, scaling=HEAD_DIM ** -0.5) for _ in range(calls)]

    times = interleaved({"reference": run(sdpa_attention_forward), "ours": run(grouped_decoding_attention)},
                        repeats)
    ours, ref = ([t / calls for t in times[n]] for n in ("ours", "reference"))
    return case("attention/one decoding step, 6 rows x 1500 cached tokens (SmolLM2 heads, bf16)", "s/call",
                ours, ref, paired_ratio(ours, ref), higher_is_better=False,
                settings={"rows": ROWS, "cached": CACHED, "heads": HEADS, "kv_heads": KV_HEADS,
                          "head_dim": HEAD_DIM, "dtype": "bfloat16"})


def _decode_steps(model, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(STEPS):
            mask = torch.cat([mask, torch.ones_like(token)], dim=-1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=token, attention_mask=mask, position_ids=positions, past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - t0


def decoding_case(repeats: int, quick: bool) -> dict:
    from sppo.attention import GROUPED_DECODING
    from sppo.generate import left_padded
    from sppo.models import load_model

    model = load_model("embedded", dtype="bfloat16", inference=True)
    g = torch.Generator().manual_seed(1)
    lengths = [200, 300] if quick else [700, 700, 1000, 1000, 1300, 1300]
    ids, mask = left_padded([torch.randint(100, 40000, (n,), generator=g).tolist() for n in lengths], 0)
    seconds: dict[str, list[float]] = {"reference": [], "ours": []}

    def run(name: str, impl: str):
        def go():
            model.set_attn_implementation(impl)
            seconds[name].append(_decode_steps(model, ids, mask))
        return go

    interleaved({"reference": run("reference", "sdpa"), "ours": run("ours", GROUPED_DECODING)}, repeats)
    ours, ref = (seconds[n][-repeats:] for n in ("ours", "reference"))  # the warm-up round dropped
    return case(f"attention/embedded bf16, {STEPS} decoding steps after {len(lengths)} prompts of "
                f"{min(lengths)}-{max(lengths)} tokens", "s", ours, ref, paired_ratio(ours, ref),
                higher_is_better=False, settings={"prompt_lengths": lengths, "steps": STEPS, "dtype": "bfloat16"})


def run(opts: dict) -> dict:
    return {"cases": [kernel_case(opts["repeats"]), decoding_case(opts["repeats"], opts["quick"])]}
