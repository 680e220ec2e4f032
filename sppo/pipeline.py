"""SPPO iterations over prompt splits, as resumable stages.

Run directory layout (everything written atomically; a stage is finished when its manifest.json exists)::

    <run>/config.yaml                       the resolved config of the run
    <run>/iter1/prompts/   prompts.jsonl    the split's prompts (ids, text)
    <run>/iter1/generate/  responses.jsonl  K responses per prompt      (resumes by chunk: chunks/)
    <run>/iter1/rank/      comparisons.jsonl  K x K preference matrices (resumes by chunk: chunks/)
    <run>/iter1/dataset/   sppo.jsonl       prompt, chosen, rejected, all K responses, scores, P, targets
    <run>/iter1/reference/ logps.jsonl      log pi_ref of chosen and rejected (pi_ref = pi_t, computed once)
    <run>/iter1/train/     log.jsonl        training metrics per logged step (state/: resumable training state)
    <run>/checkpoints/Iter1/                the policy after iteration 1 (+ sppo_manifest.json)
    <run>/learning_check/                   with learning_check.enabled: a property of every checkpoint's
                                            responses to held-out prompts, and its plot (sppo.learning_check)

Rerunning the same command after a crash or Ctrl-C resumes at the first unfinished stage (inside generation,
ranking and the reference pass at the first unfinished chunk, inside training at the last saved state) and
never redoes finished work.

Several processes (`accelerate launch`, `torchrun`, `deepspeed`): every rank runs every stage. Generation,
ranking and the reference pass split their chunks across the ranks (`chunks.py`); rank 0 writes the merged
files and manifests; training is data parallel (`train.py`). Every decision that depends on files on disk is
taken by rank 0 and shared (`distributed.decide`), so all ranks meet every collective in the same order.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from . import chunks, distributed, probs
from .checkpoint import CheckpointManifest, is_finished, ranker_record, save_checkpoint
from .config import Config, LearningCheckConfig, read_yaml_mapping
from .errors import UserError
from .files import (RUNS_ROOT, Timer, append_text, checkpoint_dir, read_jsonl, stage_done, write_jsonl, write_manifest,
                    write_text)

log = logging.getLogger(__name__)

# config fields that may change between invocations of the same run without changing its results
_FREE_FIELDS = {"run.iterations", "run.first_iteration", "run.chunk_size", "generation.batch_size",
                "generation.backend", "ranking.batch_size", "training.logging_steps",
                # learning-check figures are stored with the settings that produced them
                *(f"learning_check.{f.name}" for f in dataclasses.fields(LearningCheckConfig))}


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
        if not is_finished(prev):
            raise UserError(f"{prev}: checkpoint of iteration {iteration - 1} is missing; run that iteration first")
        return str(prev)

    def revision_of(self, policy: str) -> str | None:
        """model.revision pins the configured model; the run's own checkpoints have none."""
        return self.cfg.model.revision if policy == self.cfg.model.name else None

    def tokenizer(self, policy: str, padding_side: str = "left"):
        """The tokenizer of `policy` with model.tokenizer_config's template (unless model.revision pins one)."""
        from .models import load_tokenizer

        m = self.cfg.model
        return load_tokenizer(policy, padding_side=padding_side, revision=self.revision_of(policy),
                              tokenizer_config=m.tokenizer_config if m.revision is None else None)

    def prepare(self) -> None:
        """Lock the run dir (one sppo-train per run), record the config, refuse a config that would change
        finished results. While no stage has finished, a corrected config replaces the recorded one (chunks
        computed under the old one are discarded)."""
        from .lock import acquire_run_lock

        acquire_run_lock(self.dir)  # rank 0 only; also refuses a run.output_dir that is a file
        path = self.dir / "config.yaml"
        new = self.cfg.to_dict()
        if path.exists():
            old = _flatten(read_yaml_mapping(path))
            changed = [k for k, v in _flatten(new).items() if k not in _FREE_FIELDS and k in old and old[k] != v]
            finished = sorted(self.dir.glob("iter*/*/manifest.json")) + sorted(
                self.dir.glob("checkpoints/*/sppo_manifest.json"))
            if changed and finished:
                key = changed[0]
                raise UserError(f"{path}: this run was started with {key}={old[key]!r}, now {_flatten(new)[key]!r} "
                                f"and {finished[0].parent} is finished; use another run.output_dir to change it")
            if changed:
                for stale in self.dir.glob(f"iter*/*/{chunks.CHUNKS}"):
                    shutil.rmtree(stale)
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


