"""The release's compatibility check: would a checkpoint read differently in transformers 4.42+ than in the
toolkit's transformers 5?

A pure function on the checkpoint's files (no second transformers is needed at release time). Its rules are
what transformers 4.42.4 reads — the fields each model type's config class takes (`sppo/transformers_4_42.json`,
taken from that environment), the tokenizer class both versions build from tokenizer.json verbatim, the chat
template only inline, `torch_dtype` only — and are verified against a real 4.42.4 environment by
`tests/test_release_compat.py`. `sppo.export.write_compatible` writes files that pass it. Every problem is one
line naming the file and the field.

The weights a release uploads are merged full weights (with `training.lora` the adapters are merged into the
model before the checkpoint is saved): adapter files or PEFT tensor names are refused, so every stack that
loads the base architecture loads the release, without PEFT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppo.errors import first_line, shown
from sppo.export import (CONFIG, GENERATION_CONFIG, LOCAL_KEYS, TEMPLATE, TOKENIZER_CLASS, TOKENIZER_CONFIG,
                         TOKENIZER_JSON, legacy_rope, rules_4_42)

OLD = "transformers 4.42"
# safetensors dtype names -> the names config.json uses
_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}
# values generation uses only with do_sample=true, and their defaults in every version
_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


@dataclass
class CompatReport:
    """The check's outcome for one checkpoint."""

    name: str
    problems: list[str]

    def line(self) -> str:
        if not self.problems:
            return (f"compatibility {self.name}: ok (config, tokenizer, chat template and generation config "
                    f"read the same in {OLD}+ and 5; merged full weights)")
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"compatibility {self.name}: {self.problems[0]}{more}"


# fields the check reads, with the JSON type transformers expects there (absent or null: fine)
_FIELD_TYPES = {
    CONFIG: [("model_type", str), ("rope_parameters", dict), ("rope_parameters.rope_type", str),
             ("rope_parameters.type", str)],
    TOKENIZER_CONFIG: [("chat_template", str), ("tokenizer_class", str)],
    TOKENIZER_JSON: [("model", dict), ("model.merges", list), ("model.vocab", dict), ("added_tokens", list)],
    GENERATION_CONFIG: [],
}
_JSON_TYPES = {str: "a string", dict: "an object", list: "a list"}


def _load(path: Path) -> tuple[Any, str | None]:
    """(parsed JSON or None when absent, a problem line when unreadable or not of the shape the check reads)."""
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        return None, f"{path.name}: not a UTF-8 text file (byte {e.start})"
    except RecursionError:
        return None, f"{path.name}: not valid JSON (nested too deeply)"
    except ValueError as e:
        return None, f"{path.name}: not valid JSON ({first_line(e)[:200]})"
    except OSError as e:
        return None, f"{path.name}: unreadable ({e.strerror or type(e).__name__})"
    return data, _shape_problem(path.name, data)


def _shape_problem(name: str, data: Any) -> str | None:
    """The first field of `data` whose JSON type is not the one transformers reads there (a tampered file)."""
    if not isinstance(data, dict):
        return f"{name}: expected a JSON object"
    for dotted, kind in _FIELD_TYPES.get(name, []):
        value: Any = data
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, kind):
            return f"{name}: field '{dotted}' is {type(value).__name__}, expected {_JSON_TYPES[kind]}"
    return None


def _local_keys(data: dict, file: str) -> list[str]:
    return [f"{file}: field {k!r} is machine-local (it describes where the checkpoint was saved)"
            for k in LOCAL_KEYS if k in data]


def _ids(value: Any) -> set[int]:
    values = value if isinstance(value, list) else [value]
    return {v for v in values if isinstance(v, int) and not isinstance(v, bool)}


