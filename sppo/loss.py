"""Preference losses: pure functions of summed log-probabilities and per-example targets.

With beta = 1/eta, Delta = log pi_theta(y|x) - log pi_ref(y|x) (summed over response tokens) and
h = Delta_w - Delta_l:
    sppo:        L = [(Delta_w - (P_win - 1/2) / beta)^2 + (Delta_l - (P_lose - 1/2) / beta)^2] / 2
    sppo_hard:   L = [(Delta_w - 1/(2 beta))^2 + (Delta_l + 1/(2 beta))^2] / 2
    sppo_single: L = [(Delta_w - (P_wl - 1/2) / beta)^2 + (Delta_l + (P_wl - 1/2) / beta)^2] / 2,
                 P_wl = P(y_w beats y_l), the dataset's p_chosen_rejected      (uclaml/SPPO trainer.py:880-883)
    dpo:         L = -log sigmoid(beta h)                                      (trainer.py:866-870, sigmoid)
    ipo:         L = (h - 1/(2 beta))^2                                        (trainer.py:873-875)
The reference trainer has ONE `beta` for every loss type and SPPO's eta is its inverse (trainer.py:68, 863);
the same holds here: the iterative DPO/IPO baselines read training.eta, beta = 1/eta. eta = 1000 (the paper's
SPPO setting) is what the reference scripts would run DPO/IPO with unchanged (pipeline.sh --beta 0.001); the
common DPO beta 0.1 is eta = 10. The sppo formula is trainer.py:876-879.
Each function returns per-example losses (average them yourself) and the implicit rewards beta * Delta
(trainer.py:904-916).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _deltas(policy_chosen, policy_rejected, ref_chosen, ref_rejected):
    return policy_chosen - ref_chosen, policy_rejected - ref_rejected


def _out(losses, delta_w, delta_l, beta: float) -> Losses:
    return losses, beta * delta_w.detach(), beta * delta_l.detach()


def sppo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              p_win: torch.Tensor, p_lose: torch.Tensor, eta: float) -> Losses:
    """SPPO (the paper's Eq. 4.6; uclaml/SPPO trainer.py:876-879), with beta = 1/eta:

        L = [(Delta_w - eta (P_win - 1/2))^2 + (Delta_l - eta (P_lose - 1/2))^2] / 2,

    Delta = log pi_theta(y|x) - log pi_ref(y|x): each response's log-ratio is pulled towards eta times its win
    probability's excess over 1/2 (P_win, P_lose from `sppo.probs`)."""
    beta = 1.0 / eta
    delta_w, delta_l = _deltas(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    losses = ((delta_w - (p_win - 0.5) / beta) ** 2 + (delta_l - (p_lose - 0.5) / beta) ** 2) / 2
    return _out(losses, delta_w, delta_l, beta)


def sppo_hard_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                   ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, eta: float) -> Losses:
    """SPPO with hard targets (P_win = 1, P_lose = 0):

        L = [(Delta_w - eta/2)^2 + (Delta_l + eta/2)^2] / 2."""
    beta = 1.0 / eta
    delta_w, delta_l = _deltas(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    losses = ((delta_w - 1 / (2 * beta)) ** 2 + (delta_l + 1 / (2 * beta)) ** 2) / 2
    return _out(losses, delta_w, delta_l, beta)


def sppo_single_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                     ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
                     p_chosen_rejected: torch.Tensor, eta: float) -> Losses:
    """The reference's single-probability variant (uclaml/SPPO trainer.py:880-883), P_wl = P(y_w beats y_l):

        L = [(Delta_w - eta (P_wl - 1/2))^2 + (Delta_l + eta (P_wl - 1/2))^2] / 2."""
    beta = 1.0 / eta
    delta_w, delta_l = _deltas(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    margin = (p_chosen_rejected - 0.5) / beta
    losses = ((delta_w - margin) ** 2 + (delta_l + margin) ** 2) / 2
    return _out(losses, delta_w, delta_l, beta)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, eta: float) -> Losses:
    """DPO, the sigmoid loss (Rafailov et al. 2023; uclaml/SPPO trainer.py:866-870), beta = 1/eta:

        L = -log sigmoid(beta (Delta_w - Delta_l))."""
    beta = 1.0 / eta
    delta_w, delta_l = _deltas(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return _out(-F.logsigmoid(beta * (delta_w - delta_l)), delta_w, delta_l, beta)


def ipo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, eta: float) -> Losses:
    """IPO (Azar et al. 2023; uclaml/SPPO trainer.py:873-875), beta = 1/eta:

        L = (Delta_w - Delta_l - 1/(2 beta))^2."""
    beta = 1.0 / eta
    delta_w, delta_l = _deltas(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return _out((delta_w - delta_l - 1 / (2 * beta)) ** 2, delta_w, delta_l, beta)


# name -> (function, the per-example targets it reads: PairExample fields / dataset row keys, in argument order)
_REGISTRY = {"sppo": (sppo_loss, ("p_win", "p_lose")), "sppo_hard": (sppo_hard_loss, ()),
             "sppo_single": (sppo_single_loss, ("p_chosen_rejected",)), "dpo": (dpo_loss, ()),
             "ipo": (ipo_loss, ())}
LOSSES = tuple(_REGISTRY)
LOSS_TARGETS = {name: targets for name, (_, targets) in _REGISTRY.items()}
# Losses whose per-example value is a term of Delta_w plus a term of Delta_l (no product of the two): the gradient
# through the chosen response does not depend on the rejected one's log-prob, and the other way round, so training
# may run the two sides through the model one at a time (sppo.train.micro_batch_backward).
SEPARABLE = frozenset({"sppo", "sppo_hard", "sppo_single"})


def compute_loss(name: str, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                 ref_rejected: torch.Tensor, targets: Mapping[str, torch.Tensor], eta: float) -> Losses:
    """The loss `name` (one of LOSSES) with the targets it needs (LOSS_TARGETS[name]) taken from `targets`.
    Returns (per-example losses, chosen rewards, rejected rewards)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; one of {', '.join(LOSSES)}")
    fn, keys = _REGISTRY[name]
    return fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *(targets[k] for k in keys), eta)
