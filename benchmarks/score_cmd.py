"""`sppo-bench score SUITE PATH`: score existing official judgment/result files without running any model.

    sppo-bench score alpaca-eval  annotations.json              AlpacaEval 2 (weighted_alpaca_eval_gpt4_turbo)
    sppo-bench score arena-hard   model_judgment/<judge>/       Arena-Hard v0.1 (every model in the directory)
    sppo-bench score mt-bench     model_judgment/gpt-4_single.jsonl
    sppo-bench score lm-eval      results.json                  lm-evaluation-harness v0.4.1

Prints one JSON object per model (keys named as in the official leaderboards); with --results-dir the figures
are also written to the results store as SuiteResult records.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sppo.cli_util import setup_logging
from sppo.errors import UserError
from sppo.files import finite  # NaN / infinities -> null: the one definition, shared with write_json
from sppo.settings import doc, from_flags

from benchmarks import inputs
from benchmarks.inputs import read_json_file, read_jsonl_lines, read_records
from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteName, SuiteResult, cli_name

log = logging.getLogger(__name__)


def _default_sibling(path: Path, *parts: str) -> Path | None:
    candidate = path.joinpath(*parts)
    return candidate if candidate.exists() else None


@dataclass(frozen=True)
class ScoreSettings:
    """The settings of ``sppo-bench score SUITE PATH``, built once from its arguments (`configure`)."""

    suite: SuiteName = doc("the suite whose official files are scored", "alpaca_eval")
    path: Path = doc("AlpacaEval annotations, an Arena-Hard judgment directory, MT-Bench judgments or lm-eval "
                     "results", Path("."))
    results_dir: Path | None = doc("also write the figures to this results store", None)
    variant: str = doc("variant name in the store (e.g. best-of-16)", DEFAULT_VARIANT)
    df_gamed: str | None = doc("AlpacaEval: local copy of df_gamed.csv (else the Hub's, if reachable)", None)
    no_lc: bool = doc("AlpacaEval: skip the length-controlled win rate", False)
    questions: Path | None = doc("Arena-Hard, MT-Bench: question.jsonl (default: ../../question.jsonl)", None)
    answers: Path | None = doc("Arena-Hard: model_answer/ directory for avg_tokens (default: ../../model_answer)",
                               None)
    baseline: str = doc("Arena-Hard: the baseline model", "gpt-4-0314")
    num_rounds: int = doc("Arena-Hard: bootstrap rounds", 100, ge=1)
    seed: int = doc("Arena-Hard: bootstrap seed", 42)
    with_judgments: tuple[Path, ...] = doc("Arena-Hard: other judgment directories fitted together", ())
    model: tuple[str, ...] = doc("MT-Bench: only these models; lm-eval: the model's name", ())


# --- suites ---------------------------------------------------------------------------------------------------------

def score_alpaca_eval(args: ScoreSettings) -> list[SuiteResult]:
    from benchmarks.scoring import alpaca_eval as ae

    path = Path(args.path)
    records, lines = read_records(path)
    df_gamed, reason = None, None
    if args.no_lc:
        reason = "disabled with --no-lc"
    else:
        df_gamed = inputs.df_gamed(args.df_gamed)
        if df_gamed is None:
            reason = (f"{ae.DF_GAMED} not available: no local copy given (--df-gamed) and the Hub dataset "
                      f"{ae.HUB_DATASET} cannot be reached")
    scored = ae.score_annotations(records, df_gamed=df_gamed, source=str(path), lines=lines,
                                  lc_unavailable_reason=reason)
    settings = {"annotator": ae.ANNOTATOR, "glm": ae.GLM_NAME, "source": str(path),
                "df_gamed": str(args.df_gamed) if args.df_gamed else (None if df_gamed is None else "hub")}
    return [_result(model, "alpaca_eval", m, settings, {"name": ae.ANNOTATOR, "model": ae.JUDGE_MODEL}, args)
            for model, m in scored.items()]


def score_arena_hard(args: ScoreSettings) -> list[SuiteResult]:
    from benchmarks.scoring import arena_hard as ah

    judgment_dir = Path(args.path)
    if not judgment_dir.is_dir():
        raise UserError(f"{judgment_dir}: not a directory (expected model_judgment/<judge>/ with one JSONL per model)")
    for d in args.with_judgments:
        if not Path(d).is_dir():
            raise UserError(f"{d}: --with-judgments must be a directory of <model>.jsonl judgment files")
    files = inputs.judgment_files(judgment_dir, [Path(d) for d in args.with_judgments])
    if not files:
        raise UserError(f"{judgment_dir}: no *.jsonl judgment files")
    judgments = inputs.read_judgments(files)
    rows = judgments.rows
    bench_dir = judgment_dir.parent.parent  # data/arena-hard-v0.1/model_judgment/<judge>/
    questions = Path(args.questions) if args.questions else _default_sibling(bench_dir, "question.jsonl")
    answers_dir = Path(args.answers) if args.answers else _default_sibling(bench_dir, "model_answer")
    question_ids = {str(q["question_id"]) for q in inputs.question_records(questions)} if questions else None
    answers = inputs.answers_by_model(answers_dir) if answers_dir else None
    board = ah.score_judgments(rows, answers=answers, baseline=args.baseline, question_ids=question_ids,
                               num_rounds=args.num_rounds, seed=args.seed, lines=judgments.lines,
                               source=judgments.sources)
    judges = sorted({str(r.get("judge")) for r in rows if r.get("judge")})
    pooled = ah.pooled_judges_note(rows, judgment_dir)
    for metrics in board.values() if pooled else ():
        metrics["notes"].append(pooled)
    settings = {"baseline": args.baseline, "num_rounds": args.num_rounds, "seed": args.seed,
                "strong_weight": ah.STRONG_WEIGHT, "source": str(judgment_dir),
                "questions": str(questions) if questions else None,
                "answers": str(answers_dir) if answers_dir else None}
    judge = {"model": judges[0] if len(judges) == 1 else judges}
    return [_result(model, "arena_hard", m, settings, judge, args) for model, m in board.items()]


def score_mt_bench(args: ScoreSettings) -> list[SuiteResult]:
    from benchmarks.scoring import mt_bench as mt

    path = Path(args.path)
    rows, lines = read_jsonl_lines(path)
    questions = Path(args.questions) if args.questions else _default_sibling(path.parent.parent, "question.jsonl")
    if args.model:
        keep = [i for i, r in enumerate(rows) if r.get("model") in set(args.model)]
        rows, lines = [rows[i] for i in keep], [lines[i] for i in keep]
    if not rows:
        raise UserError(f"{path}: no judgments" + (f" of model {args.model[0]!r}" if args.model else ""))
    scored = mt.score_judgments(rows, questions=inputs.question_records(questions), source=str(path), lines=lines)
    if args.model:
        missing = sorted(set(args.model) - set(scored))
        if missing:
            raise UserError(f"{path}: no judgments of model {missing[0]!r}")
    settings = {"source": str(path), "questions": str(questions) if questions else None}
    return [_result(model, "mt_bench", m, settings, {"model": m.pop("judge")}, args) for model, m in scored.items()]


def score_lm_eval(args: ScoreSettings) -> list[SuiteResult]:
    from benchmarks.scoring import lm_eval as le

    path = Path(args.path)
    data = read_json_file(path)
    metrics = le.score_results(data, source=str(path))
    model = args.model[0] if args.model else _lm_eval_model_name(data, path)
    settings = {"source": str(path), "harness": "lm-eval 0.4.1", "n_shot": metrics.pop("n_shot")}
    return [_result(model, "lm_eval", metrics, settings, None, args)]


def _lm_eval_model_name(data: dict, path: Path) -> str:
    """The ``pretrained`` model of the results' config (last path component), else the file's stem. The harness
    records ``model_args`` as its ``key=value,...`` string; ``sppo-bench`` records the values themselves."""
    config = data.get("config") or {}
    model_args = config.get("model_args") if isinstance(config, dict) else None
    if isinstance(model_args, dict):
        pretrained = model_args.get("pretrained")
    else:
        parts = (part.partition("=") for part in str(model_args or "").split(","))
        pretrained = next((value for key, _, value in parts if key.strip() == "pretrained"), None)
    if isinstance(pretrained, str) and pretrained.strip().rstrip("/"):
        return Path(pretrained.strip().rstrip("/")).name
    return path.stem


def _result(model: str, suite: str, metrics: dict[str, Any], settings: dict[str, Any], judge: dict | None,
            args: ScoreSettings) -> SuiteResult:
    """A SuiteResult whose metrics are the figures only; the notes travel in settings."""
    metrics = dict(metrics)
    notes = metrics.pop("notes", [])
    return SuiteResult(model=model, suite=suite, metrics=metrics, variant=args.variant,
                       settings={**settings, "notes": notes}, judge=judge)


# --- command --------------------------------------------------------------------------------------------------------

SCORERS: dict[SuiteName, tuple[Callable[["ScoreSettings"], list[SuiteResult]], str]] = {
    "alpaca_eval": (score_alpaca_eval, "AlpacaEval 2 annotations (annotations.json, JSON array or JSONL)"),
    "arena_hard": (score_arena_hard, "Arena-Hard v0.1 judgment directory (one <model>.jsonl per model)"),
    "mt_bench": (score_mt_bench, "MT-Bench single-grading judgments (FastChat gpt-4_single.jsonl)"),
    "lm_eval": (score_lm_eval, "lm-evaluation-harness v0.4.1 results JSON"),
}


def configure(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sppo-bench score SUITE ...`` (one subparser per suite)."""
    sub = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for suite, (_, help_) in SCORERS.items():
        name = cli_name(suite)
        s = sub.add_parser(name, help=help_, description=help_)
        s.set_defaults(suite=suite)
        s.add_argument("path", metavar="DIR" if suite == "arena_hard" else "FILE", help=help_)
        s.add_argument("--results-dir", help="also write the figures to this results store")
        s.add_argument("--variant", default=DEFAULT_VARIANT, help="variant name in the store (e.g. best-of-16)")
        if suite == "alpaca_eval":
            s.add_argument("--df-gamed", help="local copy of df_gamed.csv (Hub dataset tatsu-lab/alpaca_eval); "
                                              "without it the file is downloaded once and cached, if reachable")
            s.add_argument("--no-lc", action="store_true", help="skip the length-controlled win rate")
        if suite == "arena_hard":
            s.add_argument("--questions", help="question.jsonl (default: ../../question.jsonl beside DIR)")
            s.add_argument("--answers", help="model_answer/ directory for avg_tokens (default: ../../model_answer)")
            s.add_argument("--baseline", default="gpt-4-0314", help="baseline model (default: %(default)s)")
            s.add_argument("--num-rounds", type=int, default=100, help="bootstrap rounds (default: %(default)s)")
            s.add_argument("--seed", type=int, default=42, help="bootstrap seed (default: %(default)s)")
            s.add_argument("--with-judgments", action="append", default=[], metavar="DIR2",
                           help="also fit the judgment files of DIR2 (repeatable); every directory is read in sorted "
                                "file-name order")
        if suite == "mt_bench":
            s.add_argument("--questions", help="MT-Bench question.jsonl for per-category means "
                                               "(default: ../../question.jsonl beside FILE)")
        if suite in ("mt_bench", "lm_eval"):
            s.add_argument("--model", action="append",
                           help="mt-bench: only these models (repeatable); lm-eval: the model's name "
                                "(default: pretrained= of the results' config)")


def main(namespace: argparse.Namespace) -> int:
    args = from_flags(ScoreSettings, vars(namespace), positional=("path",))
    setup_logging()
    for noisy in ("numexpr", "datasets", "httpx", "huggingface_hub", "urllib3"):  # import-time chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.results_dir and Path(args.results_dir).exists() and not Path(args.results_dir).is_dir():
        raise UserError(f"{args.results_dir}: --results-dir is a file, not a directory")
    results = SCORERS[args.suite][0](args)
    store = ResultsStore(args.results_dir) if args.results_dir else None
    to_store = [r for r in results if store is not None and not _is_fixed_baseline(r)]
    for r in to_store:  # every name is checked before anything is written: no half-written store
        store.path(r.model, r.suite, r.variant)
    for r in results:
        record = {"model": r.model, "suite": r.suite, **r.metrics, "notes": r.settings["notes"]}
        print(json.dumps(finite(record), ensure_ascii=False, allow_nan=False))
    for r in to_store:
        log.info("wrote %s", store.write(r))
    return 0



def _is_fixed_baseline(r: SuiteResult) -> bool:
    """Arena-Hard lists its baseline (50 by definition); it is not a result of the scored run."""
    return r.suite == "arena_hard" and r.model == r.settings.get("baseline")
