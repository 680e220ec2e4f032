"""Training learns: a scripted ranker prefers shorter (or longer) responses, and two iterations of `sppo-train`
with each of the sppo, dpo and ipo losses move the mean response length on held-out prompts that way, by a clear
margin, while the opposite ranker moves it the other way. A sign error anywhere between the ranker and the loss
(scores, chosen/rejected, win probabilities, the loss, the response mask) turns a direction around or stops
the movement, and fails this test.

The policy is a random tiny Llama over a vocabulary of ~40 whole words (sppo_doubles.make_word_tokenizer), so
its EOS is likely from the start and response lengths vary: the shortest of K=8 responses often ends early,
the longest never does and uses long words. Everything is seeded; one torch thread keeps it fast and
repeatable.
"""

from __future__ import annotations

import json

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo.cli import main as train_main
from sppo.config import load_config
from sppo.errors import UserError
from sppo.learning_check import (Figure, Summary, mean_and_stderr, preferred_direction, read_summary, report, verdict,
                                 write_plot)
from sppo.rankers import PreferLonger, PreferShorter, response_chars
from sppo_doubles import make_word_tokenizer

TRAIN = ["why is the sky blue", "write a poem about the sea", "how can i help you", "which answer is better",
         "the quick brown fox", "add the numbers", "thank you goodbye", "explain the numbers"]
HELD_OUT = ["why is the sea blue", "write a poem about the fox", "how can i help the fox",
            "add the numbers you can", "explain the sky", "which fox is quick", "thank the brown fox",
            "is the answer blue"]
RESPONSE_WORDS = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "ggggggg", "hhhhhhhh"]


@pytest.fixture(scope="module")
def word_model(tmp_path_factory):
    words = sorted({w for p in TRAIN + HELD_OUT for w in p.split()}) + RESPONSE_WORDS
    path = tmp_path_factory.mktemp("word-model") / "model"
    return str(make_tiny_checkpoint(path, seed=3, tokenizer=make_word_tokenizer(words)))


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [(f"train_iteration_{t}", p) for t in (1, 2) for p in TRAIN] + [("held_out", p) for p in HELD_OUT]
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "split": s}) + "\n"
                            for i, (s, p) in enumerate(rows)))
    return path


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and immune to a busy machine
    yield
    torch.set_num_threads(threads)


def learning_args(out, model, prompts, loss: str, ranker: str) -> list[str]:
    # the samples depend on the seed, the chunking (each chunk's seed) and the dtype: chunks of one prompt and
    # fp32 generation keep the seeded trajectories the margins of `moved` were set on
    o = {"run.output_dir": out, "run.iterations": 2, "run.chunk_size": 1, "run.seed": 42,
         "model.name": model, "model.dtype": "float32", "prompts.source": prompts,
         "generation.backend": "hf", "generation.dtype": "float32", "generation.k": 8, "generation.max_new_tokens": 12,
         "generation.temperature": 1.0, "generation.top_p": 1.0, "generation.batch_size": 64,
         "ranking.kind": f"python:sppo.rankers:{ranker}", "ranking.model": "none",
         "training.loss": loss, "training.eta": 10, "training.optimizer": "adamw", "training.learning_rate": 3e-3,
         "training.lr_scheduler_type": "constant", "training.warmup_ratio": 0.0, "training.num_train_epochs": 8,
         "training.stop_at_epoch": "null", "training.per_device_train_batch_size": 4, "training.save_steps": 0,
         "training.max_length": 96, "training.max_prompt_length": 48, "training.gradient_checkpointing": False,
         "learning_check.enabled": True, "learning_check.samples": 16}
    return [f"{k}={v}" for k, v in o.items()]


def learned(tmp_path, word_model, prompts, loss, ranker, capsys) -> list[Figure]:
    out = tmp_path / f"run-{ranker}"
    assert train_main(learning_args(out, word_model, prompts, loss, ranker)) == 0
    printed = capsys.readouterr().out
    summary = read_summary(out)
    assert [f.name for f in summary.figures] == ["Iter0", "Iter1", "Iter2"]
    assert summary.prompts == len(HELD_OUT) and all(f.responses == 16 * len(HELD_OUT) for f in summary.figures)
    assert report(summary) in printed and (out / "learning_check" / "learning_check.png").stat().st_size > 0
    return summary.figures


def moved(figures: list[Figure], sign: int) -> bool:
    """Each iteration moves the mean `sign`-ward, and the last one by 15% of the start and 4 standard errors."""
    means = [f.mean for f in figures]
    steps_ok = all(sign * (b - a) > 0 for a, b in zip(means, means[1:]))
    first, last = figures[0], figures[-1]
    margin = max(0.15 * first.mean, 4 * (first.stderr ** 2 + last.stderr ** 2) ** 0.5)
    return steps_ok and sign * (last.mean - first.mean) > margin


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["sppo", "dpo", "ipo"])
def test_training_moves_length_the_preferred_way(tmp_path, word_model, prompts, loss, capsys, one_thread):
    shorter = learned(tmp_path, word_model, prompts, loss, "PreferShorter", capsys)
    longer = learned(tmp_path, word_model, prompts, loss, "PreferLonger", capsys)
    assert shorter[0] == longer[0]  # one start: the same model sampled with the same seed
    shown = f"{loss}: shorter {[round(f.mean, 1) for f in shorter]}, longer {[round(f.mean, 1) for f in longer]}"
    assert moved(shorter, -1), shown
    assert moved(longer, +1), shown


