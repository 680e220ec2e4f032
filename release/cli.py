"""`sppo-release`: render the model cards of a training run and publish its iterations on the Hub.

    sppo-release                                      dry run: write <run-dir>/cards/<name>/README.md for
                                                      every iteration and list what would be uploaded
    sppo-release --push UCLA-AGI/Mistral7B-PairRM-SPPO
                                                      publish iteration N as UCLA-AGI/Mistral7B-PairRM-SPPO-IterN
                                                      (weights + card in one commit)
    sppo-release --push UCLA-AGI/Mistral7B-PairRM-SPPO --datasets
                                                      also publish iteration N's scored synthetic data as the
                                                      dataset UCLA-AGI/Mistral7B-PairRM-SPPO-IterN-data

Every checkpoint to upload is checked to read the same in transformers 4.42+ as in the toolkit's transformers 5
(config, tokenizer, chat template, generation config, merged weights): the dry run prints one line per
checkpoint, --push refuses one that would read differently.

The run is --run-dir, else $SPPO_RUN_DIR, else ``runs/latest`` (the link sppo-train points at its run), else
the most recently modified directory under ``runs/``. Results are read from --results-dir, by default
``<run-dir>/results``, cards written under --out, by default ``<run-dir>/cards`` (``model_cards/`` holds only
the published release's cards). The token comes from HF_TOKEN or the cached login (``hf auth login``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard

from benchmarks.store import SUITES, ResultsStore
from sppo.cli_util import run_cli, setup_logging
from sppo.errors import UserError
from sppo.files import printable, write_text
from sppo.run_dir import RunLayout, current_run_dir
from sppo.settings import doc, from_flags, help_of

from .card import ReleaseInfo, card_path, default_family, default_license, render_card, results_from_store
from .checkpoint_check import CompatReport, compat_problems
from .data import DataUpload, plan_data
from .push import (Upload, checkpoint_problems, parse_release_name, plan_uploads, publish,
                   result_problems)
from .run import Iteration, cards_dir, load_run

log = logging.getLogger("release")


@dataclass(frozen=True)
class ReleaseSettings:
    """The settings of ``sppo-release``, built once from its arguments (`build_parser`, one flag per field)."""

    run_dir: Path | None = doc("training run (default: $SPPO_RUN_DIR, runs/latest, else the newest directory in "
                               "runs/)", None)
    results_dir: Path | None = doc("benchmark results store (default: <run-dir>/results)", None)
    template: Path | None = doc("Jinja template of the card (default: the packaged one)", None)
    out: Path | None = doc("where cards are written (default: <run-dir>/cards)", None)
    push: str | None = doc("publish iteration N as ORG/NAME-IterN", None)
    name: str | None = doc("release name of a dry run (default: the --push value, else the published family of a "
                           "published recipe, e.g. Gemma-2-9B-It-SPPO, else <base>-<ranker>-SPPO)", None)
    iteration: tuple[int, ...] = doc("only this iteration (repeatable; default: all)", ())
    require: str = doc(f"suites a pushed iteration must have results for (default: {','.join(SUITES)})",
                       ",".join(SUITES))
    datasets: bool = doc("also publish each iteration's scored synthetic dataset (<run>/iterN/dataset/sppo.jsonl) "
                         "as ORG/NAME-IterN-data (train: all rows, test: 500 of them, as the reference SPPO scripts); "
                         "the model cards link it", False)
    tag: str | None = doc("tag the pushed commit (e.g. v1.0)", None)
    collection: str | None = doc("add the pushed repos to this collection", None)
    force: bool = doc("overwrite a remote card showing other numbers", False)
    allow_subset_results: bool = doc(
        "publish figures measured on a subset of a benchmark (sppo-bench --limit); the cards and the model-index say "
        "'n = 3 of 805' beside them either way (default: --push refuses them)", False)
    verbose: bool = doc("debug logging", False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sppo-release", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])

    def arg(name: str, *flags: str, **kw) -> None:
        p.add_argument(*flags, "--" + name.replace("_", "-"), help=help_of(ReleaseSettings, name), **kw)

    for name in ("run_dir", "results_dir", "template", "out"):
        arg(name, type=Path)
    arg("push", metavar="ORG/NAME")
    arg("name", metavar="[ORG/]NAME")
    arg("iteration", type=int, action="append", metavar="N")
    arg("require", default=",".join(SUITES))
    arg("datasets", action="store_true")
    arg("tag")
    arg("collection", metavar="SLUG")
    arg("force", action="store_true")
    arg("allow_subset_results", action="store_true")
    arg("verbose", "-v", action="store_true")
    return p


def release_info(iterations: list[Iteration], push: str | None, name: str | None, datasets: bool) -> ReleaseInfo:
    """The release named by --push, else --name, else the run's default family (no org: a local dry run)."""
    if push:
        org, family = parse_release_name(push, need_org=True)
    elif name:
        org, family = parse_release_name(name, need_org=False)
    else:
        org, family = None, default_family(iterations)
    if datasets and org:
        parse_release_name(f"{org}/{family}-Iter{max(it.number for it in iterations)}-data", need_org=True)
    return ReleaseInfo(family=family, org=org, datasets=datasets, license=default_license(iterations))


def required_suites(text: str) -> list[str]:
    """The suites of --require (comma-separated), each one of benchmarks.store.SUITES."""
    require = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(require) - set(SUITES))
    if unknown:
        raise UserError(f"--require: unknown suite {unknown[0]!r}; expected some of {', '.join(SUITES)}")
    return require


