"""The `sppo-bench [run]` settings: one frozen `BenchConfig`, every field documented here, built once from a YAML
file (``--config FILE``, keys named as the fields) and the command line (a flag overrides the file's value).

    sppo-bench --config bench.yaml --limit 5 Iter3

A field's command-line flag is its name with dashes (``judge_base_url`` -> ``--judge-base-url``); the file may
also hold ``models`` and ``suites`` (empty or absent: all four). Every value is checked before anything runs;
a bad one is one line naming the field (and the file when it came from there).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from sppo.config import Backend, Dtype, choices, collective_timeout_problem, doc, read_yaml_mapping
from sppo.errors import UserError, shown
from sppo.scrub import public_url

from benchmarks.store import SUITES, SuiteName

GENERATION_BACKENDS = choices(Backend)  # the training config's choices: one declaration

ChatTemplate = Literal["fastchat", "hf"]
LmEvalTaskSet = Literal["v1", "tiny"]
# The offline default (local judge on a CPU) answers with at most this many tokens unless --max-new-tokens says
# otherwise: the official limits (2048 / 4096 / 1024) take hours on a CPU when a small model does not stop.
OFFLINE_MAX_NEW_TOKENS = 128
LOCAL_JUDGE_MAX_NEW_TOKENS = 64
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_PATHS = ("data_dir", "results_dir")  # fields read as paths
_AT_LEAST_1 = ("best_of", "batch_size", "judge_concurrency", "lm_eval_batch_size", "tensor_parallel_size",
               "judge_max_new_tokens", "judge_max_reply_bytes")
MAX_JUDGE_TIMEOUT = 24 * 3600.0  # seconds; beyond it a socket wait cannot even be set


def flag(name: str) -> str:
    """A field's command-line flag: ``judge_base_url`` -> ``--judge-base-url``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...] = doc("IterN of the current run, a checkpoint path, 'embedded', or a Hub id", ())
    suites: tuple[SuiteName, ...] = doc("suites to run (empty: all)", ())
    limit: int | None = doc("only the first N items of each benchmark (quick look)", None)
    max_new_tokens: int | None = doc(
        "override every suite's answer length limit (quick runs); 0 = the official limits. Default: official with "
        f"an endpoint judge, {OFFLINE_MAX_NEW_TOKENS} with the local (offline) judge", None)
    alpaca_eval_temperature: float | None = doc(
        "AlpacaEval sampling temperature (default: alpaca_eval's config of the model, else the SPPO models' 0.7)",
        None)
    alpaca_eval_top_p: float | None = doc("AlpacaEval top_p (default: as the temperature, 0.9)", None)
    chat_template: ChatTemplate = doc(
        "MT-Bench prompts: FastChat's conversation template for the model where FastChat has one, as the official "
        "answers were generated (default), or the checkpoint's own chat template", "fastchat")
    best_of: int = doc("also run the 'best-of-N' variant: N samples per instruction, the ranker's favourite answers",
                       1)
    ranker: str = doc("ranker kind for --best-of (sppo.rank.make_ranker)", "pairrm")
    ranker_model: str | None = doc("ranker model for --best-of (default: the kind's default)", None)
    generation_backend: str = doc("generation backend of the answers (auto: vLLM where it can run - its GPU build "
                                  "with a CUDA GPU, or its CPU build - else HF; vLLM runs eagerly on a CPU)", "auto")
    batch_size: int | None = doc("generation batch size (sequences in flight; default: chosen from the device's "
                                 "memory)", None)
    dtype: Dtype = doc("weights dtype of the answers and of a local judge: auto = bf16 where the device computes it "
                       "natively (a bf16-capable GPU; a CPU with AVX512-BF16 or AMX), else fp32 (vLLM: its own "
                       "auto); float32, bfloat16, float16. lm-eval keeps its own (fp32 on a CPU)", "auto")
    tensor_parallel_size: int = doc(
        "vLLM: GPUs per model (tensor parallelism, for a model beyond one GPU's memory); under a launcher start "
        "GPUs / T processes per node, rank r's engine on GPUs r*T .. r*T+T-1", 1)
    judge: str | None = doc("'local' / 'local:MODEL': in-process chat model (default without --judge-base-url: the "
                            "embedded model); 'openai': the endpoint below", None)
    judge_base_url: str | None = doc("OpenAI-compatible endpoint, e.g. https://api.openai.com/v1", None)
    judge_model: str | None = doc("judge model of every suite (default: each suite's official judge)", None)
    alpaca_eval_judge_model: str | None = doc("judge model of alpaca_eval only", None)
    arena_hard_judge_model: str | None = doc("judge model of arena_hard only", None)
    mt_bench_judge_model: str | None = doc("judge model of mt_bench only", None)
    judge_api_key_env: str = doc("name of the environment variable holding the API key (the key is never printed "
                                 "or written); unset: an error, or a warning for an endpoint on this machine",
                                 "OPENAI_API_KEY")
    judge_concurrency: int = doc("requests in flight", 8)
    judge_max_retries: int = doc("retries of a failed judge request", 6)
    judge_timeout: float = doc("seconds per request attempt: the whole reply must have arrived by then (a reply "
                               "still arriving is abandoned and retried; a silent connection waits at most this "
                               "long for its next byte); at most one day", 120.0)
    judge_max_reply_bytes: int = doc("largest judge reply accepted, in bytes: a larger one fails its request "
                                     "(a judgment, logprobs included, is a few kB)", 4_000_000)
    judge_backoff: float = doc("first retry delay in seconds (doubles)", 1.0)
    judge_price: str | None = doc("USD per 1M input,output tokens (cost accounting)", None)
    judge_max_new_tokens: int | None = doc(
        f"cap on a local judge's verdict length (default {LOCAL_JUDGE_MAX_NEW_TOKENS})", None)
    data_dir: Path | None = doc("local benchmark files (layout of ../shared/data); default: $SPPO_BENCH_DATA, else "
                                "download from the Hub once and cache", None)
    run_dir: str | None = doc("training run (default: $SPPO_RUN_DIR, runs/latest, newest under runs/)", None)
    results_dir: Path | None = doc("results store (default <run_dir>/results)", None)
    lm_eval_tasks: LmEvalTaskSet | None = doc(
        "v1: the Open LLM Leaderboard v1 tasks (Hub data); tiny: the project's own small multiple-choice task "
        "(offline). Default: v1 with an endpoint judge, tiny with a local judge", None)
    lm_eval_batch_size: int = doc("lm-eval batch size", 4)
    trust_remote_code: bool = doc("let lm-eval run a checkpoint's own Python modelling code (its config's "
                                  "auto_map); off by default: only the architectures built into transformers are "
                                  "loaded", False)
    with_judgments: tuple[Path, ...] = doc(
        "Arena-Hard: also fit the official judgment files of other models in DIR (repeatable; "
        "model_judgment/gpt-4-1106-preview of arena-hard-auto), read in sorted name order, as show_result.py fits "
        "its whole judgment directory: the CI depends on that set", ())
    df_gamed: str | None = doc("local copy of AlpacaEval's df_gamed.csv (length-controlled win rate)", None)
    rerun: bool = doc("recompute results already in the store", False)
    progress: bool = doc("progress bars (rank 0 only)", False)
    collective_timeout_minutes: float = doc(
        "several processes: the longest any rank waits for the others (the serving ranks wait while rank 0 talks "
        "to a judge endpoint). A rank that fails is noticed at once; one that stops answering without dying is "
        "named when this runs out, and the run ends. Minutes > 0, at most a week", 24 * 60.0)
    verbose: bool = doc("debug logging", False)

    # -- building -----------------------------------------------------------------------------------------------
    @classmethod
    def from_command_line(cls, given: dict[str, Any]) -> "BenchConfig":
        """The config of the file named by ``given["config"]`` (if any) with the flags given on the command line
        (``given``: only those) on top; validated. Errors name the field, and the file for its values."""
        given = dict(given)
        path = given.pop("config", None)
        if given.pop("all", False):
            given["suites"] = []
        data = {} if path is None else _file_values(Path(path))
        if "data_dir" not in data and "data_dir" not in given and os.environ.get("SPPO_BENCH_DATA"):
            given["data_dir"] = os.environ["SPPO_BENCH_DATA"]
        merged = {**data, **given}
        try:
            cfg = cls(**{k: _typed(k, v) for k, v in merged.items()})
            cfg.validate()
        except UserError as e:
            raise _blame(e, path, [k for k in data if k not in given]) from None
        return cfg

    def validate(self) -> "BenchConfig":
        """Types, ranges and choices of every field; raises UserError naming the first bad one."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), str(f.type))
        for name, ok, message in self._checks():
            if not ok:
                raise _FieldError(name, message)
        try:
            self.judge_kind  # noqa: B018 - a bad --judge, or --judge local with --judge-base-url
        except UserError as e:
            raise _FieldError("judge", str(e)) from None
        return self

    def _checks(self) -> list[tuple[str, bool, str]]:
        t, p = self.alpaca_eval_temperature, self.alpaca_eval_top_p
        return [
            ("models", bool(self.models), "no MODEL given: name at least one (IterN, a checkpoint, a Hub id)"),
            ("limit", self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            ("max_new_tokens", self.max_new_tokens is None or self.max_new_tokens >= 0,
             "--max-new-tokens must be at least 1 (or 0 for the official limits)"),
            *[(n, getattr(self, n) is None or getattr(self, n) >= 1, f"{flag(n)} must be at least 1")
              for n in _AT_LEAST_1],
            ("judge_max_retries", self.judge_max_retries >= 0 and self.judge_backoff >= 0
             and math.isfinite(self.judge_backoff), "--judge-max-retries and --judge-backoff must be >= 0 (finite)"),
            ("judge_timeout", 0 < self.judge_timeout <= MAX_JUDGE_TIMEOUT,
             f"--judge-timeout must be > 0 and at most {MAX_JUDGE_TIMEOUT:g} seconds, got {self.judge_timeout:g}"),
            ("alpaca_eval_temperature", t is None or (math.isfinite(t) and t >= 0),
             f"--alpaca-eval-temperature must be a finite number >= 0, got {t}"),
            ("alpaca_eval_top_p", p is None or 0 < p <= 1, f"--alpaca-eval-top-p must be in (0, 1], got {p}"),
            ("collective_timeout_minutes", collective_timeout_problem(self.collective_timeout_minutes) is None,
             f"--collective-timeout-minutes {collective_timeout_problem(self.collective_timeout_minutes)}"),
            ("chat_template", self.chat_template in get_args(ChatTemplate),
             f"--chat-template: unknown value {shown(self.chat_template)}; use {', '.join(get_args(ChatTemplate))}"),
            ("generation_backend", self.generation_backend in GENERATION_BACKENDS,
             f"--generation-backend: unknown value {shown(self.generation_backend)}; use "
             f"{', '.join(GENERATION_BACKENDS)}"),
            ("dtype", self.dtype in choices(Dtype),
             f"--dtype: unknown value {shown(self.dtype)}; use {', '.join(choices(Dtype))}"),
            ("lm_eval_tasks", self.lm_eval_tasks in (None, *get_args(LmEvalTaskSet)),
             f"--lm-eval-tasks: unknown task set {shown(self.lm_eval_tasks)}; use v1 or tiny"),
            ("suites", set(self.suites) <= set(SUITES),
             f"suites: unknown suite in {shown(list(self.suites))}; use some of {', '.join(SUITES)}"),
            *_environment_checks(self),
        ]

    # -- what follows from the fields -------------------------------------------------------------------------
    @property
    def answer_dtype(self) -> str:
        """The dtype the answers are generated in here (``--dtype`` resolved on this rank's device)."""
        from sppo.models import inference_dtype

        return inference_dtype(self.dtype)

    @property
    def chosen(self) -> tuple[SuiteName, ...]:
        """The suites to run, in run order."""
        return tuple(s for s in SUITES if s in self.suites) or SUITES

    @property
    def judged(self) -> tuple[SuiteName, ...]:
        return tuple(s for s in self.chosen if s != "lm_eval")

    @property
    def judge_kind(self) -> tuple[str, str | None]:
        """("local", MODEL or None) or ("openai", None): an endpoint when one is named in any way."""
        from benchmarks.judge import parse_judge_spec

        openai = bool(self.judge_base_url or self.judge_model or self.judge == "openai"
                      or any(self.suite_judge_model(s) for s in SUITES if s != "lm_eval"))
        kind, local_model = parse_judge_spec(self.judge if self.judge else ("openai" if openai else "local"))
        if kind == "local" and self.judge_base_url:
            raise UserError("--judge local and --judge-base-url exclude each other")
        return kind, local_model

    @property
    def openai_judge(self) -> bool:
        """An endpoint judges the chosen suites."""
        return bool(self.judged) and self.judge_kind[0] == "openai"

    @property
    def answer_max_new_tokens(self) -> int | None:
        """The answers' length limit over every suite's official one (None: the official limits)."""
        if self.max_new_tokens is None and self.judged and not self.openai_judge:
            return OFFLINE_MAX_NEW_TOKENS
        return self.max_new_tokens or None

    @property
    def task_set(self) -> LmEvalTaskSet:
        return self.lm_eval_tasks or ("v1" if self.openai_judge else "tiny")

    @property
    def base_url(self) -> str:
        return self.judge_base_url or DEFAULT_BASE_URL

    def suite_judge_model(self, suite: SuiteName) -> str | None:
        return getattr(self, f"{suite}_judge_model")

    def price_per_million(self) -> tuple[float, float] | None:
        """USD per 1M input and output tokens (``--judge-price IN,OUT``)."""
        if not self.judge_price:
            return None
        try:
            a, b = (float(x) for x in self.judge_price.split(","))
        except ValueError:
            raise _FieldError("judge_price", f"--judge-price: expected IN,OUT (USD per 1M tokens), got "
                              f"{shown(self.judge_price)}") from None
        if not all(math.isfinite(x) and x >= 0 for x in (a, b)):
            raise _FieldError("judge_price",
                              f"--judge-price: prices must be finite and >= 0, got {shown(self.judge_price)}")
        return a, b

    def results_key(self, suite: SuiteName, judge: dict[str, Any] | None = None, data: str | None = None,
                    prompt_version: str | None = None) -> dict[str, Any]:
        """What a stored result depends on besides the checkpoint: a result under another key is recomputed.
        ``judge``: the judge's identity, ``data``: the digest of the suite's benchmark files, ``prompt_version``:
        the judge prompt's digest (judged suites)."""
        if suite == "lm_eval":
            return {"limit": self.limit, "lm_eval_tasks": self.task_set, "batch_size": self.lm_eval_batch_size,
                    **({"trust_remote_code": True} if self.trust_remote_code else {})}
        return {"limit": self.limit, "max_new_tokens": self.answer_max_new_tokens, "dtype": self.answer_dtype,
                "alpaca_eval_sampling": [self.alpaca_eval_temperature, self.alpaca_eval_top_p]
                if suite == "alpaca_eval" else None,
                "chat_template": self.chat_template if suite == "mt_bench" else None,
                "data": data, "judge": judge, "prompt_version": prompt_version,
                "with_judgments": [str(d) for d in self.with_judgments] if suite == "arena_hard" else None}


class _FieldError(UserError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def help_of(name: str) -> str:
    """A field's documentation (its ``--help`` text)."""
    return next(f.metadata["doc"] for f in fields(BenchConfig) if f.name == name)


def _environment_checks(cfg: BenchConfig) -> list[tuple[str, bool, str]]:
    """Checks against the file system and the URL's form."""
    if cfg.judge_base_url is not None:
        check_base_url(cfg.judge_base_url)
    cfg.price_per_million()  # a malformed --judge-price
    bad_dir = next((d for d in cfg.with_judgments if not d.is_dir()), None)
    return [
        ("data_dir", cfg.data_dir is None or cfg.data_dir.is_dir(),
         f"{cfg.data_dir}: --data-dir does not exist or is not a directory"),
        ("with_judgments", bad_dir is None,
         f"{bad_dir}: --with-judgments must be a directory of <model>.jsonl judgment files"),
        ("results_dir", cfg.results_dir is None or not cfg.results_dir.exists() or cfg.results_dir.is_dir(),
         f"{cfg.results_dir}: --results-dir is a file, not a directory"),
    ]


def check_base_url(url: str) -> None:
    """An http(s) URL with a host, refused at once otherwise (it would be retried for minutes)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise _FieldError("judge_base_url",
                          f"--judge-base-url: {shown(public_url(url))} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _FieldError("judge_base_url", f"--judge-base-url: {shown(public_url(url))} is not an http(s) URL "
                          "with a host (e.g. https://api.openai.com/v1)")


def is_local_url(url: str) -> bool:
    """An endpoint on this machine (``vllm serve``, llama.cpp, ...), which often takes no key."""
    return (urlsplit(url).hostname or "") in ("localhost", "127.0.0.1", "::1")


def _file_values(path: Path) -> dict[str, Any]:
    """The fields a ``--config`` file sets; an unknown key is one line naming the file and the key."""
    data = read_yaml_mapping(path)
    known = {f.name for f in fields(BenchConfig)}
    for key in data:
        if key not in known:
            raise UserError(f"{path}: unknown key {shown(key)} (keys are sppo-bench's options with '_' for '-', e.g. "
                            "judge_base_url, plus models and suites)")
    return data


def _typed(name: str, value: Any) -> Any:
    """Lists as tuples (frozen fields) and path fields as Paths; everything else as given."""
    if name == "with_judgments" and isinstance(value, (list, tuple)):
        return tuple(Path(v) if isinstance(v, (str, os.PathLike)) else v for v in value)
    if name in ("models", "suites") and isinstance(value, (list, tuple)):
        return tuple(value)
    if name in _PATHS and isinstance(value, (str, os.PathLike)):
        return Path(value)
    return value


def _check_type(name: str, value: Any, declared: str) -> None:
    """The value has its field's declared type (a file may hold anything)."""
    kinds = [k.strip() for k in declared.split("|")]
    if value is None and "None" in kinds:
        return
    main = kinds[0].split("[")[0]
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "Path": isinstance(value, Path),
          "tuple": isinstance(value, tuple) and all(isinstance(v, (str, Path)) for v in value)}.get(main)
    if ok is None:  # str, and the Literal aliases (checked as choices)
        ok = isinstance(value, str)
    if not ok:
        raise _FieldError(name, f"{name}: expected {main.replace('tuple', 'a list')}, got {shown(value)}")


def _blame(e: UserError, path: str | None, from_file: list[str]) -> UserError:
    """A bad value read from the file names the file and its key."""
    field = getattr(e, "field", None)
    if path is not None and field in from_file:
        return UserError(f"{path}: {field}: {e}")
    return UserError(str(e))


def add_arguments(group: Any, *names: str, **kw: Any) -> None:
    """One flag per field, its help the field's documentation; no default (an absent flag leaves the file's value
    or the field's default)."""
    for name in names:
        group.add_argument(flag(name), dest=name, help=help_of(name), default=argparse.SUPPRESS, **kw)
