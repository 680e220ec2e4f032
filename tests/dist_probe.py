"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: exercises sppo.distributed with real
processes. Each rank prints JSON lines the test reads back."""

import json
import logging
import os
import sys
import time

from sppo import distributed
from sppo.cli_util import run_cli, sigterm_as_interrupt


def _say(record: dict) -> None:
    """One JSON line in one write(2): both ranks share the pipe, and `print` writes the text and its newline
    separately when stdout is unbuffered, so two ranks' lines could interleave."""
    os.write(sys.stdout.fileno(), (json.dumps(record) + "\n").encode())


def _fail_on_rank1(how: str, where: str) -> None:
    """Rank 0 goes straight into a collective (`where`: our logging `wait`, or a blocking `gather`); rank 1 says it
    is ready (its pid, for the test to signal), then fails `how`: raise an error, write into the directory
    SPPO_TEST_FAULT_DIR (made read-only or full for it by fault_rank.sh), or sleep (for the test's SIGSTOP or
    SIGKILL)."""
    rank = distributed.rank()
    _say({"rank": rank, "pid": os.getpid(), "ready": True})
    if rank == 1:
        time.sleep(1.0)
        if how == "raise":
            raise RuntimeError("probe: rank 1 broke")
        if how == "io":
            from sppo.errors import io_errors

            with io_errors(os.environ["SPPO_TEST_FAULT_DIR"]):
                with open(os.path.join(os.environ["SPPO_TEST_FAULT_DIR"], "chunk.jsonl"), "w") as f:
                    f.write("x" * 1_000_000)
        time.sleep(600)
    if where == "wait":
        distributed.wait("probe stage")
    else:
        distributed.gather(rank)


def main(argv):
    mode = argv[0]
    distributed.setup(timeout_minutes=float(os.environ.get("PROBE_TIMEOUT_MINUTES", "2")), wait_log_seconds=0.5)
    rank = distributed.rank()
    if mode == "decide":
        # each rank sees a different "filesystem": only rank 0's view may decide
        seen = os.path.exists(argv[1]) if rank == 0 else not os.path.exists(argv[1])
        _say({"rank": rank, "decided": distributed.decide("probe", lambda: seen)})
    elif mode == "slow-rank":
        if rank == 1:
            time.sleep(2.0)
        distributed.wait("probe stage")
        _say({"rank": rank, "passed": True})
    elif mode == "error":
        from sppo.errors import UserError

        def fail():
            raise UserError("probe: rank 0 found a bad file")

        distributed.decide("probe", fail)
    elif mode == "fail-on-rank1":
        _fail_on_rank1(argv[1], argv[2])
    distributed.teardown()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with sigterm_as_interrupt():  # as sppo-train and sppo-bench do
        sys.exit(run_cli(main, sys.argv[1:]))
