"""`sppo-bench [--all | --alpaca-eval --arena-hard --mt-bench --lm-eval] MODEL...`: run the benchmark suites.

    sppo-bench --all Iter0 Iter1 Iter2 Iter3                the starting model and the checkpoints of the run
    sppo-bench --alpaca-eval --limit 20 UCLA-AGI/Mistral7B-PairRM-SPPO-Iter3 ./my_checkpoint
    sppo-bench --all --judge-base-url http://localhost:8000/v1 --judge-model Qwen2.5-72B-Instruct Iter3
    sppo-bench --all --best-of 16 Iter1                       adds the "best-of-16" rows (ranker: PairRM)
    torchrun --nproc_per_node 8 -m benchmarks.cli --all Iter1  every GPU shares the answers, local judge and lm-eval

Models: ``IterN`` (or any name under ``<run_dir>/checkpoints/``) -> that checkpoint of the current run (``Iter0``: the
model the run started from, ``model.name`` of its config.yaml, as the paper's tables compare against it); else a local
checkpoint directory, ``embedded``, or a Hub id. Judge: an OpenAI-compatible endpoint (``--judge-base-url``, the
API key read from the environment variable named by ``--judge-api-key-env``) with each suite's official judge
model by default (AlpacaEval and Arena-Hard gpt-4-1106-preview, MT-Bench gpt-4; ``--judge-model`` for all suites,
``--SUITE-judge-model`` for one), or ``--judge local[:MODEL]``, an in-process chat model (default when no endpoint
is given: the embedded model; offline).

Each (model, suite[, variant]) result goes to the results store (default ``<run_dir>/results``). A result already
there for the same checkpoint, settings and judge (backend, base URL, model, prompt version) is kept (``--rerun``
recomputes it). Answers and judgments are reused only when what produced them is unchanged, and the summary says how
many were reused; an interrupted run (Ctrl-C, SIGTERM) resumes where it stopped. A suite whose judge requests fail
records no result; the command then ends with exit status 1 and one line per such suite, and a plain rerun retries
exactly the failed requests.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sppo.cli_util import setup_logging
from sppo.errors import UserError, first_line
from sppo.files import checkpoint_dir, current_run_dir, safe_name
from sppo.scrub import public_url

from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult, checkpoint_fingerprint
from benchmarks.suites import SUITES

log = logging.getLogger(__name__)

SCRATCH = ".chunks"  # under the results store: the chunks of answer jobs in progress
LOCAL_JUDGE_MAX_NEW_TOKENS = 64
# The offline default (local judge on a CPU) answers with at most this many tokens unless --max-new-tokens says
# otherwise: the official limits (2048 / 4096 / 1024) take hours on a CPU when a small model does not stop.
OFFLINE_MAX_NEW_TOKENS = 128


def configure(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sppo-bench [run]`` (the `run` subcommand, also taken when no subcommand is named)."""
    p.add_argument("models", nargs="+", metavar="MODEL", help="IterN of the current run, a checkpoint path, "
                   "'embedded', or a Hub id")
    s = p.add_argument_group("suites (default: all)")
    s.add_argument("--all", action="store_true", help="AlpacaEval 2, Arena-Hard v0.1, MT-Bench and lm-eval")
    for suite in SUITES.values():
        s.add_argument(suite.flag, dest=suite.name, action="store_true")
    g = p.add_argument_group("generation")
    g.add_argument("--limit", type=int, help="only the first N items of each benchmark (quick look)")
    g.add_argument("--max-new-tokens", type=int,
                   help="override every suite's answer length limit (quick runs); 0 = the official limits. Default: "
                        f"official with an endpoint judge, {OFFLINE_MAX_NEW_TOKENS} with the local (offline) judge")
    g.add_argument("--alpaca-eval-temperature", type=float, help="AlpacaEval sampling temperature (default: "
                   "alpaca_eval's config of the model, else the SPPO models' 0.7)")
    g.add_argument("--alpaca-eval-top-p", type=float, help="AlpacaEval top_p (default: as the temperature, 0.9)")
    g.add_argument("--chat-template", choices=("fastchat", "hf"), default="fastchat",
                   help="MT-Bench prompts: FastChat's conversation template for the model where FastChat has one, "
                        "as the official answers were generated (default), or the checkpoint's own chat template")
    g.add_argument("--best-of", type=int, default=1, metavar="N",
                   help="also run the 'best-of-N' variant: N samples per instruction, the ranker's favourite answers")
    g.add_argument("--ranker", default="pairrm", help="ranker kind for --best-of (sppo.rank.make_ranker)")
    g.add_argument("--ranker-model", help="ranker model for --best-of (default: the kind's default)")
    g.add_argument("--generation-backend", choices=("hf", "vllm", "auto"), default="auto")
    g.add_argument("--batch-size", type=int, help="generation batch size (sequences in flight; default: chosen "
                   "from the device's memory)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, metavar="T",
                   help="vLLM: GPUs per model (tensor parallelism, for a model beyond one GPU's memory); under a "
                        "launcher start GPUs / T processes per node, rank r's engine on GPUs r*T .. r*T+T-1")
    j = p.add_argument_group("judge")
    j.add_argument("--judge", metavar="local[:MODEL]|openai",
                   help="'local' / 'local:MODEL': in-process chat model (default without --judge-base-url: the "
                        "embedded model); 'openai': the endpoint below")
    j.add_argument("--judge-base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    j.add_argument("--judge-model", help="judge model of every suite (default: each suite's official judge, "
                   f"{', '.join(f'{s} {m}' for s, m in official_judges().items())})")
    for suite in SUITES.values():
        if suite.judged:
            j.add_argument(f"{suite.flag}-judge-model", dest=f"{suite.name}_judge_model", metavar="MODEL",
                           help=f"judge model of {suite.name} only")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="name of the environment variable holding the API key (the key is never printed or "
                        "written); unset: an error, or a warning for an endpoint on this machine")
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
    d.add_argument("--trust-remote-code", action="store_true",
                   help="let lm-eval run a checkpoint's own Python modelling code (its config's auto_map); off by "
                        "default: only the architectures built into transformers are loaded")
    d.add_argument("--with-judgments", action="append", type=Path, default=[], metavar="DIR",
                   help="Arena-Hard: also fit the official judgment files of other models in DIR (repeatable; "
                        "model_judgment/gpt-4-1106-preview of arena-hard-auto), read in sorted name order, as "
                        "show_result.py fits its whole judgment directory: the CI depends on that set")
    d.add_argument("--df-gamed", help="local copy of AlpacaEval's df_gamed.csv (length-controlled win rate)")
    d.add_argument("--rerun", action="store_true", help="recompute results already in the store")
    d.add_argument("--progress", action="store_true", help="progress bars (rank 0 only)")
    d.add_argument("--collective-timeout-minutes", type=float, default=24 * 60,
                   help="several processes: the longest any rank waits for the others (the serving ranks wait while "
                        "rank 0 talks to a judge endpoint)")
    d.add_argument("-v", "--verbose", action="store_true")


