"""SPPO iterations over prompt splits, as resumable stages (`sppo.stage`) in a run directory (`sppo.run_dir`).

An iteration: prompts -> generate -> rank -> dataset -> reference -> train (`sppo.train_stage`) -> checkpoint.
Rerunning the same command after a crash or Ctrl-C resumes at the first unfinished stage (inside generation,
ranking and the reference pass at the first unfinished chunk, inside training at the last saved state) and
never redoes finished work.

Several processes (`accelerate launch`, `torchrun`, `deepspeed`): every rank runs every stage. Generation,
ranking and the reference pass split their chunks across the ranks (`chunks.py`); rank 0 writes the merged
files and manifests; training is data parallel (`train.py`).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from . import distributed, probs
from .checkpoint import is_finished
from .config import BuiltinRanker, Config, choices
from .errors import UserError
from .files import Timer
from .rows import ComparisonRow, DatasetRow, PromptRow, ResponseRow
from .run_dir import Run
from .stage import Stage, run_stage
from .train_stage import stage_train

log = logging.getLogger(__name__)


def stage_prompts(run: Run, t: int) -> list[PromptRow]:
    """Step 0 of iteration t: the prompts x of split t (``prompts.splits[t-1]``), ``iter<t>/prompts/prompts.jsonl``."""
    from .prompts import load_split

    def compute():
        rows = [PromptRow.from_json(r) for r in load_split(run.cfg.prompts, t)]
        return rows, dict(split=run.cfg.prompts.splits[t - 1], source=run.cfg.prompts.source, count=len(rows))

    return run_stage(Stage(run, t, "prompts", PromptRow), compute, publishing="loads the split")


def _fitting(run: Run, t: int, prompts: list[PromptRow], tokenizer) -> list[PromptRow]:
    """The prompts generation starts from. Reference truncation drops nothing and generates from the whole
    prompt, as vLLM did in uclaml/SPPO (scripts/generate.py:81-98: no length filter, no prompt truncation);
    training then left-truncates it. Otherwise prompts over training.max_prompt_length are dropped."""
    from .generate import encode_prompt

    tc = run.cfg.training
    if tc.truncation == "reference":
        return prompts
    kept = [p for p in prompts if len(encode_prompt(tokenizer, p.prompt, tc.special_tokens)) <= tc.max_prompt_length]
    if len(kept) < len(prompts) and distributed.is_main():
        log.warning("iteration %d: %d prompts longer than training.max_prompt_length=%d tokens are dropped",
                    t, len(prompts) - len(kept), tc.max_prompt_length)
    if not kept:
        raise UserError(f"iteration {t}: every prompt is longer than training.max_prompt_length={tc.max_prompt_length}")
    return kept


def stage_generate(run: Run, t: int, prompts: list[PromptRow]) -> list[ResponseRow]:
    """Step 1: K responses per prompt from the current policy, y_1 .. y_K ~ pi_t(. | x) (temperature, top-p; in
    chunks over the ranks), ``iter<t>/generate/responses.jsonl`` with each response's finish reason."""
    from . import chunks
    from .generate import SamplingParams, engine_record, make_generator, response_text, weights_dtype

    stage = Stage(run, t, "generate", ResponseRow)
    g, tc = run.cfg.generation, run.cfg.training

    def params(chunk: list[PromptRow]) -> SamplingParams:
        return SamplingParams(n=g.k, temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens,
                              seed=chunks.chunk_seed(run.cfg.run.seed, t, [chunk[0].to_json()]))

    def response_rows(chunk: list[PromptRow], outs) -> list[ResponseRow]:
        return [ResponseRow(c.id, c.prompt, [response_text(s.text, g.response_text) for s in o],
                            [s.finish_reason for s in o]) for c, o in zip(chunk, outs)]

    def fn(generator, chunk: list[PromptRow]) -> list[ResponseRow]:
        outs = generator.sample([c.prompt for c in chunk], params(chunk), progress=distributed.is_main())
        return response_rows(chunk, outs)

    def many(generator, group: list[list[PromptRow]]) -> list[list[ResponseRow]]:
        """Several chunks in as few decoding loops as memory allows, each sampled as `fn` samples it."""
        outs = generator.sample_many([([c.prompt for c in chunk], params(chunk)) for chunk in group])
        return [response_rows(chunk, o) for chunk, o in zip(group, outs)]

    def compute():
        policy = run.policy_for(t)
        tokenizer = run.tokenizer(policy)
        kept = _fitting(run, t, prompts, tokenizer)
        with Timer() as timer:
            generator = make_generator(g.backend, policy, tokenizer=tokenizer, dtype=g.dtype,
                                       batch_size=g.batch_size, special_tokens=tc.special_tokens,
                                       revision=run.revision_of(policy),
                                       attn_implementation=run.cfg.model.attn_implementation,
                                       max_prompt_length=None if tc.truncation == "reference" else tc.max_prompt_length,
                                       enforce_eager=g.enforce_eager)
            together = (lambda group: many(generator, group)) if getattr(generator, "sample_many", None) else None
            rows = stage.chunked(kept, lambda chunk: fn(generator, chunk),
                                 min_size=-(-chunks.MIN_GENERATE_SEQUENCES // g.k), many=together,
                                 group_items=chunks.GROUP_SEQUENCES // g.k)
        dtype, engine = weights_dtype(generator), engine_record(generator)
        if hasattr(generator, "close"):
            generator.close()
        del generator
        gc.collect()
        return rows, dict(policy=policy, settings=g.__dict__, engine=engine, weights_dtype=dtype, prompts=len(rows),
                          dropped_long_prompts=len(prompts) - len(kept), responses=len(rows) * g.k,
                          stopped_at_max_new_tokens=sum((r.finish_reasons or []).count("length") for r in rows),
                          processes=distributed.world_size(), seconds=round(timer.seconds, 2))

    return run_stage(stage, compute, collective=True)


def stage_rank(run: Run, t: int, generated: list[ResponseRow]) -> list[ComparisonRow]:
    """Step 2: the K x K preference matrix of each prompt, C_ij = the ranker's comparison of y_i with y_j (PairRM,
    a local judge or a plug-in; ``ranking.probabilities: direct`` keeps the ranker's own P(y_i beats y_j)),
    ``iter<t>/rank/comparisons.jsonl``."""
    from .rank import checked_compare, checked_probabilities, make_ranker

    stage = Stage(run, t, "rank", ComparisonRow)
    r = run.cfg.ranking
    direct = r.probabilities == "direct"

    def fn(ranker, source_text, chunk: list[ResponseRow]) -> list[ComparisonRow]:
        prompts = [source_text(c.prompt) for c in chunk]
        cands = [c.responses for c in chunk]
        mats = checked_compare(ranker, prompts, cands)
        pmats = checked_probabilities(ranker, prompts, cands) if direct else [None] * len(chunk)
        return [ComparisonRow(c.id, np.asarray(m).tolist(), np.asarray(p).tolist() if p is not None else None)
                for c, m, p in zip(chunk, mats, pmats)]

    def compute():
        source_text = _ranking_source(run)
        with Timer() as timer:
            extra = {"revision": r.revision} if r.kind == "pairrm" and r.revision else {}
            if r.kind in choices(BuiltinRanker):  # built-in rankers: progress bars on rank 0 only
                extra["progress"] = distributed.is_main()
            if r.kind == "local-judge":
                extra["dtype"] = r.dtype
            ranker = make_ranker(r.kind, r.model, batch_size=r.batch_size, **extra)
            rows = stage.chunked(generated, lambda chunk: fn(ranker, source_text, chunk))
        del ranker
        gc.collect()
        return rows, dict(ranker={"kind": r.kind, "model": r.model}, probabilities=r.probabilities,
                          source=r.source, prompts=len(rows), processes=distributed.world_size(),
                          seconds=round(timer.seconds, 2))

    return run_stage(stage, compute, collective=True)


def _ranking_source(run: Run) -> Callable[[str], str]:
    """The text the ranker is given for a prompt: the prompt itself, or (ranking.source template) the
    reference's chat-templated prompt string, rendered with the base model's tokenizer as uclaml/SPPO
    scripts/rank.py:54-65 did, and given to PairRM as its source (rank.py:25-28, 87)."""
    if run.cfg.ranking.source != "template":
        return lambda prompt: prompt
    from .generate import reference_prompt_text

    tokenizer = run.tokenizer(run.cfg.model.name)
    return lambda prompt: reference_prompt_text(tokenizer, prompt)


def dataset_row(g: ResponseRow, r: ComparisonRow, use_direct: bool) -> tuple[DatasetRow, bool]:
    """The SPPO training row of one prompt, and whether its scores all tie."""
    scores = probs.scores_from_comparisons(np.asarray(r.comparisons, dtype=np.float64))
    P = np.asarray(r.probabilities) if use_direct else probs.probabilities_from_scores(scores)
    tg = probs.targets(P, scores)
    tie = tg.pop("tie")
    finish = g.finish_reasons
    row = DatasetRow(id=g.id, prompt=g.prompt, chosen=g.responses[tg["chosen_index"]],
                     rejected=g.responses[tg["rejected_index"]], responses=g.responses, scores=scores.tolist(),
                     probabilities=np.asarray(P).tolist(), **tg, finish_reasons=finish or None,
                     chosen_finish_reason=finish[tg["chosen_index"]] if finish else None,
                     rejected_finish_reason=finish[tg["rejected_index"]] if finish else None)
    return row, tie


def build_dataset_rows(generated: list[ResponseRow], ranked: list[ComparisonRow], use_direct: bool,
                       keep_ties: bool = False) -> tuple[list[DatasetRow], int]:
    """Join responses and comparisons into SPPO training rows. Prompts whose scores all tie are dropped and
    counted, or with keep_ties (prompts.rows reference) kept as uclaml/SPPO kept them: argmax = argmin = the
    first response (scripts/compute_prob.py:85-92), so chosen = rejected and P_win = P_lose."""
    by_id = {r.id: r for r in ranked}
    rows, ties = [], 0
    for g in generated:
        row, tie = dataset_row(g, by_id[g.id], use_direct)
        ties += tie
        if keep_ties or not tie:
            rows.append(row)
    return rows, ties


def stage_dataset(run: Run, t: int, generated: list[ResponseRow], ranked: list[ComparisonRow]) -> list[DatasetRow]:
    """Step 3: the training pairs and their targets (`sppo.probs`): scores s_i = (1/K) sum_j (C_ij - C_ji),
    P_ij = sigmoid(s_i - s_j), chosen y_w = argmax s, rejected y_l = argmin s, P_win = mean_j P(y_w beats y_j),
    P_lose = mean_j P(y_l beats y_j); prompts whose K scores all tie are dropped (``prompts.rows: clean``),
    ``iter<t>/dataset/sppo.jsonl``."""
    def compute():
        keep_ties = run.cfg.prompts.rows == "reference"
        rows, ties = build_dataset_rows(generated, ranked, run.cfg.ranking.probabilities == "direct", keep_ties)
        if ties and not keep_ties:
            log.warning("iteration %d: %d of %d prompts have all-equal scores (no preference) and are skipped",
                        t, ties, len(generated))
        if not rows:
            raise UserError(f"iteration {t}: all {len(generated)} prompts have tied scores; nothing to train "
                            f"on (check the ranker, or sample more responses with generation.k)")
        return rows, dict(rows=len(rows), ties_skipped=0 if keep_ties else ties, ties_kept=ties if keep_ties else 0,
                          mean_p_win=float(np.mean([r.p_win for r in rows])),
                          mean_p_lose=float(np.mean([r.p_lose for r in rows])))

    return run_stage(Stage(run, t, "dataset", DatasetRow), compute, publishing="builds sppo.jsonl")


def run_iteration(run: Run, t: int) -> Path:
    """Iteration t: pi_t -> pi_{t+1} through the stages above and the two of `sppo.train_stage` (reference
    log-probs, training), each resumable; a finished checkpoint ``checkpoints/Iter<t>`` ends it at once."""
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
