"""Read a checkpoint the way the installed transformers reads it, and print what was read as JSON.

The same file runs under the toolkit's transformers 5 and under transformers 4.42.4 (`scripts/compat_env.sh`),
so comparing the two outputs shows whether a checkpoint loads the same in both:

    python scripts/compat_probe.py read CHECKPOINT... [--weights]  # config values, ids, chat renders, logits
    python scripts/compat_probe.py rules                         # which config fields this version's readers take

It only uses APIs present in both versions, imports nothing from the toolkit and never touches the network.
A part that fails to load is reported as {"error": "..."} instead of stopping the probe.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# ~30 strings whose ids catch a different pre-tokenizer, normalizer, post-processor or added-token handling.
TEXTS = [
    "Hello world", " Hello world", "  two leading spaces", "\tTab\tseparated", "line one\nline two\n\n",
    "\n\nleading newlines", "trailing spaces   ", "Hello , world . ( spaced punctuation )", "don't won't I'm",
    "Ünïcödé façade naïve café", "日本語のテキスト", "Привет, мир", "emoji 😀🎉 and 👨‍👩‍👧", "mixed 123 4567 89.01e-3",
    "def add(a, b):\n    return a + b\n", "if (x != y) { printf(\"%d\\n\", x); }", "<|im_start|>user\nhi<|im_end|>",
    "text with </s> inside", "<s>[INST] Hello [/INST]", "<|endoftext|>", "None", "NoneType is not None",
    "Nonetheless, nonexistent", "[INST] None [/INST]", "A" * 40, "x y z", "", " ", "\u00a0non-breaking",
    "<pad> and <unk> as text",
]
MESSAGES = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue."},
     {"role": "user", "content": "Another one, with None in it?"}],
]
CONFIG_FIELDS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "max_position_embeddings",
                 "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act",
                 "attention_bias", "mlp_bias", "sliding_window")
LOGIT_IDS = [1, 5, 9, 17, 33, 2, 7, 64, 100, 3, 11, 29, 42, 8, 6, 90]  # 16 positions: rope acts beyond the first


def _guard(fn):
    try:
        return fn()
    except Exception as e:  # a part that does not load is the finding itself
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def _rope(config) -> dict:
    """rope as the model code takes it: transformers 5 from rope_parameters, 4.x from rope_theta/rope_scaling."""
    import transformers

    params = getattr(config, "rope_parameters", None)  # 4.x keeps an unknown key as a plain attribute: unused
    if int(transformers.__version__.split(".")[0]) >= 5 and isinstance(params, dict) and "rope_theta" in params:
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        theta = params["rope_theta"]
    else:
        scaling = dict(getattr(config, "rope_scaling", None) or {})
        theta = getattr(config, "rope_theta", None)
    if "type" in scaling:
        scaling.setdefault("rope_type", scaling.pop("type"))
    if scaling.get("rope_type", "default") == "default":
        scaling = {}
    return {"rope_theta": theta, "rope_scaling": scaling}


def _dtype_name(value) -> str | None:
    return None if value is None else str(value).replace("torch.", "")


def read_config(path: str) -> dict:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    out = {k: getattr(config, k, None) for k in CONFIG_FIELDS}
    out.update(_rope(config))
    out["torch_dtype"] = _dtype_name(getattr(config, "torch_dtype", None))  # 5.x: an alias of dtype
    return out


def read_generation_config(path: str) -> dict:
    from transformers import GenerationConfig

    g = GenerationConfig.from_pretrained(path)
    # transformers 5 leaves unset values None and fills them at generate() time from its global defaults
    defaults = getattr(GenerationConfig, "_get_default_generation_params", dict)()
    fields = ("bos_token_id", "eos_token_id", "pad_token_id", "do_sample", "temperature", "top_p", "top_k",
              "max_new_tokens")
    return {k: defaults.get(k) if getattr(g, k, None) is None else getattr(g, k) for k in fields}


def _render(tok, messages, add_generation_prompt: bool) -> dict:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return {"text": text, "ids": tok(text, add_special_tokens=False)["input_ids"]}


def read_tokenizer(path: str) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    ids = {t: tok(t)["input_ids"] for t in TEXTS}
    plain = {t: tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS}
    every = [i for t in TEXTS for i in ids[t]]
    return {
        "ids": ids, "ids_no_special": plain,
        "decode": tok.decode(every), "decode_skip_special": tok.decode(every, skip_special_tokens=True),
        "special": {k: [getattr(tok, k), getattr(tok, f"{k}_id")] for k in ("bos_token", "eos_token",
                                                                              "pad_token", "unk_token")},
        "all_special_ids": sorted(set(tok.all_special_ids)), "vocab_size": len(tok),
        "padding_side": tok.padding_side, "model_max_length": tok.model_max_length,
        "chat": [_render(tok, m, g) for m in MESSAGES for g in (False, True)],
    }


def read_model(path: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype="auto").eval()
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([[i % vocab for i in LOGIT_IDS]])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    inv_freq = next((b for n, b in model.named_buffers() if n.endswith("inv_freq")), None)
    heads = next((m.head_dim for m in model.modules() if hasattr(m, "head_dim") and hasattr(m, "q_proj")), None)
    return {"dtype": _dtype_name(next(model.parameters()).dtype), "head_dim": heads,
            "inv_freq": None if inv_freq is None else [float(x) for x in inv_freq.float()],
            "tied": model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr(),
            "logits": [[round(float(x), 6) for x in row] for row in logits]}


def read(path: str, weights: bool) -> dict:
    import transformers

    out = {"transformers": transformers.__version__, "config": _guard(lambda: read_config(path)),
           "generation_config": _guard(lambda: read_generation_config(path)),
           "tokenizer": _guard(lambda: read_tokenizer(path))}
    if weights:
        out["model"] = _guard(lambda: read_model(path))
    return out


def rules() -> dict:
    """Per model type, which of the fields that transformers 5 moved or added this version's config class takes."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    out = {"transformers": transformers.__version__, "model_types": {}}
    for model_type in sorted(CONFIG_MAPPING.keys()):
        params = inspect.signature(CONFIG_MAPPING[model_type].__init__).parameters
        out["model_types"][model_type] = sorted(k for k in ("rope_theta", "rope_scaling", "head_dim") if k in params)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("read", help="what this transformers reads from CHECKPOINT")
    r.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    r.add_argument("--weights", action="store_true", help="also load the weights: dtype, rope inv_freq, logits")
    sub.add_parser("rules", help="config fields each model type's config class takes in this version")
    args = p.parse_args()
    if args.command == "read":  # one process for many checkpoints: transformers is imported once
        result = {path: read(path, args.weights) for path in args.checkpoints}
    else:
        result = rules()
    json.dump(result, sys.stdout, ensure_ascii=False, sort_keys=True, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
