"""`sppo-bench`: run benchmark suites on checkpoints, score judgment files, print tables (argparse subcommands).

    sppo-bench [run] --all Iter0 Iter1 Iter2 Iter3    run every suite on each model (`run` may be left out)
    sppo-bench --suite FILE.yaml Iter1 Iter2          a pairwise judged benchmark of your own, defined by FILE
    sppo-bench score SUITE PATH                       score existing official judgment files
    sppo-bench table                                  print the model card's tables from the results store
    sppo-bench report                                 write one offline HTML page of every answer, verdict and plot
"""

from __future__ import annotations

import argparse
import sys

from sppo.cli_util import run_cli

COMMANDS = {  # subcommand -> (module, one-line help)
    "run": ("benchmarks.run_cmd", "run the benchmark suites on models (the default subcommand)"),
    "score": ("benchmarks.score_cmd", "score existing official judgment / result files"),
    "table": ("benchmarks.table_cmd", "the model card's tables and plots from the results store"),
    "report": ("benchmarks.report.cmd", "one offline HTML page: tables, plots, every answer and verdict"),
}


def _module(name: str):
    return __import__(COMMANDS[name][0], fromlist=["configure", "main"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sppo-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,score,table,report}")
    for name, (_, help_) in COMMANDS.items():
        module = _module(name)
        sp = sub.add_parser(name, help=help_, description=module.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["run", *argv]  # `sppo-bench --all Iter1` means `sppo-bench run --all Iter1`
    args = build_parser().parse_args(argv)
    return run_cli(lambda _: _module(args.command).main(args), argv)


if __name__ == "__main__":
    sys.exit(main())
