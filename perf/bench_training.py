"""Training: one SPPO optimizer step.

ours       sppo.train: log pi_ref is computed once, before training, by the policy itself (`reference_logps`);
           a step is `micro_batch_backward` (the SPPO loss is separable: the chosen responses' forward and backward,
           then the rejected ones', each side padded to its own longest; the language-model head only over the
           positions that predict response tokens, log-probs by logsumexp + gather) + optimizer step, with no
           reference model in memory.
reference  uclaml/SPPO sppo/trainer.py (TRL's DPOTrainer, precompute_ref_log_probs=False): a second, frozen copy
           of the model (`create_reference_model`: a deep copy, eval mode) stays resident, and every step runs
           it forward (no grad) on the same concatenated chosen+rejected batch before the policy's forward +
           backward + optimizer step; both forwards compute logits at every position and a full log_softmax
           (`concatenated_forward` and `get_batch_logps`, trainer.py:921-990).

Like for like: both sides run the same model, batch, optimizer, loss, dropout off and the same
gradient-checkpointing setting (`sppo.train.prepare_model`: non-reentrant, as the reference's
config_full.yaml:22-24), both with use_cache=False. Two settings are measured: the embedded config's own
training section (sppo/configs/embedded.yaml: 4 pairs per step, gradient checkpointing off) and the same with
gradient checkpointing on (the reference recipe's setting). Reported:
- step-time ratio ours / reference (target <= 0.8);
- the same with our one-time `reference_logps` pass over the step's pairs added to our step ("amortised over one
  epoch": with the paper's one epoch, each pair's reference log-probs are computed exactly once either way);
- peak RSS of a fresh process doing a few steps each way (ours includes the precompute pass), and its ratio.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import subprocess
import sys
from pathlib import Path

from perf.fixtures import PROMPTS, RESPONSES, tiny_llama
from perf.timing import (case, current_rss_mb, interleaved, paired_ratio, peak_rss_mb, reset_peak_rss, summary,
                         window_peak_rss_mb)

TARGET = 0.8  # goal: a training step <= 0.8x the reference's time


def model_path(which: str, work: Path) -> str:
    return "embedded" if which == "embedded" else str(tiny_llama(work / "tiny_llama"))


def training_config(pairs: int | None, gradient_checkpointing: bool):
    """The embedded config's training section, with the batch and gradient checkpointing set."""
    from sppo.config import load_config

    cfg = load_config("embedded").training
    return dataclasses.replace(cfg, per_device_train_batch_size=pairs or cfg.per_device_train_batch_size,
                               gradient_checkpointing=gradient_checkpointing)


def make_examples(tokenizer, n: int, response_repeat: int = 2):
    """n preference pairs (prompt, two responses of different lengths, win probabilities)."""
    from sppo.sequences import encode_pair
    from sppo.train import PairExample

    out = []
    for i in range(n):
        conv = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        a = " ".join([RESPONSES[(2 * i) % len(RESPONSES)]] * response_repeat)
        b = " ".join([RESPONSES[(2 * i + 3) % len(RESPONSES)]] * response_repeat)
        out.append(PairExample(encode_pair(tokenizer, conv, a, 1024), encode_pair(tokenizer, conv, b, 1024),
                               p_win=0.7, p_lose=0.3))
    return out


