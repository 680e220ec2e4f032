"""The optimisation loop of one SPPO iteration (step 5), on `accelerate`.

The reference policy pi_ref is the policy at the start of the iteration, so its log-probs are computed once,
before the first update, by the very model being trained (`reference_logps`, a data-parallel stage of the
pipeline); no second model is kept in memory and no reference forward pass runs during training.

One `Accelerator` path for every setting: one process (CPU or one GPU), plain data parallel (DDP) when a
launcher starts several processes, or DeepSpeed ZeRO-3 (`training.distributed: deepspeed_zero3`, through a
`DeepSpeedPlugin`). In bf16 the weights the optimizer updates stay fp32 (autocast computes in bf16; DeepSpeed
keeps fp32 master weights): at the paper's learning rate of 5e-7 pure-bf16 updates would mostly round away.
Dropout is switched off in the policy, as the reference did (`disable_dropout=True`, uclaml/SPPO
sppo/trainer.py).

Resumable: every `training.save_steps` optimizer steps, and when SIGTERM arrives, `Accelerator.save_state`
writes model, optimizer, scheduler and RNG states, and `train_state` the data position (JSON), to
`<train>/state/step-N` (written under a temporary name, renamed when complete; the newest `save_total_limit` are
kept). Rerunning the same command loads the newest state (weights-only: nothing is unpickled) and continues; on
CPU the final weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import distributed, run_dir, train_state
from .config import TrainingConfig
from .errors import UserError
from .host_memory import large_blocks_released
from .loss import LOSS_TARGETS, SEPARABLE, compute_loss
from .sequences import PairExample, collate, sequence_logps

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- geometry
@dataclass
class Schedule:
    per_device_batch: int
    accumulation: int
    world_size: int
    steps_per_epoch: int
    total_steps: int  # what the learning-rate schedule is laid out over
    stop_steps: int   # where training actually stops
    warmup_steps: int

    @property
    def global_batch(self) -> int:
        return self.per_device_batch * self.accumulation * self.world_size


def accumulation_steps(cfg: TrainingConfig, world_size: int) -> int:
    """Gradient accumulation: `global_batch_size / (per-device batch x processes)` when a global batch is set
    (so 64 holds on 1, 2, 4 or 8 GPUs), else `gradient_accumulation_steps`."""
    if cfg.global_batch_size is None:
        return cfg.gradient_accumulation_steps
    per_step = cfg.per_device_train_batch_size * world_size
    if cfg.global_batch_size % per_step:
        raise UserError(f"training.global_batch_size: {cfg.global_batch_size} is not a multiple of "
                        f"per_device_train_batch_size x processes = {cfg.per_device_train_batch_size} x {world_size}")
    return cfg.global_batch_size // per_step


def batch_geometry(cfg: TrainingConfig, world_sizes: Sequence[int] = (1, 2, 4, 8)) -> str:
    """One comment line per process count: per-device batch x accumulation x processes = pairs per step, and
    the gradient clipping (what `sppo-train --print-config` ends with)."""
    lines = []
    for world in world_sizes:
        try:
            acc = accumulation_steps(cfg, world)
        except UserError:
            continue  # the global batch does not divide over this many processes
        lines.append(f"# {world} process{'es' if world > 1 else ''}: {cfg.per_device_train_batch_size} per device "
                     f"x accumulation {acc} x {world} = {cfg.per_device_train_batch_size * acc * world} pairs per step")
    clip = f"at norm {cfg.max_grad_norm:g}" if cfg.max_grad_norm else "none"
    return "# batch geometry:\n" + "\n".join(lines) + f"\n# gradient clipping: {clip}\n"


def make_schedule(n_examples: int, cfg: TrainingConfig, world_size: int = 1) -> Schedule:
    """Optimizer steps. The paper lays a linear schedule over 18 epochs and stops after 1: the learning rate
    then never leaves warmup (warmup = 10% of 18 epochs = 1.8 epochs). Reproduced exactly."""
    ga = accumulation_steps(cfg, world_size)
    per_step = cfg.per_device_train_batch_size * ga * world_size
    steps_per_epoch = max(1, math.ceil(n_examples / per_step))
    total = max(1, math.ceil(cfg.num_train_epochs * steps_per_epoch))
    stop_epochs = cfg.stop_at_epoch if cfg.stop_at_epoch is not None else cfg.num_train_epochs
    stop = max(1, min(total, math.ceil(stop_epochs * steps_per_epoch)))
    return Schedule(cfg.per_device_train_batch_size, ga, world_size, steps_per_epoch, total, stop,
                    math.ceil(cfg.warmup_ratio * total))


def step_micro_batches(n_examples: int, step: int, schedule: Schedule, seed: int, rank: int) -> list[list[int]]:
    """Example indices of this rank's micro-batches for optimizer step `step` (0-based).

    Each epoch shuffles all examples with its own seed and wraps around to fill its last step (as
    DistributedSampler pads), so every step sees `global_batch` examples. Step s takes the slice
    [s*G, (s+1)*G) of the epoch's order; rank r takes its contiguous part and cuts it into `accumulation`
    micro-batches. The same examples make up a step whatever the split into processes and accumulation, so
    2 processes x accumulation 1 train like 1 process x accumulation 2."""
    epoch, s = divmod(step, schedule.steps_per_epoch)
    order = list(range(n_examples))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    G, b = schedule.global_batch, schedule.per_device_batch
    needed = schedule.steps_per_epoch * G
    order = (order * math.ceil(needed / n_examples))[:needed]
    part = order[s * G:(s + 1) * G][rank * b * schedule.accumulation:(rank + 1) * b * schedule.accumulation]
    return [part[i:i + b] for i in range(0, len(part), b)]


# --------------------------------------------------------------------------------------------- building
def make_optimizer(params, cfg: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def make_lr_scheduler(optimizer, cfg: TrainingConfig, schedule: Schedule):
    from transformers import get_scheduler

    name = "linear" if cfg.lr_scheduler_type == "linear" else "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=schedule.warmup_steps,
                         num_training_steps=schedule.total_steps)


def use_bf16(cfg: TrainingConfig, device: torch.device) -> bool:
    """bf16 autocast for training: auto on a bf16-capable GPU, native there and on a CPU that computes bf16 natively
    (`sppo.models.cpu_computes_bf16`; elsewhere torch emulates it, slower than fp32), true always, false never."""
    flag = str(cfg.bf16).lower()
    if flag == "false":
        return False
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if flag == "native" and device.type == "cpu":
        from .models import cpu_computes_bf16

        return cpu_computes_bf16()
    return supported if flag in ("auto", "native") else True


def deepspeed_config(cfg: TrainingConfig, schedule: Schedule, bf16: bool) -> dict:
    """The built-in ZeRO-3 config (or the user's file), with the batch geometry filled in."""
    if cfg.deepspeed_config:
        from .files import read_json

        ds = read_json(cfg.deepspeed_config)
    else:
        ds = {"zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                                    "stage3_gather_16bit_weights_on_model_save": True},
              "zero_allow_untested_optimizer": True}  # RMSprop is not on DeepSpeed's tested list
    fill = {"train_micro_batch_size_per_gpu": schedule.per_device_batch,
            "gradient_accumulation_steps": schedule.accumulation,
            "train_batch_size": schedule.global_batch, "gradient_clipping": cfg.max_grad_norm or 0.0,
            "bf16": {"enabled": bf16}, "steps_per_print": 10**9, "wall_clock_breakdown": False}
    for key, value in fill.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    return ds


def disable_dropout(model) -> None:
    """p = 0 in every dropout module (uclaml/SPPO sppo/trainer.py: disable_dropout_in_model)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def make_accelerator(cfg: TrainingConfig, schedule: Schedule, bf16: bool, logging_dir: Path | None):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DeepSpeedPlugin, ProjectConfiguration

    # one Accelerator per iteration (and per test) in one process: accelerate keeps its state in singletons and
    # an environment variable (its own tests reset them the same way); the process group itself is kept
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true" if cfg.distributed == "deepspeed_zero3" else "false"
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    plugin = None
    if cfg.distributed == "deepspeed_zero3":
        if not distributed.initialized():
            distributed.single_process_group_env()
        from .cli_util import quiet_other_ranks
        from .package_shims import skip_deepspeed_cpu_comm_op

        skip_deepspeed_cpu_comm_op()
        plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(cfg, schedule, bf16))
        quiet_other_ranks()  # DeepSpeed sets its logger's level when first imported
    report = None if cfg.report_to == "none" else [cfg.report_to]
    project = ProjectConfiguration(project_dir=str(logging_dir or "."), logging_dir=str(logging_dir or "."))
    # without CUDA accelerate sets up several processes only when told cpu=True (else every rank trains alone,
    # as rank 0, and gradients are never averaged); DeepSpeed brings its own engine
    cpu = plugin is None and not torch.cuda.is_available()
    return Accelerator(mixed_precision="bf16" if bf16 else "no", gradient_accumulation_steps=schedule.accumulation,
                       deepspeed_plugin=plugin, log_with=report, project_config=project,
                       step_scheduler_with_optimizer=False, cpu=cpu)


def with_fp32_master_weights(model):
    """Trainable parameters in fp32 (autocast computes in bf16): the optimizer never updates bf16 weights."""
    if any(p.requires_grad and p.dtype != torch.float32 for p in model.parameters()):
        log.info("training keeps fp32 master weights (the checkpoint is saved in the model's dtype)")
        model.float()
    return model


# --------------------------------------------------------------------------------------------- batches
def batches(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def pair_batch(examples: Sequence[PairExample], pad_id: int) -> dict:
    """Chosen and rejected sequences in one forward pass: rows [chosen_0..n, rejected_0..n]."""
    return collate([e.chosen for e in examples] + [e.rejected for e in examples], pad_id)


@torch.no_grad()
def reference_logps(model, examples: Sequence[PairExample], pad_id: int, batch_size: int,
                    progress: bool = True) -> list[tuple[float, float]]:
    """log pi_ref(chosen), log pi_ref(rejected) for every example, with the model as it is now. The 2 x len(examples)
    responses go through the model sorted by length, 2 x batch_size at a time (the rows of a training micro-batch),
    so a short response is not padded to a long one's length."""
    was_training = model.training
    model.eval()
    sequences = [e.chosen for e in examples] + [e.rejected for e in examples]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].input_ids))
    logps = [0.0] * len(sequences)
    for part in tqdm(list(batches(order, 2 * batch_size)), desc="reference log-probs", disable=not progress):
        values = sequence_logps(model, collate([sequences[i] for i in part], pad_id)).float().cpu().tolist()
        for i, v in zip(part, values):
            logps[i] = v
    model.train(was_training)
    n = len(examples)
    return list(zip(logps[:n], logps[n:]))


