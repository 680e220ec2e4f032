"""`sppo-bench`: run benchmark suites on checkpoints, score judgment files, print tables.

    sppo-bench --all Iter1 Iter2 Iter3          run every suite on each checkpoint
    sppo-bench score SUITE FILE                 score existing official judgment files
    sppo-bench table                            print the model card's tables from the results store
"""

from __future__ import annotations

import sys

from sppo.cli_util import run_cli

SUBCOMMANDS = {
    "score": "benchmarks.score_cmd",
    "table": "benchmarks.table_cmd",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = __import__(SUBCOMMANDS[argv[0]], fromlist=["main"])
        return run_cli(module.main, argv[1:])
    from benchmarks import run_cmd

    return run_cli(run_cmd.main, argv)


if __name__ == "__main__":
    sys.exit(main())