# ------------------------------------------------------------------------------------------ the stages
def finished(run: Run, t: int, name: str) -> bool:
    """Whether a stage is finished, as rank 0 sees it: the same answer on every rank."""
    d = run.stage(t, name)
    return distributed.decide(f"iteration {t} {name}: is it finished?", lambda: stage_done(d))


def publish(label: str, write) -> None:
    """Rank 0 writes a stage's merged output and manifest; every rank waits until it is there (an error on
    rank 0 is raised on every rank)."""
    distributed.decide(label, write)


def stage_prompts(run: Run, t: int) -> list[dict]:
    from .prompts import load_split

    d = run.stage(t, "prompts")
    if not finished(run, t, "prompts"):
        def write():
            rows = load_split(run.cfg.prompts, t)
            write_jsonl(d / "prompts.jsonl", rows)
            write_manifest(d, stage="prompts", iteration=t, split=run.cfg.prompts.splits[t - 1],
                           source=run.cfg.prompts.source, count=len(rows))

        publish(f"iteration {t} prompts: rank 0 loads the split", write)
    return read_jsonl(d / "prompts.jsonl")


def stage_generate(run: Run, t: int, prompts: list[dict]) -> list[dict]:
    from .generate import SamplingParams, encode_prompt, make_generator, response_text

    d = run.stage(t, "generate")
    if finished(run, t, "generate"):
        return read_jsonl(d / "responses.jsonl")
    g, tc = run.cfg.generation, run.cfg.training
    policy = run.policy_for(t)
    revision = run.revision_of(policy)
    tokenizer = run.tokenizer(policy)
    # reference truncation drops nothing and generates from the whole prompt, as vLLM did in uclaml/SPPO
    # (scripts/generate.py:81-98: no length filter, no prompt truncation); training then left-truncates it
    reference = tc.truncation == "reference"
    kept = prompts if reference else [
        p for p in prompts if len(encode_prompt(tokenizer, p["prompt"], tc.special_tokens)) <= tc.max_prompt_length]
    if len(kept) < len(prompts) and distributed.is_main():
        log.warning("iteration %d: %d prompts longer than training.max_prompt_length=%d tokens are dropped",
                    t, len(prompts) - len(kept), tc.max_prompt_length)
    if not kept:
        raise UserError(f"iteration {t}: every prompt is longer than training.max_prompt_length={tc.max_prompt_length}")
    with Timer() as timer:
        generator = make_generator(g.backend, policy, tokenizer=tokenizer, dtype=run.cfg.model.dtype,
                                   batch_size=g.batch_size, special_tokens=tc.special_tokens, revision=revision,
                                   attn_implementation=run.cfg.model.attn_implementation,
                                   max_prompt_length=None if reference else tc.max_prompt_length)

        def fn(chunk):
            params = SamplingParams(n=g.k, temperature=g.temperature, top_p=g.top_p,
                                    max_new_tokens=g.max_new_tokens, seed=chunks.chunk_seed(run.cfg.run.seed, t, chunk))
            outs = generator.sample([c["prompt"] for c in chunk], params, progress=distributed.is_main())
            return [{"id": c["id"], "prompt": c["prompt"],
                     "responses": [response_text(s.text, g.response_text) for s in o],
                     "finish_reasons": [s.finish_reason for s in o]} for c, o in zip(chunk, outs)]

        rows = chunks.run_chunked(d, kept, fn, run.cfg.run.chunk_size, f"iteration {t} generate")
    if hasattr(generator, "close"):
        generator.close()
    del generator
    gc.collect()

    def write():
        write_jsonl(d / "responses.jsonl", rows)
        write_manifest(d, stage="generate", iteration=t, policy=policy, settings=g.__dict__, prompts=len(rows),
                       dropped_long_prompts=len(prompts) - len(kept), responses=len(rows) * g.k,
                       stopped_at_max_new_tokens=sum(r.get("finish_reasons", []).count("length") for r in rows),
                       processes=distributed.world_size(), seconds=round(timer.seconds, 2))
        chunks.clear(d)

    publish(f"iteration {t} generate: rank 0 writes responses.jsonl", write)
    return rows


