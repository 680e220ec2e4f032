"""Temperature, top-k and top-p for transformers' `generate`, without sorting the vocabulary at every step.

transformers' `TopPLogitsWarper` sorts the whole vocabulary of every row at every decoding step
(transformers/generation/logits_process.py, `TopPLogitsWarper.__call__`): for a 49k-token vocabulary on a CPU that
sort costs as much as the model's own forward pass at batch 24 (perf/README.md). The nucleus it keeps is almost
always a handful of tokens (on the embedded model at T=0.7, top-p 0.9: median 2, 99th percentile 55), so
`SamplingWarper` finds it among the `TOP_CANDIDATES` highest scores (`torch.topk`) and sorts a row in full only
when the nucleus does not provably end inside them.

The same rule as transformers' warpers, applied in their order (temperature, top-k, top-p), and the same scores
come out: transformers sorts ascending, takes the cumulative softmax and removes every token whose cumulative
probability is <= 1 - top_p (always keeping the most likely one). In descending order, the token at rank d has
cumulative probability total - (mass of the d tokens above it), so the kept tokens are the first r with
total - above > 1 - top_p. That set is taken from the top-k candidates when
- the first removed token is among them (r < TOP_CANDIDATES), and
- the boundary separates distinct scores (score[r - 1] > score[r]): with a tie at the boundary, which of the tied
  tokens transformers keeps depends on its sort's tie order, so such a row goes through transformers' own warper.
The cumulative sums are taken in float64 (transformers' CPU `cumsum` accumulates float32 in double too); the one
difference left is float rounding where a cumulative probability lands within an ulp of 1 - top_p, which
`tests/test_sampling.py` shows does not change the tokens of real decoding runs. Sampling itself
(softmax, `torch.multinomial`) stays transformers' own, so the random stream is the same draw for draw.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

TOP_CANDIDATES = 64  # scores examined before a row falls back to a full sort


def temperature_and_top_k(scores: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """transformers' TemperatureLogitsWarper then TopKLogitsWarper (top_k 0: no cut), the same operations."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(top_k, scores.size(-1))
        scores = scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], -float("inf"))
    return scores


def top_p_full_sort(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """transformers' TopPLogitsWarper (min_tokens_to_keep=1), for the rows the fast path cannot decide."""
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[..., -1:] = 0
    remove = remove.scatter(1, sorted_indices, remove)
    return scores.masked_fill(remove, -float("inf"))


def top_p(scores: torch.Tensor, top_p_value: float, candidates: int = TOP_CANDIDATES) -> torch.Tensor:
    """The scores with every token outside the nucleus at -inf: transformers' top-p rule, the nucleus found among
    the `candidates` best scores of each row (rows it cannot decide are sorted in full)."""
    if top_p_value >= 1.0:
        return scores
    k = min(candidates, scores.size(-1))
    values, indices = torch.topk(scores, k, dim=-1)  # descending
    probs = scores.softmax(dim=-1)
    total = probs.double().sum(-1, keepdim=True)
    picked = probs.gather(-1, indices).double()
    above = picked.cumsum(-1) - picked  # mass of the candidates ranked above each one
    removed = ((total - above).float() <= (1 - top_p_value))
    removed[..., 0] = False  # the most likely token always stays
    kept = (~removed).sum(-1)  # r: the nucleus is candidates [0, r) when the row is decided
    decided = kept < k
    boundary = kept.clamp(max=k - 1)
    decided &= values.gather(-1, (boundary - 1).clamp(min=0)[:, None])[:, 0] > values.gather(-1, boundary[:, None])[:, 0]
    out = torch.full_like(scores, -float("inf"))
    keep = torch.arange(k, device=scores.device)[None, :] < kept[:, None]
    out.scatter_(-1, indices, torch.where(keep, values, torch.full_like(values, -float("inf"))))
    if not bool(decided.all()):
        rows = (~decided).nonzero()[:, 0]
        out[rows] = top_p_full_sort(scores[rows], top_p_value)
    return out


class SamplingWarper(LogitsProcessor):
    """A transformers logits processor: temperature, top-k and top-p as transformers applies them (give `generate`
    temperature 1.0, top_k 0 and top_p 1.0 so that it adds no warper of its own)."""

    def __init__(self, temperature: float, top_k: int, top_p_value: float):
        if temperature <= 0:
            raise ValueError("SamplingWarper is for sampling: temperature must be > 0")
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p_value)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return top_p(temperature_and_top_k(scores, self.temperature, self.top_k), self.top_p)
