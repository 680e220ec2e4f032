"""Key/value caches of prompts a model has read, kept by their token ids, so that a later prompt which extends one
of them reads only its new tokens.

A local judge's prompts of one request open alike (Arena-Hard's system prompt and template: 374 tokens of a 700-1300
token prompt), and it reads the same long prompts more than once: Arena-Hard's second judgment attempt is the first
attempt's conversation with the judge's reply and a request to go on appended (arena-hard-auto gen_judgment.py), and
a verdict taken from log-probabilities (`LocalChatModel.continuation_logprobs`) reads the judgment prompt again with
the judge's text after it. Each of those prompts starts with a prompt read before, token for token; its key/value
cache serves the new read (`sppo.decode` for text, `LocalChatModel` for log-probabilities), and only the new tokens
go through the model. A batch whose prompts extend nothing stored but share their opening has that opening read once
and stored first (`sppo.decode`), so each prompt reads only its rest. The values are those of reading the whole
prompt, up to float rounding (the cached part was computed in another batch).

Entries are per-row tensors without padding ([1, heads, length, head_dim] per layer), least recently used dropped
beyond `max_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each [1, heads, length, head_dim]


class PromptCache:
    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self.hits = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for kv in self.entries.values() for pair in kv for t in pair)

    def _longest_key(self, ids: tuple[int, ...]) -> tuple[int, ...] | None:
        best: tuple[int, ...] | None = None
        for key in self.entries:
            if len(key) < len(ids) and (best is None or len(key) > len(best)) and ids[:len(key)] == key:
                best = key
        return best

    def holds_prefix_of(self, ids: Sequence[int], length: int) -> bool:
        """Whether a stored prompt of at least `length` tokens is one `ids` extends (`longest` would serve it)."""
        best = self._longest_key(tuple(ids))
        return best is not None and len(best) >= length

    def longest(self, ids: Sequence[int]) -> tuple[int, KV | None]:
        """The longest stored prompt that `ids` extends by at least one token: (its length, its cache), or (0, None)."""
        best = self._longest_key(tuple(ids))
        if best is None:
            return 0, None
        self.entries.move_to_end(best)
        self.hits += 1
        return len(best), self.entries[best]

    def put(self, ids: Sequence[int], kv: KV) -> None:
        key = tuple(ids)
        self.entries[key] = [(k.detach(), v.detach()) for k, v in kv]
        self.entries.move_to_end(key)
        while len(self.entries) > 1 and self.nbytes() > self.max_bytes:
            self.entries.popitem(last=False)


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least its last token."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def read_prefix(model, prefix: list[int], device, store: PromptCache | None = None):
    """`prefix` (token ids) through `model`: its logits at the last position and its key/value cache. With `store`,
    only the tokens after the longest prompt it holds that `prefix` extends."""
    done, kv = store.longest(prefix) if store is not None else (0, None)
    cache = padded_cache([kv], done, kv) if kv is not None else None
    positions = torch.arange(done, len(prefix), device=device)[None, :]
    out = model(input_ids=torch.tensor([prefix[done:]], device=device), position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[0, -1], out.past_key_values


def row_kv(cache, row: int, positions: torch.Tensor) -> KV:
    """Row `row` of a batch's transformers cache at `positions` (its real tokens: no padding), as a cache entry."""
    return [(layer.keys[row:row + 1, :, positions].clone(), layer.values[row:row + 1, :, positions].clone())
            for layer in cache.layers]


def padded_cache(entries: Sequence[KV | None], width: int, like):
    """A transformers DynamicCache of the entries, each right-aligned in `width` positions (zeros before it, to be
    masked), one row per entry (None: an empty row); `like` gives the layers' shapes, dtype and device."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (k0, _) in enumerate(like):
        shape = (len(entries), k0.shape[1], width, k0.shape[3])
        keys = torch.zeros(shape, dtype=k0.dtype, device=k0.device)
        values = torch.zeros_like(keys)
        for row, kv in enumerate(entries):
            if kv is not None:
                n = kv[layer][0].shape[2]
                keys[row, :, width - n:] = kv[layer][0][0]
                values[row, :, width - n:] = kv[layer][1][0]
        cache.update(keys, values, layer)
    return cache
