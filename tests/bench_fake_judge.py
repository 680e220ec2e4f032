"""Test plug-ins for the benchmark tests (the fake judge server itself is benchmarks.testing.FakeJudgeServer)."""

from __future__ import annotations


class LongestRanker:
    """A ranker plug-in (``--ranker python:bench_fake_judge:LongestRanker``): the longer candidate wins."""

    calls: list = []

    def __init__(self, model=None):
        self.name = "longest"

    def compare(self, prompts, candidates):
        import numpy as np

        LongestRanker.calls.append([list(c) for c in candidates])
        out = []
        for cands in candidates:
            n = np.array([len(c) for c in cands], dtype=float)
            out.append(np.sign(n[:, None] - n[None, :]))
        return out


def tiny_checkpoints(root, seeds=(0, 1)):
    """Tiny random Llama checkpoints with the embedded model's tokenizer (chat template included)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sppo.models import embedded_checkpoint

    tok = AutoTokenizer.from_pretrained(embedded_checkpoint())
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
        path = root / f"tiny{seed + 1}"
        LlamaForCausalLM(cfg).save_pretrained(path)
        tok.save_pretrained(path)
        out.append(path)
    return out


def bench_args(server, checkpoints, shared_data, results, *extra, limit=2, max_new_tokens=8, model="fake-judge"):
    """`sppo-bench` arguments for a run against the fake judge server (quick settings)."""
    return [*extra, *map(str, checkpoints), "--limit", str(limit), "--max-new-tokens", str(max_new_tokens),
            "--judge-base-url", server.url, "--judge-model", model, "--judge-api-key-env", "BENCH_KEY",
            "--judge-backoff", "0.01", "--judge-timeout", "0.5", "--data-dir", str(shared_data),
            "--results-dir", str(results), "--lm-eval-tasks", "tiny", "--generation-backend", "hf",
            "--batch-size", "4"]