def _rope_problems(config: dict, takes: list[str]) -> list[str]:
    rope, model_type = config.get("rope_parameters"), config.get("model_type")
    if rope is None:  # a 4.x-style config: both versions read the top-level fields
        return []
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        return [f"{CONFIG}: field 'rope_parameters' has no rope_theta (per-layer rope has no {OLD} form)"]
    want = legacy_rope(rope)
    if "rope_theta" not in takes:
        return [f"{CONFIG}: field 'rope_parameters' cannot be expressed for {OLD}: its {model_type} config "
                "takes no rope_theta"]
    if config.get("rope_theta") != want["rope_theta"]:
        return [f"{CONFIG}: field 'rope_theta' is {shown(config.get('rope_theta'))} but "
                f"rope_parameters.rope_theta is {shown(want['rope_theta'])} ({OLD} reads only the top-level value, "
                "else its default)"]
    scaling, kind = config.get("rope_scaling"), rope.get("rope_type", rope.get("type", "default"))
    if want["rope_scaling"] is None:
        return [] if not scaling else [f"{CONFIG}: field 'rope_scaling' is set but rope_parameters is the "
                                       "default rope"]
    if "rope_scaling" not in takes or "type" not in want["rope_scaling"]:
        return [f"{CONFIG}: field 'rope_parameters' has rope_type {shown(kind)}, which {OLD} ignores or rejects "
                f"for model_type {shown(model_type)} (it reads only the linear and dynamic ropes, of llama-like "
                "models)"]
    if scaling != want["rope_scaling"]:
        return [f"{CONFIG}: field 'rope_scaling' is {shown(scaling)}, expected {shown(want['rope_scaling'])} from "
                "rope_parameters"]
    return []


