"""Load a released checkpoint in vLLM and compare its greedy tokens with transformers' for 5 prompts.

    python scripts/vllm_check.py runs/latest/checkpoints/Iter3            # a local checkpoint, on a GPU
    python scripts/vllm_check.py ORG/NAME-Iter3 --dtype bfloat16 --max-new-tokens 64 --json report.json
    .venv-vllm/bin/python scripts/vllm_check.py runs/latest/checkpoints/Iter3 --device cpu   # vLLM's CPU build

Both engines get the same prompt token ids (the checkpoint's chat template with the generation prompt, encoded
by transformers without extra special tokens) and decode greedily until EOS or --max-new-tokens. In float32
(the default) the two should agree token for token; a difference is printed with the first position where the
sequences part. A checkpoint vLLM reads differently (rope, EOS ids, vocabulary, dtype) shows up here.

On a CPU (--device cpu, vLLM's CPU build: scripts/vllm_env.sh) vLLM runs eagerly with a key/value cache of
VLLM_CPU_KVCACHE_SPACE GiB (default 2).

Exit status: 0 every prompt gives the same tokens, 3 some differ, 2 bad input (no such checkpoint, bad
flag), 1 environment (no CUDA GPU for --device cuda, vLLM not installed, a load failure).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

PROMPTS = (
    "What is the capital of France? Answer in one sentence.",
    "Write a haiku about autumn leaves.",
    "Explain in two sentences why the sky is blue.",
    "List three prime numbers greater than 10.",
    "Translate 'good morning' into Spanish and German.",
)
EXIT_OK, EXIT_ENV, EXIT_INPUT, EXIT_DIFFER = 0, 1, 2, 3
CPU_KV_CACHE_GIB = 2


class EnvironmentProblem(Exception):
    """No GPU, no vLLM, or a model that does not load: exit 1."""


@dataclass
class Comparison:
    prompt: str
    transformers: list[int]
    vllm: list[int]

    @property
    def first_difference(self) -> int | None:
        for i, (a, b) in enumerate(zip(self.transformers, self.vllm)):
            if a != b:
                return i
        return None if len(self.transformers) == len(self.vllm) else min(len(self.transformers), len(self.vllm))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="local checkpoint directory or Hub id of a released model")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="where both engines run (default cuda; cpu needs vLLM's CPU build)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="dtype of both engines (default float32: greedy tokens should then agree exactly)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="greedy tokens per prompt (default 48)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5, help="vLLM's share of the GPU (0.5)")
    p.add_argument("--max-model-len", type=int, default=2048, help="vLLM's context length (2048)")
    p.add_argument("--json", type=Path, help="also write the comparison to this JSON file")
    args = p.parse_args(argv)
    if args.max_new_tokens < 1 or not 0 < args.gpu_memory_utilization <= 1:
        p.error("--max-new-tokens must be >= 1 and --gpu-memory-utilization in (0, 1]")
    return args


def prompt_ids(tokenizer, prompts) -> list[list[int]]:
    out = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def transformers_tokens(checkpoint: str, dtype: str, ids: list[list[int]], max_new_tokens: int,
                        device: str = "cuda") -> tuple[list[list[int]], set[int]]:
    """Greedy continuations of each prompt, and the EOS ids of the checkpoint's generation config."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=getattr(torch, dtype)).to(device).eval()
    out = []
    with torch.no_grad():
        for row in ids:  # one prompt at a time: no padding in the way
            generated = model.generate(torch.tensor([row], device=device), do_sample=False,
                                       max_new_tokens=max_new_tokens)
            out.append(generated[0, len(row):].tolist())
    eos = model.generation_config.eos_token_id
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out, set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def before_eos(tokens: list[int], eos_ids: set[int]) -> list[int]:
    """The tokens before the first EOS (transformers pads after it; vLLM versions differ in reporting it)."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[:i]
    return tokens


def vllm_tokens(args: argparse.Namespace, ids: list[list[int]]) -> list[list[int]]:
    from vllm import LLM, SamplingParams

    extra = {}
    if args.device == "cpu" and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        extra["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB * 2**30  # on a CPU the share below would be of the RAM
    llm = LLM(model=args.checkpoint, dtype=args.dtype, max_model_len=args.max_model_len, seed=0,
              gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=True, **extra)
    params = SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens, skip_special_tokens=False)
    results = llm.generate([{"prompt_token_ids": row} for row in ids], params, use_tqdm=False)
    return [list(r.outputs[0].token_ids) for r in results]


def compare(args: argparse.Namespace) -> list[Comparison]:
    try:
        import torch
        from transformers import AutoTokenizer
    except ImportError as e:
        raise EnvironmentProblem(f"missing package: {e.name}") from None
    if args.device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("no CUDA GPU: vLLM needs one (--device cpu runs vLLM's CPU build)")
    try:
        import vllm  # noqa: F401
    except ImportError:
        hint = "bash scripts/vllm_env.sh" if args.device == "cpu" else "pip install 'sppo-toolkit[vllm]'"
        raise EnvironmentProblem(f"vLLM is not installed ({hint})") from None
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    ids = prompt_ids(tokenizer, PROMPTS)
    reference, eos_ids = transformers_tokens(args.checkpoint, args.dtype, ids, args.max_new_tokens, args.device)
    served = vllm_tokens(args, ids)
    return [Comparison(p, before_eos(a, eos_ids), before_eos(b, eos_ids))
            for p, a, b in zip(PROMPTS, reference, served)]


def report(results: list[Comparison], tokenizer_path: str) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    differing = 0
    for n, r in enumerate(results, 1):
        where = r.first_difference
        if where is None:
            print(f"prompt {n}: same {len(r.vllm)} tokens  {tokenizer.decode(r.vllm)!r}")
            continue
        differing += 1
        print(f"prompt {n}: DIFFERENT from token {where}")
        print(f"  transformers: {tokenizer.decode(r.transformers)!r}")
        print(f"  vLLM:         {tokenizer.decode(r.vllm)!r}")
    print(f"{len(results) - differing} of {len(results)} prompts give the same greedy tokens in vLLM and transformers")
    return EXIT_DIFFER if differing else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    local = Path(args.checkpoint)
    if (local.exists() or args.checkpoint.startswith((".", "/", "~"))) and not (local / "config.json").is_file():
        print(f"error: {args.checkpoint}: not a checkpoint directory (no config.json)", file=sys.stderr)
        return EXIT_INPUT
    try:
        results = compare(args)
    except EnvironmentProblem as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ENV
    except (OSError, ValueError, RuntimeError) as e:  # a load or engine failure
        print(f"error: {args.checkpoint}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return EXIT_ENV
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "first_difference": r.first_difference} for r in results],
                                        indent=2) + "\n")
    return report(results, args.checkpoint)


if __name__ == "__main__":
    sys.exit(main())
