"""Run by tests/test_vllm_generate.py with .venv-vllm's python (alone or under torchrun): the prompts and generate
stages of iteration 1, through sppo.pipeline's own stage functions, exactly as `sppo-train` runs them; then it
stops (ranking and training are no part of what vLLM does).

    python tests/vllm_stage.py [--config NAME] KEY=VALUE ...        # sppo-train's arguments

SPPO_TEST_VLLM_REQUESTS=FILE: each request's prompt_token_ids, as the engine reports them back
(RequestOutput.prompt_token_ids), appended to FILE as one JSON line per request (a test's own instrumentation)."""

from __future__ import annotations

import json
import os
import sys

from sppo.cli_util import run_cli, setup_logging


def record_requests(path: str) -> None:
    """Wrap vllm.LLM.generate: the prompt ids of every request the engine answered go to `path`."""
    from vllm import LLM

    generate = LLM.generate

    def recorded(self, prompts, *args, **kwargs):
        outputs = generate(self, prompts, *args, **kwargs)
        with open(path, "a") as f:
            for out in outputs:
                f.write(json.dumps(list(out.prompt_token_ids)) + "\n")
        return outputs

    LLM.generate = recorded


def _main(argv: list[str]) -> int:
    from sppo import distributed
    from sppo.cli import parser
    from sppo.config import load_config
    from sppo.models import resolve_model
    from sppo.pipeline import stage_generate, stage_prompts
    from sppo.run_dir import Run

    if os.environ.get("SPPO_TEST_VLLM_REQUESTS"):
        record_requests(os.environ["SPPO_TEST_VLLM_REQUESTS"])
    args = parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    setup_logging(False)
    distributed.setup(cfg.run.collective_timeout_minutes, cfg.run.wait_log_seconds)
    distributed.main_first("resolving the model", lambda: resolve_model(cfg.model.name))
    run = Run(cfg)
    distributed.decide("rank 0 prepares the run directory", run.prepare)
    stage_generate(run, 1, stage_prompts(run, 1))
    distributed.teardown()
    return 0


if __name__ == "__main__":  # vLLM starts its engine processes by spawning: they import this file again
    sys.exit(run_cli(_main, sys.argv[1:]))
