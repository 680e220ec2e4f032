"""Probability targets on a fixed 3x3 preference matrix, computed by hand."""

import math

import numpy as np
import pytest

from sppo.probs import probabilities_from_scores, scores_from_comparisons, targets


def sig(x):
    return 1 / (1 + math.exp(-x))


C = np.array([[0.0, 2.0, 1.0],
              [-1.0, 0.0, 0.5],
              [0.0, -0.5, 0.0]])


def test_scores_by_hand():
    # s_i = (1/3) sum_j (C_ij - C_ji)
    # s_0 = ((0-0) + (2-(-1)) + (1-0)) / 3 = 4/3
    # s_1 = ((-1-2) + 0 + (0.5-(-0.5))) / 3 = -2/3
    # s_2 = ((0-1) + (-0.5-0.5) + 0) / 3 = -2/3
    assert scores_from_comparisons(C).tolist() == pytest.approx([4 / 3, -2 / 3, -2 / 3])


def test_probability_matrix_and_targets_by_hand():
    s = scores_from_comparisons(C)
    P = probabilities_from_scores(s)
    assert np.diag(P).tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert np.allclose(P + P.T, 1.0)
    assert P[0, 1] == pytest.approx(sig(2.0))
    t = targets(P, s)
    assert t["chosen_index"] == 0
    assert t["rejected_index"] == 1  # ties between 1 and 2: the first index
    # P_win = (0.5 + sig(2) + sig(2)) / 3 ; P_lose = (sig(-2) + 0.5 + sig(0)) / 3
    assert t["p_win"] == pytest.approx((0.5 + 2 * sig(2.0)) / 3)
    assert t["p_lose"] == pytest.approx((sig(-2.0) + 0.5 + 0.5) / 3)
    assert t["p_chosen_rejected"] == pytest.approx(sig(2.0))
    assert t["tie"] is False


def test_all_tied_scores_are_flagged():
    t = targets(probabilities_from_scores(np.zeros(4)), np.zeros(4))
    assert t["tie"] is True
    assert t["p_win"] == pytest.approx(0.5)
