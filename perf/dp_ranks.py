"""One launch of perf/bench_ranks.py's two timed parts, as one process (`python -m perf.dp_ranks ...`) or as several
ranks (`torchrun --nproc_per_node N -m perf.dp_ranks ...`): one process start and one set of imports serve both.

generate  the pipeline's own stage machinery (`sppo.chunks.run_chunked` with an HF generator on this rank's device):
          model load, then the timed part — every chunk of the prompts spread over the ranks, written, merged.
answers   `sppo-bench`'s answer job: a `benchmarks.answers.ModelAnswerer` on every rank (loaded before the clock
          starts), then the timed part — one `answer` call on rank 0, a job of `benchmarks.parallel` that the other
          ranks serve (chunks spread over the ranks, written, merged). Greedy answers of a fixed length
          (min_new_tokens = max_new_tokens), as Arena-Hard's.

Rank 0 writes {"generate": {"seconds", "rows", "peak_rss_mb"}, "answers": {...}, "processes"} to --out; peak RSS is
the largest over the ranks, after each part (the answers' includes the generation's: one process does both).

    python -m perf.dp_ranks --model PATH --prompts N --k K --max-new-tokens T --chunk-size C --out FILE --work DIR
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import time
from pathlib import Path


def generation_stage(args) -> dict:
    from perf.fixtures import PROMPTS
    from sppo import chunks, distributed
    from sppo.generate import HFGenerator, SamplingParams
    from sppo.models import load_model, load_tokenizer

    model, tokenizer = load_model(args.model, dtype="float32"), load_tokenizer(args.model)
    model.generation_config.min_new_tokens = args.max_new_tokens  # the same work in every run
    generator = HFGenerator(model, tokenizer, batch_size=args.chunk_size * args.k)
    items = [{"id": f"p{i}", "prompt": PROMPTS[i % len(PROMPTS)]} for i in range(args.prompts)]
    stage = Path(args.work) / "generate"

    def fn(chunk):
        params = SamplingParams(n=args.k, max_new_tokens=args.max_new_tokens, seed=chunks.chunk_seed(0, 1, chunk))
        outs = generator.generate([c["prompt"] for c in chunk], params, progress=False)
        return [{"id": c["id"], "responses": o} for c, o in zip(chunk, outs)]

    if distributed.is_main():
        shutil.rmtree(stage, ignore_errors=True)
    distributed.wait("perf: clean stage dir")
    t0 = time.perf_counter()
    rows = chunks.run_chunked(stage, items, fn, args.chunk_size, "perf generate")
    return {"seconds": time.perf_counter() - t0, "rows": len(rows)}


def answer_job(args) -> dict:
    from benchmarks import parallel
    from benchmarks.answers import ModelAnswerer
    from perf.fixtures import PROMPTS
    from sppo import distributed

    answerer = ModelAnswerer(args.model, backend="hf", scratch_dir=Path(args.work) / ".chunks")
    answerer.generator.model.generation_config.min_new_tokens = args.max_new_tokens  # the same work every run
    if not distributed.is_main():
        parallel.loaded("answerer", answerer.spec(), lambda: answerer)  # served with the model loaded above
    distributed.wait("perf: every rank has its model")
    seconds, rows = 0.0, 0
    if not distributed.is_main():
        parallel.serve()
    else:
        convs = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + f" ({i})"}] for i in range(args.answers)]
        t0 = time.perf_counter()
        rows = len(answerer.answer(convs, 0.0, args.max_new_tokens))
        seconds = time.perf_counter() - t0
        parallel.stop()
    return {"seconds": seconds, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.dp_ranks")
    for name, kind in (("--model", str), ("--prompts", int), ("--k", int), ("--answers", int), ("--max-new-tokens", int),
                       ("--chunk-size", int), ("--out", str), ("--work", str)):
        p.add_argument(name, type=kind, required=True)
    args = p.parse_args(argv)
    from perf.timing import peak_rss_mb
    from sppo import distributed

    distributed.setup()
    result = {"generate": generation_stage(args)}
    result["generate"]["peak_rss_mb"] = distributed.max_over_ranks(peak_rss_mb())
    gc.collect()
    result["answers"] = answer_job(args)
    result["answers"]["peak_rss_mb"] = distributed.max_over_ranks(peak_rss_mb())
    result["processes"] = distributed.world_size()
    if distributed.is_main():
        Path(args.out).write_text(json.dumps(result))
    distributed.teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
