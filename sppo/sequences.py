"""Tokenizing training pairs (prompt + chosen, prompt + rejected) and summing response log-probabilities.

Two settings of `training` decide the tokens:

special_tokens
  clean      the prompt is the chat template rendered with the generation prompt (the template writes the one
             BOS), the response is tokenized on its own and followed by exactly one EOS.
  reference  uclaml/SPPO as it trained the published models: the prompt text is the template of the user turn
             and the response text is the rest of the template of [user, assistant] (run_sppo.py:57-67,
             alignment/data.py:53-65), so it ends with the template's `</s>`; prompt + response are tokenized
             together (trainer.py:530-578), a BOS is put in front of the template's own (trainer.py:637-640) and
             an EOS after the template's (trainer.py:646-651): two BOS, two EOS, both EOS inside the
             response's log-probability.
truncation
  toolkit    prompt + response cut to max_length on the response side (prompts longer than max_prompt_length
             never get here: the pipeline drops them before generation).
  reference  tokenize_row (trainer.py:653-671): when prompt + the LONGER of the two responses exceeds
             max_length, the prompt keeps its last max_prompt_length tokens; if still too long, both responses
             keep their first max_length - max_prompt_length tokens (losing their EOS). Nothing is dropped.

A response that stopped at the generation limit (finish reason "length") gets no EOS at all in either mode:
training must not teach the model to end mid-sentence. (The reference appended one regardless; with its
geometry, 2048 new tokens against 1024 - 512, such a response is always cut and loses it anyway.) Rows of older
runs, without a finish reason, keep an EOS.
Only response tokens count in the log-probability.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import UserError
from .generate import FINISH_LENGTH, Conversation, as_conversation, encode_prompt


@dataclass
class Encoded:
    input_ids: list[int]
    response_start: int  # index of the first response token
    truncated: bool  # the response was cut
    prompt_truncated: bool = False  # the prompt lost its start (reference truncation)


@dataclass
class PairExample:
    """One preference pair, encoded, with the per-example targets the losses read (sppo.loss.LOSS_TARGETS)."""
    chosen: Encoded
    rejected: Encoded
    p_win: float
    p_lose: float
    p_chosen_rejected: float | None = None


def eos_id(tokenizer) -> int:
    return tokenizer.eos_token_id


def _clean_response_ids(tokenizer, response: str, finish_reason: str | None) -> list[int]:
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    eos = eos_id(tokenizer)
    while ids and ids[-1] == eos:  # the response text never carries its own EOS twice
        ids = ids[:-1]
    return ids if finish_reason == FINISH_LENGTH else ids + [eos]


def _reference_sides(tokenizer, conversation: Conversation | str, response: str,
                     finish_reason: str | None) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of one response exactly as the reference's tokenize_row builds them."""
    if tokenizer.bos_token_id is None:
        raise UserError("training.special_tokens: reference puts a BOS token in front; this tokenizer has none "
                        "(use clean)")
    turns = as_conversation(conversation)
    # alignment/data.py:54-65: `add_generate_prompt` is misspelt there, so the prompt has no generation prompt
    prompt_text = tokenizer.apply_chat_template(turns, tokenize=False)
    full_text = tokenizer.apply_chat_template(turns + [{"role": "assistant", "content": response}], tokenize=False)
    answer_text = full_text[len(prompt_text):]
    if finish_reason == FINISH_LENGTH:  # no EOS for a cut response: drop the template's closing text too
        end = answer_text.rfind(response)
        answer_text = answer_text[:end + len(response)] if end >= 0 and response else answer_text
    # build_tokenized_answer (trainer.py:538-571): prompt + answer tokenized together; the answer starts where
    # the prompt's own tokens stop matching (one token earlier when the last prompt token merged)
    full = tokenizer(prompt_text + answer_text, add_special_tokens=False)["input_ids"]
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    start = len(prompt) if prompt == full[:len(prompt)] else len(prompt) - 1
    answer = full[start:]
    if finish_reason == FINISH_LENGTH:
        while answer and answer[-1] == eos_id(tokenizer):
            answer = answer[:-1]
        return [tokenizer.bos_token_id] + full[:start], answer
    return [tokenizer.bos_token_id] + full[:start], answer + [eos_id(tokenizer)]  # trainer.py:638, 647


def _sides(tokenizer, conversation, response: str, finish_reason: str | None, special_tokens: str,
           prompt_ids: list[int] | None = None) -> tuple[list[int], list[int]]:
    if special_tokens == "reference":
        return _reference_sides(tokenizer, conversation, response, finish_reason)
    prompt = prompt_ids if prompt_ids is not None else encode_prompt(tokenizer, conversation)
    return list(prompt), _clean_response_ids(tokenizer, response, finish_reason)


def _truncate_toolkit(prompt: list[int], answer: list[int], max_length: int) -> Encoded:
    ids = prompt + answer
    return Encoded(ids[:max_length], len(prompt), len(ids) > max_length)


