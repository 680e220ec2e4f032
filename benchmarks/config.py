"""The `sppo-bench [run]` settings: one frozen `BenchConfig`, every field documented here, built once from a YAML
file (``--config FILE``, keys named as the fields) and the command line (a flag overrides the file's value).

    sppo-bench --config bench.yaml --limit 5 Iter3

A field's command-line flag is its name with dashes (``judge_base_url`` -> ``--judge-base-url``); the file may
also hold ``models`` and ``suites`` (empty or absent: all four). Every value is checked before anything runs, by
the toolkit's one config machinery (`sppo.settings`: the field types, their ranges, the rules below): a bad one is
one line naming the flag (``--limit: must be >= 1, got 0``) or the file and the key (``bench.yaml: limit: ...``).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sppo.config import MAX_COLLECTIVE_TIMEOUT_MINUTES, Backend, Dtype
from sppo.errors import UserError, shown
from sppo.scrub import public_url
from sppo.settings import SettingError, check, choices, coerce, doc, flag, help_of, kinds, read_yaml_mapping

from benchmarks.store import SUITES, SuiteName

GENERATION_BACKENDS = choices(Backend)  # the training config's choices: one declaration

ChatTemplate = Literal["fastchat", "hf"]
LmEvalTaskSet = Literal["v1", "tiny"]
# The offline default (local judge on a CPU) answers with at most this many tokens unless --max-new-tokens says
# otherwise: the official limits (2048 / 4096 / 1024) take hours on a CPU when a small model does not stop.
OFFLINE_MAX_NEW_TOKENS = 128
LOCAL_JUDGE_MAX_NEW_TOKENS = 64
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_JUDGE_TIMEOUT = 24 * 3600.0  # seconds; beyond it a socket wait cannot even be set


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...] = doc("IterN of the current run, a checkpoint path, 'embedded', or a Hub id", ())
    suites: tuple[SuiteName, ...] = doc("suites to run (empty: all four, or none when suite_files names your own)",
                                        ())
    suite_files: tuple[Path, ...] = doc(
        "your own pairwise judged benchmark, one YAML file each (--suite FILE.yaml, repeatable): prompts, a "
        "baseline's answers, a judge prompt and its verdict labels (see examples/pairwise-suite/suite.yaml)", ())
    limit: int | None = doc("only the first N items of each benchmark (quick look)", None, ge=1)
    max_new_tokens: int | None = doc(
        "override every suite's answer length limit (quick runs); 0 = the official limits. Default: official with "
        f"an endpoint judge, {OFFLINE_MAX_NEW_TOKENS} with the local (offline) judge", None, ge=0)
    alpaca_eval_temperature: float | None = doc(
        "AlpacaEval sampling temperature (default: alpaca_eval's config of the model, else the SPPO models' 0.7)",
        None, ge=0)
    alpaca_eval_top_p: float | None = doc("AlpacaEval top_p (default: as the temperature, 0.9)", None, gt=0, le=1)
    chat_template: ChatTemplate = doc(
        "MT-Bench prompts: FastChat's conversation template for the model where FastChat has one, as the official "
        "answers were generated (default), or the checkpoint's own chat template", "fastchat")
    best_of: int = doc("also run the 'best-of-N' variant: N samples per instruction, the ranker's favourite answers",
                       1, ge=1)
    ranker: str = doc("ranker kind for --best-of (sppo.rank.make_ranker)", "pairrm")
    ranker_model: str | None = doc("ranker model for --best-of (default: the kind's default)", None)
    generation_backend: Backend = doc("generation backend of the answers (auto: vLLM where it can run - its GPU "
                                      "build with a CUDA GPU, or its CPU build - else HF; vLLM runs eagerly on a "
                                      "CPU)", "auto")
    batch_size: int | None = doc("generation batch size (sequences in flight; default: chosen from the device's "
                                 "memory)", None, ge=1)
    dtype: Dtype = doc("weights dtype of the answers and of a local judge: auto = bf16 where the device computes it "
                       "natively (a bf16-capable GPU; a CPU with AVX512-BF16 or AMX), else fp32 (vLLM: its own "
                       "auto); float32, bfloat16, float16. lm-eval keeps its own (fp32 on a CPU)", "auto")
    tensor_parallel_size: int = doc(
        "vLLM: GPUs per model (tensor parallelism, for a model beyond one GPU's memory); under a launcher start "
        "GPUs / T processes per node, rank r's engine on GPUs r*T .. r*T+T-1", 1, ge=1)
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
    judge_concurrency: int = doc("requests in flight", 8, ge=1)
    judge_max_retries: int = doc("retries of a failed judge request", 6, ge=0)
    judge_timeout: float = doc("seconds per request attempt: the whole reply must have arrived by then (a reply "
                               "still arriving is abandoned and retried; a silent connection waits at most this "
                               "long for its next byte); at most one day", 120.0, gt=0, le=MAX_JUDGE_TIMEOUT)
    judge_max_reply_bytes: int = doc("largest judge reply accepted, in bytes: a larger one fails its request "
                                     "(a judgment, logprobs included, is a few kB)", 4_000_000, ge=1)
    judge_backoff: float = doc("first retry delay in seconds (doubles)", 1.0, ge=0)
    judge_price: str | None = doc("USD per 1M input,output tokens (cost accounting)", None)
    judge_max_new_tokens: int | None = doc(
        f"cap on a local judge's verdict length (default {LOCAL_JUDGE_MAX_NEW_TOKENS})", None, ge=1)
    data_dir: Path | None = doc("local benchmark files (layout of ../shared/data); default: $SPPO_BENCH_DATA, else "
                                "download from the Hub once and cache", None)
    run_dir: str | None = doc("training run (default: $SPPO_RUN_DIR, runs/latest, newest under runs/)", None)
    results_dir: Path | None = doc("results store (default <run_dir>/results)", None)
    lm_eval_tasks: LmEvalTaskSet | None = doc(
        "v1: the Open LLM Leaderboard v1 tasks (Hub data); tiny: the project's own small multiple-choice task "
        "(offline). Default: v1 with an endpoint judge, tiny with a local judge", None)
    lm_eval_batch_size: int = doc("lm-eval batch size", 4, ge=1)
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
        "named when this runs out, and the run ends. Minutes > 0, at most a week", 24 * 60.0, gt=0,
        le=MAX_COLLECTIVE_TIMEOUT_MINUTES)
    verbose: bool = doc("debug logging", False)

    # -- building -----------------------------------------------------------------------------------------------
    @classmethod
    def from_command_line(cls, given: dict[str, Any]) -> "BenchConfig":
        """The config of the file named by ``given["config"]`` (if any) with the flags given on the command line
        (``given``: only those) on top; validated. Errors name the flag, or the file and its key."""
        given = dict(given)
        path = given.pop("config", None)
        if given.pop("all", False):
            given["suites"] = list(SUITES)
        data = {} if path is None else _file_values(Path(path))
        if "data_dir" not in data and "data_dir" not in given and os.environ.get("SPPO_BENCH_DATA"):
            given["data_dir"] = os.environ["SPPO_BENCH_DATA"]
        from_file = {k for k in data if k not in given}
        try:
            known = kinds(cls)
            values = {}
            for k, v in {**data, **given}.items():
                try:
                    values[k] = coerce(known[k], v)
                except SettingError as e:
                    raise SettingError(k, e.problem) from None
            return cls(**values).validate()
        except SettingError as e:
            raise (e.located(str(path)) if e.field in from_file else UserError(f"{flag(e.field)}: {e.problem}")
                   if e.field in given else e) from None

    def validate(self) -> "BenchConfig":
        """Types, ranges and choices of every field (`sppo.settings.check`), then the rules between fields and
        against the file system; raises SettingError naming the first bad field."""
        check(self)
        for name, ok, problem in self._rules():
            if not ok:
                raise SettingError(name, problem)
        self.judge_kind  # noqa: B018 - a bad --judge, or --judge local with --judge-base-url
        _environment_checks(self)
        return self

    def _rules(self) -> list[tuple[str, bool, str]]:
        return [("models", bool(self.models), "no MODEL given: name at least one (IterN, a checkpoint, a Hub id)")]

    # -- what follows from the fields -------------------------------------------------------------------------
    @property
    def answer_dtype(self) -> str:
        """The dtype the answers are generated in here (``--dtype`` resolved on this rank's device)."""
        from sppo.models import inference_dtype

        return inference_dtype(self.dtype)

    @property
    def chosen(self) -> tuple[SuiteName, ...]:
        """The four benchmarks' suites to run, in run order (none by default beside suite files of your own)."""
        return tuple(s for s in SUITES if s in self.suites) or (() if self.suite_files else SUITES)

    @property
    def judged(self) -> tuple[SuiteName, ...]:
        return tuple(s for s in self.chosen if s != "lm_eval")

    @property
    def judged_any(self) -> bool:
        """Whether any chosen suite needs a judge (a suite file of your own always does)."""
        return bool(self.judged or self.suite_files)

    @property
    def judge_kind(self) -> tuple[str, str | None]:
        """("local", MODEL or None) or ("openai", None): an endpoint when one is named in any way."""
        from benchmarks.judge import parse_judge_spec

        openai = bool(self.judge_base_url or self.judge_model or self.judge == "openai"
                      or any(self.suite_judge_model(s) for s in SUITES if s != "lm_eval"))
        try:
            kind, local_model = parse_judge_spec(self.judge if self.judge else ("openai" if openai else "local"))
        except UserError:
            raise SettingError("judge", f"unknown value {shown(self.judge)}; use local, local:MODEL or openai") from None
        if kind == "local" and self.judge_base_url:
            raise SettingError("judge", "local and --judge-base-url exclude each other")
        return kind, local_model

    @property
    def openai_judge(self) -> bool:
        """An endpoint judges the chosen suites."""
        return self.judged_any and self.judge_kind[0] == "openai"

    @property
    def answer_max_new_tokens(self) -> int | None:
        """The answers' length limit over every suite's official one (None: the official limits)."""
        if self.max_new_tokens is None and self.judged_any and not self.openai_judge:
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
            raise SettingError("judge_price", f"expected IN,OUT (USD per 1M tokens), got {shown(self.judge_price)}") \
                from None
        if not all(math.isfinite(x) and x >= 0 for x in (a, b)):
            raise SettingError("judge_price", f"prices must be finite and >= 0, got {shown(self.judge_price)}")
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


def _environment_checks(cfg: BenchConfig) -> None:
    """Checks against the file system and the URL's form."""
    if cfg.judge_base_url is not None:
        check_base_url(cfg.judge_base_url)
    cfg.price_per_million()  # a malformed --judge-price
    bad_dir = next((d for d in cfg.with_judgments if not d.is_dir()), None)
    for name, ok, problem in [
        ("data_dir", cfg.data_dir is None or cfg.data_dir.is_dir(), f"{cfg.data_dir} does not exist or is not a "
                                                                    "directory"),
        ("with_judgments", bad_dir is None, f"{bad_dir} must be a directory of <model>.jsonl judgment files"),
        ("results_dir", cfg.results_dir is None or not cfg.results_dir.exists() or cfg.results_dir.is_dir(),
         f"{cfg.results_dir} is a file, not a directory"),
    ]:
        if not ok:
            raise SettingError(name, problem)


def check_base_url(url: str) -> None:
    """An http(s) URL with a host, refused at once otherwise (it would be retried for minutes)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise SettingError("judge_base_url", f"{shown(public_url(url))} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError("judge_base_url", f"{shown(public_url(url))} is not an http(s) URL with a host "
                           "(e.g. https://api.openai.com/v1)")


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


def add_arguments(group: Any, *names: str, **kw: Any) -> None:
    """One flag per field, its help the field's documentation; no default (an absent flag leaves the file's value
    or the field's default)."""
    for name in names:
        group.add_argument(flag(name), dest=name, help=help_of(BenchConfig, name), default=argparse.SUPPRESS, **kw)
