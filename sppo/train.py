"""The optimisation loop of one SPPO iteration (step 5).

The reference policy pi_ref is the policy at the start of the iteration, so its log-probs are computed once,
before the first update, by the very model being trained (`reference_logps`); no second model is kept in
memory and no reference forward pass runs during training.

Engines: plain PyTorch (one process: CPU or one GPU) or DeepSpeed ZeRO-3 (`training.distributed:
deepspeed_zero3`; launched by `deepspeed` or `accelerate launch` for several GPUs, or in one process).
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .config import TrainingConfig
from .loss import LOSS_TARGETS, compute_loss
from .sequences import PairExample, collate, sequence_logps

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- distributed
def world() -> tuple[int, int]:
    """(rank, world size) of this process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def barrier() -> None:
    if world()[1] > 1:
        torch.distributed.barrier()


def use_bf16(cfg: TrainingConfig, device: torch.device) -> bool:
    flag = str(cfg.bf16).lower()
    if flag == "false":
        return False
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return supported if flag == "auto" else True


# --------------------------------------------------------------------------------------------- schedule
@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int  # what the learning-rate schedule is laid out over
    stop_steps: int   # where training actually stops
    warmup_steps: int


def make_schedule(n_examples: int, cfg: TrainingConfig, world_size: int = 1) -> Schedule:
    """Optimizer steps. The paper lays a linear schedule over 18 epochs and stops after 1: the learning rate
    then never leaves warmup (warmup = 10% of 18 epochs = 1.8 epochs). Reproduced exactly."""
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size
    steps_per_epoch = max(1, math.ceil(n_examples / per_step))
    total = max(1, math.ceil(cfg.num_train_epochs * steps_per_epoch))
    stop_epochs = cfg.stop_at_epoch if cfg.stop_at_epoch is not None else cfg.num_train_epochs
    stop = max(1, min(total, math.ceil(stop_epochs * steps_per_epoch)))
    return Schedule(steps_per_epoch, total, stop, math.ceil(cfg.warmup_ratio * total))


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


# --------------------------------------------------------------------------------------------- engines
class PlainEngine:
    """One process, plain PyTorch."""

    def __init__(self, model, cfg: TrainingConfig, schedule: Schedule):
        self.model = model
        self.cfg = cfg
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.scheduler = make_lr_scheduler(self.optimizer, cfg, schedule)
        self.micro = 0

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.gradient_accumulation_steps).backward()
        self.micro += 1

    def step(self) -> float | None:
        """Optimizer step at the end of each accumulation window; returns the grad norm when it stepped."""
        if self.micro % self.cfg.gradient_accumulation_steps:
            return None
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state_dict_for_saving(self):
        return None  # the model's own state dict

    def module(self):
        return self.model


def deepspeed_config(cfg: TrainingConfig, schedule: Schedule, bf16: bool) -> dict:
    """The built-in ZeRO-3 config (or the user's file), with the batch geometry filled in."""
    if cfg.deepspeed_config:
        from .files import read_json

        ds = read_json(cfg.deepspeed_config)
    else:
        ds = {
            "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                                  "stage3_gather_16bit_weights_on_model_save": True},
            "zero_allow_untested_optimizer": True,  # RMSprop is not on DeepSpeed's tested list
        }
    ds.setdefault("train_micro_batch_size_per_gpu", cfg.per_device_train_batch_size)
    ds.setdefault("gradient_accumulation_steps", cfg.gradient_accumulation_steps)
    ds.setdefault("gradient_clipping", cfg.max_grad_norm or 0.0)
    ds.setdefault("bf16", {"enabled": bf16})
    ds.setdefault("steps_per_print", 10**9)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def init_distributed_if_needed() -> None:
    """DeepSpeed needs a process group; one process without a launcher gets a one-member gloo/nccl group."""
    import deepspeed

    if torch.distributed.is_initialized():
        return
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", str(29500 + os.getpid() % 1000))):
        os.environ.setdefault(key, value)
    # generation and ranking run on the first process while the others wait at a barrier: allow them hours
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo",
                               timeout=timedelta(hours=24))


class DeepSpeedEngine:
    """DeepSpeed ZeRO-3: parameters, gradients and optimizer state partitioned across processes."""

    def __init__(self, model, cfg: TrainingConfig, schedule: Schedule, bf16: bool):
        import deepspeed

        init_distributed_if_needed()
        optimizer = make_optimizer(model.parameters(), cfg)
        scheduler = make_lr_scheduler(optimizer, cfg, schedule)
        self.cfg = cfg
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, schedule, bf16))

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> float | None:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        if not boundary:
            return None
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else None

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state_dict_for_saving(self):
        return self.engine._zero3_consolidated_16bit_state_dict()

    def module(self):
        return self.engine.module


