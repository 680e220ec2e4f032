"""Generation through vLLM: the case `generation/embedded/vllm` (`python -m perf --stages vllm`, opt-in).

K samples per prompt for the same prompts on the embedded SmolLM2-135M, three ways, timed interleaved in one
process of vLLM's environment (.venv-vllm, scripts/vllm_env.sh; this module re-runs itself there when the suite
runs elsewhere):

vllm       sppo.generate.VLLMGenerator's engine and requests (n=K with prefix caching; on a CPU vLLM's CPU build,
           eager, its worker on the cores vLLM's own binding gives it: one of two here, the other left to its
           scheduler), the toolkit's prompt ids
hf         sppo.generate.HFGenerator, the toolkit's default (sequences in flight chosen from memory), in the same
           dtype as vLLM
reference  uclaml/SPPO's way re-created on transformers (perf.bench_generation.reference_generate): K passes of
           one sample per prompt, as the reference ran vLLM

Every sequence runs to max_new_tokens (vLLM: min_tokens = max_tokens; transformers: min_new_tokens), so the work
is prompts x K x max_new_tokens tokens on every side and tokens/s compares like with like. The ratios are vllm
over hf and vllm over reference; the engine's start (the `LLM(...)` call) is reported beside them, not in them.

On a GPU (`--device cuda`, for a lent device: perf/gpu_vllm.sh) the same case runs vLLM as a GPU user gets it
(compiled unless generation.enforce_eager says otherwise) and transformers on the GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from perf.fixtures import PROMPTS
from perf.timing import case, interleaved, paired_ratio, rates

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def _vllm_generate(generator, convs, k: int, max_new_tokens: int):
    """The toolkit's requests to the engine, with every sequence held to max_new_tokens."""
    from vllm import SamplingParams

    params = SamplingParams(n=k, temperature=0.7, top_p=0.9, max_tokens=max_new_tokens, min_tokens=max_new_tokens,
                            seed=0)
    generator.llm.reset_prefix_cache()
    out = generator.llm.generate(generator.requests(convs), params, use_tqdm=False)
    assert len(out) == len(convs) and all(len(r.outputs) == k for r in out)
    return out


def _engines(device: str):
    """The vLLM engine (timed start) and the HF model in vLLM's dtype, on `device`."""
    import torch

    from sppo.generate import VLLMGenerator
    from sppo.models import load_model, load_tokenizer, resolve_model

    tokenizer = load_tokenizer("embedded")
    t0 = time.perf_counter()  # on a GPU vLLM takes 40% of its memory: the HF side needs the rest
    vllm = VLLMGenerator(resolve_model("embedded"), tokenizer=tokenizer, gpu_memory_utilization=0.4)
    start = time.perf_counter() - t0
    dtype = str(vllm.llm.llm_engine.model_config.dtype).removeprefix("torch.")  # vLLM's auto: bf16 here
    model = load_model("embedded", dtype=dtype, device=device)
    model.generation_config.min_new_tokens = None
    assert next(model.parameters()).dtype == getattr(torch, dtype)
    return vllm, model, tokenizer, dtype, start


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _rss_mb() -> dict:
    """Resident memory now: this process (the HF model, the client) and vLLM's engine processes together."""
    import psutil

    me = psutil.Process()
    engine = 0
    for child in me.children(recursive=True):
        try:
            engine += child.memory_info().rss
        except psutil.Error:
            continue
    return {"client_and_hf": round(me.memory_info().rss / 2**20), "vllm_engine_processes": round(engine / 2**20)}


def measure(n_prompts: int, k: int, max_new_tokens: int, repeats: int, device: str) -> list[dict]:
    from perf.bench_generation import reference_generate
    from sppo.generate import HFGenerator, SamplingParams, engine_record

    vllm, model, tokenizer, dtype, start = _engines(device)
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(n_prompts)]
    convs = [[{"role": "user", "content": t}] for t in texts]
    hf = HFGenerator(model, tokenizer, batch_size=None)
    params = SamplingParams(n=k, temperature=0.7, top_p=0.9, max_new_tokens=max_new_tokens, seed=0)

    def fixed_length(fn):
        def run():
            model.generation_config.min_new_tokens = max_new_tokens
            try:
                return fn()
            finally:
                model.generation_config.min_new_tokens = None
        return run

    times = interleaved({"vllm": lambda: _vllm_generate(vllm, convs, k, max_new_tokens),
                         "hf": fixed_length(lambda: hf.generate(convs, params, progress=False)),
                         "reference": fixed_length(lambda: reference_generate(model, tokenizer, texts, k,
                                                                              max_new_tokens))}, repeats)
    tokens = n_prompts * k * max_new_tokens
    engine, rss = engine_record(vllm), _rss_mb()
    vllm.close()
    settings = {"model": "embedded", "prompts": n_prompts, "k": k, "max_new_tokens": max_new_tokens,
                "tokens_per_run": tokens, "dtype": dtype, "device": device, "engine": engine,
                "engine_start_seconds": round(start, 1), "rss_mb": rss,
                "threads": {"hf_and_reference": torch_threads(), "vllm": "its worker's own binding (cores: "
                            f"{os.environ.get('VLLM_CPU_OMP_THREADS_BIND', 'auto')}), plus its scheduler process"}}
    rows = []
    for other, label in (("hf", "the HF backend (default batch)"), ("reference", "the reference's K passes")):
        rows.append(case(f"generation/embedded/vllm vs {other}", "tokens/s", rates(tokens, times["vllm"]),
                         rates(tokens, times[other]), paired_ratio(rates(tokens, times["vllm"]),
                                                                   rates(tokens, times[other])),
                         higher_is_better=True, target=None, target_met=None, settings=settings,
                         notes=[f"baseline: {label}, same prompts, K and dtype ({dtype}) on {device}",
                                f"vLLM engine start (not timed in the ratio): {start:.1f} s, "
                                f"{'eager' if engine['enforce_eager'] else 'compiled'}",
                                f"memory: vLLM's engine processes {rss['vllm_engine_processes']} MiB, this process "
                                f"(client and HF model) {rss['client_and_hf']} MiB"]))
    return rows


def run(opts: dict) -> dict:
    """The stage entry of perf.worker: measured here if vLLM is importable, else in .venv-vllm."""
    quick = opts["quick"]
    n_prompts, k, max_new = (2, 5, 8) if quick else (4, 5, 32)
    if importlib.util.find_spec("vllm") is not None:
        return {"cases": measure(n_prompts, k, max_new, opts["repeats"], "cpu")}
    if not VLLM_PYTHON.is_file():
        raise RuntimeError(f"{VLLM_PYTHON.parent.parent.name} is not built: bash scripts/vllm_env.sh")
    out = Path(opts["work"]) / "vllm.json"
    cmd = [str(VLLM_PYTHON), "-m", "perf.bench_vllm", "--prompts", str(n_prompts), "--k", str(k),
           "--max-new-tokens", str(max_new), "--repeats", str(opts["repeats"]), "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.bench_vllm", description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, required=True, help="the cases as JSON ({'cases': [...]})")
    a = p.parse_args(argv)
    from perf.worker import quiet

    quiet()
    cases = measure(a.prompts, a.k, a.max_new_tokens, a.repeats, a.device)
    a.out.write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    for c in cases:
        print(f"{c['name']}: {c['ours']['median']:.1f} vs {c['reference']['median']:.1f} {c['metric']} "
              f"({c['ratio']['median']:.2f}x)")
    return 0


if __name__ == "__main__":  # vLLM starts its engine processes by spawning: they import this file again
    sys.exit(main())