def stage_rank(run: Run, t: int, generated: list[dict]) -> list[dict]:
    from .rank import checked_compare, checked_probabilities, make_ranker

    d = run.stage(t, "rank")
    if finished(run, t, "rank"):
        return read_jsonl(d / "comparisons.jsonl")
    r = run.cfg.ranking
    source_text = _ranking_source(run)
    with Timer() as timer:
        extra = {"revision": r.revision} if r.kind == "pairrm" and r.revision else {}
        if r.kind in ("pairrm", "local-judge"):  # built-in rankers: progress bars on rank 0 only
            extra["progress"] = distributed.is_main()
        ranker = make_ranker(r.kind, r.model, batch_size=r.batch_size, **extra)
        direct = r.probabilities == "direct"

        def fn(chunk):
            prompts = [source_text(c["prompt"]) for c in chunk]
            cands = [c["responses"] for c in chunk]
            mats = checked_compare(ranker, prompts, cands)
            pmats = checked_probabilities(ranker, prompts, cands) if direct else [None] * len(chunk)
            return [{"id": c["id"], "comparisons": np.asarray(m).tolist(),
                     **({"probabilities": np.asarray(p).tolist()} if p is not None else {})}
                    for c, m, p in zip(chunk, mats, pmats)]

        rows = chunks.run_chunked(d, generated, fn, run.cfg.run.chunk_size, f"iteration {t} rank")
    del ranker
    gc.collect()

    def write():
        write_jsonl(d / "comparisons.jsonl", rows)
        write_manifest(d, stage="rank", iteration=t, ranker={"kind": r.kind, "model": r.model},
                       probabilities=r.probabilities, source=r.source, prompts=len(rows),
                       processes=distributed.world_size(),
                       seconds=round(timer.seconds, 2))
        chunks.clear(d)

    publish(f"iteration {t} rank: rank 0 writes comparisons.jsonl", write)
    return rows


def _ranking_source(run: Run) -> Callable[[str], str]:
    """The text the ranker is given for a prompt: the prompt itself, or (ranking.source template) the
    reference's chat-templated prompt string, rendered with the base model's tokenizer as uclaml/SPPO
    scripts/rank.py:54-65 did, and given to PairRM as its source (rank.py:25-28, 87)."""
    if run.cfg.ranking.source != "template":
        return lambda prompt: prompt
    from .generate import reference_prompt_text

    tokenizer = run.tokenizer(run.cfg.model.name)
    return lambda prompt: reference_prompt_text(tokenizer, prompt)


def build_dataset_rows(generated: list[dict], ranked: list[dict], use_direct: bool,
                       keep_ties: bool = False) -> tuple[list[dict], int]:
    """Join responses and comparisons into SPPO training rows. Prompts whose scores all tie are dropped and
    counted, or with keep_ties (prompts.rows reference) kept as uclaml/SPPO kept them: argmax = argmin = the
    first response (scripts/compute_prob.py:85-92), so chosen = rejected and P_win = P_lose."""
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
            if not keep_ties:
                continue
        finish = g.get("finish_reasons")  # absent in runs generated before finish reasons were recorded
        rows.append({"id": g["id"], "prompt": g["prompt"], "chosen": g["responses"][tg["chosen_index"]],
                     "rejected": g["responses"][tg["rejected_index"]], "responses": g["responses"],
                     "scores": scores.tolist(), "probabilities": np.asarray(P).tolist(), **tg,
                     **({"finish_reasons": finish, "chosen_finish_reason": finish[tg["chosen_index"]],
                         "rejected_finish_reason": finish[tg["rejected_index"]]} if finish else {})})
    return rows, ties


def stage_dataset(run: Run, t: int, generated: list[dict], ranked: list[dict]) -> list[dict]:
    d = run.stage(t, "dataset")
    if not finished(run, t, "dataset"):
        def write():
            keep_ties = run.cfg.prompts.rows == "reference"
            rows, ties = build_dataset_rows(generated, ranked, run.cfg.ranking.probabilities == "direct", keep_ties)
            if ties and not keep_ties:
                log.warning("iteration %d: %d of %d prompts have all-equal scores (no preference) and are skipped",
                            t, ties, len(generated))
            if not rows:
                raise UserError(f"iteration {t}: all {len(generated)} prompts have tied scores; nothing to train "
                                f"on (check the ranker, or sample more responses with generation.k)")
            write_jsonl(d / "sppo.jsonl", rows)
            write_manifest(d, stage="dataset", iteration=t, rows=len(rows), ties_skipped=0 if keep_ties else ties,
                           ties_kept=ties if keep_ties else 0,
                           mean_p_win=float(np.mean([r["p_win"] for r in rows])),
                           mean_p_lose=float(np.mean([r["p_lose"] for r in rows])))

        publish(f"iteration {t} dataset: rank 0 builds sppo.jsonl", write)
    return read_jsonl(d / "sppo.jsonl")