def reference_way_logps(model, batch):
    """The reference's summed log-probs: logits at every position, a full log_softmax, gather
    (uclaml/SPPO sppo/trainer.py:948-956, concatenated_forward :982-986)."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    targets, mask = batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:]
    per_token = torch.gather(logits[:, :-1, :].log_softmax(-1), dim=2, index=targets.unsqueeze(2)).squeeze(2)
    return (per_token * mask).sum(-1)


class Trainer:
    """The policy, its optimizer and the step both ways (ours: precomputed reference; reference: model forward)."""

    def __init__(self, path: str, n_pairs: int | None, gradient_checkpointing: bool, keep_reference: bool = True,
                 response_repeat: int = 2):
        from sppo.models import load_model, load_tokenizer
        from sppo.train import make_optimizer, prepare_model

        self.cfg = training_config(n_pairs, gradient_checkpointing)
        self.tokenizer = load_tokenizer(path, padding_side="right")
        self.model = prepare_model(load_model(path, dtype="float32", device="cpu"), self.cfg, bf16=False)
        self.examples = make_examples(self.tokenizer, self.cfg.per_device_train_batch_size, response_repeat)
        self.pad = self.tokenizer.pad_token_id
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg)
        self.ref_model = self._frozen_copy() if keep_reference else None
        self.ref = None

    def _frozen_copy(self):
        ref = copy.deepcopy(self.model)  # what TRL's create_reference_model does
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref.eval()

    def precompute(self):
        from sppo.train import reference_logps

        self.ref = reference_logps(self.model, self.examples, self.pad, self.cfg.per_device_train_batch_size,
                                   progress=False)
        return self.ref

    def _update(self, loss) -> float:
        import torch

        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()  # one optimizer step per call
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def step_ours(self):
        """sppo.train's step: `micro_batch_backward` (the SPPO loss is separable: chosen, then rejected), clipping,
        the optimizer step."""
        import torch

        from sppo.train import micro_batch_backward

        if self.ref is None:
            self.precompute()
        self.model.train()
        record = micro_batch_backward(self.model, self.examples, self.ref, self.pad, self.cfg, "cpu",
                                      lambda loss: loss.backward())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return record["loss"]

    def step_ours_full_head(self):
        """Our step (precomputed reference) with the policy's log-probs the reference's way: logits at every
        position and a full log_softmax. Against step_ours: what the head-only log-probs buy."""
        import torch

        from sppo.loss import LOSS_TARGETS, compute_loss
        from sppo.train import pair_batch

        if self.ref is None:
            self.precompute()
        n = len(self.examples)
        self.model.train()
        logps = reference_way_logps(self.model, pair_batch(self.examples, self.pad)).float()
        ref_w, ref_l = (torch.tensor(side) for side in zip(*self.ref))
        targets = {k: torch.tensor([getattr(e, k) for e in self.examples]) for k in LOSS_TARGETS[self.cfg.loss]}
        losses, _, _ = compute_loss(self.cfg.loss, logps[:n], logps[n:], ref_w, ref_l, targets, self.cfg.eta)
        return self._update(losses.mean())

    def step_reference(self):
        import torch

        from sppo.loss import LOSS_TARGETS, compute_loss
        from sppo.train import pair_batch

        n, batch = len(self.examples), pair_batch(self.examples, self.pad)
        with torch.no_grad():
            ref = reference_way_logps(self.ref_model, batch).float()
        self.model.train()
        logps = reference_way_logps(self.model, batch).float()
        targets = {k: torch.tensor([getattr(e, k) for e in self.examples]) for k in LOSS_TARGETS[self.cfg.loss]}
        losses, _, _ = compute_loss(self.cfg.loss, logps[:n], logps[n:], ref[:n], ref[n:], targets, self.cfg.eta)
        return self._update(losses.mean())

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def tokens(self) -> int:
        return sum(len(e.chosen.input_ids) + len(e.rejected.input_ids) for e in self.examples)


def rss_child(variant: str, path: str, n_pairs: int, steps: int, gradient_checkpointing: bool, threads: int | None,
              response_repeat: int, our_allocator: bool = False):
    """Peak RSS (MiB) of a fresh process that loads the model and trains `steps` steps the given way. Ours sets the
    allocator as `sppo.train.train_iteration` does (`sppo.host_memory`); the reference way keeps glibc's default,
    as the reference's process did, unless `our_allocator`."""
    cmd = [sys.executable, "-m", "perf.bench_training", "--rss", variant, "--model", path, "--steps", str(steps),
           "--response-repeat", str(response_repeat)] + (["--pairs", str(n_pairs)] if n_pairs else [])
    if our_allocator:
        cmd.append("--our-allocator")
    if not gradient_checkpointing:
        cmd.append("--no-gradient-checkpointing")
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         cwd=str(Path(__file__).resolve().parents[1]))
    if out.returncode != 0:
        raise RuntimeError(f"RSS child ({variant}) failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_figures(path: str, n_pairs: int | None, rss_runs: int, rss_steps: int, gradient_checkpointing: bool,
                   threads: int | None, response_repeat: int) -> dict:
    """Peak RSS of fresh processes training each way (alternating order), summarised and compared."""
    rss = {"ours": [], "reference": []}
    for r in range(rss_runs):
        for variant in (("ours", "reference") if r % 2 == 0 else ("reference", "ours")):
            rss[variant].append(rss_child(variant, path, n_pairs, rss_steps, gradient_checkpointing, threads,
                                          response_repeat))
    # the reference way with our training loop's allocator setting too (sppo/host_memory.py): what that setting
    # alone is worth, beside the comparison with the reference as it runs
    rss["reference_same_allocator"] = [rss_child("reference", path, n_pairs, rss_steps, gradient_checkpointing,
                                                 threads, response_repeat, our_allocator=True)]
    key = "train_peak_rss_mb" if all(x["train_peak_rss_mb"] for v in rss.values() for x in v) \
        else "process_peak_rss_mb"
    peak = {v: [x[key] for x in rss[v]] for v in rss}
    base = {v: [x["baseline_rss_mb"] for x in rss[v]] for v in rss}
    above = {v: [max(0.0, a - b) for a, b in zip(peak[v], base[v])] for v in rss}
    return {"measured": "peak RSS while training (after loading)" if key == "train_peak_rss_mb"
            else "process peak RSS (loading included)",
            "ours": summary(peak["ours"]), "reference": summary(peak["reference"]),
            "process_baseline": summary(base["ours"] + base["reference"]),
            "ratio": paired_ratio(peak["ours"], peak["reference"]),
            "reference_same_allocator": summary(peak["reference_same_allocator"]),
            "ratio_same_allocator": paired_ratio(peak["ours"][:1], peak["reference_same_allocator"]),
            "above_baseline_ours": summary(above["ours"]), "above_baseline_reference": summary(above["reference"]),
            "above_baseline_ratio": (paired_ratio(above["ours"], above["reference"])
                                     if min(above["reference"]) > 0 else None),
            "loaded_rss_mb": {v: summary([x["loaded_rss_mb"] for x in rss[v]]) for v in ("ours", "reference")},
            "process_peak_rss_mb": {v: summary([x["process_peak_rss_mb"] for x in rss[v]])
                                    for v in ("ours", "reference")}}


