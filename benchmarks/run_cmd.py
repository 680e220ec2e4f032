"""`sppo-bench [--all | --alpaca-eval --arena-hard --mt-bench --lm-eval] MODEL...`: run the benchmark suites.

    sppo-bench --all Iter1 Iter2 Iter3                      checkpoints of the current training run
    sppo-bench --alpaca-eval --limit 20 UCLA-AGI/Mistral7B-PairRM-SPPO-Iter3 ./my_checkpoint
    sppo-bench --all --judge-base-url http://localhost:8000/v1 --judge-model Qwen2.5-72B-Instruct Iter3
    sppo-bench --all --best-of 16 Iter1                       adds the "best-of-16" rows (ranker: PairRM)

Models: ``IterN`` (or any name under ``<run_dir>/checkpoints/``) -> that checkpoint of the current run; else a local
checkpoint directory, ``embedded``, or a Hub id. Judge: an OpenAI-compatible endpoint (``--judge-base-url``,
``--judge-model``, the API key read from the environment variable named by ``--judge-api-key-env``), or
``--judge local[:MODEL]``, an in-process chat model (default when no endpoint is given: the embedded model; offline).

Each (model, suite[, variant]) result goes to the results store (default ``<run_dir>/results``). A result already
there for the same checkpoint and settings is kept (``--rerun`` recomputes it, still reusing the answer files,
judgment files and judge cache); an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any

from sppo.cli_util import setup_logging
from sppo.errors import UserError
from sppo.files import checkpoint_dir, current_run_dir

from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult, checkpoint_fingerprint

log = logging.getLogger(__name__)

SUITE_FLAGS = {"alpaca_eval": "--alpaca-eval", "arena_hard": "--arena-hard", "mt_bench": "--mt-bench",
               "lm_eval": "--lm-eval"}
DEFAULT_OPENAI_JUDGE = "gpt-4-1106-preview"
LOCAL_JUDGE_MAX_NEW_TOKENS = 64
# The offline default (local judge on a CPU) answers with at most this many tokens unless --max-new-tokens says
# otherwise: the official limits (2048 / 4096 / 1024) take hours on a CPU when a small model does not stop.
OFFLINE_MAX_NEW_TOKENS = 128


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sppo-bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="subcommands: `sppo-bench score SUITE PATH`, `sppo-bench table`")
    p.add_argument("models", nargs="+", metavar="MODEL", help="IterN of the current run, a checkpoint path, "
                   "'embedded', or a Hub id")
    s = p.add_argument_group("suites (default: all)")
    s.add_argument("--all", action="store_true", help="AlpacaEval 2, Arena-Hard v0.1, MT-Bench and lm-eval")
    for suite, flag in SUITE_FLAGS.items():
        s.add_argument(flag, dest=suite, action="store_true")
    g = p.add_argument_group("generation")
    g.add_argument("--limit", type=int, help="only the first N items of each benchmark (quick look)")
    g.add_argument("--max-new-tokens", type=int,
                   help="override every suite's answer length limit (quick runs); 0 = the official limits. Default: "
                        f"official with an endpoint judge, {OFFLINE_MAX_NEW_TOKENS} with the local (offline) judge")
    g.add_argument("--best-of", type=int, default=1, metavar="N",
                   help="also run the 'best-of-N' variant: N samples per instruction, the ranker's favourite answers")
    g.add_argument("--ranker", default="pairrm", help="ranker kind for --best-of (sppo.rank.make_ranker)")
    g.add_argument("--ranker-model", help="ranker model for --best-of (default: the kind's default)")
    g.add_argument("--generation-backend", choices=("hf", "vllm", "auto"), default="auto")
    g.add_argument("--batch-size", type=int, default=8, help="generation batch size (sequences in flight)")
    j = p.add_argument_group("judge")
    j.add_argument("--judge", metavar="local[:MODEL]|openai",
                   help="'local' / 'local:MODEL': in-process chat model (default without --judge-base-url: the "
                        "embedded model); 'openai': the endpoint below")
    j.add_argument("--judge-base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    j.add_argument("--judge-model", help=f"judge model name (default {DEFAULT_OPENAI_JUDGE})")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="name of the environment variable holding the API key (the key is never printed)")
    j.add_argument("--judge-concurrency", type=int, default=8, help="requests in flight")
    j.add_argument("--judge-max-retries", type=int, default=6)
    j.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per request")
    j.add_argument("--judge-backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    j.add_argument("--judge-price", metavar="IN,OUT", help="USD per 1M input,output tokens (cost accounting)")
    j.add_argument("--judge-max-new-tokens", type=int,
                   help=f"cap on a local judge's verdict length (default {LOCAL_JUDGE_MAX_NEW_TOKENS})")
    d = p.add_argument_group("data and results")
    d.add_argument("--data-dir", type=Path, default=os.environ.get("SPPO_BENCH_DATA") or None,
                   help="local benchmark files (layout of ../shared/data); default: $SPPO_BENCH_DATA, else download "
                        "from the Hub once and cache")
    d.add_argument("--run-dir", help="training run (default: $SPPO_RUN_DIR, runs/latest, newest under runs/)")
    d.add_argument("--results-dir", type=Path, help="results store (default <run_dir>/results)")
    d.add_argument("--lm-eval-tasks", choices=("v1", "tiny"),
                   help="v1: the Open LLM Leaderboard v1 tasks (Hub data); tiny: the project's own small "
                        "multiple-choice task (offline). Default: v1 with an endpoint judge, tiny with a local judge")
    d.add_argument("--lm-eval-batch-size", type=int, default=4)
    d.add_argument("--df-gamed", help="local copy of AlpacaEval's df_gamed.csv (length-controlled win rate)")
    d.add_argument("--rerun", action="store_true", help="recompute results already in the store")
    d.add_argument("--progress", action="store_true", help="progress bars")
    d.add_argument("-v", "--verbose", action="store_true")
    return p


def store_name(ref: str) -> str:
    """A results-store name for a model reference: IterN stays, paths give their directory name, Hub ids
    ``org/name`` give ``org__name``."""
    p = Path(ref)
    base = p.name if (p.exists() or ref.startswith((".", "/", "~"))) else ref.replace("/", "__")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    if not name:
        raise UserError(f"{ref}: cannot derive a model name")
    return name


class _Resolver:
    def __init__(self, run_dir_arg: str | None):
        self.run_dir_arg = run_dir_arg
        self._run_dir: Path | None = None

    def run_dir(self) -> Path:
        if self._run_dir is None:
            self._run_dir = current_run_dir(self.run_dir_arg)
        return self._run_dir

    def resolve(self, ref: str) -> tuple[str, str]:
        """(store name, path or Hub id)."""
        from sppo.models import resolve_model

        if re.fullmatch(r"Iter\d+", ref) or (not Path(ref).exists() and "/" not in ref and ref != "embedded"
                                             and self._maybe_checkpoint(ref)):
            ck = checkpoint_dir(self.run_dir(), ref)
            if not (ck / "config.json").exists():
                raise UserError(f"{ref}: no checkpoint at {ck} (has this iteration been trained?)")
            return ref, str(ck)
        return store_name(ref), resolve_model(ref)

    def _maybe_checkpoint(self, ref: str) -> bool:
        try:
            return checkpoint_dir(self.run_dir(), ref).is_dir()
        except UserError:
            return False


def make_judge(args, cache):
    from benchmarks.judge import LocalJudge, OpenAIJudge, parse_judge_spec

    kind, local_model = parse_judge_spec(args.judge if args.judge else
                                         ("openai" if (args.judge_base_url or args.judge_model) else "local"))
    if kind == "local":
        if args.judge_base_url:
            raise UserError("--judge local and --judge-base-url exclude each other")
        return LocalJudge.load(local_model or "embedded", cache=cache,
                               max_new_tokens=args.judge_max_new_tokens or LOCAL_JUDGE_MAX_NEW_TOKENS)
    price = None
    if args.judge_price:
        try:
            a, b = (float(x) for x in args.judge_price.split(","))
        except ValueError:
            raise UserError(f"--judge-price: expected IN,OUT (USD per 1M tokens), got {args.judge_price!r}") from None
        price = (a, b)
    return OpenAIJudge(args.judge_model or DEFAULT_OPENAI_JUDGE,
                       base_url=args.judge_base_url or "https://api.openai.com/v1",
                       api_key_env=args.judge_api_key_env, cache=cache, max_concurrency=args.judge_concurrency,
                       max_retries=args.judge_max_retries, timeout=args.judge_timeout,
                       backoff_base=args.judge_backoff, price_per_million=price)


def _run_key(args, judge, suite: str) -> dict[str, Any]:
    key = {"limit": args.limit, "max_new_tokens": args.max_new_tokens,
           "data_dir": str(args.data_dir) if args.data_dir else None}
    if suite == "lm_eval":
        return {"limit": args.limit, "lm_eval_tasks": args.lm_eval_tasks}
    key["judge"] = judge.model if judge is not None else None
    return key


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from benchmarks.answers import AnswerSettings, ModelAnswerer, default_ranker_factory
    from benchmarks.data import DataSource
    from benchmarks.judge import CACHE_FILE, JudgeCache
    from benchmarks import suites as S

    chosen = [s for s in SUITE_FLAGS if getattr(args, s)]
    if args.all or not chosen:
        chosen = list(SUITE_FLAGS)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 0:
        raise UserError("--max-new-tokens must be at least 1 (or 0 for the official limits)")
    if args.best_of < 1:
        raise UserError("--best-of must be at least 1")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"{args.data_dir}: --data-dir does not exist")

    resolver = _Resolver(args.run_dir)
    targets_spec = [(ref, *resolver.resolve(ref)) for ref in args.models]
    names = [n for _, n, _ in targets_spec]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise UserError(f"two models map to the same name {sorted(dupes)[0]!r}; pass distinct checkpoints")
    if args.results_dir:
        results_dir = args.results_dir
    else:
        try:
            results_dir = resolver.run_dir() / "results"
        except UserError:
            raise UserError("no training run to hold the results: pass --results-dir") from None
    store = ResultsStore(results_dir)
    judged = [s for s in chosen if s != "lm_eval"]
    openai_judge = bool(args.judge_base_url or args.judge_model or args.judge == "openai")
    if args.lm_eval_tasks is None:
        args.lm_eval_tasks = "v1" if openai_judge else "tiny"
    if args.max_new_tokens is None and not openai_judge:
        args.max_new_tokens = OFFLINE_MAX_NEW_TOKENS
        log.info("local judge: answers limited to %d new tokens (--max-new-tokens 0 for the official limits)",
                 OFFLINE_MAX_NEW_TOKENS)
    elif args.max_new_tokens == 0:
        args.max_new_tokens = None

    cache = JudgeCache(results_dir / CACHE_FILE) if judged else None
    judge = None
    ctx = S.RunContext(results_dir=results_dir, data=DataSource(args.data_dir), judge=None,
                       answer_settings=AnswerSettings(args.limit, args.max_new_tokens), progress=args.progress,
                       lm_eval_tasks=args.lm_eval_tasks, lm_eval_batch_size=args.lm_eval_batch_size,
                       df_gamed=args.df_gamed)

    def get_judge():
        nonlocal judge
        if judge is None:
            judge = make_judge(args, cache)
            ctx.judge = judge
        return judge

    # the judge's identity is needed for the up-to-date check; the local judge's model is loaded lazily below
    judge_name = None
    if judged:
        from benchmarks.judge import local_judge_name, parse_judge_spec

        kind, local_model = parse_judge_spec(args.judge if args.judge else ("openai" if openai_judge else "local"))
        judge_name = (args.judge_model or DEFAULT_OPENAI_JUDGE) if kind == "openai" else local_judge_name(local_model)

    class _Named:  # stands in for the judge in _run_key before it is loaded
        model = judge_name

    written: list[SuiteResult] = []
    skipped: list[str] = []
    arena_targets: list[S.ModelTarget] = []
    arena_judged: dict[str, dict] = {}
    variants = [DEFAULT_VARIANT] + ([f"best-of-{args.best_of}"] if args.best_of > 1 else [])
    ranker = default_ranker_factory(args.ranker, args.ranker_model) if args.best_of > 1 else None
    try:
        for ref, name, path in targets_spec:
            base = ModelAnswerer(path, backend=args.generation_backend, batch_size=args.batch_size,
                                 progress=args.progress)
            fingerprint = checkpoint_fingerprint(path)
            for suite in chosen:
                for variant in (variants if suite != "lm_eval" else [S.lm_eval_variant(args.lm_eval_tasks)]):
                    key = _run_key(args, _Named, suite)
                    old = store.read(name, suite, variant)
                    if (old is not None and not args.rerun and old.settings.get("run_key") == key
                            and old.checkpoint.get("fingerprint") == fingerprint):
                        skipped.append(f"{name}/{suite}" + ("" if variant == DEFAULT_VARIANT else f".{variant}"))
                        continue
                    if variant == DEFAULT_VARIANT or suite == "lm_eval":
                        answerer = base
                    else:
                        answerer = ModelAnswerer(path, backend=args.generation_backend, batch_size=args.batch_size,
                                                 best_of=args.best_of, ranker_factory=ranker, progress=args.progress)
                        answerer._generator = base.generator
                    target = S.ModelTarget(name=name, ref=ref, path=path, answerer=answerer, variant=variant)
                    log.info("%s: %s%s", name, suite, "" if variant == DEFAULT_VARIANT else f" ({variant})")
                    if suite != "lm_eval":
                        get_judge()
                    if suite == "arena_hard":
                        arena_judged[name] = {**S.arena_hard_judge(ctx, target), "run_key": key}
                        arena_targets.append(target)
                        continue
                    result = {"alpaca_eval": S.alpaca_eval, "mt_bench": S.mt_bench, "lm_eval": S.lm_eval}[suite](
                        ctx, target)
                    result.settings["run_key"] = key
                    store.write(result)
                    written.append(result)
            base._generator = None  # free the model before loading the next one
        if arena_targets:
            by_variant: dict[str, list] = {}
            for t in arena_targets:
                by_variant.setdefault(t.variant, []).append(t)
            for ts in by_variant.values():
                judged_v = {t.name: arena_judged[t.name] for t in ts}
                for result in S.arena_hard_score(ctx, ts, judged_v):
                    result.settings["run_key"] = arena_judged[result.model]["run_key"]
                    store.write(result)
                    written.append(result)
    finally:
        if cache is not None:
            cache.close()
    print_summary(written, skipped, judge, results_dir)
    return 0


def headline(r: SuiteResult) -> str:
    m = r.metrics

    def f(key, digits=2):
        v = m.get(key)
        return "n/a" if v is None else f"{v:.{digits}f}"

    if r.suite == "alpaca_eval":
        return f"LC {f('length_controlled_winrate')}  WR {f('win_rate')}  len {m.get('avg_length')}"
    if r.suite == "arena_hard":
        return f"score {f('score', 1)}  CI {m.get('CI', 'n/a')}  tokens {m.get('avg_tokens')}"
    if r.suite == "mt_bench":
        return f"turn1 {f('turn_1')}  turn2 {f('turn_2')}  avg {f('average')}"
    return f"average {f('average')}"


def print_summary(written: list[SuiteResult], skipped: list[str], judge, results_dir: Path) -> None:
    for r in written:
        label = f"{r.model}/{r.suite}" + ("" if r.variant == DEFAULT_VARIANT else f" ({r.variant})")
        print(f"{label:40s} {headline(r)}")
    if skipped:
        print(f"up to date, kept: {', '.join(skipped)}")
    if judge is not None:
        s = judge.stats
        print(f"judge {judge.model}: {s.calls} calls, {s.cache_hits} cache hits, {s.retries} retries, "
              f"{s.errors} failed, {s.prompt_tokens}+{s.completion_tokens} tokens, ${s.cost_usd:.4f}")
    print(f"results: {results_dir}")
