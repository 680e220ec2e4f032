"""The SPPO loss: a pure function of summed log-probabilities and win-probability targets.

With beta = 1/eta and Delta = log pi_theta(y|x) - log pi_ref(y|x) (summed over response tokens):
    sppo:       L = [(Delta_w - (P_win - 1/2) / beta)^2 + (Delta_l - (P_lose - 1/2) / beta)^2] / 2
    sppo_hard:  L = [(Delta_w - 1/(2 beta))^2 + (Delta_l + 1/(2 beta))^2] / 2
Returns per-example losses (average them yourself) and the implicit rewards beta * Delta.
"""

from __future__ import annotations

import torch


def sppo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              p_win: torch.Tensor, p_lose: torch.Tensor, eta: float,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    beta = 1.0 / eta
    delta_w = policy_chosen_logps - ref_chosen_logps
    delta_l = policy_rejected_logps - ref_rejected_logps
    losses = ((delta_w - (p_win - 0.5) / beta) ** 2 + (delta_l - (p_lose - 0.5) / beta) ** 2) / 2
    return losses, beta * delta_w.detach(), beta * delta_l.detach()


def sppo_hard_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                   ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, eta: float,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    beta = 1.0 / eta
    delta_w = policy_chosen_logps - ref_chosen_logps
    delta_l = policy_rejected_logps - ref_rejected_logps
    losses = ((delta_w - 1 / (2 * beta)) ** 2 + (delta_l + 1 / (2 * beta)) ** 2) / 2
    return losses, beta * delta_w.detach(), beta * delta_l.detach()