def _loss_inputs(chunk: Sequence[PairExample], ref: Sequence[tuple[float, float]], cfg: TrainingConfig, device):
    ref_w = torch.tensor([r[0] for r in ref], device=device)
    ref_l = torch.tensor([r[1] for r in ref], device=device)
    targets = {k: torch.tensor([getattr(e, k) for e in chunk], device=device) for k in LOSS_TARGETS[cfg.loss]}
    return ref_w, ref_l, targets


def _record(loss: torch.Tensor, rw: torch.Tensor, rl: torch.Tensor) -> dict:
    return {"loss": loss.item(), "chosen_reward": rw.mean().item(), "rejected_reward": rl.mean().item()}


def micro_batch_loss(module, chunk: Sequence[PairExample], ref: Sequence[tuple[float, float]], pad_id: int,
                     cfg: TrainingConfig, device) -> tuple[torch.Tensor, dict]:
    """The micro-batch's loss, chosen and rejected responses in one forward pass (rows padded to the longest)."""
    logps = sequence_logps(module, pair_batch(chunk, pad_id)).float()
    n = len(chunk)
    ref_w, ref_l, targets = _loss_inputs(chunk, ref, cfg, device)
    losses, rw, rl = compute_loss(cfg.loss, logps[:n], logps[n:], ref_w, ref_l, targets, cfg.eta)
    loss = losses.mean()
    return loss, _record(loss, rw, rl)