def config_problems(config: dict) -> list[str]:
    out = _local_keys(config, CONFIG)
    model_type = config.get("model_type")
    takes = rules_4_42().get(model_type) if isinstance(model_type, str) else None
    if takes is None:
        return out + [f"{CONFIG}: field 'model_type' {shown(model_type)} is unknown to {OLD}"]
    out += _rope_problems(config, takes)
    head_dim, hidden, heads = config.get("head_dim"), config.get("hidden_size"), config.get("num_attention_heads")
    if (head_dim is not None and "head_dim" not in takes and isinstance(hidden, int) and isinstance(heads, int)
            and heads > 0 and head_dim != hidden // heads):
        out.append(f"{CONFIG}: field 'head_dim' {shown(head_dim)} is ignored by {OLD} for model_type "
                   f"{shown(model_type)}, which uses hidden_size / num_attention_heads = {hidden // heads}")
    if "dtype" in config and config.get("torch_dtype") != config["dtype"]:
        out.append(f"{CONFIG}: field 'torch_dtype' is {shown(config.get('torch_dtype'))} but 'dtype' is "
                   f"{shown(config['dtype'])} (transformers 4.x reads torch_dtype)")
    return out


def token_id(tokenizer_json: Any, token: Any) -> int | None:
    """The id tokenizer.json gives a token string (an added token's, else the model vocabulary's)."""
    text = token.get("content") if isinstance(token, dict) else token
    if not isinstance(tokenizer_json, dict) or not isinstance(text, str):
        return None
    for added in tokenizer_json.get("added_tokens") or []:
        if isinstance(added, dict) and added.get("content") == text:
            return _int_or_none(added.get("id"))
    vocab = (tokenizer_json.get("model") or {}).get("vocab")
    return _int_or_none(vocab.get(text)) if isinstance(vocab, dict) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _template_problems(checkpoint: Path, tokenizer_config: dict) -> list[str]:
    template, jinja = tokenizer_config.get("chat_template"), checkpoint / TEMPLATE
    if not isinstance(template, str):
        where = f" (only in {TEMPLATE}, which transformers 4.x does not read)" if jinja.is_file() else ""
        return [f"{TOKENIZER_CONFIG}: field 'chat_template' missing{where}"]
    try:
        file_template = jinja.read_text(encoding="utf-8") if jinja.is_file() else None
    except UnicodeDecodeError as e:
        return [f"{TEMPLATE}: not a UTF-8 text file (byte {e.start})"]
    if file_template is not None and file_template != template:
        return [f"{TOKENIZER_CONFIG}: field 'chat_template' differs from {TEMPLATE} (transformers 5 reads the "
                "file, 4.x the field)"]
    if (checkpoint / "additional_chat_templates").is_dir():
        return [f"{TOKENIZER_CONFIG}: field 'chat_template' names one template but additional_chat_templates/ "
                "holds more, which transformers 4.x does not read"]
    return []


def tokenizer_problems(checkpoint: Path, tokenizer_config: dict, tokenizer_json: Any, config: dict) -> list[str]:
    out = _local_keys(tokenizer_config, TOKENIZER_CONFIG)
    if tokenizer_json is None:
        out.append(f"{TOKENIZER_JSON}: missing ({TOKENIZER_CLASS} is built from it in every version)")
    elif not isinstance(tokenizer_json, dict):
        out.append(f"{TOKENIZER_JSON}: expected a JSON object")
    elif any(not isinstance(m, str) for m in ((tokenizer_json.get("model") or {}).get("merges") or [])):
        out.append(f"{TOKENIZER_JSON}: field 'model.merges' holds [a, b] pairs, which the tokenizers < 0.20 of "
                   f"{OLD} cannot parse (\"a b\" strings read the same everywhere)")
    cls = tokenizer_config.get("tokenizer_class")
    if cls != TOKENIZER_CLASS:
        out.append(f"{TOKENIZER_CONFIG}: field 'tokenizer_class' is {shown(cls)}; {TOKENIZER_CLASS} is the class "
                   f"{OLD}+ and 5 both build from tokenizer.json unchanged")
    out += _template_problems(checkpoint, tokenizer_config)
    if "clean_up_tokenization_spaces" not in tokenizer_config:
        out.append(f"{TOKENIZER_CONFIG}: field 'clean_up_tokenization_spaces' missing ({OLD} defaults to true, "
                   "5 to false: decoded text differs)")
    extra = tokenizer_config.get("extra_special_tokens")
    if isinstance(extra, dict) and extra:
        out.append(f"{TOKENIZER_CONFIG}: field 'extra_special_tokens' names tokens, which {OLD} does not read")
    elif extra and tokenizer_config.get("additional_special_tokens") != extra:
        out.append(f"{TOKENIZER_CONFIG}: field 'additional_special_tokens' must repeat extra_special_tokens "
                   f"({OLD} reads only the former)")
    eos = token_id(tokenizer_json, tokenizer_config.get("eos_token"))
    if eos is not None and _ids(config.get("eos_token_id")) and eos not in _ids(config.get("eos_token_id")):
        out.append(f"{TOKENIZER_CONFIG}: field 'eos_token' has id {eos}, not config.json's eos_token_id "
                   f"{shown(config.get('eos_token_id'))}")
    return out


def generation_problems(generation: dict, config: dict, tokenizer_eos: int | None) -> list[str]:
    f = GENERATION_CONFIG
    out = _local_keys(generation, f)
    eos, config_eos = _ids(generation.get("eos_token_id")), _ids(config.get("eos_token_id"))
    if config_eos and not eos:
        out.append(f"{f}: field 'eos_token_id' missing (generation would not stop at config.json's EOS)")
    elif not config_eos <= eos:
        out.append(f"{f}: field 'eos_token_id' {shown(generation['eos_token_id'])} lacks config.json's "
                   f"eos_token_id {shown(config.get('eos_token_id'))}")
    elif tokenizer_eos is not None and eos and tokenizer_eos not in eos:
        out.append(f"{f}: field 'eos_token_id' {shown(generation['eos_token_id'])} lacks the tokenizer's EOS id "
                   f"{tokenizer_eos}")
    for key in ("bos_token_id", "pad_token_id"):
        if generation.get(key) is not None and config.get(key) is not None and generation[key] != config[key]:
            out.append(f"{f}: field {key!r} {shown(generation[key])} differs from config.json's "
                       f"{shown(config[key])}")
    return out + _sampling_problems(generation)


def _sampling_problems(generation: dict) -> list[str]:
    f, sampling = GENERATION_CONFIG, generation.get("do_sample") is True
    out = []
    for key, default in _SAMPLING_DEFAULTS.items():
        value = generation.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{f}: field {key!r} {shown(value)} is not a number")
        elif not sampling and value != default:
            out.append(f"{f}: field {key!r} {shown(value)} is ignored without do_sample=true (greedy decoding)")
    temperature, top_p = generation.get("temperature"), generation.get("top_p")
    if sampling and isinstance(temperature, (int, float)) and temperature <= 0:
        out.append(f"{f}: field 'temperature' {shown(temperature)} must be positive with do_sample=true")
    if isinstance(top_p, (int, float)) and not 0 < top_p <= 1:
        out.append(f"{f}: field 'top_p' {shown(top_p)} must be in (0, 1]")
    return out


def safetensors_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON); None if unreadable."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < 100_000_000 else None
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, not UTF-8, nested past Python's limit
        return None
    return header if isinstance(header, dict) else None


