"""Builders shared by the release tests: a tiny training run whose results hold the seed card's figures.

The metric values are "raw" (more decimals than the card prints) so the tests also check the card's rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.store import ResultsStore, SuiteResult, checkpoint_fingerprint

HYPERPARAMETERS = {"learning_rate": 5e-07, "eta": 1000, "per_device_train_batch_size": 8,
                   "gradient_accumulation_steps": 1, "seed": 42, "distributed_type": "deepspeed_zero3",
                   "num_devices": 8, "optimizer": "RMSProp", "lr_scheduler_type": "linear",
                   "lr_scheduler_warmup_ratio": 0.1, "num_train_epochs": 18.0, "stop_at_epoch": 1.0}


def _alpaca(lc, wr, length):
    return {"length_controlled_winrate": lc, "win_rate": wr, "standard_error": 1.31, "avg_length": length,
            "n_wins": 190, "n_draws": 0, "n_total": 805, "discrete_win_rate": wr - 0.4}


def _lm_eval(arc, tqa, wino, gsm, hs, mmlu, avg):
    return {"arc_challenge": arc, "truthfulqa_mc2": tqa, "winogrande": wino, "gsm8k": gsm, "hellaswag": hs,
            "mmlu": mmlu, "average": avg, "mmlu_unweighted": mmlu + 0.3}


def _mt(t1, t2, avg):
    return {"turn_1": t1, "turn_2": t2, "average": avg, "categories": {"writing": 8.1, "math": 4.2}}


# (suite, variant) -> metrics, per iteration: the seed card's figures before rounding.
SEED_RESULTS = {
    1: {("alpaca_eval", "default"): _alpaca(24.7912, 23.5071, 1855.0),
        ("alpaca_eval", "best-of-16"): _alpaca(31.2288, 32.1240, 2035.2),
        ("lm_eval", "default"): _lm_eval(65.0213, 69.4012, 77.8216, 43.8211, 85.1103, 58.8402, 66.6693),
        ("mt_bench", "default"): _mt(7.63125, 6.7875, 7.209375)},
    2: {("alpaca_eval", "default"): _alpaca(26.8893, 27.6190, 2019.4),
        ("alpaca_eval", "best-of-16"): _alpaca(32.1321, 34.9409, 2173.9),
        ("lm_eval", "default"): _lm_eval(65.5331, 69.5489, 77.0339, 44.3518, 85.2898, 58.7203, 66.7496),
        ("mt_bench", "default"): _mt(7.9, 7.0813, 7.4906)},
    3: {("alpaca_eval", "default"): _alpaca(28.5307, 31.0219, 2163.0),
        ("alpaca_eval", "best-of-16"): _alpaca(31.0711, 31.8590, 2036.0),
        ("lm_eval", "default"): _lm_eval(65.3597, 69.9702, 76.8013, 42.6789, 85.1611, 58.4512, 66.4021),
        ("mt_bench", "default"): _mt(7.8375, 7.3375, 7.5875),
        ("arena_hard", "default"): {"score": 23.27, "rating_q025": 21.5, "rating_q975": 25.09, "lower": -1.77,
                                    "upper": 1.82, "CI": "(-1.77, +1.82)", "avg_tokens": 578.0}},
}


def safetensors_bytes(n: int, size: int = 64) -> bytes:
    """A valid safetensors file holding one uint8 tensor filled with `n` (layout: 8-byte little-endian header
    length, JSON header, data), written here by hand so the tests need no tensor library."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + bytes([n % 256]) * size


