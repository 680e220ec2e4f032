"""The training loop on a tiny model: schedule arithmetic, the policy moves toward chosen responses,
the reference log-probs are the policy's own before training, fp32 master weights under bf16, dropout off."""

import math

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo.config import TrainingConfig
from sppo.models import load_model, load_tokenizer
from sppo.sequences import encode_examples, sequence_logps
from sppo.train import (make_lr_scheduler, make_optimizer, make_schedule, micro_batch_backward, micro_batch_loss,
                        pair_batch, reference_logps, train_iteration)


def test_schedule_18_epochs_stop_at_1():
    cfg = TrainingConfig(per_device_train_batch_size=8, gradient_accumulation_steps=1, num_train_epochs=18,
                         stop_at_epoch=1, warmup_ratio=0.1)
    s = make_schedule(n_examples=160, cfg=cfg, world_size=8)  # 160 / (8 * 8) -> 3 steps per epoch
    assert s.steps_per_epoch == 3
    assert s.total_steps == 54 and s.stop_steps == 3
    assert s.warmup_steps == math.ceil(0.1 * 54) == 6


def test_learning_rate_stays_in_warmup_when_stopping_at_epoch_1():
    cfg = TrainingConfig(learning_rate=1e-3, num_train_epochs=18, stop_at_epoch=1, warmup_ratio=0.1,
                         per_device_train_batch_size=1)
    s = make_schedule(10, cfg)  # 10 steps/epoch, 180 total, warmup 18
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    sched = make_lr_scheduler(opt, cfg, s)
    lrs = []
    for _ in range(s.stop_steps):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[-1] == pytest.approx(1e-3 * 10 / 18)  # linear warmup, never at the peak


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=1))


def _rows():
    prompts = ["Explain why the sky is blue.", "Write a short poem about the sea.", "Hello! How can I help?",
               "Which response is better?"]
    return [{"prompt": p, "chosen": "The quick brown fox jumps.", "rejected": "def add(a, b): return a + b",
             "p_win": 0.8, "p_lose": 0.2} for p in prompts]


def _margin(model, examples, pad_id):
    with torch.no_grad():
        lp = sequence_logps(model, pair_batch(examples, pad_id))
    n = len(examples)
    return (lp[:n] - lp[n:]).mean().item()


def test_reference_logps_equal_each_response_read_alone(tiny):
    """reference_logps sorts the responses by length into batches: every value is the response's log-prob read
    alone (no padding at all)."""
    from sppo.sequences import collate

    tok = load_tokenizer(tiny, padding_side="right")
    rows = [{**r, "rejected": r["rejected"] * (i + 2)} for i, r in enumerate(_rows())]
    examples, _ = encode_examples(tok, rows, TrainingConfig(max_length=256, max_prompt_length=64))
    model = load_model(tiny, dtype="float32")
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=2, progress=False)
    with torch.no_grad():
        alone = [tuple(sequence_logps(model, collate([side], tok.pad_token_id)).item() for side in (e.chosen, e.rejected))
                 for e in examples]
    assert [v for pair in ref for v in pair] == pytest.approx([v for pair in alone for v in pair], rel=1e-5)


