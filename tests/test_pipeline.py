"""Two SPPO iterations end to end on a tiny model; every stage's files exist and reload; interrupted runs
resume without redoing finished work; bad input gives one-line errors."""

import json
from pathlib import Path

import pytest
import torch

from perf.fixtures import make_tiny_checkpoint
from sppo import pipeline
from sppo.cli import main as train_main
from sppo.config import TrainingConfig, load_config
from sppo.files import read_jsonl
from sppo.models import load_model, load_tokenizer
from sppo.sequences import encode_examples, sequence_logps
from sppo.train import pair_batch
from test_inference_dtype import AUTO as AUTO_INFERENCE_DTYPE

PROMPTS = ["Explain why the sky is blue.", "Write a short poem about the sea.", "Hello! How can I help you?",
           "Which response is better?", "The quick brown fox.", "def add(a, b): return a + b",
           "Thank you, goodbye.", "Explain the numbers 0 1 2 3."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=3))


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    with open(path, "w") as f:
        for i, p in enumerate(PROMPTS * 2):
            f.write(json.dumps({"id": f"p{i}", "prompt": p, "split": f"train_iteration_{i // 8 + 1}"}) + "\n")
    return path


def overrides(tmp_path, tiny, prompt_file, iterations=2, **extra):
    o = {"run.output_dir": str(tmp_path / "run"), "run.iterations": iterations, "run.chunk_size": 3,
         "model.name": tiny, "model.dtype": "float32", "prompts.source": str(prompt_file),
         "generation.backend": "hf", "generation.k": 3, "generation.max_new_tokens": 12,
         "ranking.kind": "python:sppo_doubles:LengthRanker", "ranking.model": "none",
         "training.learning_rate": 1e-3, "training.eta": 10, "training.optimizer": "adamw",
         "training.num_train_epochs": 3, "training.stop_at_epoch": "null", "training.warmup_ratio": 0.0,
         "training.per_device_train_batch_size": 4, "training.max_length": 96,
         "training.max_prompt_length": 48, "training.gradient_checkpointing": False}
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]


def margin(model_path, rows):
    tok = load_tokenizer(model_path, padding_side="right")
    model = load_model(model_path, dtype="float32")
    examples, _ = encode_examples(tok, rows, TrainingConfig(max_length=96, max_prompt_length=48))
    with torch.no_grad():
        lp = sequence_logps(model, pair_batch(examples, tok.pad_token_id))
    n = len(examples)
    return (lp[:n] - lp[n:]).mean().item()


