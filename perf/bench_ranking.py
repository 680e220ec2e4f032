"""Ranking: the full K x K matrix of pairwise PairRM comparisons for every prompt.

ours       sppo.rank.PairRMRanker.compare: the K(K-1) ordered pairs of all prompts pooled, sorted by token length
           and scored ranking.batch_size (16) pairs per forward pass.
reference  uclaml/SPPO scripts/rank.py: llm-blender's `Blender.rank(prompts, candidates, return_scores=True,
           batch_size=1)`, called here on the same loaded Blender: one prompt per batch, and inside it one forward
           pass per ordered pair (llm-blender's `_full_predict` loops over i != j).

Real PairRM weights are not available offline, so the ranker is randomly initialised with PairRM's architecture
(DeBERTa-v2 backbone + llm-blender's CrossCompareReranker head) at the sizes in perf.fixtures.RANKER_SIZES. Both
sides compute the same K(K-1) comparisons per prompt; pairs/s = prompts x K(K-1) / seconds. The two sides' scores
are checked to agree (s_i = (1/K) sum_j (C_ij - C_ji) against Blender.rank's scores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perf.fixtures import RANKER_SIZES, candidates, pairrm_like_ranker
from perf.timing import case, interleaved, paired_ratio, rates

TARGET_CPU = 1.0  # goal: >= 1x on CPU, >= 8x on a GPU


def bench_size(size: str, work: Path, n_prompts: int, k: int, repeats: int, batch_size: int) -> dict:
    import torch

    from sppo.probs import scores_from_comparisons
    from sppo.rank import LastCall, PairRMRanker

    ranker_dir = pairrm_like_ranker(work / f"pairrm_{size}", size)
    ours = PairRMRanker(str(ranker_dir), device="cpu", batch_size=batch_size, progress=False)
    prompts, cands = candidates(n_prompts, k)
    blender = ours.blender

    def run_ours():
        ours.last_call = LastCall()  # compare() remembers its last input; every round must compute
        return ours.compare(prompts, cands)

    def run_reference():
        return blender.rank(prompts, cands, return_scores=True, batch_size=1, disable_tqdm=True)

    ours_scores = [scores_from_comparisons(C) for C in run_ours()]
    agree = bool(np.allclose(np.array(ours_scores), np.asarray(run_reference()), atol=1e-4))
    times = interleaved({"reference": run_reference, "ours": run_ours}, repeats)
    pairs = n_prompts * k * (k - 1)
    ours_rate, ref_rate = rates(pairs, times["ours"]), rates(pairs, times["reference"])
    ratio = paired_ratio(ours_rate, ref_rate)
    n_params = sum(p.numel() for p in blender.ranker.parameters())
    on_gpu = torch.cuda.is_available()
    target = 8.0 if on_gpu else TARGET_CPU
    return case(f"ranking/pairrm-arch-{size}", "pairs/s", ours_rate, ref_rate, ratio, higher_is_better=True,
                target=f">= {target:g}x ({'GPU' if on_gpu else 'CPU'})", target_met=ratio["median"] >= target,
                settings={"ranker": f"random PairRM architecture ({size})", "backbone": RANKER_SIZES[size],
                          "parameters": n_params, "prompts": n_prompts, "k": k, "pairs_per_run": pairs,
                          "batch_size_ours": batch_size, "batch_size_reference": 1,
                          "source_max_length": ours.source_max_length,
                          "candidate_max_length": ours.candidate_max_length, "device": "cpu"},
                scores_agree=agree)


def run(opts: dict) -> dict:
    work = Path(opts["work"])
    quick = opts["quick"]
    sizes = ["tiny"] if quick else ["tiny", "small"]
    k = 5
    return {"cases": [bench_size(s, work, 2 if (quick or s == "small") else 4, k, opts["repeats"], batch_size=16)
                      for s in sizes]}
