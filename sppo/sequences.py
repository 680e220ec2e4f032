"""Tokenizing prompt + response pairs and summing response log-probabilities.

A training sequence is the prompt rendered by the chat template with the generation prompt, followed by the
response tokens and exactly one EOS. The chat template already writes the BOS the model expects, so the
tokenizer adds no special tokens (the reference implementation added a second BOS and a second EOS).
Only response tokens (including that EOS) count in the log-probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .generate import Conversation, encode_prompt


@dataclass
class Encoded:
    input_ids: list[int]
    response_start: int  # index of the first response token
    truncated: bool


def eos_id(tokenizer) -> int:
    return tokenizer.eos_token_id


def encode_pair(tokenizer, conversation: Conversation | str, response: str, max_length: int,
                prompt_ids: list[int] | None = None) -> Encoded:
    """Prompt ids + response ids + EOS, truncated on the response side to max_length tokens."""
    prompt = prompt_ids if prompt_ids is not None else encode_prompt(tokenizer, conversation)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    eos = eos_id(tokenizer)
    while response_ids and response_ids[-1] == eos:  # the response text never carries its own EOS twice
        response_ids = response_ids[:-1]
    ids = prompt + response_ids + [eos]
    truncated = len(ids) > max_length
    if truncated:
        ids = ids[:max_length]
    return Encoded(ids, len(prompt), truncated)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; `loss_mask` marks the response tokens that are predicted."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    loss_mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        attn[row, :n] = 1
        loss_mask[row, e.response_start:n] = True
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask}


def summed_logps(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum over masked positions t of log p(input_ids[t] | input_ids[<t]); logits are the model's outputs
    for the same input_ids (position t-1 predicts token t). Returns one value per sequence."""
    logits = logits[:, :-1, :].float()
    targets = input_ids[:, 1:]
    mask = loss_mask[:, 1:]
    logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logps * mask).sum(-1)


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    out = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device), use_cache=False)
    return summed_logps(out.logits, ids, batch["loss_mask"].to(device))
