"""`sppo-train --tokens IN.jsonl`: the token ids training uses for given texts, one JSON line per input.

Each input line is {"prompt", "chosen", "rejected"} with the raw texts a generator returned (optional
"chosen_finish_reason" / "rejected_finish_reason": "length" marks a response cut at max_new_tokens). Only the
tokenizer of model.name is loaded (with model.tokenizer_config's template). Each output line holds
  generation_prompt   the prompt string generation sees (training.special_tokens)
  generation_prompt_ids   the ids the generation engine receives for it (HF generate, or vLLM's
                      prompt_token_ids: the same `generate.encode_prompt`); under special_tokens reference the
                      prompt string tokenized with the tokenizer's special tokens, as vLLM tokenized the
                      reference's text prompts (two BOS for Mistral, Llama-3 and Gemma-2)
  prompt_input_ids    the prompt part of the training sequences (after truncation); when the last prompt token
                      merged into one response's first token, the shorter of the two (the reference's
                      tokenize_row keeps that one as the prompt, trainer.py:615-623)
  chosen_input_ids, rejected_input_ids   prompt + response ids after truncation, as training feeds them
  chosen_labels, rejected_labels         the same with -100 where no loss is taken (the prompt)
computed by the functions training calls: generate.response_text (generation.response_text), the prompt
strings of generate.py, and sequences.encode_preference (training.special_tokens, training.truncation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import UserError
from .files import read_jsonl_numbered
from .generate import (FINISH_LENGTH, FINISH_STOP, encode_prompt, reference_prompt_text, render_prompt,
                       response_text)
from .sequences import Encoded, encode_preference

TEXT_FIELDS = ("prompt", "chosen", "rejected")
FINISH_FIELDS = ("chosen_finish_reason", "rejected_finish_reason")
IGNORE = -100


@dataclass(frozen=True)
class TokensInput:
    prompt: str
    chosen: str
    rejected: str
    finish_reasons: tuple[str | None, str | None] = (None, None)


def read_inputs(path: Path) -> list[TokensInput]:
    """The input lines, checked: a bad line raises UserError naming file:line and the field."""
    out = []
    for lineno, row in read_jsonl_numbered(path):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected an object with {', '.join(TEXT_FIELDS)}")
        for field in TEXT_FIELDS:
            if not isinstance(row.get(field), str):
                got = "missing" if field not in row else f"got {type(row[field]).__name__}"
                raise UserError(f"{where}: field '{field}' must be a string ({got})")
        for field in FINISH_FIELDS:
            if row.get(field) not in (None, FINISH_STOP, FINISH_LENGTH):
                raise UserError(f"{where}: field '{field}' must be {FINISH_STOP!r}, {FINISH_LENGTH!r} or null")
        out.append(TokensInput(row["prompt"], row["chosen"], row["rejected"],
                               (row.get(FINISH_FIELDS[0]), row.get(FINISH_FIELDS[1]))))
    if not out:
        raise UserError(f"{path}: no input lines")
    return out


def _labels(e: Encoded) -> list[int]:
    return [IGNORE] * e.response_start + e.input_ids[e.response_start:]


def token_record(tokenizer, cfg: Config, item: TokensInput) -> dict:
    """One output line: what generation sees and what training is fed for this input."""
    mode = cfg.generation.response_text
    chosen, rejected = response_text(item.chosen, mode), response_text(item.rejected, mode)
    reference = cfg.training.special_tokens == "reference"
    generation_prompt = (reference_prompt_text if reference else render_prompt)(tokenizer, item.prompt)
    c, r = encode_preference(tokenizer, item.prompt, chosen, rejected, cfg.training, item.finish_reasons)
    prompt = min(c.input_ids[:c.response_start], r.input_ids[:r.response_start], key=len)
    return {"generation_prompt": generation_prompt,
            "generation_prompt_ids": encode_prompt(tokenizer, item.prompt, cfg.training.special_tokens),
            "prompt_input_ids": prompt,
            "chosen_input_ids": c.input_ids, "chosen_labels": _labels(c),
            "rejected_input_ids": r.input_ids, "rejected_labels": _labels(r)}


def print_tokens(cfg: Config, path: str) -> int:
    from .run_dir import Run

    items = read_inputs(Path(path))
    tokenizer = Run(cfg).tokenizer(cfg.model.name, padding_side="right")  # the tokenizer training loads
    for item in items:
        print(json.dumps(token_record(tokenizer, cfg, item), ensure_ascii=False))
    return 0