def _targets(iterations: list[Iteration], wanted: tuple[int, ...]) -> list[Iteration]:
    if not wanted:
        return iterations
    known = {it.number: it for it in iterations}
    missing = sorted(set(wanted) - set(known))
    if missing:
        raise UserError(f"no iteration {missing[0]} in this run (has {', '.join(map(str, sorted(known)))})")
    return [known[n] for n in sorted(set(wanted))]


def say(line: str) -> None:
    """Print one line of the plan or report; the names in it (files, checkpoints, repos) come from the run and
    cannot break the line or forge another (``sppo.files.printable``)."""
    print(printable(line))


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _print_plan(uploads: list[Upload], card_paths: dict[int, Path], data: list[DataUpload]) -> None:
    for d in data:
        say(f"{d.iteration.name} data -> {d.repo_id or '<ORG>/' + card_paths[d.iteration.number].parent.name + '-data'}"
              f"  (dataset: {d.rows} train rows, {d.test_rows} test rows)")
        for path, content in [*d.files.items(), ("README.md", d.card.encode())]:
            say(f"  {path}  {_size(len(content))}")
    for u in uploads:
        where = u.repo_id or f"<ORG>/{card_paths[u.iteration.number].parent.name}"
        say(f"{u.iteration.name} -> {where}")
        say(f"  README.md  {_size(len(u.card.encode()))}  ({card_paths[u.iteration.number]})")
        for f in u.files:
            say(f"  {f.name}  {_size(f.stat().st_size)}")
        if not u.files:
            say("  (no checkpoint files found)")


def compat_reports(targets: list[Iteration]) -> list[CompatReport]:
    """Per checkpoint to upload: would transformers 4.42+ read its files as the toolkit's transformers does?"""
    return [CompatReport(it.name, compat_problems(it.checkpoint, lora=bool(it.hyperparameters.get("lora"))))
            for it in targets if it.checkpoint is not None and it.checkpoint.is_dir()]


def write_cards(out: Path, release: ReleaseInfo, targets: list[Iteration],
                cards: dict[int, ModelCard]) -> dict[int, Path]:
    """Write every target's card under `out`; returns where each went."""
    paths = {}
    for it in targets:
        paths[it.number] = write_text(card_path(out, release.model_name(it)), str(cards[it.number]))
        log.debug("wrote %s", paths[it.number])
    return paths


def dry_run(uploads: list[Upload], card_paths: dict[int, Path], data: list[DataUpload], compat: list[CompatReport],
            problems: list[str], ignored: list[str]) -> int:
    """Print what --push would upload, the compatibility check and every problem; upload nothing."""
    if ignored:
        say(f"note: {', '.join(ignored)} only apply with --push")
    _print_plan(uploads, card_paths, data)
    for c in compat:
        say(c.line())
    for p in problems:
        say(f"warning: {p}")
    say("dry run: nothing uploaded" + (" (--push would refuse: see the warnings)" if problems
                                          else "; pass --push ORG/NAME to publish"))
    return 0


def publish_release(uploads: list[Upload], data: list[DataUpload], problems: list[str], tag: str | None,
                    collection: str | None, force: bool) -> int:
    """Publish, unless there is any problem (then refuse, naming the first)."""
    if problems:
        raise UserError(f"refusing to push: {problems[0]}" + (f" (and {len(problems) - 1} more problem(s))"
                                                               if len(problems) > 1 else ""))
    for repo_id, oid in publish(uploads, tag=tag, collection=collection, force=force, data=data).items():
        say(f"published {repo_id} at {oid}" if oid else f"{repo_id}: already published, unchanged")
    return 0


def _main(argv: list[str]) -> int:
    args = from_flags(ReleaseSettings, vars(build_parser().parse_args(argv)))
    setup_logging(args.verbose)
    if not args.verbose:  # one INFO line per HTTP request is noise; -v shows them
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    for flag, path in (("--run-dir", args.run_dir), ("--results-dir", args.results_dir)):
        if path is not None and path.exists() and not path.is_dir():
            raise UserError(f"{flag}: {path} is a file, expected a directory")
    run_dir = current_run_dir(args.run_dir)
    iterations = load_run(run_dir)
    release = release_info(iterations, args.push, args.name, args.datasets)
    targets = _targets(iterations, args.iteration)
    results = results_from_store(ResultsStore(args.results_dir or RunLayout(Path(run_dir)).results), iterations,
                                 release)
    require = required_suites(args.require)
    cards = {it.number: render_card(release, iterations, it, results, args.template) for it in targets}
    data = plan_data(release, Path(run_dir), targets) if args.datasets else []
    # every card rendered and every dataset read before anything is written
    card_paths = write_cards(args.out or cards_dir(run_dir), release, targets, cards)
    uploads = plan_uploads(release, targets, cards)
    compat = compat_reports(targets)
    problems = (checkpoint_problems(targets) + [f"{c.name}: {p}" for c in compat for p in c.problems]
                + result_problems(iterations, targets, results, require, args.allow_subset_results))
    if not args.push:
        return dry_run(uploads, card_paths, data, compat, problems,
                       ignored=[f"--{k}" for k in ("tag", "collection", "force") if getattr(args, k)])
    return publish_release(uploads, data, problems, tag=args.tag, collection=args.collection, force=args.force)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