def _truncate_reference(sides: Sequence[tuple[list[int], list[int]]], max_length: int,
                        max_prompt_length: int) -> list[Encoded]:
    """tokenize_row's truncation (trainer.py:653-671), applied to chosen and rejected together."""
    longer = max(len(answer) for _, answer in sides)
    out = []
    for prompt, answer in sides:
        new_prompt = prompt[-max_prompt_length:] if len(prompt) + longer > max_length else prompt
        new_answer = answer[:max_length - max_prompt_length] if len(new_prompt) + longer > max_length else answer
        out.append(Encoded(new_prompt + new_answer, len(new_prompt), len(new_answer) < len(answer),
                           len(new_prompt) < len(prompt)))
    return out


def encode_pair(tokenizer, conversation: Conversation | str, response: str, max_length: int,
                prompt_ids: list[int] | None = None, finish_reason: str | None = None) -> Encoded:
    """Prompt ids + response ids + EOS (none if finish_reason is "length"), truncated on the response side to
    max_length tokens: one response, clean special tokens, toolkit truncation."""
    return _truncate_toolkit(*_sides(tokenizer, conversation, response, finish_reason, "clean", prompt_ids),
                             max_length)


def encode_preference(tokenizer, conversation: Conversation | str, chosen: str, rejected: str, training,
                      finish_reasons: tuple[str | None, str | None] = (None, None),
                      prompt_ids: list[int] | None = None) -> tuple[Encoded, Encoded]:
    """(chosen, rejected) encoded under `training`'s special_tokens and truncation (a TrainingConfig or any
    object with max_length, max_prompt_length, special_tokens and truncation)."""
    sides = [_sides(tokenizer, conversation, text, finish, training.special_tokens, prompt_ids)
             for text, finish in zip((chosen, rejected), finish_reasons)]
    if training.truncation == "reference":
        c, r = _truncate_reference(sides, training.max_length, training.max_prompt_length)
        return c, r
    return _truncate_toolkit(*sides[0], training.max_length), _truncate_toolkit(*sides[1], training.max_length)


def encode_examples(tokenizer, rows: Sequence[dict], training) -> tuple[list[PairExample], int]:
    """Dataset rows (prompt, chosen, rejected, targets, optional finish reasons) -> PairExamples under
    `training` (a TrainingConfig), and the number of responses that were cut."""
    examples, truncated = [], 0
    clean = training.special_tokens != "reference"
    for n, r in enumerate(rows):
        prompt_ids = encode_prompt(tokenizer, r["prompt"]) if clean else None
        finishes = (r.get("chosen_finish_reason"), r.get("rejected_finish_reason"))
        chosen, rejected = encode_preference(tokenizer, r["prompt"], r["chosen"], r["rejected"], training,
                                             finishes, prompt_ids)
        truncated += chosen.truncated + rejected.truncated
        if getattr(training, "loss", None) == "sppo_single" and r.get("p_chosen_rejected") is None:
            raise UserError(f"dataset row {n} ({r.get('id', '?')}): no p_chosen_rejected for training.loss "
                            "sppo_single; rebuild the dataset stage with this version")
        examples.append(PairExample(chosen, rejected, r["p_win"], r["p_lose"], r.get("p_chosen_rejected")))
    return examples, truncated


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


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for each row of logits (last dimension: the vocabulary), computed in at least fp32 as the
    target's logit minus the row's logsumexp: the value a log_softmax + gather gives, without writing a
    log-probability for every vocabulary entry."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def summed_logps(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum over masked positions t of log p(input_ids[t] | input_ids[<t]); logits are the model's outputs
    for the same input_ids (position t-1 predicts token t). Returns one value per sequence."""
    return (token_logps(logits[:, :-1, :], input_ids[:, 1:]) * loss_mask[:, 1:]).sum(-1)


def predicting_positions(loss_mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq] bool: the positions whose logits predict a response token (position t-1 predicts t)."""
    select = torch.zeros_like(loss_mask, dtype=torch.bool)
    select[:, :-1] = loss_mask[:, 1:]
    return select


@contextmanager
def head_only_at(model, select: torch.Tensor):
    """Within the block the model's language-model head sees only the final hidden states at `select`, so
    its logits come back as [1, n_selected, vocab]: the prompt's and the padding's positions never reach the
    head. Yields a list that holds True once the head ran that way. Exact for every transformers causal LM:
    the head is `get_output_embeddings()` and what follows it (soft-capping, scaling) is elementwise."""
    inner = getattr(model, "module", model)  # DDP / DeepSpeed engine
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    fired: list[bool] = []

    def pick(_module, args):
        if fired or not args or args[0].shape[:2] != select.shape:
            return None  # not the final hidden states of this batch: leave the call alone
        fired.append(True)
        return (args[0][select].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(pick) if head is not None else None
    try:
        yield fired
    finally:
        if handle is not None:
            handle.remove()


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed response log-probs of a collated batch (see `summed_logps`), with the language-model head run
    only at the positions that predict a response token (`head_only_at`)."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    loss_mask = batch["loss_mask"].to(device)
    select = predicting_positions(loss_mask)
    with head_only_at(model, select) as selected:
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device), use_cache=False).logits
    if not selected:  # a model whose head is not its output embeddings: logits at every position
        return summed_logps(logits, ids, loss_mask)
    per_token = token_logps(logits[0], ids[:, 1:][loss_mask[:, 1:]])
    rows = torch.arange(ids.shape[0], device=device).unsqueeze(1).expand_as(select)[select]
    return torch.zeros(ids.shape[0], dtype=per_token.dtype, device=device).index_add(0, rows, per_token)