def micro_batch_backward(module, chunk: Sequence[PairExample], ref: Sequence[tuple[float, float]], pad_id: int,
                         cfg: TrainingConfig, device, backward: Callable[[torch.Tensor], None],
                         first_side=contextlib.nullcontext, split: bool = True) -> dict:
    """Forward and backward of one micro-batch (`backward(loss)`), its record for the log.

    A separable loss (sppo.loss.SEPARABLE: each pair's loss is a term of the chosen response plus one of the rejected)
    with `split`: the chosen responses go through the model and backward first (inside `first_side()`: under DDP
    `accelerator.no_sync`, so gradients are all-reduced once), then the rejected ones, each side padded to its own
    longest row. Only one side's activations are held at once (the peak memory of a step falls by about half the
    activations), and no row is padded to the other side's length. The gradient is the one of `micro_batch_loss`,
    summed in two parts: the chosen pass takes the loss with Delta_l = 0 (the rejected term then is a constant),
    the rejected pass the loss with the chosen log-probs detached. Other losses: `micro_batch_loss`."""
    if not (split and cfg.loss in SEPARABLE):
        loss, record = micro_batch_loss(module, chunk, ref, pad_id, cfg, device)
        backward(loss)
        return record
    ref_w, ref_l, targets = _loss_inputs(chunk, ref, cfg, device)
    with first_side():
        chosen = sequence_logps(module, collate([e.chosen for e in chunk], pad_id)).float()
        backward(compute_loss(cfg.loss, chosen, ref_l, ref_w, ref_l, targets, cfg.eta)[0].mean())
    rejected = sequence_logps(module, collate([e.rejected for e in chunk], pad_id)).float()
    losses, rw, rl = compute_loss(cfg.loss, chosen.detach(), rejected, ref_w, ref_l, targets, cfg.eta)
    loss = losses.mean()
    backward(loss)
    return _record(loss, rw, rl)


