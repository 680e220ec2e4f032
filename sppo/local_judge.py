"""A local chat model used as a judge, in-process: the offline default for ranking and benchmarking.

Primitives, batched (the first two length-sorted):
- `first_token_logprobs(conversations, top_k)`: the model's distribution over the first token of its reply,
  the top-k as (token text, log-prob), the way an OpenAI endpoint reports `top_logprobs`
  (`token_logprobs`: the log-probabilities of given token ids there);
- `grouped_token_logprobs(groups, token_ids)`: the same for groups of conversations that open alike (a pairwise
  judge's prompts that show one response first): each group's common opening is read once;
- `chat(conversations, max_new_tokens)`: greedy replies (for judges that write a verdict in text);
- `continuation_logprobs(conversation, prefix, continuations)`: how likely each continuation is after a reply's
  opening `prefix` (a verdict label when the text gave none).
"""

from __future__ import annotations

from typing import Sequence

from tqdm.auto import tqdm

from .generate import (Conversation, HFGenerator, SamplingParams, encode_prompt, encode_prompts, left_padded,
                       length_sorted_batches)


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least its last token."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


class LocalChatModel:
    def __init__(self, model, tokenizer, batch_size: int = 8, max_prompt_length: int = 2048):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.max_prompt_length = max_prompt_length

    @classmethod
    def load(cls, name_or_path: str, dtype: str = "auto", **kwargs) -> "LocalChatModel":
        from .models import load_model, load_tokenizer

        return cls(load_model(name_or_path, dtype=dtype, inference=True), load_tokenizer(name_or_path), **kwargs)

    @property
    def dtype(self) -> str:
        """The dtype the model computes in ("bfloat16")."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def name(self) -> str:
        return getattr(self.model.config, "_name_or_path", "local") or "local"

    def prompt_length(self, conversation: Conversation) -> int:
        """Tokens of the prompt the model reads for `conversation` (its end kept up to `max_prompt_length`)."""
        return len(encode_prompts(self.tokenizer, [conversation], self.max_prompt_length)[0])

    def _final_logprobs(self, rows: Sequence[list[int]]):
        """Log-softmax over the vocabulary at the last position of each row (token ids), the rows left-padded into
        one batch: a tensor (rows, vocabulary)."""
        import torch

        ids, mask = left_padded(rows, self.tokenizer.pad_token_id)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=position_ids.to(device), logits_to_keep=1).logits
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def _last_logprobs(self, conversations: Sequence[Conversation], progress: bool = False):
        """Yield (indices of the batch, log-softmax over the vocabulary at the last prompt position)."""
        encoded = encode_prompts(self.tokenizer, conversations, self.max_prompt_length)
        self.model.eval()
        batches = length_sorted_batches(encoded, self.batch_size)
        for batch in tqdm(batches, desc="judge", unit="batch", disable=not progress):
            yield batch, self._final_logprobs([encoded[i] for i in batch])

    def first_token_logprobs(self, conversations: Sequence[Conversation], top_k: int = 5,
                             progress: bool = False) -> list[list[tuple[str, float]]]:
        result: list[list[tuple[str, float]]] = [[] for _ in conversations]
        for batch, logprobs in self._last_logprobs(conversations, progress):
            values, indices = logprobs.topk(top_k, dim=-1)
            for row, i in enumerate(batch):
                result[i] = [(self.tokenizer.decode([int(t)]), float(v)) for v, t in zip(values[row], indices[row])]
        return result

    def token_logprobs(self, conversations: Sequence[Conversation], token_ids: Sequence[int],
                       progress: bool = False) -> list[list[float]]:
        """Log-probabilities of the given token ids as the first token of the reply."""
        import torch

        result: list[list[float]] = [[] for _ in conversations]
        cols = torch.tensor(list(token_ids))
        for batch, logprobs in self._last_logprobs(conversations, progress):
            picked = logprobs[:, cols.to(logprobs.device)].tolist()
            for row, i in enumerate(batch):
                result[i] = picked[row]
        return result

    def grouped_token_logprobs(self, groups: Sequence[Sequence[Conversation]], token_ids: Sequence[int],
                               progress: bool = False) -> list[list[list[float]]]:
        """`token_logprobs` of each group's conversations (at most `batch_size` rows per forward pass). The
        tokens a group's prompts share at their start are read once, and their key/value cache serves every row:
        the same values as reading each prompt whole, for fewer tokens."""
        import torch

        cols = torch.tensor(list(token_ids))
        self.model.eval()
        out = []
        for group in tqdm(groups, desc="judge", unit="group", disable=not progress):
            rows = encode_prompts(self.tokenizer, group, self.max_prompt_length)
            picked: list[list[float]] = []
            for start in range(0, len(rows), self.batch_size):
                logprobs = self._shared_prefix_final_logprobs(rows[start:start + self.batch_size])
                picked += logprobs[:, cols.to(logprobs.device)].tolist()
            out.append(picked)
        return out

    def _shared_prefix_final_logprobs(self, rows: Sequence[list[int]]):
        """Log-softmax over the vocabulary at the last token of each row (token ids): the rows' common prefix
        (all but the shortest row's last token at most) goes through the model once, its cache repeated per row;
        the rest of each row follows right-padded (a causal model's real positions never see the padding after
        them), the head only at each row's last position."""
        import torch

        shared = common_prefix_length(rows)
        rest = [r[shared:] for r in rows]
        width = max(map(len, rest))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rest], device=device)
        last = torch.tensor([len(r) - 1 for r in rest], device=device)
        keep = torch.unique(last)  # sorted: row i's last position is keep[searchsorted(keep, last[i])]
        with torch.no_grad():
            cache = None
            if shared:
                cache = self.model(input_ids=torch.tensor([rows[0][:shared]], device=device), use_cache=True,
                                   logits_to_keep=1).past_key_values
                cache.batch_repeat_interleave(len(rows))
            logits = self.model(input_ids=ids, past_key_values=cache, use_cache=cache is not None,
                                logits_to_keep=keep).logits
        picked = logits[torch.arange(len(rows), device=device), torch.searchsorted(keep, last)]
        return torch.log_softmax(picked.float(), dim=-1)

    def continuation_logprobs(self, conversation: Conversation, prefix: str,
                              continuations: Sequence[str]) -> list[float]:
        """Each continuation's summed token log-probability right after `prefix` at the start of the model's reply
        to `conversation`. The shared part (prompt + `prefix`) is read once; its key/value cache, repeated once per
        continuation, serves one batch of the continuations (right-padded: a causal model's earlier positions never
        see the padding)."""
        import torch

        tok = self.tokenizer
        base = encode_prompt(tok, list(conversation)) + tok(prefix, add_special_tokens=False)["input_ids"]
        base = base[-self.max_prompt_length:]
        conts = [tok(c, add_special_tokens=False)["input_ids"] for c in continuations]
        width = max(len(c) for c in conts)
        device = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad():
            shared = self.model(input_ids=torch.tensor([base], device=device), use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(shared.logits[0, -1].float(), dim=-1)  # predicts each continuation's 1st token
            cache = shared.past_key_values
            cache.batch_repeat_interleave(len(conts))
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            ids = torch.tensor([c + [pad] * (width - len(c)) for c in conts], device=device)
            rest = torch.log_softmax(self.model(input_ids=ids, past_key_values=cache).logits.float(), dim=-1)
        # position j of a continuation's row predicts its token j + 1
        return [float(first[c[0]]) + sum(float(rest[row, j, t]) for j, t in enumerate(c[1:]))
                for row, c in enumerate(conts)]

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
             progress: bool = False) -> list[str]:
        gen = HFGenerator(self.model, self.tokenizer, batch_size=self.batch_size,
                          max_prompt_length=self.max_prompt_length)
        replies = gen.generate(conversations, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens),
                               progress=progress)
        return [r[0] for r in replies]
