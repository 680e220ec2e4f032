"""Generation: K samples per prompt.

ours       sppo.generate.HFGenerator: prompts batched together (length-sorted, left-padded), each prompt read
           once and its key/value cache repeated K times, then one `generate` call per batch. Timed three times: with the toolkit's default
           (generation.batch_size null: sequences in flight chosen from the device's memory), with the former
           fixed default of 8 sequences (8 // K prompts per call), and with every prompt x sample of the run in
           one batch (batch_size = prompts x K).
reference  uclaml/SPPO scripts/generate.py, re-created on transformers: K passes, pass p seeded with p * 50
           (random, numpy, torch), each one `generate` over all prompts (vLLM batches every prompt of a pass
           together) with temperature 0.7, top_p 0.9, one sample per prompt; prompts rendered its way (the chat
           template with an assistant turn "None", cut at "None") and tokenized with the tokenizer's special tokens.

dtype      ours in the default generation.dtype (auto: bf16 where the CPU computes it natively) against ours in
           fp32, same settings (the batch from memory): what `auto` buys on this machine. Only where auto means
           bf16 (`sppo.models.cpu_computes_bf16`); the cases above all run in fp32, like the reference here.

Both sides generate exactly max_new_tokens tokens per sequence (min_new_tokens is set on the model's generation
config, so EOS cannot end a sequence early): the work is prompts x K x max_new_tokens tokens on both sides and
tokens/s compares like with like.
"""

from __future__ import annotations

import random
from pathlib import Path

from perf.fixtures import PROMPTS, tiny_llama
from perf.timing import case, interleaved, paired_ratio, rates

FORMER_DEFAULT_BATCH = 8  # generation.batch_size before it was chosen from memory
TARGET = 2.0  # generation with the default settings >= 2x the reference's tokens/s on the embedded model