# ------------------------------------------------------------------------------------------------ fast checks

def test_scripted_rankers_prefer_the_property():
    cands = [["ccc", "a", "bb"]]
    short, long_ = PreferShorter().compare(["p"], cands)[0], PreferLonger().compare(["p"], cands)[0]
    # C[i, j] > 0 when i beats j: "a" beats "ccc" for PreferShorter, "ccc" beats "a" for PreferLonger
    assert short[1, 0] > 0 > short[0, 1] and long_[0, 1] > 0 > long_[1, 0]
    assert response_chars("ab c") == 4


def test_mean_and_stderr_by_hand():
    mean, se = mean_and_stderr([1.0, 2.0, 3.0, 6.0])  # mean 3, sample variance 14/3, se = sqrt(14/3/4)
    assert mean == 3.0 and se == pytest.approx((14 / 3 / 4) ** 0.5)


def test_learning_check_needs_held_out_prompts():
    with pytest.raises(UserError, match="learning_check.split: 'train_iteration_1' is trained on"):
        load_config("embedded", ["learning_check.enabled=true", "learning_check.split=train_iteration_1"])
    with pytest.raises(UserError, match="learning_check.measure"):
        load_config("embedded", ["learning_check.measure=tokens"])
    load_config("embedded", ["learning_check.enabled=true"])  # the embedded prompts have a held_out split


def test_report_and_plot(tmp_path):
    figures = [Figure("Iter0", "m", 210.0, 6.5, 48, 0.1), Figure("Iter1", "c1", 150.31, 5.0, 48, 0.5)]
    summary = Summary("python:sppo.rankers:PreferShorter", "chars", "held_out", 12, 4, figures)
    text = report(summary)
    assert ("learning check (python:sppo.rankers:PreferShorter): mean response length (characters) on 12 held-out "
            "prompts (held_out) x 4 samples") in text
    assert "Iter0 210.0 → Iter1 150.3" in text
    path = write_plot(summary, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_states_the_margin():
    """Learned: the mean moved the ranker's way by >= 15% of Iter0 and >= 3 standard errors of the difference."""
    assert preferred_direction("python:sppo.rankers:PreferShorter") == -1
    assert preferred_direction("python:sppo.rankers:PreferLonger") == 1
    assert preferred_direction("local-judge") is None and preferred_direction("python:sppo.rankers:nothing") is None

    def judged(direction, last_mean, last_se):
        figures = [Figure("Iter0", "m", 200.0, 10.0, 48, 0.8), Figure("Iter2", "c", last_mean, last_se, 48, 0.9)]
        return verdict(Summary("k", "chars", "held_out", 12, 4, figures, direction))

    assert judged(-1, 140.0, 10.0)[0]  # -30%, 60 / 14.1 = 4.2 standard errors
    assert "fell 30% (4.2 standard errors)" in judged(-1, 140.0, 10.0)[1]
    assert not judged(-1, 160.0, 10.0)[0]  # -20% but 2.8 standard errors
    assert not judged(-1, 175.0, 1.0)[0]  # 12 standard errors but -12.5%
    assert not judged(+1, 140.0, 10.0)[0]  # the wrong way
    assert judged(None, 140.0, 10.0) is None
    text = report(Summary("k", "chars", "held_out", 12, 4, [Figure("Iter0", "m", 200.0, 10.0, 48, 0.8),
                                                              Figure("Iter1", "c", 140.0, 10.0, 48, 0.9)], -1))
    assert text.endswith("learned (>= 15% and 3 standard errors its way): yes")


def test_stage_measures_each_checkpoint_once(tmp_path, monkeypatch):
    """The stage measures Iter0 (model.name) and every checkpoint on the held-out split, writes the summary and
    the plot, and reuses a stored figure while the settings that produced it hold."""
    from sppo import learning_check
    from sppo.run_dir import Run

    calls = []

    def fake_measure(cfg, name, policy, revision, prompts):
        calls.append((name, policy, len(prompts), cfg.learning_check.samples))
        return (Figure(name, policy, 100.0 - 10 * len(calls), 1.0, len(prompts) * cfg.learning_check.samples, 0.5),
                [["answer"] * cfg.learning_check.samples for _ in prompts])

    monkeypatch.setattr(learning_check, "measure_checkpoint", fake_measure)
    cfg = load_config("learning-check", [f"run.output_dir={tmp_path}", "run.iterations=2"])
    ckpts = [tmp_path / "checkpoints" / "Iter1", tmp_path / "checkpoints" / "Iter2"]
    summary = learning_check.stage_learning_check(Run(cfg), ckpts)
    assert calls == [("Iter0", "embedded", 12, 4), ("Iter1", str(ckpts[0]), 12, 4), ("Iter2", str(ckpts[1]), 12, 4)]
    assert read_summary(tmp_path) == summary and [f.mean for f in summary.figures] == [90.0, 80.0, 70.0]
    assert (tmp_path / "learning_check" / "learning_check.png").read_bytes()[:4] == b"\x89PNG"
    learning_check.stage_learning_check(Run(cfg), ckpts)
    assert len(calls) == 3  # nothing measured again
    more = load_config("learning-check", [f"run.output_dir={tmp_path}", "run.iterations=2", "learning_check.samples=2"])
    learning_check.stage_learning_check(Run(more), ckpts)
    assert [c[3] for c in calls[3:]] == [2, 2, 2]  # other settings: every checkpoint measured again
