"""Generation: K samples per prompt.

ours       sppo.generate.HFGenerator with the toolkit's defaults: prompts batched together (length-sorted,
           left-padded; generation.batch_size null: sequences in flight chosen from the device's memory), each prompt
           read once and its key/value cache repeated K times, the nucleus found without sorting the vocabulary
           (sppo.sampling), and the decoding loop of sppo.decode.
reference  uclaml/SPPO scripts/generate.py, re-created on transformers: K passes, pass p seeded with p * 50
           (random, numpy, torch), each one `generate` over all prompts (vLLM batches every prompt of a pass
           together) with temperature 0.7, top_p 0.9, one sample per prompt; prompts rendered its way (the chat
           template with an assistant turn "None", cut at "None") and tokenized with the tokenizer's special tokens.

Both sides generate exactly max_new_tokens tokens per sequence (min_new_tokens is set on the model's generation
config, so EOS cannot end a sequence early): the work is prompts x K x max_new_tokens tokens on both sides and
tokens/s compares like with like.

One more case compares ours with ours:
ended rows natural lengths (EOS ends a response; the learning check's held-out answers: its first 6 short questions
           x 4 samples, up to 48 tokens): sppo.decode, which drops ended rows from the batch, against transformers'
           `generate` on the same batches (HFGenerator.own_loop False); the same tokens, responses/s.
vLLM on the CPU is the opt-in stage `vllm` (perf/bench_vllm.py: it needs .venv-vllm).
"""

from __future__ import annotations

import random
from pathlib import Path

from perf.fixtures import PROMPTS, tiny_llama
from perf.timing import case, interleaved, paired_ratio, rates

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
    ours = HFGenerator(model, tokenizer, batch_size=GenerationConfig().batch_size)
    memory_batch = memory_batch_size(model, full, max(len(encode_prompt(tokenizer, c)) for c in convs) + max_new_tokens)

    def check(out):
        assert len(out) == n_prompts and all(len(o) == k for o in out)

    times = interleaved({"reference": lambda: check(reference_generate(model, tokenizer, texts, k, max_new_tokens)),
                         "ours": lambda: check(ours.generate(convs, params, progress=False))}, repeats)
    tokens = n_prompts * k * max_new_tokens
    ref_rate = rates(tokens, times["reference"])
    prompt_tokens = [len(encode_prompt(tokenizer, c)) for c in convs]
    settings = {"model": which, "parameters": sum(p.numel() for p in model.parameters()), "prompts": n_prompts,
                "k": k, "max_new_tokens": max_new_tokens, "tokens_per_run": tokens, "prompt_tokens": prompt_tokens,
                "prefill_tokens_ours": sum(prompt_tokens), "prefill_tokens_reference": k * sum(prompt_tokens),
                "dtype": "float32", "device": "cpu", "batch_size": memory_batch}
    calls = -(-n_prompts // max(1, memory_batch // k))
    ratio = paired_ratio(rates(tokens, times["ours"]), ref_rate)
    return [case(f"generation/{which}/default: batch from memory ({memory_batch})", "tokens/s",
                 rates(tokens, times["ours"]), ref_rate, ratio, higher_is_better=True, target=f">= {TARGET:g}x",
                 target_met=ratio["median"] >= TARGET,
                 settings={**settings, "generate_calls_ours": calls, "generate_calls_reference": k},
                 notes=[f"ours: {calls} generate call(s) of {min(full, max(1, memory_batch // k) * k)} sequences; "
                        f"reference: {k} calls of {n_prompts} sequences"])]


def bench_ended_rows(work: Path, max_new_tokens: int, repeats: int, limit: int | None = None) -> list[dict]:
    """sppo.decode (ended rows leave the batch) against transformers' generate, at natural lengths: the learning
    check's held-out answers (its first `limit` prompts x 4 samples, generation.dtype auto), responses/s."""
    from sppo.config import load_config
    from sppo.generate import HFGenerator, SamplingParams
    from sppo.learning_check import held_out_prompts
    from sppo.models import load_model, load_tokenizer

    cfg = load_config("learning-check")
    prompts = held_out_prompts(cfg)[:limit]
    model, tokenizer = load_model("embedded", dtype=cfg.generation.dtype, inference=True), load_tokenizer("embedded")
    params = SamplingParams(n=cfg.learning_check.samples, temperature=cfg.generation.temperature,
                            top_p=cfg.generation.top_p, max_new_tokens=max_new_tokens, seed=cfg.run.seed)
    ours, theirs = HFGenerator(model, tokenizer, batch_size=None), HFGenerator(model, tokenizer, batch_size=None)
    theirs.own_loop = False
    outputs = {}
    times = interleaved({name: (lambda name=name, g=g: outputs.__setitem__(name, g.sample(prompts, params, False)))
                         for name, g in (("generate", theirs), ("ours", ours))}, repeats)
    same = [[s.text for s in r] for r in outputs["ours"]] == [[s.text for s in r] for r in outputs["generate"]]
    n = len(prompts) * params.n
    ended = sum(s.finish_reason == "stop" for r in outputs["ours"] for s in r)
    return [case("generation/embedded/ended rows leave the batch (sppo.decode vs generate)", "responses/s",
                 rates(n, times["ours"]), rates(n, times["generate"]),
                 paired_ratio(rates(n, times["ours"]), rates(n, times["generate"])), higher_is_better=True,
                 settings={"model": "embedded", "prompts": len(prompts), "samples": params.n,
                           "max_new_tokens": max_new_tokens, "dtype": cfg.generation.dtype, "device": "cpu",
                           "ended_before_max_new_tokens": f"{ended} of {n}"},
                 notes=["baseline here is ours through transformers' generate, not the reference",
                        f"the same responses both ways: {'yes' if same else 'NO'}"], same_tokens=same)]


def run(opts: dict) -> dict:
    work = Path(opts["work"])
    quick = opts["quick"]
    models = ["tiny"] if quick else ["tiny", "embedded"]
    n_prompts, k = (2, 5) if quick else (4, 5)
    cases = []
    for which in models:
        # short answers keep the default suite inside its time budget on 2 shared cores
        max_new = 8 if (quick or which == "embedded") else 32
        cases += bench_model(which, work, n_prompts, k, max_new, opts["repeats"])
    if quick:
        return {"cases": cases}
    cases += bench_ended_rows(work, 48, opts["repeats"], limit=6)  # 6 prompts x 4 samples: inside the budget
    return {"cases": cases}