def _why_merged(lora: bool) -> str:
    return "training.lora merges the adapters; " if lora else ""


def adapter_problems(checkpoint: Path, lora: bool) -> list[str]:
    return [f"{name}: an adapter file; {_why_merged(lora)}a release uploads merged full weights only"
            for name in ADAPTER_FILES if (checkpoint / name).exists()]


def weight_problems(checkpoint: Path, config: dict, lora: bool) -> list[str]:
    out = []
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        out.append("model.safetensors: missing (a release uploads its weights as *.safetensors)")
    dtype = config.get("torch_dtype") or config.get("dtype")
    for path in files:
        for tensor, meta in (safetensors_header(path) or {}).items():
            if tensor == "__metadata__" or not isinstance(meta, dict):
                continue
            if "lora_" in tensor or tensor.startswith("base_model.model."):
                out.append(f"{path.name}: tensor {shown(tensor)} is a PEFT/LoRA weight; {_why_merged(lora)}a "
                           "release uploads merged full weights")
                break
            stored = _DTYPES.get(meta.get("dtype")) if isinstance(meta.get("dtype"), str) else None
            if stored and dtype and stored != dtype:
                out.append(f"{path.name}: tensor {shown(tensor)} is {stored} but config.json's torch_dtype is "
                           f"{shown(dtype)}")
                break
    return out


def compat_problems(checkpoint: str | Path, lora: bool = False) -> list[str]:
    """Every reason the checkpoint's files would read differently in transformers 4.42+ and 5, one line each,
    naming file and field; [] when they read the same."""
    checkpoint = Path(checkpoint)
    loaded = {name: _load(checkpoint / name) for name in (CONFIG, TOKENIZER_CONFIG, TOKENIZER_JSON,
                                                           GENERATION_CONFIG)}
    out = adapter_problems(checkpoint, lora) + [problem for _, problem in loaded.values() if problem]
    if out:  # an adapter or an unreadable file: nothing else to read
        return out
    config, tokenizer_config = loaded[CONFIG][0], loaded[TOKENIZER_CONFIG][0]
    tokenizer_json, generation = loaded[TOKENIZER_JSON][0], loaded[GENERATION_CONFIG][0]
    for name, data in ((CONFIG, config), (TOKENIZER_CONFIG, tokenizer_config)):
        if data is None:
            return [f"{name}: missing"]
    out = config_problems(config) + tokenizer_problems(checkpoint, tokenizer_config, tokenizer_json, config)
    if generation is not None:  # a dict: _load refused any other shape
        eos = token_id(tokenizer_json, tokenizer_config.get("eos_token"))
        out += generation_problems(generation, config, eos)
    return out + weight_problems(checkpoint, config, lora)