# --------------------------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    accelerator: object
    model: object  # as prepared by the accelerator (DDP / DeepSpeed engine / the model itself)
    summary: dict = field(default_factory=dict)
    resumed_from: Path | None = None  # the training state this attempt resumed from (not in the summary: a
    # resumed run's manifests equal an uninterrupted run's)

    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def full_state_dict(self) -> dict:
        """The whole model's weights (gathered from every rank under ZeRO-3: call it on all ranks)."""
        return self.accelerator.get_state_dict(self.model)

    def close(self) -> None:
        """Release the engine; under DeepSpeed also the global config through which transformers would load
        every later model partitioned (zero.Init) — the next iteration's generator needs whole weights."""
        from transformers.integrations import unset_hf_deepspeed_config

        self.accelerator.free_memory()
        unset_hf_deepspeed_config()


def prepare_model(model, cfg: TrainingConfig, bf16: bool):
    disable_dropout(model)
    if cfg.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not (cfg.distributed == "deepspeed_zero3" and bf16):  # DeepSpeed bf16 keeps fp32 masters itself
        with_fp32_master_weights(model)
    return model


def _step_record(records: list[dict], step: int, schedule: Schedule, lr: float, norm) -> dict:
    keys = list(records[0])
    means = distributed.mean_over_ranks([sum(r[k] for r in records) / len(records) for k in keys])
    record = dict(zip(keys, means))
    record.update(step=step, epoch=round(step / schedule.steps_per_epoch, 4), lr=lr,
                  grad_norm=float(norm) if norm is not None else None,
                  margin=record["chosen_reward"] - record["rejected_reward"])
    return record


def _optimizer_step(accelerator, model, optimizer, scheduler, examples, ref, pad_id, cfg, mbs):
    """One optimizer step over this rank's micro-batches; returns (micro records, grad norm)."""
    records, norm = [], None
    for mb in mbs:
        with accelerator.accumulate(model):
            rec = micro_batch_backward(model, [examples[i] for i in mb], [ref[i] for i in mb], pad_id, cfg,
                                       accelerator.device, accelerator.backward, lambda: accelerator.no_sync(model),
                                       split=cfg.distributed != "deepspeed_zero3")
            if accelerator.sync_gradients:
                norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
            optimizer.step()  # accelerate skips it (and zero_grad) inside an accumulation window
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        records.append(rec)
    return records, norm


