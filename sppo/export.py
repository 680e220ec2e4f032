"""Checkpoint files that every transformers from 4.42 on reads the same way as the toolkit's transformers 5.

transformers 5 saves some values where only version 5 looks for them. Read by transformers 4.x (the version the
reference SPPO code pins, and that older vLLM, TGI, FastChat and lm-evaluation-harness stacks run) such a
checkpoint loads without an error but as another model or tokenizer. `write_compatible` rewrites the files
after `save_pretrained` so both generations read the same values; `sppo-release` checks them before a push
(`release/checkpoint_check.py`).

- config.json: `rope_parameters` (5.x) also as top-level `rope_theta` and `rope_scaling` (null for the default
  rope, else the 4.x form); `dtype` (5.x) also as `torch_dtype`; no machine-local keys.
- tokenizer_config.json: `tokenizer_class` PreTrainedTokenizerFast (both versions build it from tokenizer.json
  verbatim; 4.x does not know 5.x's TokenizersBackend), the chat template inline as well as in
  chat_template.jinja (4.x reads only the inline one), `clean_up_tokenization_spaces` explicit (4.42 defaults
  to True, 5.x to False), `extra_special_tokens` also as `additional_special_tokens`; no machine-local keys.
- tokenizer.json: BPE merges as "a b" strings, the form tokenizers < 0.20 (all that transformers 4.42 accepts)
  parse, instead of the [a, b] pairs newer tokenizers write.
- generation_config.json: no machine-local keys; the release check wants its EOS ids to agree with the config
  and the tokenizer and no sampling value that generation would ignore.

What transformers 4.42.4 reads per model type (which config classes take `rope_theta`, `rope_scaling`,
`head_dim`) is in `transformers_4_42.json`, produced in a transformers 4.42.4 environment by
`scripts/compat_probe.py rules`; `tests/test_release_compat.py` checks it against that environment.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .files import write_json

CONFIG, TOKENIZER_CONFIG, GENERATION_CONFIG = "config.json", "tokenizer_config.json", "generation_config.json"
TEMPLATE, TOKENIZER_JSON = "chat_template.jinja", "tokenizer.json"
TOKENIZER_CLASS = "PreTrainedTokenizerFast"
LEGACY_ROPE_TYPES = ("linear", "dynamic")  # the scaled ropes transformers 4.42 implements
RULES_FILE = Path(__file__).with_name("transformers_4_42.json")
# Keys that describe the machine a checkpoint was saved on, never the model.
LOCAL_KEYS = ("_name_or_path", "_model_name_or_path", "name_or_path", "_commit_hash", "local_files_only",
              "is_local", "cache_dir", "token", "use_auth_token")


@functools.cache
def rules_4_42() -> dict[str, list[str]]:
    """model_type -> the fields among rope_theta, rope_scaling, head_dim its transformers 4.42.4 config takes."""
    return json.loads(RULES_FILE.read_text(encoding="utf-8"))["model_types"]


def read_json_if_any(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def without_local(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in LOCAL_KEYS}


def legacy_rope(rope_parameters: dict) -> dict:
    """transformers 5's `rope_parameters` as 4.x's top-level fields: rope_theta, and rope_scaling — null for the
    default rope, {"type", "factor"} for the linear and dynamic ropes (the exact form the 4.42 validators
    accept; later 4.x read it too), else the 4.43+ form with `rope_type`, which 4.42 cannot read."""
    scaling = {k: v for k, v in rope_parameters.items() if k != "rope_theta"}
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    out: dict[str, Any] = {"rope_theta": rope_parameters.get("rope_theta"), "rope_scaling": None}
    if kind in LEGACY_ROPE_TYPES and set(scaling) == {"factor"}:
        out["rope_scaling"] = {"type": kind, "factor": scaling["factor"]}
    elif kind != "default":
        out["rope_scaling"] = {"rope_type": kind, **scaling}
    return out


def compatible_config(config: dict) -> dict:
    out = without_local(config)
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        out.update(legacy_rope(rope))
    if out.get("dtype") is not None:
        out["torch_dtype"] = out["dtype"]
    return out


def compatible_tokenizer_config(tokenizer_config: dict, template: str | None,
                                clean_up_tokenization_spaces: bool = False) -> dict:
    out = without_local(tokenizer_config)
    out["tokenizer_class"] = TOKENIZER_CLASS
    if template is not None:
        out["chat_template"] = template
    out.setdefault("clean_up_tokenization_spaces", clean_up_tokenization_spaces)
    extra = out.get("extra_special_tokens")
    if isinstance(extra, list) and extra:
        out["additional_special_tokens"] = list(extra)
    return out


def legacy_merges(merges: list) -> list | None:
    """BPE merges as tokenizers < 0.20 (the versions transformers 4.42 accepts) read them, "a b" strings, from
    the [a, b] pairs newer tokenizers write; None when a part holds a space (no string form exists)."""
    out = []
    for merge in merges:
        if isinstance(merge, str):
            out.append(merge)
        elif isinstance(merge, list) and len(merge) == 2 and all(isinstance(p, str) and " " not in p for p in merge):
            out.append(f"{merge[0]} {merge[1]}")
        else:
            return None
    return out


def compatible_tokenizer_json(tokenizer: dict) -> dict:
    model = tokenizer.get("model")
    merges = model.get("merges") if isinstance(model, dict) else None
    legacy = legacy_merges(merges) if isinstance(merges, list) else None
    return tokenizer if legacy is None else {**tokenizer, "model": {**model, "merges": legacy}}


def write_compatible(checkpoint: str | Path, clean_up_tokenization_spaces: bool = False) -> None:
    """Rewrite config.json, tokenizer_config.json, tokenizer.json and generation_config.json of a checkpoint saved
    by transformers 5 so that transformers 4.42+ reads the same values. Each file is replaced atomically."""
    checkpoint = Path(checkpoint)
    config = read_json_if_any(checkpoint / CONFIG)
    if isinstance(config, dict):
        write_json(checkpoint / CONFIG, compatible_config(config))
    tokenizer_config = read_json_if_any(checkpoint / TOKENIZER_CONFIG)
    if isinstance(tokenizer_config, dict):
        template_path = checkpoint / TEMPLATE
        template = template_path.read_text(encoding="utf-8") if template_path.is_file() else None
        write_json(checkpoint / TOKENIZER_CONFIG,
                   compatible_tokenizer_config(tokenizer_config, template, clean_up_tokenization_spaces))
    tokenizer_json = read_json_if_any(checkpoint / TOKENIZER_JSON)
    if isinstance(tokenizer_json, dict):
        write_json(checkpoint / TOKENIZER_JSON, compatible_tokenizer_json(tokenizer_json))
    generation = read_json_if_any(checkpoint / GENERATION_CONFIG)
    if isinstance(generation, dict):
        write_json(checkpoint / GENERATION_CONFIG, without_local(generation))

