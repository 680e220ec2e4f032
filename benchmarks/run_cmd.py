"""`sppo-bench [--all | --alpaca-eval --arena-hard --mt-bench --lm-eval] MODEL...`: run the benchmark suites.

    sppo-bench --all Iter0 Iter1 Iter2 Iter3                the starting model and the checkpoints of the run
    sppo-bench --alpaca-eval --limit 20 UCLA-AGI/Mistral7B-PairRM-SPPO-Iter3 ./my_checkpoint
    sppo-bench --all --judge-base-url http://localhost:8000/v1 --judge-model Qwen2.5-72B-Instruct Iter3
    sppo-bench --all --best-of 16 Iter1                       adds the "best-of-16" rows (ranker: PairRM)
    torchrun --nproc_per_node 8 -m benchmarks.cli --all Iter1  every GPU shares the answers, local judge and lm-eval
    sppo-bench --config bench.yaml --limit 5 Iter3             settings from a YAML file, flags over it
    sppo-bench --suite examples/pairwise-suite/suite.yaml Iter3   a benchmark of your own (benchmarks.suites.pairwise)

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
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

from sppo.cli_util import setup_logging, sigterm_as_interrupt
from sppo.config import Dtype, choices
from sppo.errors import UserError, first_line
from sppo.files import clean_name, load_yaml, safe_name, short_name
from sppo.run_dir import RunLayout, checkpoint_dir, current_run_dir
from sppo.scrub import public_url

from benchmarks.config import (GENERATION_BACKENDS, LOCAL_JUDGE_MAX_NEW_TOKENS, OFFLINE_MAX_NEW_TOKENS, BenchConfig,
                               ChatTemplate, LmEvalTaskSet, add_arguments, is_local_url)
from sppo.settings import help_of
from benchmarks.store import (DEFAULT_VARIANT, ResultsStore, SuiteName, SuiteResult, checkpoint_fingerprint, cli_name,
                              variant_suffix)
from benchmarks.suites import REGISTRY, JudgeFailed, ModelTarget, RunContext, Suite, SuiteOutcome, lm_eval

log = logging.getLogger(__name__)



def configure(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sppo-bench [run]`` (the `run` subcommand, also taken when no subcommand is named): one
    per `BenchConfig` field, its help the field's documentation."""
    p.add_argument("models", nargs="*", metavar="MODEL", default=argparse.SUPPRESS, help=(
        "IterN of the current run, a checkpoint path, 'embedded', or a Hub id (or `models` in --config)"))
    p.add_argument("--config", metavar="FILE", help="YAML file of settings, keys named as the options with '_' "
                   "(judge_base_url: ...; also models, suites); an option given here overrides the file's value")
    s = p.add_argument_group("suites (default: all)")
    s.add_argument("--all", action="store_true", default=argparse.SUPPRESS,
                   help="AlpacaEval 2, Arena-Hard v0.1, MT-Bench and lm-eval")
    for suite in REGISTRY.values():
        s.add_argument(f"--{cli_name(suite.name)}", dest="suites", action="append_const", const=suite.name,
                       default=argparse.SUPPRESS)
    s.add_argument("--suite", dest="suite_files", action="append", type=Path, metavar="FILE.yaml",
                   default=argparse.SUPPRESS, help=help_of(BenchConfig, "suite_files"))
    g = p.add_argument_group("generation")
    add_arguments(g, "limit", "max_new_tokens", type=int)
    add_arguments(g, "alpaca_eval_temperature", "alpaca_eval_top_p", type=float)
    add_arguments(g, "chat_template", choices=get_args(ChatTemplate))
    add_arguments(g, "best_of", type=int, metavar="N")
    add_arguments(g, "ranker", "ranker_model")
    add_arguments(g, "generation_backend", choices=GENERATION_BACKENDS)
    add_arguments(g, "batch_size", type=int)
    add_arguments(g, "dtype", choices=choices(Dtype))
    add_arguments(g, "tensor_parallel_size", type=int, metavar="T")
    _judge_arguments(p.add_argument_group("judge"))
    d = p.add_argument_group("data and results")
    add_arguments(d, "data_dir", "results_dir", type=Path)
    add_arguments(d, "run_dir")
    add_arguments(d, "lm_eval_tasks", choices=get_args(LmEvalTaskSet))
    add_arguments(d, "lm_eval_batch_size", type=int)
    add_arguments(d, "trust_remote_code", "rerun", "progress", action="store_true")
    add_arguments(d, "with_judgments", action="append", type=Path, metavar="DIR")
    add_arguments(d, "df_gamed")
    add_arguments(d, "collective_timeout_minutes", type=float)
    d.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)


