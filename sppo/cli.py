"""`sppo-train`: run SPPO iterations (generate -> rank -> win probabilities -> SPPO loss -> train).

Examples:
    sppo-train                                  # embedded default: SmolLM2-135M, 3 small iterations, offline
    sppo-train --config paper                   # the published recipe (Mistral-7B-Instruct-v0.2, PairRM, K=5)
    sppo-train --config my.yaml training.learning_rate=1e-6 run.iterations=2
    sppo-train --print-config                   # the resolved config, every field documented
    sppo-train --tokens pairs.jsonl --config paper   # the ids and labels training uses for given texts
    sppo-train --config gemma-2 --print-config  # a shipped recipe with its batch geometry and clipping
    sppo-train --config learning-check          # does it learn? a length-preferring ranker, length per iteration
Several GPUs (every stage runs on every GPU; training data parallel, or DeepSpeed ZeRO-3 in the paper config):
    accelerate launch --multi_gpu --num_processes 8 -m sppo.cli --config paper
    torchrun --nproc_per_node 8 -m sppo.cli --config paper
    deepspeed --num_gpus 8 $(which sppo-train) --config paper
On SLURM (N nodes; stopped before the time limit, it saves its state and requeues itself):
    sbatch --nodes 2 scripts/slurm/sppo-train.sbatch --config paper run.output_dir=/shared/runs/paper
A rank that fails ends every rank within seconds, with one line naming it and the cause
(run.collective_timeout_minutes bounds the wait for one that stops answering).
Rerun the same command after a crash, Ctrl-C or kill: finished stages and chunks are kept, training resumes
from its last saved state (training.save_steps).
Until a stage has finished, a corrected config may replace the one the run started with. One
sppo-train per run directory: a second one on the same run.output_dir stops at once while the first holds
<run>/.lock.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .cli_util import run_cli, setup_logging, sigterm_as_interrupt

log = logging.getLogger("sppo")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sppo-train", description=__doc__.split("\n\n")[0],
                                epilog="\n".join(__doc__.split("\n")[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from .config import shipped_configs

    p.add_argument("--config", default=None,
                   help=f"YAML config file, or a shipped config name: {', '.join(shipped_configs())} "
                        "(default: embedded)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config fields, e.g. training.learning_rate=1e-6 generation.k=3")
    p.add_argument("--print-config", action="store_true", help="print the resolved, documented config and exit")
    p.add_argument("--tokens", metavar="IN.jsonl", default=None,
                   help='print, one JSON line per input line {"prompt", "chosen", "rejected"} (raw generator '
                        "texts), the generation prompt and its ids as the generation engine receives them, and the "
                        "ids and labels training uses after truncation "
                        "(loads only model.name's tokenizer), and exit")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    from .config import documented_yaml, load_config

    args = parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        from .train import batch_geometry

        print(documented_yaml(cfg) + batch_geometry(cfg.training), end="")
        return 0
    if args.tokens:
        from .tokens import print_tokens

        return print_tokens(cfg, args.tokens)
    setup_logging(args.verbose)
    from . import distributed
    from .pipeline import run_pipeline

    with sigterm_as_interrupt():
        checkpoints = run_pipeline(cfg)
    if distributed.is_main():
        for c in checkpoints:
            print(c)
        if cfg.learning_check.enabled:
            from .learning_check import plot_path, read_summary, report

            print(report(read_summary(cfg.run.output_dir)))
            print(f"plot: {plot_path(cfg.run.output_dir)}")
    distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
