"""A local chat model used as a judge, in-process: the offline default for ranking and benchmarking.

Two primitives, both batched and length-sorted:
- `first_token_logprobs(conversations, top_k)`: the model's distribution over the first token of its reply,
  the top-k as (token text, log-prob), the way an OpenAI endpoint reports `top_logprobs`.
- `chat(conversations, max_new_tokens)`: greedy replies (for judges that write a verdict in text).
"""

from __future__ import annotations

from typing import Sequence

from tqdm.auto import tqdm

from .generate import (Conversation, HFGenerator, SamplingParams, encode_prompts, left_padded,
                       length_sorted_batches)


class LocalChatModel:
    def __init__(self, model, tokenizer, batch_size: int = 8, max_prompt_length: int = 2048):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.max_prompt_length = max_prompt_length

    @classmethod
    def load(cls, name_or_path: str, dtype: str = "auto", **kwargs) -> "LocalChatModel":
        from .models import load_model, load_tokenizer

        return cls(load_model(name_or_path, dtype=dtype), load_tokenizer(name_or_path), **kwargs)

    @property
    def name(self) -> str:
        return getattr(self.model.config, "_name_or_path", "local") or "local"

    def _last_logprobs(self, conversations: Sequence[Conversation], progress: bool = False):
        """Yield (indices of the batch, log-softmax over the vocabulary at the last prompt position)."""
        import torch

        encoded = encode_prompts(self.tokenizer, conversations, self.max_prompt_length)
        device = next(self.model.parameters()).device
        self.model.eval()
        batches = length_sorted_batches(encoded, self.batch_size)
        for batch in tqdm(batches, desc="judge", unit="batch", disable=not progress):
            ids, mask = left_padded([encoded[i] for i in batch], self.tokenizer.pad_token_id)
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    position_ids=position_ids.to(device), logits_to_keep=1).logits[:, -1, :]
            yield batch, torch.log_softmax(logits.float(), dim=-1)

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

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
             progress: bool = False) -> list[str]:
        gen = HFGenerator(self.model, self.tokenizer, batch_size=self.batch_size,
                          max_prompt_length=self.max_prompt_length)
        replies = gen.generate(conversations, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens),
                               progress=progress)
        return [r[0] for r in replies]
