"""SPPO iterations over prompt splits, as resumable stages.

Run directory layout (everything written atomically; a stage is finished when its manifest.json exists)::

    <run>/config.yaml                       the resolved config of the run
    <run>/iter1/prompts/   prompts.jsonl    the split's prompts (ids, text)
    <run>/iter1/generate/  responses.jsonl  K responses per prompt      (resumes by chunk: partial.jsonl)
    <run>/iter1/rank/      comparisons.jsonl  K x K preference matrices (resumes by chunk: partial.jsonl)
    <run>/iter1/dataset/   sppo.jsonl       prompt, chosen, rejected, all K responses, scores, P, targets
    <run>/iter1/reference/ logps.jsonl      log pi_ref of chosen and rejected (pi_ref = pi_t, computed once)
    <run>/iter1/train/     log.jsonl        training metrics per logged step
    <run>/checkpoints/Iter1/                the policy after iteration 1 (+ sppo_manifest.json)

Rerunning the same command after a crash or Ctrl-C resumes at the first unfinished stage (inside generation
and ranking, at the first unfinished chunk) and never redoes finished work.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from . import probs
from .config import Config
from .errors import UserError
from .files import (RUNS_ROOT, Timer, checkpoint_dir, read_json, read_jsonl, stage_done, utc_now, write_json,
                    write_jsonl, write_manifest, write_text)

log = logging.getLogger(__name__)

# config fields that may change between invocations of the same run without changing its results
_FREE_FIELDS = {"run.iterations", "run.first_iteration", "run.chunk_size", "generation.batch_size",
                "generation.backend", "ranking.batch_size", "training.logging_steps"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


class Run:
    """A training run directory."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dir = Path(cfg.run.output_dir)

    def stage(self, iteration: int, name: str) -> Path:
        return self.dir / f"iter{iteration}" / name

    def checkpoint(self, iteration: int) -> Path:
        return checkpoint_dir(self.dir, f"Iter{iteration}")

    def policy_for(self, iteration: int) -> str:
        """pi_t: the initial model for iteration 1, else the previous iteration's checkpoint."""
        if iteration == 1:
            return self.cfg.model.name
        prev = self.checkpoint(iteration - 1)
        if not (prev / "sppo_manifest.json").exists():
            raise UserError(f"{prev}: checkpoint of iteration {iteration - 1} is missing; run that iteration first")
        return str(prev)

    def prepare(self) -> None:
        """Lock the run dir (one sppo-train per run), record the config, refuse a config that would change
        finished results. While no stage has finished, a corrected config replaces the recorded one (chunks
        computed under the old one are discarded)."""
        from .lock import acquire_run_lock

        acquire_run_lock(self.dir)  # rank 0 only; also refuses a run.output_dir that is a file
        path = self.dir / "config.yaml"
        new = self.cfg.to_dict()
        if path.exists():
            old = _flatten(yaml.safe_load(path.read_text()) or {})
            changed = [k for k, v in _flatten(new).items() if k not in _FREE_FIELDS and k in old and old[k] != v]
            finished = sorted(self.dir.glob("iter*/*/manifest.json")) + sorted(
                self.dir.glob("checkpoints/*/sppo_manifest.json"))
            if changed and finished:
                key = changed[0]
                raise UserError(f"{path}: this run was started with {key}={old[key]!r}, now {_flatten(new)[key]!r} "
                                f"and {finished[0].parent} is finished; use another run.output_dir to change it")
            if changed:
                for stale in self.dir.glob("iter*/*/partial.jsonl"):
                    stale.unlink()
                log.info("%s: no stage finished yet; the run restarts with the new config (%s changed)",
                         path, ", ".join(changed))
        text = yaml.safe_dump(new, sort_keys=False)
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
        self._point_latest()

    def _point_latest(self) -> None:
        """runs/latest -> this run, when the run lives under ./runs (what sppo-bench/sppo-release look at)."""
        if self.dir.resolve().parent != RUNS_ROOT.resolve():
            return
        link = RUNS_ROOT / "latest"
        tmp = RUNS_ROOT / f".latest.{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(self.dir.name)
        os.replace(tmp, link)


# ------------------------------------------------------------------------------------------ chunked stages
def _read_partial(path: Path) -> list[dict]:
    """Rows of a partial file; a torn last line (crash mid-write) is dropped."""
    if not path.exists():
        return []
    rows, lines = [], path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UserError(f"{path}:{i + 1}: corrupt line in a partial stage file; delete the file to redo it")
    return rows


