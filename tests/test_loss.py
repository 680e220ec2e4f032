"""The SPPO losses against their closed forms, values and gradients computed by hand."""

import pytest
import torch

from sppo.loss import sppo_hard_loss, sppo_loss


def test_sppo_loss_value_by_hand():
    # eta = 10 (beta = 0.1). Delta_w = -1.0 - (-1.5) = 0.5, Delta_l = -2.0 - (-1.0) = -1.0
    # targets: eta (P_win - 1/2) = 10 * 0.2 = 2.0 ; eta (P_lose - 1/2) = 10 * (-0.3) = -3.0
    # L = ((0.5 - 2)^2 + (-1 + 3)^2) / 2 = (2.25 + 4) / 2 = 3.125
    pw, pl = torch.tensor([-1.0]), torch.tensor([-2.0])
    rw, rl = torch.tensor([-1.5]), torch.tensor([-1.0])
    losses, chosen_r, rejected_r = sppo_loss(pw, pl, rw, rl, torch.tensor([0.7]), torch.tensor([0.2]), eta=10.0)
    assert losses.item() == pytest.approx(3.125)
    assert chosen_r.item() == pytest.approx(0.05)  # beta * Delta_w
    assert rejected_r.item() == pytest.approx(-0.1)


def test_sppo_loss_gradient_closed_form():
    # dL/dlogpi_w = Delta_w - eta (P_win - 1/2); dL/dlogpi_l = Delta_l - eta (P_lose - 1/2)
    eta = 1000.0
    pw = torch.tensor([-10.0, -20.0], requires_grad=True)
    pl = torch.tensor([-12.0, -25.0], requires_grad=True)
    rw, rl = torch.tensor([-10.5, -19.0]), torch.tensor([-11.0, -24.0])
    p_win, p_lose = torch.tensor([0.62, 0.55]), torch.tensor([0.41, 0.48])
    losses, _, _ = sppo_loss(pw, pl, rw, rl, p_win, p_lose, eta)
    losses.sum().backward()
    expected_w = [(-10.0 + 10.5) - 1000 * 0.12, (-20.0 + 19.0) - 1000 * 0.05]
    expected_l = [(-12.0 + 11.0) - 1000 * (-0.09), (-25.0 + 24.0) - 1000 * (-0.02)]
    assert pw.grad.tolist() == pytest.approx(expected_w, rel=1e-5)
    assert pl.grad.tolist() == pytest.approx(expected_l, rel=1e-5)


def test_sppo_loss_zero_at_target():
    eta = 4.0
    p_win, p_lose = torch.tensor([0.75]), torch.tensor([0.25])
    ref = torch.tensor([-3.0])
    # at the optimum Delta_w = eta (0.25) = 1, Delta_l = eta (-0.25) = -1
    losses, _, _ = sppo_loss(ref + 1.0, ref - 1.0, ref, ref, p_win, p_lose, eta)
    assert losses.item() == pytest.approx(0.0, abs=1e-12)


def test_sppo_hard_loss_by_hand():
    # eta = 2 -> 1/(2 beta) = eta/2 = 1. Delta_w = 0.5, Delta_l = 0.25
    # L = ((0.5 - 1)^2 + (0.25 + 1)^2) / 2 = (0.25 + 1.5625) / 2 = 0.90625
    losses, _, _ = sppo_hard_loss(torch.tensor([0.5]), torch.tensor([0.25]), torch.tensor([0.0]),
                                  torch.tensor([0.0]), eta=2.0)
    assert losses.item() == pytest.approx(0.90625)


def test_hard_equals_soft_with_extreme_targets():
    # P_win = 1, P_lose = 0 turn the soft loss into the hard one
    args = (torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-1.2, -2.5]), torch.tensor([-2.0, -1.5]))
    soft, _, _ = sppo_loss(*args, torch.ones(2), torch.zeros(2), eta=7.0)
    hard, _, _ = sppo_hard_loss(*args, eta=7.0)
    assert torch.allclose(soft, hard)