MEMORY_NOTE = ("peak_rss_mb: a fresh process per variant (imports, load, a few steps); the peak is taken over the "
               "training steps only (VmHWM reset after loading; ours includes the reference_logps pass); ours with "
               "sppo.train's allocator setting (sppo/host_memory.py), the reference way with glibc's default and, "
               "once, with ours (reference_same_allocator, ratio_same_allocator); "
               "process_baseline is the RSS after imports, before loading; above_baseline_* is what the model(s) "
               "and training add")


def bench_model(which: str, work: Path, repeats: int, rss_runs: int, threads: int | None,
                gradient_checkpointing: bool, n_pairs: int | None = None, response_repeat: int = 2,
                rss_steps: int = 3, full_head: bool = True) -> dict:
    """The step both ways (and, with `full_head`, ours with the reference's full-logits log-probs: what the
    head-only log-probs buy), interleaved; peak RSS from `rss_runs` fresh processes each way."""
    path = model_path(which, work)
    t = Trainer(path, n_pairs, gradient_checkpointing, response_repeat=response_repeat)
    variants = {"reference": t.step_reference, "ours": t.step_ours, "precompute": t.precompute}
    times = interleaved({**variants, "ours_full_head": t.step_ours_full_head} if full_head else variants, repeats)
    ratio = paired_ratio(times["ours"], times["reference"])
    amortised = paired_ratio([a + b for a, b in zip(times["ours"], times["precompute"])], times["reference"])
    memory = (memory_figures(path, n_pairs, rss_runs, rss_steps, gradient_checkpointing, threads, response_repeat)
              if rss_runs else None)
    pairs = t.cfg.per_device_train_batch_size
    return case(
        f"training/{which}/{pairs} pairs, grad-ckpt {'on' if gradient_checkpointing else 'off'}", "s/step",
        times["ours"], times["reference"], ratio, higher_is_better=False,
        target=f"<= {TARGET:g}x", target_met=ratio["median"] <= TARGET,
        settings={"model": which, "parameters": t.n_params(), "pairs_per_step": pairs,
                  "tokens_per_step": t.tokens(), "optimizer": t.cfg.optimizer,
                  "gradient_checkpointing": gradient_checkpointing, "dtype": "float32", "device": "cpu"},
        amortised_ratio=amortised, precompute_seconds=summary(times["precompute"]), peak_rss_mb=memory,
        **({"full_head_ratio": paired_ratio(times["ours_full_head"], times["reference"]),
            "head_only_gain": paired_ratio(times["ours"], times["ours_full_head"])} if full_head else {}),
        notes=["amortised_ratio adds our one-time reference_logps pass over the step's pairs to each of our steps",
               "full_head_ratio: our step with the policy's log-probs the reference's way (logits at every "
               "position, full log_softmax) / the reference's step; head_only_gain: our step / that step",
               MEMORY_NOTE if memory else "peak_rss_mb not measured for this case"])