def run_chunked(stage_dir: Path, items: Sequence[dict], fn: Callable[[list[dict]], list[dict]],
                chunk_size: int, desc: str) -> list[dict]:
    """Apply `fn` to `items` chunk by chunk, appending each finished chunk to partial.jsonl (fsynced), so a
    rerun skips finished chunks. Returns the outputs in the order of `items` (matched on "id")."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    partial = stage_dir / "partial.jsonl"
    done = {r["id"]: r for r in _read_partial(partial)}
    todo = [x for x in items if x["id"] not in done]
    if done:
        log.info("%s: resuming, %d of %d already done", desc, len(done), len(items))
    with open(partial, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            log.info("%s: items %d-%d of %d left", desc, start + 1, start + len(chunk), len(todo))
            for row in fn(chunk):
                done[row["id"]] = row
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return [done[x["id"]] for x in items]


def _chunk_seed(seed: int, iteration: int, chunk: list[dict]) -> int:
    h = hashlib.sha256(f"{seed}:{iteration}:{chunk[0]['id']}".encode()).hexdigest()
    return int(h[:8], 16)


# ------------------------------------------------------------------------------------------ the stages
def stage_prompts(run: Run, t: int) -> list[dict]:
    from .prompts import load_split

    d = run.stage(t, "prompts")
    if stage_done(d):
        return read_jsonl(d / "prompts.jsonl")
    rows = load_split(run.cfg.prompts, t)
    write_jsonl(d / "prompts.jsonl", rows)
    write_manifest(d, stage="prompts", iteration=t, split=run.cfg.prompts.splits[t - 1],
                   source=run.cfg.prompts.source, count=len(rows))
    return rows


def stage_generate(run: Run, t: int, prompts: list[dict]) -> list[dict]:
    from .generate import SamplingParams, encode_prompt, make_generator
    from .models import load_tokenizer

    d = run.stage(t, "generate")
    if stage_done(d):
        return read_jsonl(d / "responses.jsonl")
    g, tc = run.cfg.generation, run.cfg.training
    policy = run.policy_for(t)
    tokenizer = load_tokenizer(policy)
    kept = [p for p in prompts if len(encode_prompt(tokenizer, p["prompt"])) <= tc.max_prompt_length]
    if len(kept) < len(prompts):
        log.warning("iteration %d: %d prompts longer than training.max_prompt_length=%d tokens are dropped",
                    t, len(prompts) - len(kept), tc.max_prompt_length)
    if not kept:
        raise UserError(f"iteration {t}: every prompt is longer than training.max_prompt_length={tc.max_prompt_length}")
    with Timer() as timer:
        generator = make_generator(g.backend, policy, tokenizer=tokenizer, dtype=run.cfg.model.dtype,
                                   batch_size=g.batch_size, max_prompt_length=tc.max_prompt_length)

        def fn(chunk):
            params = SamplingParams(n=g.k, temperature=g.temperature, top_p=g.top_p,
                                    max_new_tokens=g.max_new_tokens, seed=_chunk_seed(run.cfg.run.seed, t, chunk))
            outs = generator.generate([c["prompt"] for c in chunk], params)
            return [{"id": c["id"], "prompt": c["prompt"], "responses": o} for c, o in zip(chunk, outs)]

        rows = run_chunked(d, kept, fn, run.cfg.run.chunk_size, f"iteration {t} generate")
    if hasattr(generator, "close"):
        generator.close()
    del generator
    gc.collect()
    write_jsonl(d / "responses.jsonl", rows)
    write_manifest(d, stage="generate", iteration=t, policy=policy, settings=g.__dict__, prompts=len(rows),
                   dropped_long_prompts=len(prompts) - len(kept), responses=len(rows) * g.k,
                   seconds=round(timer.seconds, 2))
    (d / "partial.jsonl").unlink(missing_ok=True)
    return rows


def stage_rank(run: Run, t: int, generated: list[dict]) -> list[dict]:
    from .rank import checked_compare, checked_probabilities, make_ranker

    d = run.stage(t, "rank")
    if stage_done(d):
        return read_jsonl(d / "comparisons.jsonl")
    r = run.cfg.ranking
    with Timer() as timer:
        ranker = make_ranker(r.kind, r.model, batch_size=r.batch_size)
        direct = r.probabilities == "direct"

        def fn(chunk):
            prompts = [c["prompt"] for c in chunk]
            cands = [c["responses"] for c in chunk]
            mats = checked_compare(ranker, prompts, cands)
            pmats = checked_probabilities(ranker, prompts, cands) if direct else [None] * len(chunk)
            return [{"id": c["id"], "comparisons": np.asarray(m).tolist(),
                     **({"probabilities": np.asarray(p).tolist()} if p is not None else {})}
                    for c, m, p in zip(chunk, mats, pmats)]

        rows = run_chunked(d, generated, fn, run.cfg.run.chunk_size, f"iteration {t} rank")
    del ranker
    gc.collect()
    write_jsonl(d / "comparisons.jsonl", rows)
    write_manifest(d, stage="rank", iteration=t, ranker={"kind": r.kind, "model": r.model},
                   probabilities=r.probabilities, prompts=len(rows), seconds=round(timer.seconds, 2))
    (d / "partial.jsonl").unlink(missing_ok=True)
    return rows


def build_dataset_rows(generated: list[dict], ranked: list[dict], use_direct: bool) -> tuple[list[dict], int]:
    """Join responses and comparisons into SPPO training rows; prompts whose scores all tie are dropped."""
    by_id = {r["id"]: r for r in ranked}
    rows, ties = [], 0
    for g in generated:
        r = by_id[g["id"]]
        C = np.asarray(r["comparisons"], dtype=np.float64)
        scores = probs.scores_from_comparisons(C)
        P = np.asarray(r["probabilities"]) if use_direct else probs.probabilities_from_scores(scores)
        tg = probs.targets(P, scores)
        if tg.pop("tie"):
            ties += 1
            continue
        rows.append({"id": g["id"], "prompt": g["prompt"], "chosen": g["responses"][tg["chosen_index"]],
                     "rejected": g["responses"][tg["rejected_index"]], "responses": g["responses"],
                     "scores": scores.tolist(), "probabilities": np.asarray(P).tolist(), **tg})
    return rows, ties


def stage_dataset(run: Run, t: int, generated: list[dict], ranked: list[dict]) -> list[dict]:
    d = run.stage(t, "dataset")
    if stage_done(d):
        return read_jsonl(d / "sppo.jsonl")
    rows, ties = build_dataset_rows(generated, ranked, run.cfg.ranking.probabilities == "direct")
    if ties:
        log.warning("iteration %d: %d of %d prompts have all-equal scores (no preference) and are skipped",
                    t, ties, len(generated))
    if not rows:
        raise UserError(f"iteration {t}: all {len(generated)} prompts have tied scores; nothing to train on "
                        f"(check the ranker, or sample more responses with generation.k)")
    write_jsonl(d / "sppo.jsonl", rows)
    write_manifest(d, stage="dataset", iteration=t, rows=len(rows), ties_skipped=ties,
                   mean_p_win=float(np.mean([r["p_win"] for r in rows])),
                   mean_p_lose=float(np.mean([r["p_lose"] for r in rows])))
    return rows


def encode_examples(tokenizer, rows: list[dict], max_length: int):
    from .generate import encode_prompt
    from .sequences import encode_pair
    from .train import PairExample

    examples, truncated = [], 0
    for r in rows:
        prompt_ids = encode_prompt(tokenizer, r["prompt"])
        chosen = encode_pair(tokenizer, r["prompt"], r["chosen"], max_length, prompt_ids)
        rejected = encode_pair(tokenizer, r["prompt"], r["rejected"], max_length, prompt_ids)
        truncated += chosen.truncated + rejected.truncated
        examples.append(PairExample(chosen, rejected, r["p_win"], r["p_lose"]))
    return examples, truncated


def hyperparameters(cfg: Config, world_size: int) -> dict:
    t = cfg.training
    return {"learning_rate": t.learning_rate, "eta": t.eta, "loss": t.loss,
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps, "seed": cfg.run.seed,
            "distributed_type": "deepspeed_zero3" if t.distributed == "deepspeed_zero3" else "single_process",
            "num_devices": t.num_devices or world_size,
            "optimizer": {"rmsprop": "RMSProp", "adamw": "AdamW"}[t.optimizer],
            "lr_scheduler_type": t.lr_scheduler_type, "lr_scheduler_warmup_ratio": t.warmup_ratio,
            "num_train_epochs": float(t.num_train_epochs),
            "stop_at_epoch": float(t.stop_at_epoch) if t.stop_at_epoch is not None else None,
            "max_length": t.max_length, "max_prompt_length": t.max_prompt_length, "k": cfg.generation.k,
            "lora": t.lora.enabled}


def stage_train(run: Run, t: int, rows: list[dict]) -> Path:
    """Reference log-probs (once), then training, then the checkpoint IterN (atomically)."""
    from .models import load_model, load_tokenizer
    from .train import barrier, reference_logps, train_iteration, world

    ckpt = run.checkpoint(t)
    if (ckpt / "sppo_manifest.json").exists():
        return ckpt
    cfg, tc = run.cfg, run.cfg.training
    policy = run.policy_for(t)
    tokenizer = load_tokenizer(policy, padding_side="right")
    examples, truncated = encode_examples(tokenizer, rows, tc.max_length)
    if truncated:
        log.warning("iteration %d: %d responses truncated to training.max_length=%d tokens",
                    t, truncated, tc.max_length)
    model = load_model(policy, dtype=cfg.model.dtype)
    if tc.lora.enabled:
        model = _with_lora(model, tc)
    ref_dir = run.stage(t, "reference")
    if stage_done(ref_dir):
        ref = [(r["chosen"], r["rejected"]) for r in read_jsonl(ref_dir / "logps.jsonl")]
    else:
        with Timer() as timer:
            ref = reference_logps(model, examples, tokenizer.pad_token_id, tc.per_device_train_batch_size)
        if world()[0] == 0:
            write_jsonl(ref_dir / "logps.jsonl",
                        [{"id": r["id"], "chosen": c, "rejected": j} for r, (c, j) in zip(rows, ref)])
            write_manifest(ref_dir, stage="reference", iteration=t, policy=policy, rows=len(ref),
                           seconds=round(timer.seconds, 2))
        barrier()
    train_dir = run.stage(t, "train")
    train_dir.mkdir(parents=True, exist_ok=True)
    log_path = train_dir / "log.jsonl"
    log_path.unlink(missing_ok=True)  # an interrupted attempt restarts training from pi_t

    def on_log(record: dict) -> None:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    with Timer() as timer:
        engine, summary = train_iteration(model, examples, ref, tokenizer.pad_token_id, tc, cfg.run.seed + t, on_log)
    state_dict = engine.state_dict_for_saving()
    rank, world_size = world()
    if rank == 0:
        module = engine.module()
        if tc.lora.enabled:
            module = module.merge_and_unload()
        _save_checkpoint(run, t, module, tokenizer, state_dict, {
            "iteration": t, "name": f"Iter{t}", "base_model": base_model_id(cfg.model.name),
            "init_model": policy, "prompt_dataset": cfg.prompts.dataset if cfg.prompts.source == "hub"
            else cfg.prompts.source, "prompt_source_dataset": cfg.prompts.source_dataset,
            "prompt_split": cfg.prompts.splits[t - 1], "k": cfg.generation.k,
            "ranker": cfg.ranking.model if cfg.ranking.kind == "pairrm" else f"{cfg.ranking.kind}:{cfg.ranking.model}",
            "hyperparameters": hyperparameters(cfg, world_size), "training": summary,
            "pairs": len(examples), "truncated_responses": truncated, "seconds": round(timer.seconds, 2),
            "config": cfg.to_dict()})
        write_manifest(train_dir, stage="train", iteration=t, checkpoint=str(ckpt), **summary)
    barrier()
    return ckpt


def base_model_id(name: str) -> str:
    """The base model as the Hub knows it (the embedded model is HuggingFaceTB/SmolLM2-135M-Instruct)."""
    from .models import EMBEDDED_ALIASES, EMBEDDED_HUB_ID

    return EMBEDDED_HUB_ID if name in EMBEDDED_ALIASES else name


def _with_lora(model, tc):
    from peft import LoraConfig, get_peft_model

    targets = tc.lora.target_modules
    targets = targets[0] if list(targets) == ["all-linear"] else list(targets)
    return get_peft_model(model, LoraConfig(r=tc.lora.r, lora_alpha=tc.lora.alpha, lora_dropout=tc.lora.dropout,
                                            target_modules=targets, task_type="CAUSAL_LM"))


def _save_checkpoint(run: Run, t: int, model, tokenizer, state_dict, manifest: dict) -> None:
    from .files import package_versions

    ckpt = run.checkpoint(t)
    tmp = ckpt.parent / f".{ckpt.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "sppo_manifest.json", {**manifest, "versions": package_versions(), "finished_at": utc_now()})
    if ckpt.exists():
        shutil.rmtree(ckpt)
    os.replace(tmp, ckpt)


def run_iteration(run: Run, t: int) -> Path:
    log.info("=== iteration %d of %d (split %s)", t, run.cfg.run.iterations, run.cfg.prompts.splits[t - 1])
    if (run.checkpoint(t) / "sppo_manifest.json").exists():
        log.info("iteration %d: checkpoint exists, skipping", t)
        return run.checkpoint(t)
    from .train import barrier, world

    rank = world()[0]
    rows = None
    if rank == 0:  # generation, ranking and the dataset run on the first process; the others wait
        prompts = stage_prompts(run, t)
        generated = stage_generate(run, t, prompts)
        ranked = stage_rank(run, t, generated)
        rows = stage_dataset(run, t, generated, ranked)
    barrier()
    if rows is None:
        rows = read_jsonl(run.stage(t, "dataset") / "sppo.jsonl")
    return stage_train(run, t, rows)


def run_pipeline(cfg: Config) -> list[Path]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by the deepspeed / accelerate launcher
        from .train import init_distributed_if_needed

        init_distributed_if_needed()
    from .models import resolve_model

    resolve_model(cfg.model.name)  # a bad model reference fails before anything is written
    run = Run(cfg)
    run.prepare()
    return [run_iteration(run, t) for t in range(cfg.run.first_iteration, cfg.run.iterations + 1)]
