"""Decoding that stops computing a sequence once it has ended: transformers' sampling and greedy loops, with the
finished rows dropped from the batch and its key/value cache.

transformers' `generate` keeps every row of a batch in every forward pass until the last row ends (a finished row
gets the pad token and its work is thrown away). On a CPU a decoding step costs about in proportion to the rows it
carries (the embedded model: a fixed ~1/3 and the rest per row at batch 24, perf/README.md), and sampled responses end
at very different lengths, so much of a batch's work is for rows that have ended. `decode` runs the same loop and
drops rows that have ended from the batch (and the cache) as they accumulate.

The same tokens as `generate` with the same settings, as transformers computes them:
- inputs as `generate` builds them: position ids from the attention mask (`cumsum - 1`, pads at 0), one more per
  step; the attention mask grows by one column per step;
- scores: the last position's logits in float32; `min_new_tokens` suppresses EOS
  (transformers' MinNewTokensLengthLogitsProcessor); then the warper (sampling, `sppo.sampling.SamplingWarper`);
- a token: greedy `argmax`, or `torch.multinomial` over the softmax. transformers draws for every row of the
  batch, ended or not, until all have ended; here each group of rows (one `generate` call's batch) draws from its
  own generator with the shape of the whole group (a row that left the batch takes part with a placeholder
  distribution), so the random stream is the same draw for draw;
- a row ends at an EOS token (kept) or after `max_new_tokens`; later positions hold the pad token.
What can differ is float rounding: a matrix product over fewer rows may round differently, as any change of
batch does (tests/test_decode.py checks the tokens against `generate`).

Models whose generation config asks for processing this loop does not do (repetition penalty, bad words, beams,
...) are left to transformers (`supported`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .prompt_cache import PromptCache, common_prefix_length, padded_cache, read_prefix, row_kv

# generation-config fields this loop does not apply, with the value meaning "off"
UNSUPPORTED = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
               "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "force_words_ids": None,
               "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
               "forced_eos_token_id": None, "exponential_decay_length_penalty": None, "sequence_bias": None,
               "guidance_scale": 1.0, "renormalize_logits": False, "watermarking_config": None, "num_beams": 1,
               "min_length": 0, "max_time": None, "stop_strings": None, "top_h": None, "min_p": None,
               "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "constraints": None}

COMPACT_SHARE = 0.25  # drop ended rows once they are this share of the rows in the batch
SHARED_OPENING_MIN = 32  # tokens: a shorter common opening of a batch's prompts is not worth a pass of its own


@dataclass
class Group:
    """Rows [start, stop) of the batch that sample from one generator, as one `generate` call's batch would."""
    start: int
    stop: int
    generator: torch.Generator | None = None


@dataclass
class DecodeSettings:
    max_new_tokens: int
    eos_ids: tuple[int, ...]
    pad_id: int
    warper: Callable | None = None  # None: greedy
    min_new_tokens: int = 0
    groups: Sequence[Group] = field(default_factory=list)  # sampling: the rows of each generator
    prompt_cache: PromptCache | None = None  # one sample per prompt: prompts read before serve these (and are kept)


def supported(model) -> bool:
    """Whether `decode` reproduces `generate` for this model: a transformers causal LM whose generation config
    adds no processing beyond min_new_tokens (and whose cache can drop rows)."""
    config = getattr(model, "generation_config", None)
    if not isinstance(model, torch.nn.Module) or config is None or getattr(model.config, "is_encoder_decoder", False):
        return False
    off = all(getattr(config, name, off) in (off, None) for name, off in UNSUPPORTED.items())
    return off and not getattr(model.config, "sliding_window", None) and type(model).__name__.endswith("ForCausalLM")


class _Batch:
    """The rows still in the batch: their index among all rows, attention mask, next position and cache."""

    def __init__(self, rows: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache):
        self.rows, self.mask, self.positions, self.cache = rows, mask, positions, cache

    def keep(self, keep: torch.Tensor) -> None:
        self.rows, self.mask, self.positions = self.rows[keep], self.mask[keep], self.positions[keep]
        self.cache.batch_select_indices(keep.nonzero()[:, 0])

    def forward(self, model, tokens: torch.Tensor) -> torch.Tensor:
        """One step: `tokens` (one per row) in, the next position's float32 logits out."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=-1)
        out = model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions[:, None],
                    past_key_values=self.cache, use_cache=True)
        self.positions = self.positions + 1
        return out.logits[:, -1, :].to(dtype=torch.float32)


def _prefill(model, ids: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[_Batch, torch.Tensor | None, torch.Tensor]:
    """The prompts read once each. n > 1: all but the last prompt token, the cache repeated n times, the last token
    left for the first step (returned); n == 1: the whole prompt, its last logits returned."""
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    rows = torch.arange(len(ids) * n, device=ids.device)
    if n > 1 and ids.shape[1] > 1:
        out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                    use_cache=True, logits_to_keep=1)
        out.past_key_values.batch_repeat_interleave(n)
        batch = _Batch(rows, mask[:, :-1].repeat_interleave(n, 0), positions[:, -1].repeat_interleave(n, 0),
                       out.past_key_values)
        return batch, None, ids[:, -1].repeat_interleave(n, 0)
    ids, mask, positions = (t.repeat_interleave(n, 0) for t in (ids, mask, positions))
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    batch = _Batch(rows, mask, positions[:, -1] + 1, out.past_key_values)
    return batch, out.logits[:, -1, :].to(dtype=torch.float32), ids[:, -1]


def _choose(scores: torch.Tensor, batch: _Batch, ended: torch.Tensor, s: DecodeSettings, total: int) -> torch.Tensor:
    """The next token of each row in the batch: argmax, or each group's multinomial draw over all its rows."""
    if s.warper is None:
        return scores.argmax(-1)
    probs = torch.softmax(s.warper(None, scores), dim=-1)
    tokens = torch.full((len(batch.rows),), s.pad_id, dtype=torch.long, device=scores.device)
    where = torch.full((total,), -1, dtype=torch.long, device=scores.device)
    where[batch.rows] = torch.arange(len(batch.rows), device=scores.device)
    for g in s.groups:
        if bool(ended[g.start:g.stop].all()):
            continue  # transformers stops drawing for a batch whose rows have all ended
        at = where[g.start:g.stop]
        full = torch.zeros((g.stop - g.start, probs.shape[-1]), dtype=probs.dtype, device=probs.device)
        full[:, s.pad_id] = 1.0  # rows that left the batch: a placeholder, drawn from and thrown away
        full[at >= 0] = probs[at[at >= 0]]
        drawn = torch.multinomial(full, num_samples=1, generator=g.generator).squeeze(1)
        tokens[at[at >= 0]] = drawn[at >= 0]
    return tokens