def test_two_iterations_end_to_end(tmp_path, tiny, prompt_file):
    cfg = load_config(None, overrides(tmp_path, tiny, prompt_file))
    ckpts = pipeline.run_pipeline(cfg)
    run = Path(cfg.run.output_dir)
    assert [c.name for c in ckpts] == ["Iter1", "Iter2"]
    for t in (1, 2):
        for stage, name in [("prompts", "prompts.jsonl"), ("generate", "responses.jsonl"),
                            ("rank", "comparisons.jsonl"), ("dataset", "sppo.jsonl"), ("reference", "logps.jsonl"),
                            ("train", "log.jsonl")]:
            d = run / f"iter{t}" / stage
            assert (d / "manifest.json").exists() and read_jsonl(d / name), (t, stage)
            assert not (d / "chunks").exists()  # merged into the stage file, then removed
        generated = json.loads((run / f"iter{t}" / "generate" / "manifest.json").read_text())
        assert generated["weights_dtype"] == AUTO_INFERENCE_DTYPE  # generation.dtype auto; model.dtype float32
        rows = read_jsonl(run / f"iter{t}" / "dataset" / "sppo.jsonl")
        assert all(len(r["responses"]) == 3 and r["p_win"] >= r["p_lose"] for r in rows)
        assert all(len(r["chosen"]) >= len(r["rejected"]) for r in rows)  # LengthRanker prefers long answers
        manifest = json.loads((run / "checkpoints" / f"Iter{t}" / "sppo_manifest.json").read_text())
        assert manifest["iteration"] == t and manifest["hyperparameters"]["eta"] == 10
        # the checkpoint reloads and the policy moved toward the chosen responses of its iteration
        init = tiny if t == 1 else str(run / "checkpoints" / "Iter1")
        assert manifest["init_model"] == init
        assert margin(str(run / "checkpoints" / f"Iter{t}"), rows) > margin(init, rows) + 0.1
    # rerunning does nothing: every stage is finished
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    pipeline.run_pipeline(cfg)
    assert before == {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


class Boom(RuntimeError):  # a crash at that point (Ctrl-C unwinds the same way)
    pass


@pytest.mark.parametrize("where", ["generate", "rank", "train"])
def test_interrupted_run_resumes(tmp_path, tiny, prompt_file, monkeypatch, where):
    cfg = load_config(None, overrides(tmp_path, tiny, prompt_file, iterations=1))
    import sppo_doubles
    from sppo import chunks, generate, train

    calls = {"generate": 0, "rank": 0}
    armed = [True]

    def crash():
        if armed[0]:
            armed[0] = False
            raise Boom()

    real_generate = generate.HFGenerator.sample
    real_compare = sppo_doubles.LengthRanker.compare

    def counting_generate(self, conversations, params, progress=True):
        calls["generate"] += len(conversations)
        if where == "generate" and calls["generate"] > 3:  # the second chunk dies
            crash()
        return real_generate(self, conversations, params, progress)

    def counting_compare(self, prompts, candidates):
        calls["rank"] += len(prompts)
        if where == "rank" and calls["rank"] > 3:
            crash()
        return real_compare(self, prompts, candidates)

    monkeypatch.setattr(generate.HFGenerator, "sample", counting_generate)
    monkeypatch.setattr(sppo_doubles.LengthRanker, "compare", counting_compare)
    # one generation chunk per call (a call of several chunks would lose them all: they are written when it ends)
    monkeypatch.setattr(chunks, "GROUP_SEQUENCES", 3 * 3)
    if where == "train":
        real_train = train.train_iteration

        def dying_train(*a, **k):
            raise Boom()

        monkeypatch.setattr(train, "train_iteration", dying_train)
    with pytest.raises(Boom):
        pipeline.run_pipeline(cfg)
    run = Path(cfg.run.output_dir)
    assert not (run / "checkpoints" / "Iter1").exists()
    first = dict(calls)
    if where == "train":
        monkeypatch.setattr(train, "train_iteration", real_train)
        assert (run / "iter1" / "reference" / "manifest.json").exists()
    where_resumes = {"generate": ("generate", 3), "rank": ("rank", 3), "train": (None, 0)}[where]
    pipeline.run_pipeline(cfg)
    assert (run / "checkpoints" / "Iter1" / "sppo_manifest.json").exists()
    n = len(read_jsonl(run / "iter1" / "prompts" / "prompts.jsonl"))
    if where == "generate":  # the first chunk (3 prompts) was kept; only the rest was generated again
        assert calls["generate"] - first["generate"] == n - 3
    if where == "rank":
        assert calls["generate"] == first["generate"] == n  # generation was finished: not redone
        assert calls["rank"] - first["rank"] == n - 3
    if where == "train":  # nothing before training was redone
        assert calls == first
    assert where_resumes


def test_all_ties_is_a_clear_error(tmp_path, tiny, prompt_file, capsys):
    args = overrides(tmp_path, tiny, prompt_file, iterations=1, **{"ranking.kind": "python:sppo_doubles:TieRanker"})
    assert train_main(args) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "tied scores" in err[0]
    assert not (tmp_path / "run" / "iter1" / "dataset" / "manifest.json").exists()


def test_bad_inputs_one_line_errors(tmp_path, tiny, prompt_file, capsys):
    cases = [
        (["--config", str(tmp_path / "missing.yaml")], "config file not found"),
        (["training.nonsense=1"], "unknown key 'training.nonsense'"),
        (["generation.k=1"], "generation.k: must be >= 2, got 1"),
        (overrides(tmp_path, str(tmp_path / "no-such-model"), prompt_file), "model path does not exist"),
    ]
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"id": "x", "prompt": "", "split": "train_iteration_1"}) + "\n")
    cases.append((overrides(tmp_path, tiny, empty, iterations=1), "is empty"))
    for i, (argv, message) in enumerate(cases):
        argv = [a.replace(str(tmp_path / "run"), str(tmp_path / f"run{i}")) for a in argv]
        assert train_main(argv) == 2, argv
        err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / f"run{i}" / "iter1" / "generate").exists()


