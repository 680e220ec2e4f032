"""The SPPO losses against their closed forms, values and gradients computed by hand."""

import math

import pytest
import torch

from sppo.loss import LOSSES, SEPARABLE, compute_loss, dpo_loss, ipo_loss, sppo_hard_loss, sppo_loss, sppo_single_loss


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


# ------------------------------------------------------------------------ every loss through the dispatcher
# One input, worked by hand: eta = 10 (beta = 0.1); Delta_w = -1.0 - (-1.5) = 0.5, Delta_l = -2.0 - (-1.0) = -1.0,
# h = Delta_w - Delta_l = 1.5; P_win = 0.7, P_lose = 0.2, P(chosen beats rejected) = 0.8.
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


HAND = {  # loss: (value, dL/dlogpi_chosen, dL/dlogpi_rejected)
    # [(0.5 - 10*0.2)^2 + (-1 - 10*(-0.3))^2] / 2; gradients Delta - target
    "sppo": (3.125, 0.5 - 2.0, -1.0 + 3.0),
    # targets +-1/(2 beta) = +-5: [(0.5 - 5)^2 + (-1 + 5)^2] / 2
    "sppo_hard": (18.125, 0.5 - 5.0, -1.0 + 5.0),
    # margin eta (0.8 - 1/2) = 3: [(0.5 - 3)^2 + (-1 + 3)^2] / 2
    "sppo_single": (5.125, 0.5 - 3.0, -1.0 + 3.0),
    # -log sigmoid(beta h) = log(1 + exp(-0.15)); d/dh = -beta sigmoid(-beta h)
    "dpo": (math.log1p(math.exp(-0.15)), -0.1 * _sigmoid(-0.15), 0.1 * _sigmoid(-0.15)),
    # (h - 1/(2 beta))^2 = (1.5 - 5)^2; d/dh = 2 (h - 5)
    "ipo": (12.25, 2 * (1.5 - 5.0), -2 * (1.5 - 5.0)),
}


def test_every_loss_is_tested_by_hand():
    assert set(LOSSES) == set(HAND)


@pytest.mark.parametrize("name", sorted(HAND))
def test_compute_loss_value_gradient_and_rewards_by_hand(name):
    pw = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    pl = torch.tensor([-2.0], dtype=torch.float64, requires_grad=True)
    rw, rl = torch.tensor([-1.5], dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64)
    targets = {"p_win": torch.tensor([0.7]), "p_lose": torch.tensor([0.2]), "p_chosen_rejected": torch.tensor([0.8])}
    losses, chosen_r, rejected_r = compute_loss(name, pw, pl, rw, rl, targets, eta=10.0)
    value, grad_w, grad_l = HAND[name]
    assert losses.item() == pytest.approx(value, rel=1e-6)
    losses.sum().backward()
    assert pw.grad.item() == pytest.approx(grad_w, rel=1e-6)
    assert pl.grad.item() == pytest.approx(grad_l, rel=1e-6)
    assert (chosen_r.item(), rejected_r.item()) == pytest.approx((0.05, -0.1))  # beta * Delta


def test_dpo_and_ipo_see_only_the_margin():
    # shifting both log-ratios by the same amount changes neither loss (they depend on h alone)
    base = [torch.tensor([-3.0, -1.0]), torch.tensor([-4.0, -2.5]),
            torch.tensor([-3.5, -1.2]), torch.tensor([-3.0, -2.0])]
    shifted = [base[0] + 0.7, base[1] + 0.7, base[2], base[3]]
    for fn in (dpo_loss, ipo_loss):
        torch.testing.assert_close(fn(*base, eta=5.0)[0], fn(*shifted, eta=5.0)[0])


def test_sppo_single_is_sppo_with_symmetric_targets():
    # P_win = P_wl and P_lose = 1 - P_wl turn sppo's targets into sppo_single's +-eta (P_wl - 1/2)
    args = (torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]),
            torch.tensor([-1.2, -2.5]), torch.tensor([-2.0, -1.5]))
    p = torch.tensor([0.9, 0.6])
    torch.testing.assert_close(sppo_single_loss(*args, p, eta=7.0)[0], sppo_loss(*args, p, 1 - p, eta=7.0)[0])


@pytest.mark.parametrize("name", LOSSES)
def test_separable_losses_are_a_chosen_term_plus_a_rejected_term(name):
    """SEPARABLE holds exactly the losses whose gradient through the chosen log-prob does not depend on the rejected
    one (the condition for training the two sides one at a time): the mixed second derivative is zero."""
    targets = {"p_win": torch.tensor([0.7]), "p_lose": torch.tensor([0.2]), "p_chosen_rejected": torch.tensor([0.8])}
    ref_w, ref_l = torch.tensor([-1.5], dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64)

    def grad_w(pl_value: float) -> float:
        pw = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
        pl = torch.tensor([pl_value], dtype=torch.float64)
        compute_loss(name, pw, pl, ref_w, ref_l, targets, eta=10.0)[0].sum().backward()
        return pw.grad.item()

    assert (grad_w(-2.0) == pytest.approx(grad_w(-7.0), rel=1e-12)) == (name in SEPARABLE)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        compute_loss("kto", *[torch.zeros(1)] * 4, {}, eta=1.0)


# ------------------------------------------------------------------------ each loss trains a tiny model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from perf.fixtures import make_tiny_checkpoint

    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=2))


@pytest.mark.parametrize("loss", ["sppo", "sppo_hard", "sppo_single", "dpo", "ipo"])
def test_each_loss_moves_the_policy_toward_chosen(tiny, loss):
    """train_iteration with training.loss=<loss> and reference tokenization: the chosen-minus-rejected
    log-ratio grows (every loss rewards the chosen response more than the rejected one here)."""
    from sppo.config import TrainingConfig
    from sppo.models import load_model, load_tokenizer
    from sppo.sequences import encode_examples, sequence_logps
    from sppo.train import pair_batch, reference_logps, train_iteration

    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="float32")
    rows = [{"prompt": p, "chosen": "The quick brown fox jumps.", "rejected": "def add(a, b): return a + b",
             "p_win": 0.8, "p_lose": 0.2, "p_chosen_rejected": 0.9, "chosen_finish_reason": "stop",
             "rejected_finish_reason": "length"} for p in ("Explain the sea", "Hello! How can I help?")]
    cfg = TrainingConfig(loss=loss, optimizer="adamw", learning_rate=1e-3, eta=10, num_train_epochs=3,
                         stop_at_epoch=None, warmup_ratio=0.0, per_device_train_batch_size=2,
                         gradient_checkpointing=False, max_length=64, max_prompt_length=32,
                         truncation="reference", special_tokens="reference")
    examples, _ = encode_examples(tok, rows, cfg)
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=2, progress=False)

    def margin(m):
        with torch.no_grad():
            lp = sequence_logps(m, pair_batch(examples, tok.pad_token_id))
        return (lp[:2] - lp[2:]).mean().item()

    before = margin(model)
    result = train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, progress=False)
    assert result.summary["optimizer_steps"] == 3
    assert margin(result.unwrapped()) > before + 0.5
