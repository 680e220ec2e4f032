"""One run of the data-parallel generation stage, launched by perf/bench_ranks.py: as one process
(`python -m perf.dp_generate ...`) or as several ranks (`torchrun --nproc_per_node N -m perf.dp_generate ...`).

It runs the pipeline's own stage machinery (`sppo.chunks.run_chunked` with an HF generator on this rank's
device): model load, then the timed part — every chunk of the prompts spread over the ranks, written, merged.
Rank 0 writes {"seconds", "rows", "peak_rss_mb"} (peak RSS: the largest over the ranks) to --out.

    python -m perf.dp_generate --model PATH --prompts N --k K --max-new-tokens T --chunk-size C --out FILE --work DIR
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.dp_generate")
    for name, kind in (("--model", str), ("--prompts", int), ("--k", int), ("--max-new-tokens", int),
                       ("--chunk-size", int), ("--out", str), ("--work", str), ("--batch-size", int)):
        p.add_argument(name, type=kind, required=name != "--batch-size")
    args = p.parse_args(argv)
    from perf.fixtures import PROMPTS
    from perf.timing import finish_ranks
    from sppo import chunks, distributed
    from sppo.generate import HFGenerator, SamplingParams
    from sppo.models import load_model, load_tokenizer

    distributed.setup()
    model, tokenizer = load_model(args.model, dtype="float32"), load_tokenizer(args.model)
    model.generation_config.min_new_tokens = args.max_new_tokens  # the same work in every run
    generator = HFGenerator(model, tokenizer, batch_size=args.batch_size or args.chunk_size * args.k)
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
    finish_ranks(args.out, time.perf_counter() - t0, len(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