def stage_reference(run: Run, t: int, model, rows: list[dict], examples: list, pad_id: int) -> list[tuple]:
    """log pi_ref of every chosen and rejected response (pi_ref = pi_t), chunks spread over the ranks."""
    from .train import reference_logps

    d = run.stage(t, "reference")
    if not finished(run, t, "reference"):
        index = {r["id"]: i for i, r in enumerate(rows)}
        bs = run.cfg.training.per_device_train_batch_size

        def fn(chunk):
            ex = [examples[index[c["id"]]] for c in chunk]
            logps = reference_logps(model, ex, pad_id, bs, progress=False)
            return [{"id": c["id"], "chosen": w, "rejected": l} for c, (w, l) in zip(chunk, logps)]

        items = [{"id": r["id"]} for r in rows]
        with Timer() as timer:
            out = chunks.run_chunked(d, items, fn, run.cfg.run.chunk_size, f"iteration {t} reference")

        def write():
            write_jsonl(d / "logps.jsonl", out)
            write_manifest(d, stage="reference", iteration=t, policy=run.policy_for(t), rows=len(out),
                           processes=distributed.world_size(), seconds=round(timer.seconds, 2))
            chunks.clear(d)

        publish(f"iteration {t} reference: rank 0 writes logps.jsonl", write)
    return [(r["chosen"], r["rejected"]) for r in read_jsonl(d / "logps.jsonl")]


def hyperparameters(cfg: Config, world_size: int, accumulation: int | None = None) -> dict:
    """What the manifest and the card record: the geometry of the processes that actually ran."""
    from .train import accumulation_steps

    t = cfg.training
    ga = accumulation if accumulation is not None else accumulation_steps(t, world_size)
    if t.distributed == "deepspeed_zero3":
        distributed_type = "deepspeed_zero3"
    else:  # accelerate's names: DDP over several processes, or none
        distributed_type = "multi_process" if world_size > 1 else "single_process"
    return {"learning_rate": t.learning_rate, "eta": t.eta, "loss": t.loss,
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": ga,
            "total_train_batch_size": t.per_device_train_batch_size * ga * world_size,
            "seed": cfg.run.seed, "distributed_type": distributed_type, "num_devices": world_size,
            "optimizer": {"rmsprop": "RMSProp", "adamw": "AdamW"}[t.optimizer],
            "lr_scheduler_type": t.lr_scheduler_type, "lr_scheduler_warmup_ratio": t.warmup_ratio,
            "num_train_epochs": float(t.num_train_epochs),
            "stop_at_epoch": float(t.stop_at_epoch) if t.stop_at_epoch is not None else None,
            "max_length": t.max_length, "max_prompt_length": t.max_prompt_length, "truncation": t.truncation,
            "special_tokens": t.special_tokens, "ranking_source": cfg.ranking.source, "k": cfg.generation.k,
            "lora": t.lora.enabled}


def _train_log(train_dir: Path):
    """The on_log callback (rank 0) appending to train/log.jsonl. Its first record of this attempt drops the
    records from that step on that an interrupted attempt logged after its last saved state (work redone)."""
    log_path = train_dir / "log.jsonl"
    first = [True]

    def on_log(record: dict) -> None:
        if first[0]:
            first[0] = False
            old = read_jsonl(log_path) if log_path.exists() else []
            write_jsonl(log_path, [r for r in old if r.get("step", 0) < record["step"]])
        append_text(log_path, json.dumps(record) + "\n")

    return on_log