@pytest.mark.parametrize("loss", ["sppo", "sppo_hard", "dpo"])
def test_one_side_at_a_time_gives_the_gradient_of_the_whole_batch(tiny, loss):
    """micro_batch_backward: for a separable loss the chosen side, then the rejected side, each padded to its own
    longest row (here of very different lengths); the loss and every gradient equal those of the pairs in one
    forward pass (micro_batch_loss). dpo (not separable) takes the one-pass path."""
    tok = load_tokenizer(tiny, padding_side="right")
    rows = [{**r, "rejected": r["rejected"] * (i + 2)} for i, r in enumerate(_rows())]
    examples, _ = encode_examples(tok, rows, TrainingConfig(max_length=256, max_prompt_length=64))
    cfg = TrainingConfig(loss=loss, eta=10)
    grads, losses, passes = [], [], []
    for split in (False, True):
        model = load_model(tiny, dtype="float32")
        ref = reference_logps(model, examples, tok.pad_token_id, batch_size=4, progress=False)
        model.train()
        record = micro_batch_backward(model, examples, ref, tok.pad_token_id, cfg, "cpu",
                                      lambda l: (passes.append(split), l.backward()), split=split)
        losses.append(record["loss"])
        grads.append([p.grad.clone() for p in model.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for whole, sides in zip(*grads):
        torch.testing.assert_close(sides, whole, rtol=1e-4, atol=1e-6)
    assert passes.count(True) == (2 if loss != "dpo" else 1) and passes.count(False) == 1
    whole_loss, _ = micro_batch_loss(load_model(tiny, dtype="float32"), examples, ref, tok.pad_token_id, cfg, "cpu")
    assert whole_loss.item() == pytest.approx(losses[0], rel=1e-6)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adamw"])
def test_policy_moves_toward_chosen(tiny, optimizer):
    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="float32")
    examples, truncated = encode_examples(tok, _rows(), TrainingConfig(max_length=128, max_prompt_length=64))
    assert truncated == 0
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=2, progress=False)
    before = _margin(model, examples, tok.pad_token_id)
    # the reference log-probs are the policy's own before any update
    assert before == pytest.approx(sum(c - r for c, r in ref) / len(ref), rel=1e-4)
    cfg = TrainingConfig(optimizer=optimizer, learning_rate=1e-3, eta=10, num_train_epochs=3, stop_at_epoch=None,
                         warmup_ratio=0.0, per_device_train_batch_size=2, gradient_checkpointing=False)
    logs = []
    result = train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, on_log=logs.append,
                             progress=False)
    summary = result.summary
    after = _margin(result.unwrapped(), examples, tok.pad_token_id)
    assert after > before + 0.5
    assert summary["optimizer_steps"] == 6 and len(logs) == 6
    assert logs[-1]["loss"] < logs[0]["loss"]


def test_gradient_accumulation_counts_optimizer_steps(tiny):
    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="float32")
    examples, _ = encode_examples(tok, _rows(), TrainingConfig(max_length=128, max_prompt_length=64))
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=4, progress=False)
    cfg = TrainingConfig(learning_rate=1e-4, num_train_epochs=2, stop_at_epoch=None, per_device_train_batch_size=1,
                         gradient_accumulation_steps=2, gradient_checkpointing=True)
    summary = train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, progress=False).summary
    assert summary["optimizer_steps"] == 4  # 4 examples / (1 x 2) = 2 steps per epoch, 2 epochs


@pytest.mark.slow
def test_deepspeed_zero3_single_process_cpu(tiny):
    """ZeRO-3 through accelerate's DeepSpeedPlugin in one process (gloo): trains and gathers a full state dict."""
    pytest.importorskip("deepspeed")
    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="float32")
    examples, _ = encode_examples(tok, _rows(), TrainingConfig(max_length=128, max_prompt_length=64))
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=4, progress=False)
    before = _margin(model, examples, tok.pad_token_id)
    names = set(model.state_dict())
    cfg = TrainingConfig(learning_rate=1e-3, eta=10, num_train_epochs=3, stop_at_epoch=None, warmup_ratio=0.0,
                         per_device_train_batch_size=2, distributed="deepspeed_zero3", gradient_checkpointing=False)
    result = train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, progress=False)
    assert result.summary["optimizer_steps"] == 6
    state = result.full_state_dict()
    result.close()
    assert set(state) <= names and all(v.numel() > 0 for v in state.values())
    fresh = load_model(tiny, dtype="float32")
    fresh.load_state_dict(state, strict=False)
    assert _margin(fresh, examples, tok.pad_token_id) > before + 0.5


def test_lora_trains_adapters_and_merges(tiny):
    from sppo.config import LoraConfig
    from sppo.models import with_lora

    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="float32")
    examples, _ = encode_examples(tok, _rows(), TrainingConfig(max_length=128, max_prompt_length=64))
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=4, progress=False)
    before = _margin(model, examples, tok.pad_token_id)
    cfg = TrainingConfig(learning_rate=5e-3, eta=10, num_train_epochs=3, stop_at_epoch=None, warmup_ratio=0.0,
                         per_device_train_batch_size=2, gradient_checkpointing=False,
                         optimizer="adamw", lora=LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0))
    peft_model = with_lora(model, cfg.lora)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in peft_model.parameters()) / 4
    result = train_iteration(peft_model, examples, ref, tok.pad_token_id, cfg, seed=0, progress=False)
    merged = result.unwrapped().merge_and_unload()
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert _margin(merged, examples, tok.pad_token_id) > before + 0.5