def run(opts: dict) -> dict:
    work, repeats, threads = Path(opts["work"]), opts["repeats"], opts.get("threads")
    # the embedded config's training section (4 pairs per step, gradient checkpointing off) on every model; no
    # RSS children for the tiny model: its ~0.1M parameters vanish in the process's own ~0.5 GiB
    cases = [bench_model("tiny", work, repeats, 0, threads, gradient_checkpointing=False)]
    if not opts["quick"]:
        cases.append(bench_model("embedded", work, repeats, 1, threads, gradient_checkpointing=False,
                                 response_repeat=1, rss_steps=2))
        # the reference recipe's setting (config_full.yaml:22), on both sides (what the head-only log-probs buy is
        # measured with checkpointing off only: the same code either way)
        cases.append(bench_model("embedded", work, repeats, 0, threads, gradient_checkpointing=True,
                                 response_repeat=1, full_head=False))
    return {"cases": cases}


def _rss_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rss", choices=("ours", "reference"), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--pairs", type=int)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--response-repeat", type=int, default=2)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--our-allocator", action="store_true", help="the reference way with sppo.host_memory's setting")
    a = p.parse_args(argv)
    from perf.worker import quiet

    quiet()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    import sppo.models  # noqa: F401  (imports done: the baseline)
    import sppo.train  # noqa: F401

    from sppo.host_memory import large_blocks_released

    baseline = current_rss_mb()
    t = Trainer(a.model, a.pairs, not a.no_gradient_checkpointing, keep_reference=a.rss == "reference",
                response_repeat=a.response_repeat)
    gc.collect()
    loaded = current_rss_mb()
    # the peak while training (loading has its own, larger and identical, transient peak: excluded)
    windowed = reset_peak_rss()
    # ours: the allocator setting sppo.train.train_iteration holds while it optimises
    with large_blocks_released("cpu" if a.rss == "ours" or a.our_allocator else "none"):
        for _ in range(a.steps):
            t.step_ours() if a.rss == "ours" else t.step_reference()
    train_peak = window_peak_rss_mb() if windowed else None
    print(json.dumps({"variant": a.rss, "baseline_rss_mb": round(baseline, 1), "loaded_rss_mb": round(loaded, 1),
                      "train_peak_rss_mb": None if train_peak is None else round(train_peak, 1),
                      "process_peak_rss_mb": round(peak_rss_mb(), 1),
                      "reference_model_resident": t.ref_model is not None}))
    return 0


if __name__ == "__main__":
    sys.exit(_rss_main(sys.argv[1:]))
