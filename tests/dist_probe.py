"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: exercises sppo.distributed with real
processes. Each rank prints JSON lines the test reads back."""

import json
import logging
import os
import sys
import time

from sppo import distributed
from sppo.cli_util import run_cli


def _say(record: dict) -> None:
    """One JSON line in one write(2): both ranks share the pipe, and `print` writes the text and its newline
    separately when stdout is unbuffered, so two ranks' lines could interleave."""
    os.write(sys.stdout.fileno(), (json.dumps(record) + "\n").encode())


def main(argv):
    mode = argv[0]
    distributed.setup(timeout_minutes=2, wait_log_seconds=0.5)
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
    distributed.teardown()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run_cli(main, sys.argv[1:]))
