"""One run of `sppo-bench`'s answer job, launched by perf/bench_ranks.py: as one process
(`python -m perf.dp_answers ...`) or as several ranks (`torchrun --nproc_per_node N -m perf.dp_answers ...`).

It runs the benchmark side's own machinery: a `benchmarks.answers.ModelAnswerer` on this rank (the model loaded
before the clock starts, on every rank), then the timed part — one `answer` call on rank 0, a job of
`benchmarks.parallel` that the other ranks serve (chunks spread over the ranks, written, merged). Greedy answers of
a fixed length (min_new_tokens = max_new_tokens), as Arena-Hard's. Rank 0 writes {"seconds", "rows",
"peak_rss_mb", "processes"} to --out.

    python -m perf.dp_answers --model PATH --prompts N --max-new-tokens T --out FILE --work DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.dp_answers")
    for name, kind in (("--model", str), ("--prompts", int), ("--max-new-tokens", int), ("--out", str),
                       ("--work", str)):
        p.add_argument(name, type=kind, required=True)
    args = p.parse_args(argv)
    from benchmarks import parallel
    from benchmarks.answers import ModelAnswerer
    from perf.fixtures import PROMPTS
    from perf.timing import finish_ranks
    from sppo import distributed

    distributed.setup()
    answerer = ModelAnswerer(args.model, backend="hf", scratch_dir=Path(args.work) / ".chunks")
    answerer.generator.model.generation_config.min_new_tokens = args.max_new_tokens  # the same work every run
    if not distributed.is_main():
        parallel.loaded("answerer", answerer.spec(), lambda: answerer)  # served with the model loaded above
    distributed.wait("perf: every rank has its model")
    seconds, rows = 0.0, 0
    if not distributed.is_main():
        parallel.serve()
    else:
        convs = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + f" ({i})"}] for i in range(args.prompts)]
        t0 = time.perf_counter()
        rows = len(answerer.answer(convs, 0.0, args.max_new_tokens))
        seconds = time.perf_counter() - t0
        parallel.stop()
    finish_ranks(args.out, seconds, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