def reference_prompt(tokenizer, text: str) -> str:
    """The reference's rendering: the template with an assistant turn 'None', cut at 'None'."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}, {"role": "assistant", "content": "None"}],
                                             tokenize=False)
    return rendered.split("None")[0]


def reference_generate(model, tokenizer, texts: list[str], k: int, max_new_tokens: int) -> list[list[str]]:
    """K separate passes over all prompts, pass p with seed p * 50: the reference's sampling loop."""
    import numpy as np
    import torch

    prompts = [reference_prompt(tokenizer, t) for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    device = next(model.parameters()).device
    outputs: list[list[str]] = [[] for _ in texts]
    model.eval()
    for p in range(k):
        seed = p * 50
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        with torch.no_grad():
            gen = model.generate(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                                 do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=max_new_tokens,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        texts_out = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, t in enumerate(texts_out):
            outputs[i].append(t)
    return outputs


def _load(which: str, work: Path):
    from sppo.models import load_model, load_tokenizer

    path = "embedded" if which == "embedded" else str(tiny_llama(work / "tiny_llama"))
    return load_model(path, dtype="float32", device="cpu"), load_tokenizer(path)


def bench_model(which: str, work: Path, n_prompts: int, k: int, max_new_tokens: int, repeats: int) -> list[dict]:
    from sppo.config import GenerationConfig
    from sppo.generate import HFGenerator, SamplingParams, encode_prompt, memory_batch_size

    model, tokenizer = _load(which, work)
    model.generation_config.min_new_tokens = max_new_tokens  # fixed-length sequences on both sides
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(n_prompts)]
    convs = [[{"role": "user", "content": t}] for t in texts]
    params = SamplingParams(n=k, temperature=0.7, top_p=0.9, max_new_tokens=max_new_tokens, seed=0)
    full = n_prompts * k
    ours_default = HFGenerator(model, tokenizer, batch_size=GenerationConfig().batch_size)
    ours_fixed = HFGenerator(model, tokenizer, batch_size=FORMER_DEFAULT_BATCH)
    ours_full = HFGenerator(model, tokenizer, batch_size=full)
    memory_batch = memory_batch_size(model, full, max(len(encode_prompt(tokenizer, c)) for c in convs) + max_new_tokens)

    def check(out):
        assert len(out) == n_prompts and all(len(o) == k for o in out)

    variants = {
        "reference": lambda: check(reference_generate(model, tokenizer, texts, k, max_new_tokens)),
        "ours_default": lambda: check(ours_default.generate(convs, params, progress=False)),
        "ours_fixed_8": lambda: check(ours_fixed.generate(convs, params, progress=False)),
        "ours_one_batch": lambda: check(ours_full.generate(convs, params, progress=False)),
    }
    times = interleaved(variants, repeats)
    tokens = n_prompts * k * max_new_tokens
    ref_rate = rates(tokens, times["reference"])
    n_params = sum(p.numel() for p in model.parameters())
    prompt_tokens = [len(encode_prompt(tokenizer, c)) for c in convs]
    settings = {"model": which, "parameters": n_params, "prompts": n_prompts, "k": k,
                "max_new_tokens": max_new_tokens, "tokens_per_run": tokens, "prompt_tokens": prompt_tokens,
                # transformers expands the inputs before the prefill: both sides encode every prompt K times
                "prefill_tokens_per_run": k * sum(prompt_tokens), "dtype": "float32", "device": "cpu"}
    rows = []
    for variant, bs, label in (("ours_default", memory_batch, f"default: batch from memory ({memory_batch})"),
                               ("ours_fixed_8", FORMER_DEFAULT_BATCH, f"batch_size {FORMER_DEFAULT_BATCH} (former default)"),
                               ("ours_one_batch", full, f"batch_size {full} (all prompts x K)")):
        ratio = paired_ratio(rates(tokens, times[variant]), ref_rate)
        calls = -(-n_prompts // max(1, bs // k))
        rows.append(case(
            f"generation/{which}/{label}", "tokens/s", rates(tokens, times[variant]), ref_rate, ratio,
            higher_is_better=True, target=f">= {TARGET:g}x", target_met=ratio["median"] >= TARGET,
            settings={**settings, "batch_size": bs, "generate_calls_ours": calls, "generate_calls_reference": k},
            notes=[f"ours: {calls} generate call(s) of {min(full, max(1, bs // k) * k)} sequences; "
                   f"reference: {k} calls of {n_prompts} sequences"]))
    return rows


def bench_dtype(which: str, work: Path, n_prompts: int, k: int, max_new_tokens: int, repeats: int) -> list[dict]:
    """Ours in generation.dtype auto against ours in fp32: tokens/s ratio, one run, interleaved rounds."""
    import copy

    from sppo.config import GenerationConfig
    from sppo.generate import HFGenerator, SamplingParams
    from sppo.models import inference_dtype, resolve_dtype

    auto = inference_dtype(GenerationConfig().dtype, "cpu")
    if auto == "float32":
        return []  # auto is fp32 here: nothing to compare
    model, tokenizer = _load(which, work)
    model.generation_config.min_new_tokens = max_new_tokens
    fast = copy.deepcopy(model).to(resolve_dtype(auto, "cpu"))
    convs = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(n_prompts)]
    params = SamplingParams(n=k, temperature=0.7, top_p=0.9, max_new_tokens=max_new_tokens, seed=0)
    gens = {"fp32": HFGenerator(model, tokenizer, batch_size=None), auto: HFGenerator(fast, tokenizer, batch_size=None)}
    times = interleaved({name: (lambda g=g: g.generate(convs, params, progress=False)) for name, g in gens.items()},
                        repeats)
    tokens = n_prompts * k * max_new_tokens
    ratio = paired_ratio(rates(tokens, times[auto]), rates(tokens, times["fp32"]))
    return [case(f"generation/{which}/dtype auto ({auto}) vs float32", "tokens/s", rates(tokens, times[auto]),
                 rates(tokens, times["fp32"]), ratio, higher_is_better=True, target=None,
                 target_met=None, settings={"model": which, "prompts": n_prompts, "k": k,
                                            "max_new_tokens": max_new_tokens, "dtype_ours": auto,
                                            "dtype_baseline": "float32", "device": "cpu"},
                 notes=["baseline here is ours in fp32, not the reference"])]


def run(opts: dict) -> dict:
    work = Path(opts["work"])
    quick = opts["quick"]
    models = ["tiny"] if quick else ["tiny", "embedded"]
    n_prompts, k = (2, 5) if quick else (4, 5)
    cases = []
    for which in models:
        # short answers keep the default suite inside 10 minutes on 2 shared cores
        max_new = 8 if (quick or which == "embedded") else 32
        cases += bench_model(which, work, n_prompts, k, max_new, opts["repeats"])
    if not quick:
        cases += bench_dtype("embedded", work, n_prompts, k, 32, opts["repeats"])
    return {"cases": cases}