def stage_train(run: Run, t: int, rows: list[dict]) -> Path:
    """Reference log-probs (once), then training (resumable), then the checkpoint IterN (atomically)."""
    from .models import load_model, with_lora
    from .sequences import encode_examples
    from .train import train_iteration

    cfg, tc = run.cfg, run.cfg.training
    policy = run.policy_for(t)
    tokenizer = run.tokenizer(policy, padding_side="right")
    examples, truncated = encode_examples(tokenizer, rows, tc)
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
    on_log = _train_log(train_dir)
    with Timer() as timer:
        result = train_iteration(model, examples, ref, tokenizer.pad_token_id, tc, cfg.run.seed + t, on_log,
                                 progress=distributed.is_main(), train_dir=train_dir,
                                 tracker_config=_flat_scalars(hyperparameters(cfg, distributed.world_size())))
    state_dict = result.full_state_dict()  # a collective under ZeRO-3: every rank takes part

    def write():
        module = result.unwrapped()
        if tc.lora.enabled:
            module, state = module.merge_and_unload(), None
        else:
            state = {k: v.to(save_dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        manifest = _manifest(run, t, result.summary, pairs=len(examples), truncated_responses=truncated,
                             seconds=round(timer.seconds, 2))
        save_checkpoint(run.checkpoint(t), module.to(save_dtype), tokenizer, state, manifest)
        write_manifest(train_dir, stage="train", iteration=t, checkpoint=str(run.checkpoint(t)), **result.summary)
        shutil.rmtree(train_dir / "state", ignore_errors=True)  # the checkpoint supersedes the resumable states

    publish(f"iteration {t} train: rank 0 saves checkpoints/Iter{t}", write)
    result.close()
    return run.checkpoint(t)


def _manifest(run: Run, t: int, summary: dict, **counts) -> CheckpointManifest:
    """What produced checkpoint IterN, with the geometry of the processes that actually trained it."""
    from .prompts import dataset_for

    cfg = run.cfg
    p, r = cfg.prompts, cfg.ranking
    return CheckpointManifest(
        iteration=t, name=f"Iter{t}", base_model=base_model_id(cfg.model.name), init_model=run.policy_for(t),
        prompt_dataset=dataset_for(p, t) if p.source == "hub" else p.source,
        prompt_source_dataset=p.source_dataset, prompt_split=p.splits[t - 1], k=cfg.generation.k,
        ranker=ranker_record(r.kind, r.model),
        hyperparameters=hyperparameters(cfg, summary["world_size"], summary["schedule"]["accumulation"]),
        training=summary, config=cfg.to_dict(), **counts)


def _flat_scalars(d: dict) -> dict:
    """Hyperparameters as trackers accept them (numbers, strings, booleans; None as a string)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in d.items()}


def base_model_id(name: str) -> str:
    """The base model as the Hub knows it (the embedded model is HuggingFaceTB/SmolLM2-135M-Instruct)."""
    from .models import EMBEDDED_ALIASES, EMBEDDED_HUB_ID

    return EMBEDDED_HUB_ID if name in EMBEDDED_ALIASES else name


def run_iteration(run: Run, t: int) -> Path:
    if distributed.decide(f"iteration {t}: is its checkpoint there?", lambda: is_finished(run.checkpoint(t))):
        if distributed.is_main():
            log.info("iteration %d: checkpoint exists, skipping", t)
        return run.checkpoint(t)
    if distributed.is_main():
        log.info("=== iteration %d of %d (split %s) on %d process(es)", t, run.cfg.run.iterations,
                 run.cfg.prompts.splits[t - 1], distributed.world_size())
    prompts = stage_prompts(run, t)
    generated = stage_generate(run, t, prompts)
    ranked = stage_rank(run, t, generated)
    rows = stage_dataset(run, t, generated, ranked)
    return stage_train(run, t, rows)


def run_pipeline(cfg: Config) -> list[Path]:
    from .models import resolve_model

    distributed.setup(cfg.run.collective_timeout_minutes, cfg.run.wait_log_seconds)
    # a bad model reference fails before anything is written; the embedded model is converted once, on rank 0
    distributed.main_first("resolving the model", lambda: resolve_model(cfg.model.name))
    run = Run(cfg)
    distributed.decide("rank 0 prepares the run directory", run.prepare)
    checkpoints = [run_iteration(run, t) for t in range(cfg.run.first_iteration, cfg.run.iterations + 1)]
    if cfg.learning_check.enabled:
        from .learning_check import stage_learning_check

        stage_learning_check(run, [run.checkpoint(t) for t in range(1, cfg.run.iterations + 1)])
    return checkpoints
