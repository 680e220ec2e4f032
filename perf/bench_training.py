"""Training: one SPPO optimizer step.

ours       sppo.train: log pi_ref is computed once, before training, by the policy itself (`reference_logps`);
           a step is the policy's forward + backward + optimizer step, with no reference model
           in memory.
reference  uclaml/SPPO sppo/trainer.py (TRL's DPOTrainer, precompute_ref_log_probs=False): a second, frozen copy
           of the model (`create_reference_model`: a deep copy, eval mode) stays resident, and every step runs
           it forward (no grad) on the same concatenated chosen+rejected batch before the policy's forward +
           backward + optimizer step.

Both sides use the toolkit's training defaults (RMSprop, gradient checkpointing on, fp32 on CPU) and the same
batch of preference pairs; the step is built from sppo.train's own pieces (pair_batch, sequence_logps,
sppo_loss, optimizer step), the inner loop of `train_iteration`. Reported:
- step-time ratio ours / reference (target <= 0.8);
- the same with our one-time `reference_logps` pass over the step's pairs added to our step ("amortised over one
  epoch": with the paper's one epoch, each pair's reference log-probs are computed exactly once either way);
- peak RSS of a fresh process doing a few steps each way (ours includes the precompute pass), and its ratio.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from perf.fixtures import PROMPTS, RESPONSES, tiny_llama
from perf.timing import (case, current_rss_mb, interleaved, paired_ratio, peak_rss_mb, reset_peak_rss, summary,
                         window_peak_rss_mb)

TARGET = 0.8  # goal: a training step <= 0.8x the reference's time


def model_path(which: str, work: Path) -> str:
    return "embedded" if which == "embedded" else str(tiny_llama(work / "tiny_llama"))


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


class Trainer:
    """The policy, its engine and the step both ways (ours: precomputed reference; reference: model forward)."""

    def __init__(self, path: str, n_pairs: int, gradient_checkpointing: bool = True, keep_reference: bool = True,
                 response_repeat: int = 2):
        import torch  # noqa: F401

        from sppo.config import TrainingConfig
        from sppo.models import load_model, load_tokenizer
        from sppo.train import make_optimizer

        self.tokenizer = load_tokenizer(path, padding_side="right")
        self.model = load_model(path, dtype="float32", device="cpu")
        self.cfg = TrainingConfig(per_device_train_batch_size=n_pairs, gradient_checkpointing=gradient_checkpointing)
        if gradient_checkpointing:  # as train_iteration does
            self.model.gradient_checkpointing_enable()
            self.model.config.use_cache = False
        self.examples = make_examples(self.tokenizer, n_pairs, response_repeat)
        self.pad = self.tokenizer.pad_token_id
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg)
        self.ref_model = None
        if keep_reference:
            self.ref_model = self._frozen_copy()
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

    def _step(self, ref_w, ref_l):
        import torch

        from sppo.loss import sppo_loss
        from sppo.sequences import sequence_logps
        from sppo.train import pair_batch

        self.model.train()
        n = len(self.examples)
        logps = sequence_logps(self.model, pair_batch(self.examples, self.pad)).float()
        p_win = torch.tensor([e.p_win for e in self.examples])
        p_lose = torch.tensor([e.p_lose for e in self.examples])
        losses, _, _ = sppo_loss(logps[:n], logps[n:], ref_w, ref_l, p_win, p_lose, self.cfg.eta)
        losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()  # one optimizer step per call
        self.optimizer.zero_grad(set_to_none=True)
        return float(losses.mean())

    def step_ours(self):
        import torch

        if self.ref is None:
            self.precompute()
        return self._step(torch.tensor([r[0] for r in self.ref]), torch.tensor([r[1] for r in self.ref]))

    def step_reference(self):
        import torch

        from sppo.sequences import sequence_logps
        from sppo.train import pair_batch

        n = len(self.examples)
        with torch.no_grad():
            ref = sequence_logps(self.ref_model, pair_batch(self.examples, self.pad)).float()
        return self._step(ref[:n], ref[n:])

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def tokens(self) -> int:
        return sum(len(e.chosen.input_ids) + len(e.rejected.input_ids) for e in self.examples)


def rss_child(variant: str, path: str, n_pairs: int, steps: int, gradient_checkpointing: bool, threads: int | None,
              response_repeat: int):
    """Peak RSS (MiB) of a fresh process that loads the model and trains `steps` steps the given way."""
    cmd = [sys.executable, "-m", "perf.bench_training", "--rss", variant, "--model", path, "--pairs", str(n_pairs),
           "--steps", str(steps), "--response-repeat", str(response_repeat)]
    if not gradient_checkpointing:
        cmd.append("--no-gradient-checkpointing")
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         cwd=str(Path(__file__).resolve().parents[1]))
    if out.returncode != 0:
        raise RuntimeError(f"RSS child ({variant}) failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_model(which: str, work: Path, n_pairs: int, repeats: int, rss_runs: int, threads: int | None,
                gradient_checkpointing: bool = True, response_repeat: int = 2, rss_steps: int = 3) -> dict:
    path = model_path(which, work)
    t = Trainer(path, n_pairs, gradient_checkpointing, response_repeat=response_repeat)
    times = interleaved({"reference": t.step_reference, "ours": t.step_ours, "precompute": t.precompute}, repeats)
    ratio = paired_ratio(times["ours"], times["reference"])
    amortised = paired_ratio([a + b for a, b in zip(times["ours"], times["precompute"])], times["reference"])
    memory = None
    if rss_runs:
        rss = {"ours": [], "reference": []}
        for r in range(rss_runs):
            for variant in (("ours", "reference") if r % 2 == 0 else ("reference", "ours")):
                rss[variant].append(rss_child(variant, path, n_pairs, rss_steps, gradient_checkpointing,
                                                threads, response_repeat))
        key = "train_peak_rss_mb" if all(x["train_peak_rss_mb"] for x in rss["ours"] + rss["reference"]) \
            else "process_peak_rss_mb"
        peak_ours = [x[key] for x in rss["ours"]]
        peak_ref = [x[key] for x in rss["reference"]]
        base_ours = [x["baseline_rss_mb"] for x in rss["ours"]]
        base_ref = [x["baseline_rss_mb"] for x in rss["reference"]]
        above_ours = [max(0.0, a - b) for a, b in zip(peak_ours, base_ours)]
        above_ref = [max(0.0, a - b) for a, b in zip(peak_ref, base_ref)]
        memory = {"measured": "peak RSS while training (after loading)" if key == "train_peak_rss_mb"
                  else "process peak RSS (loading included)",
                  "ours": summary(peak_ours), "reference": summary(peak_ref),
                  "process_baseline": summary(base_ours + base_ref), "ratio": paired_ratio(peak_ours, peak_ref),
                  "above_baseline_ours": summary(above_ours), "above_baseline_reference": summary(above_ref),
                  "above_baseline_ratio": (paired_ratio(above_ours, above_ref) if min(above_ref) > 0 else None),
                  "loaded_rss_mb": {v: summary([x["loaded_rss_mb"] for x in rss[v]]) for v in rss},
                  "process_peak_rss_mb": {v: summary([x["process_peak_rss_mb"] for x in rss[v]]) for v in rss}}
    label = "" if gradient_checkpointing else "/no-grad-checkpointing"
    return case(
        f"training/{which}{label}", "s/step", times["ours"], times["reference"], ratio, higher_is_better=False,
        target=f"<= {TARGET:g}x", target_met=ratio["median"] <= TARGET,
        settings={"model": which, "parameters": t.n_params(), "pairs_per_step": n_pairs,
                  "tokens_per_step": t.tokens(), "optimizer": t.cfg.optimizer,
                  "gradient_checkpointing": gradient_checkpointing, "dtype": "float32", "device": "cpu"},
        amortised_ratio=amortised, precompute_seconds=summary(times["precompute"]),
        peak_rss_mb=memory,
        notes=["amortised_ratio adds our one-time reference_logps pass over the step's pairs to each of our steps",
               "peak_rss_mb: a fresh process per variant (imports, load, a few steps); the peak is taken over the "
               "training steps only (VmHWM reset after loading; ours includes the reference_logps pass); "
               "process_baseline is the RSS after imports, before loading; above_baseline_* is what the model(s) "
               "and training add"
               if memory else "peak_rss_mb not measured for this model (a fresh process per variant; the model is "
               "too small for its memory to show)"])


def run(opts: dict) -> dict:
    work = Path(opts["work"])
    quick = opts["quick"]
    # no RSS children for the tiny model: its ~0.1M parameters vanish in the process's own ~0.5 GiB
    cases = [bench_model("tiny", work, 4, opts["repeats"], 0, opts.get("threads"))]
    if not quick:
        # one short pair per step: a step of the 135M model takes seconds on 2 shared cores
        cases.append(bench_model("embedded", work, 1, opts["repeats"], 1, opts.get("threads"), response_repeat=1,
                                 rss_steps=2))
    return {"cases": cases}


def _rss_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rss", choices=("ours", "reference"), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--pairs", type=int, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--response-repeat", type=int, default=2)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    a = p.parse_args(argv)
    from perf.worker import quiet

    quiet()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    import sppo.models  # noqa: F401  (imports done: the baseline)
    import sppo.train  # noqa: F401

    baseline = current_rss_mb()
    t = Trainer(a.model, a.pairs, not a.no_gradient_checkpointing, keep_reference=a.rss == "reference",
                response_repeat=a.response_repeat)
    gc.collect()
    loaded = current_rss_mb()
    # the peak while training (loading has its own, larger and identical, transient peak: excluded)
    windowed = reset_peak_rss()
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
