"""Win-probability targets from pairwise preferences (step 3 of an SPPO iteration).

Given a ranker's K x K comparison matrix C (C[i, j]: how strongly response i beats j):
    s_i   = (1/K) sum_j (C_ij - C_ji)                      ranker score of response i
    P_ij  = sigmoid(s_i - s_j)                             P(i beats j); the diagonal is 0.5
    chosen = argmax s, rejected = argmin s
    P_win  = (1/K) sum_j P_chosen,j    P_lose = (1/K) sum_j P_rejected,j   (diagonal included)
P_win estimates P(chosen beats the current policy), P_lose the same for the rejected response.
"""

from __future__ import annotations

import numpy as np


def scores_from_comparisons(C: np.ndarray) -> np.ndarray:
    C = np.asarray(C, dtype=np.float64)
    return (C - C.T).sum(axis=1) / C.shape[0]


def probabilities_from_scores(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))


def targets(P: np.ndarray, scores: np.ndarray) -> dict:
    """Chosen/rejected indices and the SPPO targets from a K x K probability matrix and the scores.

    Ties: argmax/argmin take the first index; when all scores are equal, chosen == rejected would be
    meaningless, so `tie` is True and the caller drops the prompt (unless prompts.rows is reference)."""
    P = np.asarray(P, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    chosen, rejected = int(np.argmax(s)), int(np.argmin(s))
    k = P.shape[0]
    return {
        "chosen_index": chosen,
        "rejected_index": rejected,
        "p_win": float(P[chosen].sum() / k),
        "p_lose": float(P[rejected].sum() / k),
        "p_chosen_rejected": float(P[chosen, rejected]),
        "tie": bool(np.isclose(s.max(), s.min())),
    }