def train_iteration(model, examples: Sequence[PairExample], ref: Sequence[tuple[float, float]], pad_id: int,
                    cfg: TrainingConfig, seed: int, on_log: Callable[[dict], None] | None = None,
                    progress: bool = True, train_dir: Path | None = None,
                    tracker_config: dict | None = None) -> TrainResult:
    """Run the SPPO optimisation on every rank. With `train_dir`, training state is saved under
    `train_dir/state` and a rerun resumes from the newest one."""
    rank, world = distributed.rank(), distributed.world_size()
    bf16 = use_bf16(cfg, distributed.device())
    schedule = make_schedule(len(examples), cfg, world)
    model = prepare_model(model, cfg, bf16)
    accelerator = make_accelerator(cfg, schedule, bf16, run_dir.tracking_dir(train_dir) if train_dir else None)
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = make_lr_scheduler(optimizer, cfg, schedule)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    position = train_state.Progress()  # saved as JSON by train_state, never registered for pickling
    state_dir = run_dir.state_dir(train_dir) if train_dir else None
    resumed = train_state.latest(state_dir) if state_dir else None
    if resumed:
        position.step = train_state.load(accelerator, resumed)
        if distributed.is_main():
            log.info("resuming training from %s (step %d of %d)", resumed, position.step, schedule.stop_steps)
    if cfg.report_to != "none":
        accelerator.init_trackers("sppo", config=tracker_config or {})
    model.train()
    with large_blocks_released(distributed.device().type):  # a CPU's peak memory: sppo/host_memory.py
        history = _loop(accelerator, model, optimizer, scheduler, examples, ref, pad_id, cfg, seed, schedule,
                        position, state_dir, on_log, progress and rank == 0)
    if cfg.report_to != "none":
        accelerator.end_training()
    # the same summary whether or not this attempt resumed (TrainResult.resumed_from says where from)
    summary = {"optimizer_steps": position.step, "epochs_run": round(position.step / schedule.steps_per_epoch, 4),
               "schedule": {k: v for k, v in schedule.__dict__.items()}, "global_batch_size": schedule.global_batch,
               "bf16": bf16, "world_size": world, "final": history[-1] if history else None}
    return TrainResult(accelerator, model, summary, resumed)


def _loop(accelerator, model, optimizer, scheduler, examples, ref, pad_id, cfg, seed, schedule, position,
          state_dir, on_log, show_bar) -> list[dict]:
    history = []
    bar = tqdm(total=schedule.stop_steps, initial=position.step, desc="train", unit="step", disable=not show_bar)
    with train_state.StopSignal() as stop:
        while position.step < schedule.stop_steps:
            mbs = step_micro_batches(len(examples), position.step, schedule, seed, distributed.rank())
            records, norm = _optimizer_step(accelerator, model, optimizer, scheduler, examples, ref, pad_id, cfg, mbs)
            position.step += 1
            bar.update(1)
            if position.step % cfg.logging_steps == 0 or position.step == schedule.stop_steps:
                record = _step_record(records, position.step, schedule, scheduler.get_last_lr()[0], norm)
                history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3g}", lr=f"{record['lr']:.2e}")
                if on_log and distributed.is_main():
                    on_log(record)
                if cfg.report_to != "none":
                    accelerator.log(record, step=position.step)
            interrupted = stop.agreed()
            periodic = cfg.save_steps and position.step % cfg.save_steps == 0 and position.step < schedule.stop_steps
            if state_dir is not None and (periodic or interrupted):
                train_state.save(accelerator, state_dir, position.step, cfg.save_total_limit)
            if interrupted:
                bar.close()
                raise KeyboardInterrupt(f"SIGTERM: training state saved at step {position.step}")
    bar.close()
    return history