def _judge_arguments(j) -> None:
    add_arguments(j, "judge", metavar="local[:MODEL]|openai")
    add_arguments(j, "judge_base_url")
    j.add_argument("--judge-model", default=argparse.SUPPRESS, help="judge model of every suite (default: each "
                   f"suite's official judge, {', '.join(f'{s} {m}' for s, m in official_judges().items())})")
    for suite in REGISTRY.values():
        if suite.judged:
            add_arguments(j, f"{suite.name}_judge_model", metavar="MODEL")
    add_arguments(j, "judge_api_key_env")
    add_arguments(j, "judge_concurrency", "judge_max_retries", "judge_max_new_tokens", "judge_max_reply_bytes",
                  type=int)
    add_arguments(j, "judge_timeout", "judge_backoff", type=float)
    add_arguments(j, "judge_price", metavar="IN,OUT")


def store_name(ref: str) -> str:
    """A results-store name for a model reference: IterN stays, paths give their directory name, Hub ids
    ``org/name`` give ``org__name``. A name that had to be cleaned (characters other than letters, digits,
    ``.``, ``_``, ``-``) or is longer than ``sppo.files.NAME_LIMIT`` gets a short digest of the exact name, so two
    names never share an entry (``we ird;name`` -> ``we_ird_name-<digest>``, ``we_ird_name`` stays)."""
    p = Path(ref)
    base = p.name if (p.exists() or ref.startswith((".", "/", "~"))) else ref.replace("/", "__")
    name = clean_name(base).strip("._-")
    if not name:
        raise UserError(f"{ref}: cannot derive a model name")
    if name != base:
        name += "-" + hashlib.sha256(base.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return short_name(name, base)  # a 250-character directory name still leaves room for <name>.jsonl


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
        path = RunLayout(self.run_dir()).config
        try:
            name = ((load_yaml(path.read_text(encoding="utf-8"), str(path)) or {}).get("model") or {}).get("name")
        except (OSError, UnicodeDecodeError, UserError, AttributeError):
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


def _check_api_key(cfg: BenchConfig) -> None:
    """The endpoint judge's key variable must be set, except for an endpoint on this machine (then a warning)."""
    name = cfg.judge_api_key_env
    if os.environ.get(name):
        return
    url = cfg.base_url
    if is_local_url(url):
        log.warning("$%s is not set: requests to %s go without an API key", name, public_url(url))
        return
    raise UserError(f"--judge-api-key-env: the environment variable {name} is not set; export the API key "
                    f"of {public_url(url)} in it (or name another variable)")


class Judges:
    """The judge of each suite: endpoint judges one per model name (sharing the cache), the local judge loaded on
    first use. ``identity(suite)`` is known without loading anything."""

    def __init__(self, cfg: BenchConfig, cache, own: dict[str, str | None] | None = None):
        from benchmarks.judge import local_judge_name

        self.cfg, self.cache = cfg, cache
        self.own = own or {}  # a suite file of your own -> its judge.model (None: none named)
        self.kind, self.local_model = cfg.judge_kind
        self._by_model: dict[str, Any] = {}
        self._local_name = local_judge_name(self.local_model)

    def model(self, suite: SuiteName) -> str:
        if self.kind == "local":
            return self._local_name
        if suite in self.own:
            name = self.cfg.judge_model or self.own[suite]
            if not name:
                raise UserError(f"{suite}: an endpoint judge needs a model: --judge-model, or judge.model in the "
                                "suite's file")
        else:
            name = self.cfg.suite_judge_model(suite) or self.cfg.judge_model or official_judges()[suite]
        safe_name(clean_name(name).strip("_"), f"judge model {name!r}")
        return name

    def identity(self, suite: SuiteName) -> dict[str, Any]:
        if self.kind == "local":
            return {"backend": "local", "model": self._local_name, "dtype": self.cfg.answer_dtype}
        from benchmarks.judge import recorded_base_url

        return {"backend": "openai", "model": self.model(suite), "base_url": recorded_base_url(self.cfg.base_url)}

    def get(self, suite: SuiteName):
        model = self.model(suite)
        if model not in self._by_model:
            self._by_model[model] = self._make(model)
        return self._by_model[model]

    def _make(self, model: str):
        from benchmarks.judge import LocalJudge, OpenAIJudge

        c = self.cfg
        if self.kind == "local":
            return LocalJudge.load(self.local_model or "embedded", cache=self.cache, dtype=c.dtype,
                                   max_new_tokens=c.judge_max_new_tokens or LOCAL_JUDGE_MAX_NEW_TOKENS)
        return OpenAIJudge(model, base_url=c.base_url, api_key_env=c.judge_api_key_env, cache=self.cache,
                           max_concurrency=c.judge_concurrency, max_retries=c.judge_max_retries,
                           timeout=c.judge_timeout, backoff_base=c.judge_backoff,
                           price_per_million=c.price_per_million(), max_reply_bytes=c.judge_max_reply_bytes)

    def used(self) -> list:
        return list(self._by_model.values())


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


def main(args: argparse.Namespace) -> int:
    """Every process runs this. Under a launcher, global rank 0 runs the plan (`_main`) and the other ranks serve
    its jobs (`benchmarks.parallel`) until it is done; if any rank fails, the others stop within a second or
    two (a waiting rank sees the failure's report, `sppo.peers`) with one line naming it."""
    cfg = BenchConfig.from_command_line({k: v for k, v in vars(args).items() if k != "command"})
    setup_logging(cfg.verbose)
    from benchmarks import parallel
    from sppo import distributed

    distributed.setup(timeout_minutes=cfg.collective_timeout_minutes)
    with sigterm_as_interrupt(), _quiet_progress_bars(not (cfg.progress and distributed.is_main())):
        if distributed.is_main():
            code = _main(cfg)
            parallel.stop()
        else:
            parallel.serve()
            code = 0
    # every rank leaves the process group together; after a failure no rank waits here: the failing rank reports
    # its cause and exits (sppo.cli_util.run_cli), the others stop on it (sppo.peers)
    distributed.teardown()
    return code


def _main(cfg: BenchConfig) -> int:
    from benchmarks.judge import JudgeCache

    resolver = _Resolver(cfg.run_dir)
    targets = _targets(cfg, resolver)
    results_dir = _results_dir(cfg, resolver)
    store = ResultsStore(results_dir)
    suites, own = plan_suites(cfg)
    judges = Judges(cfg, None, own) if cfg.judged_any else None
    if cfg.max_new_tokens is None and cfg.judged_any and not cfg.openai_judge:
        log.info("local judge: answers limited to %d new tokens (--max-new-tokens 0 for the official limits)",
                 OFFLINE_MAX_NEW_TOKENS)
    for s in [*cfg.judged, *own]:
        judges.model(s)  # a judge model name that cannot name a file is refused before anything runs
    if cfg.openai_judge:
        _check_api_key(cfg)
    cache = JudgeCache(store.layout.judge_cache) if cfg.judged_any else None
    if judges is not None:
        judges.cache = cache
    run = _Run(cfg, store, _context(cfg, results_dir), judges, suites)
    try:
        _run_all(cfg, targets, run)
    finally:
        if cache is not None:
            cache.close()
    print_summary(run.written, run.skipped, judges.used() if judges else [], results_dir, suites)
    for failure in run.failed:
        print(f"error: {failure}", file=sys.stderr)
    print_report(results_dir, Path(cfg.run_dir) if cfg.run_dir else None, cfg.data_dir)
    return 1 if run.failed else 0


def plan_suites(cfg: BenchConfig) -> tuple[dict[str, Suite], dict[str, str | None]]:
    """Every suite of this run, in run order (the chosen benchmarks, then the suite files of your own, each read and
    checked before anything runs), and each own suite's judge model (its file's ``judge.model``)."""
    from benchmarks.suites.pairwise import suite_from_file

    suites: dict[str, Suite] = {name: REGISTRY[name] for name in cfg.chosen}
    own: dict[str, str | None] = {}
    for path in cfg.suite_files:
        suite = suite_from_file(path)
        if suite.name in suites:
            raise UserError(f"{path}: suite name {suite.name!r} is used twice")
        suites[suite.name], own[suite.name] = suite, suite.judge_model
    return suites, own


def print_report(results_dir: Path, run_dir: Path | None, data_dir: Path | None) -> None:
    """Write the store's HTML report (`sppo-bench report`) and print its warnings (a judge that gave one verdict to
    everything, figures from a subset) and path. The results stand whatever happens to the report: a failure to
    write it is one warning line."""
    from benchmarks.report.cmd import summary, write_report

    if not ResultsStore(results_dir).models():
        return
    try:
        path, report = write_report(results_dir, run_dir=run_dir, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - the benchmark results are written; the page is a view of them
        print(f"warning: the report was not written ({first_line(e)}); `sppo-bench report` writes it")
        return
    for line in summary(path, report):
        print(line)


def _targets(cfg: BenchConfig, resolver: "_Resolver") -> list[tuple[str, str, str]]:
    """(what the user typed, results-store name, path or Hub id) of every model; two models of one name refused."""
    targets = [(ref, *resolver.resolve(ref)) for ref in cfg.models]
    names = [n for _, n, _ in targets]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise UserError(f"two models map to the same name {sorted(dupes)[0]!r}; pass distinct checkpoints")
    return targets


def _results_dir(cfg: BenchConfig, resolver: "_Resolver") -> Path:
    if cfg.results_dir:
        return cfg.results_dir
    try:
        return RunLayout(resolver.run_dir()).results
    except UserError:
        raise UserError("no training run to hold the results: pass --results-dir") from None


def _context(cfg: BenchConfig, results_dir: Path) -> RunContext:
    from benchmarks.answers import AnswerSettings
    from benchmarks.data import DataSource

    return RunContext(results_dir=results_dir, data=DataSource(cfg.data_dir),
                      answer_settings=AnswerSettings(cfg.limit, cfg.answer_max_new_tokens,
                                                     cfg.alpaca_eval_temperature, cfg.alpaca_eval_top_p,
                                                     cfg.chat_template),
                      progress=cfg.progress, lm_eval_tasks=cfg.task_set, lm_eval_batch_size=cfg.lm_eval_batch_size,
                      df_gamed=cfg.df_gamed, with_judgments=list(cfg.with_judgments),
                      trust_remote_code=cfg.trust_remote_code)


def _run_all(cfg: BenchConfig, targets: list[tuple[str, str, str]], run: "_Run") -> None:
    from benchmarks.answers import ModelAnswerer, default_ranker_factory

    variants = [DEFAULT_VARIANT] + ([f"best-of-{cfg.best_of}"] if cfg.best_of > 1 else [])
    ranker = default_ranker_factory(cfg.ranker, cfg.ranker_model) if cfg.best_of > 1 else None
    common = dict(backend=cfg.generation_backend, batch_size=cfg.batch_size, dtype=cfg.dtype, progress=cfg.progress,
                  scratch_dir=run.ctx.layout.scratch, tensor_parallel_size=cfg.tensor_parallel_size)
    for ref, name, path in targets:
        base = ModelAnswerer(path, **common)
        for suite, spec in run.suites.items():
            for variant in (variants if spec.judged else [lm_eval.variant_of(cfg.task_set)]):
                answerer = base
                if variant != DEFAULT_VARIANT and spec.judged:
                    answerer = ModelAnswerer(path, best_of=cfg.best_of, ranker_factory=ranker, **common)
                    answerer.adopt(base.generator)
                run.one(ModelTarget(name=name, ref=ref, path=path, answerer=answerer, variant=variant), suite)
        base.release()  # free the model before loading the next one
    run.score_together()


class _Run:
    """The plan's state: results written, kept and failed; models waiting for a joint fit (Arena-Hard)."""

    def __init__(self, cfg: BenchConfig, store: ResultsStore, ctx: RunContext, judges: "Judges | None",
                 suites: dict[str, Suite]):
        self.cfg, self.store, self.ctx, self.judges, self.suites = cfg, store, ctx, judges, suites
        self.written: list[SuiteResult] = []
        self.skipped: list[str] = []
        self.failed: list[str] = []
        self.together: dict[tuple[str, str], list[tuple[ModelTarget, SuiteOutcome, dict]]] = {}

    def key(self, suite: SuiteName) -> dict[str, Any]:
        """The results key of a suite under this run's settings."""
        if not self.suites[suite].judged:
            return self.cfg.results_key(suite)
        return self.cfg.results_key(suite, self.judges.identity(suite), self.ctx.data.digest(suite),
                                    self.suites[suite].prompt_version(self.ctx))

    def one(self, target: ModelTarget, suite: SuiteName) -> None:
        key = self.key(suite)
        old = self.store.read(target.name, suite, target.variant)
        if old is not None:
            refuse_other_checkpoint(old, target.path, self.store.path(target.name, suite, target.variant))
        if (old is not None and not self.cfg.rerun and old.settings.get("run_key") == key
                and old.checkpoint.get("fingerprint") == checkpoint_fingerprint(target.path)):
            self.skipped.append(f"{target.name}/{suite}" + ("" if target.variant == DEFAULT_VARIANT
                                                            else f".{target.variant}"))
            return
        log.info("%s: %s%s", target.name, suite, variant_suffix(target.variant))
        spec = self.suites[suite]
        if spec.judged:
            self.ctx.judges[suite] = self.judges.get(suite)
        try:
            outcome = spec.run(self.ctx, target)
        except JudgeFailed as e:
            self.failed.append(str(e))
            return
        if outcome.joint is not None:  # scored with the other models at the end
            self.together.setdefault((suite, target.variant), []).append((target, outcome, key))
            return
        self._write(outcome.result, key)

    def _write(self, result: SuiteResult, key: dict[str, Any]) -> None:
        result = replace(result, settings={**result.settings, "run_key": key})
        self.store.write(result)
        self.written.append(result)

    def score_together(self) -> None:
        """Suites fitted over all models at once (Arena-Hard): one fit per suite and variant."""
        for (suite, _variant), entries in self.together.items():
            keys = {t.name: key for t, _, key in entries}
            for result in self.suites[suite].score_together(self.ctx, [(t, o) for t, o, _ in entries]):
                self._write(result, keys[result.model])


def headline(r: SuiteResult, suites: dict[str, Suite] = REGISTRY) -> str:
    return suites[r.suite].headline(r.metrics)


def reused_text(r: SuiteResult) -> str:
    reused = r.settings.get("reused")
    if not reused:
        return ""
    return f"  (reused {reused['answers']} answers, {reused['judgments']}/{reused['judgments_total']} judgments)"


def print_summary(written: list[SuiteResult], skipped: list[str], judges: list, results_dir: Path,
                  suites: dict[str, Suite] = REGISTRY) -> None:
    for r in written:
        label = f"{r.model}/{r.suite}{variant_suffix(r.variant)}"
        print(f"{label:40s} {headline(r, suites)}{reused_text(r)}")
    if skipped:
        print(f"up to date, kept: {', '.join(skipped)}")
    for judge in judges:
        s = judge.stats
        print(f"judge {judge.model}: {s.calls} calls, {s.cache_hits} cache hits, {s.retries} retries, "
              f"{s.errors} failed, {s.prompt_tokens}+{s.completion_tokens} tokens, ${s.cost_usd:.4f}")
    print(f"results: {results_dir}")
