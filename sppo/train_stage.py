"""The last stages of an iteration: the reference log-probs (once), training (resumable), the checkpoint IterN.

Training writes ``iterN/train/log.jsonl`` (`TrainLog`) and its resumable state under ``iterN/train/state/``; the
checkpoint, written atomically with its `CheckpointManifest`, supersedes that state.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from . import distributed
from .checkpoint import hyperparameters, manifest_for, save_checkpoint
from .files import Timer, append_text, read_jsonl, write_jsonl
from .rows import DatasetRow, ReferenceRow
from .run_dir import Run, state_dir, train_log, write_manifest
from .stage import Stage, run_stage

log = logging.getLogger(__name__)

REFERENCE_GROUP_PAIRS = 256  # pairs one process takes through the reference pass at a time (a crash loses them)


class TrainLog:
    """The on_log callback (rank 0) appending to train/log.jsonl. Its first record of this attempt drops the
    records from that step on that an interrupted attempt logged after its last saved state (work redone)."""

    def __init__(self, train_dir: Path):
        self.path = train_log(train_dir)
        self.first = True

    def __call__(self, record: dict) -> None:
        if self.first:
            self.first = False
            old = read_jsonl(self.path) if self.path.exists() else []
            write_jsonl(self.path, [r for r in old if r.get("step", 0) < record["step"]])
        append_text(self.path, json.dumps(record) + "\n")


def stage_reference(run: Run, t: int, model, rows: list[DatasetRow], examples: list,
                    pad_id: int) -> list[tuple[float, float]]:
    """Step 4: log pi_ref(y|x) = sum over the response tokens of log pi_t(y_k | x, y_<k) for every chosen and
    rejected response (pi_ref = pi_t, computed once per iteration), chunks spread over the ranks,
    ``iter<t>/reference/logps.jsonl``."""
    from .train import reference_logps

    stage = Stage(run, t, "reference", ReferenceRow)
    index = {r.id: i for i, r in enumerate(rows)}
    bs = run.cfg.training.per_device_train_batch_size

    def fn(chunk: list[DatasetRow]) -> list[ReferenceRow]:
        logps = reference_logps(model, [examples[index[c.id]] for c in chunk], pad_id, bs, progress=False)
        return [ReferenceRow(c.id, w, l) for c, (w, l) in zip(chunk, logps)]

    def many(group: list[list[DatasetRow]]) -> list[list[ReferenceRow]]:
        """Several chunks in one pass (their responses sorted by length together), each chunk's rows as `fn`'s."""
        done = iter(fn([row for chunk in group for row in chunk]))
        return [[next(done) for _ in chunk] for chunk in group]

    def compute():
        with Timer() as timer:
            out = stage.chunked(rows, fn, many=many, group_items=REFERENCE_GROUP_PAIRS)
        return out, dict(policy=run.policy_for(t), rows=len(out), processes=distributed.world_size(),
                         seconds=round(timer.seconds, 2))

    return [(r.chosen, r.rejected) for r in run_stage(stage, compute, collective=True)]


def _flat_scalars(d: dict) -> dict:
    """Hyperparameters as trackers accept them (numbers, strings, booleans; None as a string)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in d.items()}


def stage_train(run: Run, t: int, rows: list[DatasetRow]) -> Path:
    """Step 5: pi_{t+1} = argmin over theta of the mean of `training.loss` (`sppo.loss`; SPPO:
    [(Delta_w - eta (P_win - 1/2))^2 + (Delta_l - eta (P_lose - 1/2))^2] / 2 with Delta = log pi_theta - log pi_ref)
    over the dataset: the reference log-probs (once, step 4), then training (resumable from ``train/state``), then
    the checkpoint ``checkpoints/Iter<t>`` with its manifest (atomically)."""
    from .models import load_model, with_lora
    from .sequences import encode_examples
    from .train import train_iteration

    cfg, tc = run.cfg, run.cfg.training
    policy = run.policy_for(t)
    tokenizer = run.tokenizer(policy, padding_side="right")
    examples, truncated = encode_examples(tokenizer, [r.to_json() for r in rows], tc)
    if truncated and distributed.is_main():
        log.warning("iteration %d: %d responses cut to fit training.max_length=%d tokens",
                    t, truncated, tc.max_length)
    model = load_model(policy, dtype=cfg.model.dtype, revision=run.revision_of(policy),
                       attn_implementation=cfg.model.attn_implementation)
    save_dtype = next(model.parameters()).dtype
    ref = stage_reference(run, t, model, rows, examples, tokenizer.pad_token_id)
    if tc.lora.enabled:
        model = with_lora(model, tc.lora)
    train_dir = run.stage(t, "train")
    with Timer() as timer:
        result = train_iteration(model, examples, ref, tokenizer.pad_token_id, tc, cfg.run.seed + t,
                                 TrainLog(train_dir), progress=distributed.is_main(), train_dir=train_dir,
                                 tracker_config=_flat_scalars(hyperparameters(cfg, distributed.world_size())))
    state_dict = result.full_state_dict()  # a collective under ZeRO-3: every rank takes part

    def write():
        module = result.unwrapped()
        if tc.lora.enabled:
            module, state = module.merge_and_unload(), None
        else:
            state = {k: v.to(save_dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        manifest = manifest_for(cfg, t, policy, result.summary, pairs=len(examples), truncated_responses=truncated,
                                seconds=round(timer.seconds, 2))
        save_checkpoint(run.checkpoint(t), module.to(save_dtype), tokenizer, state, manifest)
        write_manifest(train_dir, stage="train", iteration=t, checkpoint=str(run.checkpoint(t)), **result.summary)
        shutil.rmtree(state_dir(train_dir), ignore_errors=True)  # the checkpoint supersedes the resumable states

    distributed.decide(f"iteration {t} train: rank 0 saves checkpoints/Iter{t}", write)
    result.close()
    return run.checkpoint(t)