# --------------------------------------------------------------------------------------------- loops
def batches(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def pair_batch(examples: Sequence[PairExample], pad_id: int) -> dict:
    """Chosen and rejected sequences in one forward pass: rows [chosen_0..n, rejected_0..n]."""
    return collate([e.chosen for e in examples] + [e.rejected for e in examples], pad_id)


@torch.no_grad()
def reference_logps(model, examples: Sequence[PairExample], pad_id: int, batch_size: int,
                    progress: bool = True) -> list[tuple[float, float]]:
    """log pi_ref(chosen), log pi_ref(rejected) for every example, with the model as it is now."""
    was_training = model.training
    model.eval()
    out: list[tuple[float, float]] = []
    for chunk in tqdm(list(batches(examples, batch_size)), desc="reference log-probs", disable=not progress):
        logps = sequence_logps(model, pair_batch(chunk, pad_id)).float().cpu()
        n = len(chunk)
        out.extend(zip(logps[:n].tolist(), logps[n:].tolist()))
    model.train(was_training)
    return out


def train_iteration(model, examples: Sequence[PairExample], ref: Sequence[tuple[float, float]], pad_id: int,
                    cfg: TrainingConfig, seed: int, on_log: Callable[[dict], None] | None = None,
                    progress: bool = True):
    """Run the SPPO optimisation; returns (trained model, summary dict)."""
    rank, world_size = world()
    device = next(model.parameters()).device
    bf16 = use_bf16(cfg, device)
    schedule = make_schedule(len(examples), cfg, world_size)
    if cfg.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    engine = (DeepSpeedEngine(model, cfg, schedule, bf16) if cfg.distributed == "deepspeed_zero3"
              else PlainEngine(model, cfg, schedule))
    module = engine.module()
    module.train()
    device = next(module.parameters()).device
    rng = random.Random(seed)
    step, logged, history = 0, [], []
    micro_per_epoch = schedule.steps_per_epoch * cfg.gradient_accumulation_steps
    bar = tqdm(total=schedule.stop_steps, desc="train", unit="step", disable=not progress or rank != 0)
    epoch = 0
    while step < schedule.stop_steps:
        order = list(range(len(examples)))
        rng.shuffle(order)
        order = order[rank::world_size]
        micro_batches = list(batches(order, cfg.per_device_train_batch_size))[:micro_per_epoch]
        for mb in micro_batches:
            chunk = [examples[i] for i in mb]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                logps = sequence_logps(module, pair_batch(chunk, pad_id)).float()
            n = len(chunk)
            ref_w = torch.tensor([ref[i][0] for i in mb], device=device)
            ref_l = torch.tensor([ref[i][1] for i in mb], device=device)
            targets = {k: torch.tensor([getattr(examples[i], k) for i in mb], device=device)
                       for k in LOSS_TARGETS[cfg.loss]}
            losses, rw, rl = compute_loss(cfg.loss, logps[:n], logps[n:], ref_w, ref_l, targets, cfg.eta)
            loss = losses.mean()
            engine.backward(loss)
            logged.append({"loss": loss.item(), "chosen_reward": rw.mean().item(), "rejected_reward": rl.mean().item()})
            norm = engine.step()
            if norm is None:
                continue
            step += 1
            bar.update(1)
            if step % cfg.logging_steps == 0 or step == schedule.stop_steps:
                record = {k: sum(x[k] for x in logged) / len(logged) for k in logged[0]}
                record.update(step=step, epoch=round(step / schedule.steps_per_epoch, 4), lr=engine.lr(),
                              grad_norm=norm, margin=record["chosen_reward"] - record["rejected_reward"])
                history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3g}", lr=f"{record['lr']:.2e}")
                if on_log and rank == 0:
                    on_log(record)
                logged = []
            if step >= schedule.stop_steps:
                break
        epoch += 1
    bar.close()
    summary = {"optimizer_steps": step, "epochs_run": round(step / schedule.steps_per_epoch, 4),
               "schedule": schedule.__dict__, "bf16": bf16, "world_size": world_size,
               "final": history[-1] if history else None}
    return engine, summary