def test_a_small_generate_stage_keeps_24_sequences_per_chunk(tmp_path, tiny, prompt_file, caplog):
    """8 prompts x 3 samples: generation keeps them in one chunk (one generate call, MIN_GENERATE_SEQUENCES =
    24), while the rank stage is still cut into up to MIN_CHUNKS = 8 chunks for several processes."""
    import logging

    cfg = load_config(None, overrides(tmp_path, tiny, prompt_file, iterations=1, **{"run.chunk_size": 8}))
    with caplog.at_level(logging.INFO, logger="sppo.chunks"):
        pipeline.run_pipeline(cfg)
    assert "iteration 1 generate: chunk 1/1 on rank 0 (8 items)" in caplog.text
    assert "iteration 1 rank: chunk 8/8 on rank 0 (1 items)" in caplog.text


@pytest.mark.slow
def test_embedded_default_one_small_iteration(tmp_path):
    """The shipped embedded config, cut down: SmolLM2 policy, SmolLM2 local judge, the embedded prompts."""
    cfg = load_config("embedded", [f"run.output_dir={tmp_path / 'run'}", "run.iterations=1", "prompts.limit=3",
                                   "generation.k=2", "generation.max_new_tokens=8", "training.max_length=200",
                                   "training.max_prompt_length=160"])
    assert cfg.model.name == "embedded" and cfg.ranking.kind == "local-judge" and cfg.prompts.source == "embedded"
    [ckpt] = pipeline.run_pipeline(cfg)
    manifest = json.loads((ckpt / "sppo_manifest.json").read_text())
    assert manifest["ranker"] == "local-judge:embedded" and manifest["hyperparameters"]["optimizer"] == "RMSProp"
    rows = read_jsonl(tmp_path / "run" / "iter1" / "dataset" / "sppo.jsonl")
    assert 1 <= len(rows) <= 3 and all(0 < r["p_lose"] <= r["p_win"] < 1 for r in rows)
    tok = load_tokenizer(str(ckpt))
    assert tok.chat_template and load_model(str(ckpt)).config.model_type == "llama"


RECORDING_RANKER = '''
import numpy as np

SEEN = []


class Recording:
    """Longer responses win; remembers the prompt texts it was given."""
    name = "recording"

    def __init__(self, model=None, batch_size=16):
        pass

    def compare(self, prompts, candidates):
        SEEN.extend(prompts)
        out = []
        for cands in candidates:
            n = np.array([len(c) for c in cands], dtype=float)
            out.append((n[:, None] - n[None, :]) / 10)
        return out
'''


