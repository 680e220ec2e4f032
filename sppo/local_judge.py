"""A local chat model used as a judge, in-process: the offline default for ranking and benchmarking.

Primitives, batched:
- `first_token_logprobs(conversations, top_k)`: the model's distribution over the first token of its reply,
  the top-k as (token text, log-prob), the way an OpenAI endpoint reports `top_logprobs` (length-sorted batches);
- `grouped_token_logprobs(groups, token_ids)`: the log-probabilities of given token ids as the reply's first
  token, for groups of conversations that open alike (a pairwise judge's prompts that show one response first):
  each group's common opening is read once;
- `chat(conversations, max_new_tokens)`: greedy replies (for judges that write a verdict in text);
- `continuation_logprobs(conversation, prefix, continuations)`: how likely each continuation is after a reply's
  opening `prefix` (a verdict label when the text gave none).
"""

from __future__ import annotations

from typing import Sequence

from tqdm.auto import tqdm

from .generate import (Conversation, HFGenerator, SamplingParams, encode_prompt, encode_prompts, left_padded,
                       length_sorted_batches)
from .prompt_cache import common_prefix_length, read_prefix


class LocalChatModel:
    def __init__(self, model, tokenizer, batch_size: int = 8, max_prompt_length: int = 2048):
        from .prompt_cache import PromptCache

        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.max_prompt_length = max_prompt_length
        # the judgment prompts of `chat`, which a second attempt and a verdict from log-probabilities read again
        self.prompt_cache = PromptCache()

    @classmethod
    def load(cls, name_or_path: str, dtype: str = "auto", **kwargs) -> "LocalChatModel":
        from .models import load_model, load_tokenizer

        return cls(load_model(name_or_path, dtype=dtype, inference=True), load_tokenizer(name_or_path), **kwargs)

    @property
    def dtype(self) -> str:
        """The dtype the model computes in ("bfloat16")."""
        from .models import dtype_name

        return dtype_name(next(self.model.parameters()).dtype)

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

    def grouped_token_logprobs(self, groups: Sequence[Sequence[Conversation]], token_ids: Sequence[int],
                               progress: bool = False) -> list[list[list[float]]]:
        """Per group, the log-probabilities of `token_ids` as the first token of each conversation's reply (at
        most `batch_size` rows per forward pass). The tokens a group's prompts share at their start are read once,
        and their key/value cache serves every row: the same values as reading each prompt whole, for fewer
        tokens."""
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
        (all but the shortest row's last token at most) read once (`_after_prefix`), the head only at each row's
        last position."""
        import torch

        shared = common_prefix_length(rows)
        rest = [r[shared:] for r in rows]
        last = torch.tensor([len(r) - 1 for r in rest])
        keep = torch.unique(last)  # sorted: row i's last position is keep[searchsorted(keep, last[i])]
        _, logits = self._after_prefix(rows[0][:shared], rest, logits_to_keep=keep)
        where = torch.searchsorted(keep, last).to(logits.device)
        picked = logits[torch.arange(len(rows), device=logits.device), where]
        return torch.log_softmax(picked.float(), dim=-1)

    def _after_prefix(self, prefix: list[int], rows: Sequence[list[int]], logits_to_keep=0, store=None):
        """`prefix` (token ids; may be empty) through the model once (`sppo.prompt_cache.read_prefix`), its key/value cache repeated
        once per row, then `rows` as its continuations in one batch, right-padded (a causal model's real positions
        never see the padding after them). Returns the logits at the prefix's last position (None without a
        prefix) and the rows' logits at `logits_to_keep` (0: every position; a tensor: those positions)."""
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        width = max(map(len, rows))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        first = cache = None
        with torch.no_grad():
            if prefix:
                first, cache = read_prefix(self.model, prefix, device, store)
                cache.batch_repeat_interleave(len(rows))
            logits = self.model(input_ids=ids, past_key_values=cache, use_cache=cache is not None,
                                logits_to_keep=logits_to_keep.to(device) if torch.is_tensor(logits_to_keep)
                                else logits_to_keep).logits
        return first, logits

    def continuation_logprobs(self, conversation: Conversation, prefix: str,
                              continuations: Sequence[str]) -> list[float]:
        """Each continuation's summed token log-probability right after `prefix` at the start of the model's reply
        to `conversation`. The shared part (prompt + `prefix`) is read once, after the judgment prompt `chat` read
        before where it holds it (`prompt_cache`); its key/value cache, repeated once per continuation, serves one
        batch of the continuations (`_after_prefix`)."""
        import torch

        tok = self.tokenizer
        base = encode_prompt(tok, list(conversation)) + tok(prefix, add_special_tokens=False)["input_ids"]
        base = base[-self.max_prompt_length:]
        conts = [tok(c, add_special_tokens=False)["input_ids"] for c in continuations]
        self.model.eval()
        first, logits = self._after_prefix(base, conts, store=self.prompt_cache)
        first = torch.log_softmax(first.float(), dim=-1)  # predicts each continuation's first token
        rest = torch.log_softmax(logits.float(), dim=-1)
        # position j of a continuation's row predicts its token j + 1
        return [float(first[c[0]]) + sum(float(rest[row, j, t]) for j, t in enumerate(c[1:]))
                for row, c in enumerate(conts)]

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
             progress: bool = False) -> list[str]:
        gen = HFGenerator(self.model, self.tokenizer, batch_size=self.batch_size,
                          max_prompt_length=self.max_prompt_length, prompt_cache=self.prompt_cache)
        replies = gen.generate(conversations, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens),
                               progress=progress)
        return [r[0] for r in replies]