def write_model_files(ckpt: Path, model_type: str, extra: dict | None = None) -> None:
    """The config, tokenizer and generation files of a checkpoint in the form sppo-train writes them (readable
    alike by transformers 4.42+ and 5): the release's compatibility check passes them."""
    theta = 1000000.0
    config = {"model_type": model_type, "rope_parameters": {"rope_theta": theta, "rope_type": "default"},
              "rope_theta": theta, "rope_scaling": None, "dtype": "bfloat16", "torch_dtype": "bfloat16",
              "bos_token_id": 1, "eos_token_id": 2, **(extra or {})}
    tokens = [{"id": i, "content": t, "special": True} for i, t in enumerate(["<unk>", "<s>", "</s>"])]
    files = {"config.json": config,
             "tokenizer.json": {"added_tokens": tokens, "model": {"type": "BPE", "vocab": {}, "merges": []}},
             "tokenizer_config.json": {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                                       "eos_token": "</s>", "clean_up_tokenization_spaces": False,
                                       "chat_template": "{{ bos_token }}{{ messages[0]['content'] }}"},
             "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2}}
    for name, data in files.items():
        (ckpt / name).write_text(json.dumps(data))
    (ckpt / "chat_template.jinja").write_text(files["tokenizer_config.json"]["chat_template"])


def manifest(n: int) -> dict:
    return {"iteration": n, "name": f"Iter{n}", "base_model": "mistralai/Mistral-7B-Instruct-v0.2",
            "init_model": "mistralai/Mistral-7B-Instruct-v0.2" if n == 1 else f"checkpoints/Iter{n - 1}",
            "prompt_dataset": "snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset",
            "prompt_source_dataset": "openbmb/UltraFeedback", "k": 5, "ranker": "llm-blender/PairRM",
            "hyperparameters": dict(HYPERPARAMETERS), "extra_key_from_a_newer_trainer": True}


def make_run(root: Path, *, results: bool = True, all_suites: bool = False) -> Path:
    """A run with Iter1..3 (tiny weights) and, unless `results` is False, the seed card's figures in its
    results store, fingerprinted against the checkpoints. `all_suites` adds Arena-Hard to Iter1/Iter2 too."""
    run = root / "run"
    store = ResultsStore(run / "results")
    for n in (1, 2, 3):
        ckpt = run / "checkpoints" / f"Iter{n}"
        ckpt.mkdir(parents=True)
        write_model_files(ckpt, "mistral", {"iteration": n})
        (ckpt / "model.safetensors").write_bytes(safetensors_bytes(n))
        (ckpt / "sppo_manifest.json").write_text(json.dumps(manifest(n)))
        if not results:
            continue
        figures = dict(SEED_RESULTS[n])
        if all_suites and n != 3:
            figures[("arena_hard", "default")] = dict(SEED_RESULTS[3][("arena_hard", "default")], score=20.0 + n)
        for (suite, variant), metrics in figures.items():
            store.write(SuiteResult(model=f"Iter{n}", suite=suite, variant=variant, metrics=metrics,
                                    checkpoint={"path": str(ckpt), "fingerprint": checkpoint_fingerprint(ckpt)},
                                    versions={"lm-eval": "0.4.1"}))
    return run


def embedded_manifest(n: int) -> dict:
    """The manifest sppo-train writes for the shipped `embedded` config (its prompt source, ranker and base model
    taken from that config the way sppo.train_stage.stage_train records them)."""
    from sppo.config import load_config
    from sppo.checkpoint import base_model_id, hyperparameters

    cfg = load_config("embedded")
    return {"iteration": n, "name": f"Iter{n}", "base_model": base_model_id(cfg.model.name),
            "init_model": cfg.model.name if n == 1 else f"runs/embedded/checkpoints/Iter{n - 1}",
            "prompt_dataset": cfg.prompts.source, "prompt_source_dataset": cfg.prompts.source_dataset,
            "prompt_split": cfg.prompts.splits[n - 1], "k": cfg.generation.k,
            "ranker": f"{cfg.ranking.kind}:{cfg.ranking.model}", "hyperparameters": hyperparameters(cfg, 1),
            "config": cfg.to_dict()}


def make_embedded_run(root: Path) -> Path:
    """A run of the embedded default benchmarked offline as `sppo-bench --all` does it there: the local judge
    (`local:embedded`) for AlpacaEval and MT-Bench, lm-eval on the toolkit's small multiple-choice task."""
    from benchmarks.suites.lm_eval import TINY_TASK
    from benchmarks.suites.lm_eval import variant_of as lm_eval_variant

    run = root / "embedded-run"
    store = ResultsStore(run / "results")
    judge = {"backend": "local", "model": "local:embedded", "max_new_tokens": 256}
    for n in (1, 2):
        ckpt = run / "checkpoints" / f"Iter{n}"
        ckpt.mkdir(parents=True)
        write_model_files(ckpt, "llama")
        (ckpt / "model.safetensors").write_bytes(safetensors_bytes(n))
        (ckpt / "sppo_manifest.json").write_text(json.dumps(embedded_manifest(n)))
        fp = {"path": str(ckpt), "fingerprint": checkpoint_fingerprint(ckpt)}
        store.write(SuiteResult(model=f"Iter{n}", suite="alpaca_eval", metrics=_alpaca(40.0 + n, 45.5, 310.0),
                                settings={"annotator": "weighted_alpaca_eval[local:embedded]"}, judge=judge,
                                checkpoint=fp))
        store.write(SuiteResult(model=f"Iter{n}", suite="mt_bench", metrics=_mt(5.0, 4.0 + n, 4.5 + n / 2),
                                judge=judge, checkpoint=fp))
        store.write(SuiteResult(
            model=f"Iter{n}", suite="lm_eval", variant=lm_eval_variant("tiny"), judge=None, checkpoint=fp,
            metrics={TINY_TASK: 100.0, f"{TINY_TASK}_acc": 87.5, "average": 100.0, "n_shot": {TINY_TASK: 2},
                     "notes": [f"{TINY_TASK}: the project's own 8-question multiple-choice task (offline smoke "
                               "test), not an Open LLM Leaderboard task"]}))
    return run


def add_datasets(run: Path, sizes: dict[int, int], k: int = 3) -> dict[int, list[dict]]:
    """Write `<run>/iterN/dataset/sppo.jsonl` (+ its manifest: the stage finished) with `sizes[N]` rows of the
    columns sppo-train writes; returns the rows."""
    import random

    rng, out = random.Random(7), {}
    for n, size in sizes.items():
        rows = []
        for i in range(size):
            responses = [f"answer {j} to prompt {n}.{i}" for j in range(k)]
            scores = [rng.uniform(-1, 1) for _ in range(k)]
            probs = [[1 / (1 + 2.718281828459045 ** (scores[b] - scores[a])) for b in range(k)] for a in range(k)]
            best, worst = scores.index(max(scores)), scores.index(min(scores))
            rows.append({"id": f"p{n}-{i}", "prompt": f"prompt {n}.{i}", "chosen": responses[best],
                         "rejected": responses[worst], "responses": responses, "scores": scores,
                         "probabilities": probs, "chosen_index": best, "rejected_index": worst,
                         "p_win": sum(probs[best]) / k, "p_lose": sum(probs[worst]) / k})
        d = run / f"iter{n}" / "dataset"
        d.mkdir(parents=True)
        (d / "sppo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "manifest.json").write_text(json.dumps({"stage": "dataset", "rows": size}))
        out[n] = rows
    return out