def test_reference_settings_end_to_end(tmp_path, tiny, monkeypatch):
    """truncation/special_tokens reference, PairRM-style template source, sppo_single: a long prompt is kept
    and generated from, finish reasons reach the dataset, the ranker sees `<s>[INST] ... [/INST]`."""
    import importlib

    (tmp_path / "sppo_recording_ranker.py").write_text(RECORDING_RANKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    recorder = importlib.import_module("sppo_recording_ranker")
    long_prompt = "Explain why the sky is blue. " * 6  # over 60 tokens: over max_prompt_length = 48
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "split": "train_iteration_1"}) + "\n"
                               for i, p in enumerate(PROMPTS[:3] + [long_prompt])))
    args = overrides(tmp_path, tiny, prompts, iterations=1, **{
        "ranking.kind": "python:sppo_recording_ranker:Recording", "ranking.source": "template",
        "training.truncation": "reference", "training.special_tokens": "reference", "training.loss": "sppo_single",
        "generation.max_new_tokens": 60})  # longer than max_length - max_prompt_length = 48: allowed here
    cfg = load_config(None, args)
    [ckpt] = pipeline.run_pipeline(cfg)
    run = Path(cfg.run.output_dir)
    generated = read_jsonl(run / "iter1" / "generate" / "responses.jsonl")
    assert [g["prompt"] for g in generated][-1] == long_prompt  # not dropped
    assert json.loads((run / "iter1" / "generate" / "manifest.json").read_text())["dropped_long_prompts"] == 0
    for g in generated:
        assert len(g["finish_reasons"]) == len(g["responses"]) == 3
        assert set(g["finish_reasons"]) <= {"stop", "length"}
    # scripts/rank.py:43-47 on the Mistral-style template: the prompt string up to the assistant's turn
    assert recorder.SEEN == [f"<s>[INST] {p} [/INST]" for p in PROMPTS[:3] + [long_prompt]]
    rows = read_jsonl(run / "iter1" / "dataset" / "sppo.jsonl")
    for r in rows:
        assert r["chosen_finish_reason"] == r["finish_reasons"][r["chosen_index"]]
        assert r["rejected_finish_reason"] == r["finish_reasons"][r["rejected_index"]]
    tok = load_tokenizer(tiny, padding_side="right")
    examples, _ = encode_examples(tok, rows, cfg.training)
    for r, e in zip(rows, examples):
        for side, enc in (("chosen", e.chosen), ("rejected", e.rejected)):
            assert len(enc.input_ids) <= 96
            if not enc.prompt_truncated:  # the template's BOS and the reference's own
                assert enc.input_ids[:2] == [tok.bos_token_id] * 2
            if r[f"{side}_finish_reason"] == "length":
                assert tok.eos_token_id not in enc.input_ids[enc.response_start:]
    assert any(e.chosen.prompt_truncated for e in examples)  # the long prompt kept its last 48 tokens
    assert any(r[f"{side}_finish_reason"] == "length" for r in rows for side in ("chosen", "rejected"))
    manifest = json.loads((ckpt / "sppo_manifest.json").read_text())
    assert manifest["hyperparameters"]["loss"] == "sppo_single"


def test_generation_chunks_decoded_together_sample_as_alone(tmp_path, tiny, prompt_file, monkeypatch):
    """One process decodes its generation chunks several at a time (HFGenerator.sample_many); every chunk keeps its
    own seed, so the responses are those of the chunks decoded one by one."""
    from sppo import generate
    from sppo.run_dir import Run

    cfg = load_config(None, overrides(tmp_path, tiny, prompt_file, iterations=1,
                                      **{"generation.dtype": "float32", "generation.temperature": 1.0}))
    prompts = pipeline.stage_prompts(Run(cfg), 1)
    calls = []
    real = generate.HFGenerator.sample_many
    monkeypatch.setattr(generate.HFGenerator, "sample_many",
                        lambda self, requests, *a: calls.append(len(requests)) or real(self, requests, *a))
    together = [r.responses for r in pipeline.stage_generate(Run(cfg), 1, prompts)]
    assert calls == [3]  # 8 prompts in chunks of 3, 3, 2: one call
    alone_cfg = load_config(None, overrides(tmp_path / "alone", tiny, prompt_file, iterations=1,
                                            **{"generation.dtype": "float32", "generation.temperature": 1.0}))
    monkeypatch.setattr(generate.HFGenerator, "sample_many", None)  # no grouping: chunk by chunk
    alone = [r.responses for r in pipeline.stage_generate(Run(alone_cfg), 1, prompts)]
    assert together == alone and len({tuple(r) for r in together}) > 1