def store_name(ref: str) -> str:
    """A results-store name for a model reference: IterN stays, paths give their directory name, Hub ids
    ``org/name`` give ``org__name``. A name that had to be cleaned (characters other than letters, digits,
    ``.``, ``_``, ``-``) gets a short digest of the exact name, so two names never share an entry
    (``we ird;name`` -> ``we_ird_name-<digest>``, ``we_ird_name`` stays)."""
    p = Path(ref)
    base = p.name if (p.exists() or ref.startswith((".", "/", "~"))) else ref.replace("/", "__")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    if not name:
        raise UserError(f"{ref}: cannot derive a model name")
    if name != base:
        name += "-" + hashlib.sha256(base.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return name


def refuse_other_checkpoint(old: SuiteResult, path: str, where: Path) -> None:
    """A stored result of another checkpoint that still exists is never replaced: two directories of the same
    name (``a/ck``, ``b/ck``) would otherwise share one entry. A checkpoint that moved may take its entry over."""
    was = (old.checkpoint or {}).get("path")
    if not was or was == path or not Path(was).exists() or Path(was).resolve() == Path(path).resolve():
        return
    raise UserError(f"{where}: holds the results of {was}, another checkpoint of the same name as {path}; "
                    "rename one directory or use another --results-dir")


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

        if ref == "Iter0" and not checkpoint_dir(self.run_dir(), ref).is_dir():
            return ref, resolve_model(self.starting_model())
        if re.fullmatch(r"Iter\d+", ref) or (not Path(ref).exists() and "/" not in ref and ref != "embedded"
                                             and self._maybe_checkpoint(ref)):
            ck = checkpoint_dir(self.run_dir(), ref)
            if not (ck / "config.json").exists():
                raise UserError(f"{ref}: no checkpoint at {ck} (has this iteration been trained?)")
            return ref, str(ck)
        return store_name(ref), resolve_model(ref)

    def starting_model(self) -> str:
        """The model the run started from (``model.name`` of ``<run>/config.yaml``): what ``Iter0`` names."""
        import yaml

        path = self.run_dir() / "config.yaml"
        try:
            name = ((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model") or {}).get("name")
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            name = None
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: no model.name to take as Iter0 (the run's starting model)")
        return name

    def _maybe_checkpoint(self, ref: str) -> bool:
        try:
            return checkpoint_dir(self.run_dir(), ref).is_dir()
        except UserError:
            return False


def official_judges() -> dict[str, str]:
    """Each judged suite's official judge model, from its scoring module."""
    from benchmarks.scoring import alpaca_eval as ae
    from benchmarks.scoring import arena_hard as ah
    from benchmarks.scoring import mt_bench as mt

    return {"alpaca_eval": ae.JUDGE_MODEL, "arena_hard": ah.JUDGE, "mt_bench": mt.JUDGE}


def _judge_kind(args) -> tuple[str, str | None]:
    from benchmarks.judge import parse_judge_spec

    openai = bool(args.judge_base_url or args.judge_model or args.judge == "openai"
                  or any(getattr(args, f"{s.name}_judge_model") for s in SUITES.values() if s.judged))
    kind, local_model = parse_judge_spec(args.judge if args.judge else ("openai" if openai else "local"))
    if kind == "local" and args.judge_base_url:
        raise UserError("--judge local and --judge-base-url exclude each other")
    return kind, local_model


def _price(args) -> tuple[float, float] | None:
    if not args.judge_price:
        return None
    try:
        a, b = (float(x) for x in args.judge_price.split(","))
    except ValueError:
        raise UserError(f"--judge-price: expected IN,OUT (USD per 1M tokens), got {args.judge_price!r}") from None
    if not all(math.isfinite(x) and x >= 0 for x in (a, b)):
        raise UserError(f"--judge-price: prices must be finite and >= 0, got {args.judge_price!r}")
    return a, b


def _check_base_url(url: str) -> None:
    """An http(s) URL with a host, refused at once otherwise (it would be retried for minutes)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise UserError(f"--judge-base-url: {public_url(url)!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--judge-base-url: {public_url(url)!r} is not an http(s) URL with a host "
                        "(e.g. https://api.openai.com/v1)")


def is_local_url(url: str) -> bool:
    """An endpoint on this machine (``vllm serve``, llama.cpp, ...), which often takes no key."""
    return (urlsplit(url).hostname or "") in ("localhost", "127.0.0.1", "::1")


def _check_api_key(args) -> None:
    """The endpoint judge's key variable must be set, except for an endpoint on this machine (then a warning)."""
    name = args.judge_api_key_env
    if os.environ.get(name):
        return
    url = args.judge_base_url or "https://api.openai.com/v1"
    if is_local_url(url):
        log.warning("$%s is not set: requests to %s go without an API key", name, public_url(url))
        return
    raise UserError(f"--judge-api-key-env: the environment variable {name} is not set; export the API key "
                    f"of {public_url(url)} in it (or name another variable)")


class Judges:
    """The judge of each suite: endpoint judges one per model name (sharing the cache), the local judge loaded on
    first use. ``identity(suite)`` is known without loading anything."""

    def __init__(self, args, cache):
        from benchmarks.judge import local_judge_name

        self.args, self.cache = args, cache
        self.kind, self.local_model = _judge_kind(args)
        self._by_model: dict[str, Any] = {}
        self._local_name = local_judge_name(self.local_model)

    def model(self, suite: str) -> str:
        if self.kind == "local":
            return self._local_name
        name = getattr(self.args, f"{suite}_judge_model") or self.args.judge_model or official_judges()[suite]
        safe_name(re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_"), f"judge model {name!r}")
        return name

    def identity(self, suite: str) -> dict[str, Any]:
        if self.kind == "local":
            return {"backend": "local", "model": self._local_name}
        return {"backend": "openai", "model": self.model(suite),
                "base_url": public_url((self.args.judge_base_url or "https://api.openai.com/v1").rstrip("/"))}

    def get(self, suite: str):
        model = self.model(suite)
        if model not in self._by_model:
            self._by_model[model] = self._make(model)
        return self._by_model[model]

    def _make(self, model: str):
        from benchmarks.judge import LocalJudge, OpenAIJudge

        a = self.args
        if self.kind == "local":
            return LocalJudge.load(self.local_model or "embedded", cache=self.cache,
                                   max_new_tokens=a.judge_max_new_tokens or LOCAL_JUDGE_MAX_NEW_TOKENS)
        return OpenAIJudge(model, base_url=a.judge_base_url or "https://api.openai.com/v1",
                           api_key_env=a.judge_api_key_env, cache=self.cache, max_concurrency=a.judge_concurrency,
                           max_retries=a.judge_max_retries, timeout=a.judge_timeout, backoff_base=a.judge_backoff,
                           price_per_million=_price(a))

    def used(self) -> list:
        return list(self._by_model.values())


def _run_key(args, judges: "Judges | None", suite: str, ctx) -> dict[str, Any]:
    """What a stored result depends on besides the checkpoint: a result under another key is recomputed."""
    if not SUITES[suite].judged:
        return {"limit": args.limit, "lm_eval_tasks": args.lm_eval_tasks, "batch_size": args.lm_eval_batch_size,
                **({"trust_remote_code": True} if args.trust_remote_code else {})}
    return {"limit": args.limit, "max_new_tokens": args.max_new_tokens,
            "alpaca_eval_sampling": [args.alpaca_eval_temperature, args.alpaca_eval_top_p] if suite == "alpaca_eval"
            else None, "chat_template": args.chat_template if suite == "mt_bench" else None,
            "data": ctx.data.digest(suite),
            "judge": judges.identity(suite), "prompt_version": SUITES[suite].prompt_version(ctx),
            "with_judgments": [str(d) for d in args.with_judgments] if suite == "arena_hard" else None}


def _validate(args) -> None:
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 0:
        raise UserError("--max-new-tokens must be at least 1 (or 0 for the official limits)")
    for flag in ("best_of", "batch_size", "judge_concurrency", "lm_eval_batch_size", "tensor_parallel_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.judge_max_retries < 0 or not args.judge_timeout > 0 or not args.judge_backoff >= 0 \
            or not math.isfinite(args.judge_timeout + args.judge_backoff):
        raise UserError("--judge-max-retries and --judge-backoff must be >= 0, --judge-timeout > 0 (finite)")
    t, p = args.alpaca_eval_temperature, args.alpaca_eval_top_p
    if t is not None and not (math.isfinite(t) and t >= 0):
        raise UserError(f"--alpaca-eval-temperature must be a finite number >= 0, got {t}")
    if p is not None and not 0 < p <= 1:
        raise UserError(f"--alpaca-eval-top-p must be in (0, 1], got {p}")
    if args.judge_base_url is not None:
        _check_base_url(args.judge_base_url)
    _price(args)
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"{args.data_dir}: --data-dir does not exist or is not a directory")
    for d in args.with_judgments:
        if not d.is_dir():
            raise UserError(f"{d}: --with-judgments must be a directory of <model>.jsonl judgment files")
    if args.results_dir is not None and args.results_dir.exists() and not args.results_dir.is_dir():
        raise UserError(f"{args.results_dir}: --results-dir is a file, not a directory")


@contextlib.contextmanager
def _quiet_progress_bars(quiet: bool):
    """No progress bars from transformers ("Loading weights") or the Hub client unless --progress; the previous
    state is restored afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    was_hf, was_hub = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    if quiet:
        hf_logging.disable_progress_bar()
        disable_progress_bars()
    try:
        yield
    finally:
        if quiet and was_hf:
            hf_logging.enable_progress_bar()
        if quiet and was_hub:
            enable_progress_bars()


def _sigterm_as_interrupt():
    """SIGTERM behaves as Ctrl-C (stop judging at once, keep what was received); returns the previous handler."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def main(args: argparse.Namespace) -> int:
    """Every process runs this. Under a launcher, global rank 0 runs the plan (`_main`) and the other ranks serve
    its jobs (`benchmarks.parallel`) until it is done, also when it fails."""
    setup_logging(args.verbose)
    from benchmarks import parallel
    from sppo import distributed

    _validate(args)
    distributed.setup(timeout_minutes=args.collective_timeout_minutes)
    previous = _sigterm_as_interrupt()
    try:
        with _quiet_progress_bars(not (args.progress and distributed.is_main())):
            if not distributed.is_main():
                parallel.serve()
                return 0
            try:
                code = _main(args)
            except BaseException:
                with contextlib.suppress(Exception):  # a rank that has died cannot be told; the error stands
                    parallel.stop()
                raise
            parallel.stop()
            return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        try:
            distributed.teardown()
        except RuntimeError as e:  # a rank that died first: its own error is the one to report
            log.warning("leaving the process group: %s", first_line(e))


def _main(args) -> int:
    from benchmarks.answers import AnswerSettings
    from benchmarks.data import DataSource
    from benchmarks.judge import CACHE_FILE, JudgeCache
    from benchmarks import suites as S

    chosen = [s for s in SUITES if getattr(args, s)]
    if args.all or not chosen:
        chosen = list(SUITES)
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
    judged = [s for s in chosen if SUITES[s].judged]
    judges = Judges(args, None) if judged else None
    openai_judge = judges is not None and judges.kind == "openai"
    if args.lm_eval_tasks is None:
        args.lm_eval_tasks = "v1" if openai_judge else "tiny"
    if args.max_new_tokens is None and judges is not None and not openai_judge:
        args.max_new_tokens = OFFLINE_MAX_NEW_TOKENS
        log.info("local judge: answers limited to %d new tokens (--max-new-tokens 0 for the official limits)",
                 OFFLINE_MAX_NEW_TOKENS)
    elif args.max_new_tokens == 0:
        args.max_new_tokens = None
    for s in judged:
        judges.model(s)  # a judge model name that cannot name a file is refused before anything runs
    if openai_judge:
        _check_api_key(args)

    cache = JudgeCache(results_dir / CACHE_FILE) if judged else None
    if judges is not None:
        judges.cache = cache
    ctx = S.RunContext(results_dir=results_dir, data=DataSource(args.data_dir),
                       answer_settings=AnswerSettings(args.limit, args.max_new_tokens, args.alpaca_eval_temperature,
                                                      args.alpaca_eval_top_p, args.chat_template),
                       progress=args.progress, lm_eval_tasks=args.lm_eval_tasks,
                       lm_eval_batch_size=args.lm_eval_batch_size, df_gamed=args.df_gamed,
                       with_judgments=list(args.with_judgments), trust_remote_code=args.trust_remote_code)
    run = _Run(args, store, ctx, judges, S)
    try:
        _run_all(args, targets_spec, chosen, run, S)
    finally:
        if cache is not None:
            cache.close()
    print_summary(run.written, run.skipped, judges.used() if judges else [], results_dir)
    for failure in run.failed:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if run.failed else 0


def _run_all(args, targets_spec, chosen: list[str], run: "_Run", S) -> None:
    from benchmarks.answers import ModelAnswerer, default_ranker_factory

    variants = [DEFAULT_VARIANT] + ([f"best-of-{args.best_of}"] if args.best_of > 1 else [])
    ranker = default_ranker_factory(args.ranker, args.ranker_model) if args.best_of > 1 else None
    common = dict(backend=args.generation_backend, batch_size=args.batch_size, progress=args.progress,
                  scratch_dir=run.ctx.results_dir / SCRATCH, tensor_parallel_size=args.tensor_parallel_size)
    for ref, name, path in targets_spec:
        base = ModelAnswerer(path, **common)
        for suite in chosen:
            for variant in (variants if SUITES[suite].judged else [S.lm_eval.variant_of(args.lm_eval_tasks)]):
                answerer = base
                if variant != DEFAULT_VARIANT and SUITES[suite].judged:
                    answerer = ModelAnswerer(path, best_of=args.best_of, ranker_factory=ranker, **common)
                    answerer.adopt(base.generator)
                run.one(S.ModelTarget(name=name, ref=ref, path=path, answerer=answerer, variant=variant), suite)
        base.release()  # free the model before loading the next one
    run.score_together()


class _Run:
    """The plan's state: results written, kept and failed; models waiting for a joint fit (Arena-Hard)."""

    def __init__(self, args, store: ResultsStore, ctx, judges: "Judges | None", suites_module):
        self.args, self.store, self.ctx, self.judges, self.S = args, store, ctx, judges, suites_module
        self.written: list[SuiteResult] = []
        self.skipped: list[str] = []
        self.failed: list[str] = []
        self.together: dict[tuple[str, str], list] = {}

    def one(self, target, suite: str) -> None:
        S = self.S
        key = _run_key(self.args, self.judges, suite, self.ctx)
        old = self.store.read(target.name, suite, target.variant)
        if old is not None:
            refuse_other_checkpoint(old, target.path, self.store.path(target.name, suite, target.variant))
        if (old is not None and not self.args.rerun and old.settings.get("run_key") == key
                and old.checkpoint.get("fingerprint") == checkpoint_fingerprint(target.path)):
            self.skipped.append(f"{target.name}/{suite}" + ("" if target.variant == DEFAULT_VARIANT
                                                            else f".{target.variant}"))
            return
        log.info("%s: %s%s", target.name, suite, "" if target.variant == DEFAULT_VARIANT else f" ({target.variant})")
        spec = SUITES[suite]
        if spec.judged:
            self.ctx.judges[suite] = self.judges.get(suite)
        try:
            result = spec.run(self.ctx, target)
        except S.JudgeFailed as e:
            self.failed.append(str(e))
            return
        if spec.score_together is not None:  # scored with the other models at the end
            self.together.setdefault((suite, target.variant), []).append((target, {**result, "run_key": key}))
            return
        result.settings["run_key"] = key
        self.store.write(result)
        self.written.append(result)

    def score_together(self) -> None:
        """Suites fitted over all models at once (Arena-Hard): one fit per suite and variant."""
        for (suite, _variant), pairs in self.together.items():
            states = {t.name: state for t, state in pairs}
            for result in SUITES[suite].score_together(self.ctx, [t for t, _ in pairs], states):
                result.settings["run_key"] = states[result.model]["run_key"]
                self.store.write(result)
                self.written.append(result)


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


def reused_text(r: SuiteResult) -> str:
    reused = r.settings.get("reused")
    if not reused:
        return ""
    return f"  (reused {reused['answers']} answers, {reused['judgments']}/{reused['judgments_total']} judgments)"


def print_summary(written: list[SuiteResult], skipped: list[str], judges: list, results_dir: Path) -> None:
    for r in written:
        label = f"{r.model}/{r.suite}" + ("" if r.variant == DEFAULT_VARIANT else f" ({r.variant})")
        print(f"{label:40s} {headline(r)}{reused_text(r)}")
    if skipped:
        print(f"up to date, kept: {', '.join(skipped)}")
    for judge in judges:
        s = judge.stats
        print(f"judge {judge.model}: {s.calls} calls, {s.cache_hits} cache hits, {s.retries} retries, "
              f"{s.errors} failed, {s.prompt_tokens}+{s.completion_tokens} tokens, ${s.cost_usd:.4f}")
    print(f"results: {results_dir}")