def test_bf16_keeps_fp32_master_weights_that_move_at_the_paper_learning_rate(tiny):
    """At lr 5e-7 an RMSprop update is ~5e-6 per weight: below half a bf16 ulp for most weights, so pure-bf16
    optimisation would leave them unchanged. Training keeps fp32 masters, so every weight moves."""
    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="bfloat16")
    examples, _ = encode_examples(tok, _rows(), TrainingConfig(max_length=128, max_prompt_length=64))
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=4, progress=False)
    before = {k: v.detach().float().clone() for k, v in model.named_parameters()}
    cfg = TrainingConfig(learning_rate=5e-7, optimizer="rmsprop", num_train_epochs=5, stop_at_epoch=None,
                         warmup_ratio=0.0, per_device_train_batch_size=4, gradient_checkpointing=False, bf16="true")
    result = train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, progress=False)
    assert result.summary["bf16"] and result.summary["optimizer_steps"] == 5
    after = dict(result.unwrapped().named_parameters())
    assert all(p.dtype == torch.float32 for p in after.values())
    moved = sum(int((after[k].detach() != v).sum()) for k, v in before.items())
    total = sum(v.numel() for v in before.values())
    assert moved / total > 0.95
    # the same updates applied to bf16 weights mostly round away (what training without masters would keep)
    kept_in_bf16 = sum(int((after[k].detach().bfloat16().float() != v).sum()) for k, v in before.items())
    assert kept_in_bf16 / total < 0.5


def test_dropout_is_switched_off_for_training(tiny):
    from sppo.train import disable_dropout

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.3), torch.nn.Linear(4, 1))
    disable_dropout(model)
    model.train()
    x = torch.ones(64, 4)
    assert torch.equal(model(x), model(x))  # no dropout noise in train mode


def test_global_batch_size_derives_accumulation_from_the_processes():
    from sppo.errors import UserError
    from sppo.train import accumulation_steps

    cfg = TrainingConfig(per_device_train_batch_size=8, global_batch_size=64)
    assert [accumulation_steps(cfg, w) for w in (1, 2, 4, 8)] == [8, 4, 2, 1]
    assert make_schedule(640, cfg, world_size=2).global_batch == 64
    with pytest.raises(UserError, match="global_batch_size"):
        accumulation_steps(cfg, 3)


def test_a_step_holds_the_same_examples_whatever_the_split_into_processes():
    from sppo.train import step_micro_batches

    one = make_schedule(10, TrainingConfig(per_device_train_batch_size=1, gradient_accumulation_steps=2), 1)
    two = make_schedule(10, TrainingConfig(per_device_train_batch_size=1, gradient_accumulation_steps=1), 2)
    assert one.steps_per_epoch == two.steps_per_epoch == 5
    for step in range(12):  # across epochs: each epoch reshuffles with its own seed
        alone = [i for mb in step_micro_batches(10, step, one, 7, 0) for i in mb]
        split = [i for r in (0, 1) for mb in step_micro_batches(10, step, two, 7, r) for i in mb]
        assert alone == split and len(alone) == 2
    epoch = [i for s in range(5) for mb in step_micro_batches(10, s, one, 7, 0) for i in mb]
    assert sorted(epoch) == list(range(10))  # an epoch sees every example once


def test_tensorboard_tracking_works_offline(tiny, tmp_path):
    """training.report_to=tensorboard: accelerate's tracker writes event files whose scalars are the logged steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tok = load_tokenizer(tiny, padding_side="right")
    model = load_model(tiny, dtype="float32")
    examples, _ = encode_examples(tok, _rows(), TrainingConfig(max_length=128, max_prompt_length=64))
    ref = reference_logps(model, examples, tok.pad_token_id, batch_size=4, progress=False)
    cfg = TrainingConfig(learning_rate=1e-3, eta=10, num_train_epochs=3, stop_at_epoch=None, warmup_ratio=0.0,
                         per_device_train_batch_size=2, gradient_checkpointing=False, report_to="tensorboard",
                         save_steps=0)
    logs = []
    train_iteration(model, examples, ref, tok.pad_token_id, cfg, seed=0, on_log=logs.append, progress=False,
                    train_dir=tmp_path, tracker_config={"eta": 10.0, "optimizer": "RMSProp"})
    # accelerate's tracker: scalars in tracking/sppo/, the hyperparameters in a subdirectory of their own
    acc = EventAccumulator(str(tmp_path / "tracking" / "sppo"))
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [r["step"] for r in logs] == list(range(1, 7))
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logs], rel=1e-6)