def _prefill_from_cache(model, prompts: list[list[int]], store: PromptCache, device):
    """The prompts read after the longest prompt each extends in `store` (`PromptCache.longest`): the cached keys and
    values right-aligned in one padded cache, each prompt's new tokens after them (left-padded: the padding of both
    parts masked, positions counted over real tokens). None when no prompt extends a stored one."""
    hits = [store.longest(p) for p in prompts]
    if not any(kv is not None for _, kv in hits):
        return None
    width = max(n for n, _ in hits)
    rest = [p[n:] for p, (n, _) in zip(prompts, hits)]
    ids, rest_mask = (t.to(device) for t in _left_padded(rest))
    cached = torch.tensor([[0] * (width - n) + [1] * n for n, _ in hits], dtype=torch.long, device=device)
    done = torch.tensor([n for n, _ in hits], device=device)
    positions = (done[:, None] + rest_mask.cumsum(-1) - 1).masked_fill(rest_mask == 0, 0)
    cache = padded_cache([kv for _, kv in hits], width, next(kv for _, kv in hits if kv is not None))
    mask = torch.cat([cached, rest_mask], dim=-1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    batch = _Batch(torch.arange(len(prompts), device=device), mask, positions[:, -1] + 1, out.past_key_values)
    return batch, out.logits[:, -1, :].to(dtype=torch.float32), ids[:, -1]


def _left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[r, width - len(row):] = 1
    return ids, mask


def _store_shared_opening(model, prompts: list[list[int]], store: PromptCache, device) -> None:
    """The tokens all `prompts` open with (at least SHARED_OPENING_MIN, each prompt keeping one of its own), read
    once and stored, unless `store` holds them or a longer prompt they extend: `_prefill_from_cache` then reads only
    each prompt's rest (a judge's system prompt and template once, not once per prompt)."""
    shared = common_prefix_length(prompts) if len(prompts) > 1 else 0
    if shared < SHARED_OPENING_MIN or any(store.holds_prefix_of(p, shared) for p in prompts):
        return
    opening = prompts[0][:shared]
    _, kv = read_prefix(model, opening, device)
    store.put(opening, row_kv(kv, 0, torch.arange(shared, device=device)))


def _prefill_keeping(model, ids: torch.Tensor, mask: torch.Tensor, n: int, store: PromptCache | None):
    """`_prefill`, with a prompt cache (one sample per prompt): prompts that extend stored ones read only their new
    tokens, and every prompt's keys and values are stored for the prompts that will extend it."""
    if store is None or n != 1:
        return _prefill(model, ids, mask, n)
    prompts = [row[m == 1].tolist() for row, m in zip(ids, mask)]
    _store_shared_opening(model, prompts, store, ids.device)
    prefilled = _prefill_from_cache(model, prompts, store, ids.device) or _prefill(model, ids, mask, n)
    batch = prefilled[0]
    for row, prompt in enumerate(prompts):
        store.put(prompt, row_kv(batch.cache, row, batch.mask[row].nonzero()[:, 0]))
    return prefilled


@torch.no_grad()
def decode(model, ids: torch.Tensor, mask: torch.Tensor, n: int, s: DecodeSettings) -> torch.Tensor:
    """New tokens of every prompt's n rows ([len(ids) * n, steps]: a row's EOS, then pad), as `generate` returns
    them after the prompt. Sampling needs `s.groups` to cover the rows [0, len(ids) * n) in order."""
    batch, logits, tokens = _prefill_keeping(model, ids, mask, n, s.prompt_cache)
    total = len(batch.rows)
    eos = torch.tensor(s.eos_ids, device=ids.device)
    ended = torch.zeros(total, dtype=torch.bool, device=ids.device)
    out = torch.full((total, s.max_new_tokens), s.pad_id, dtype=torch.long, device=ids.device)
    steps = 0
    for step in range(s.max_new_tokens):
        scores = batch.forward(model, tokens) if logits is None else logits
        logits = None
        if step < s.min_new_tokens:
            scores[:, eos] = -float("inf")
        tokens = _choose(scores, batch, ended, s, total)
        live = ~ended[batch.rows]
        tokens = torch.where(live, tokens, torch.full_like(tokens, s.pad_id))
        out[batch.rows[live], step] = tokens[live]
        ended[batch.rows[live & torch.isin(tokens, eos)]] = True
        steps = step + 1
        if bool(ended.all()):
            break
        gone = ended[batch.rows]
        if int(gone.sum()) >= max(1, COMPACT_SHARE * len(batch.rows)):
            batch.keep(~gone)
            tokens = tokens[~gone]
    return out[:, :steps]
