"""Builders shared by the report tests: a small synthetic results store (perf/report_store.py) whose answers, one
prompt and one judge text carry hostile text, over a copy of the benchmark data, and a training run beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from perf.report_store import StoreSpec, Texts, build_store
from sppo.files import read_jsonl, write_jsonl

# model output is untrusted: markup, a closing textarea/script, an event handler, Markdown and javascript: links
EVIL = ('<script>window.__pwned = 1</script></textarea></script><img src=x onerror="window.__pwned = 2">'
        ' [click](javascript:window.__pwned=3) <a href="javascript:window.__pwned=4">link</a> **bold** & &amp; '
        '\u2028 </style><!--')
EVIL_PROMPT = "Hostile prompt <b onmouseover=alert(1)>bold</b> </script><script>window.__pwned = 5</script>"
EVIL_JUDGE = "Judge says <iframe src='javascript:alert(6)'></iframe> [[A=B]]"
EVIL_CATEGORY = "<i>cat</i>"
SIZES = {"alpaca": 7, "arena": 5, "mt": 4}


def copy_data(shared: Path, dest: Path) -> Path:
    """The benchmark files the store needs, with MT-Bench's first question made hostile (prompt and category)."""
    for sub, names in {"alpaca_eval": ["gpt4_1106_preview.model_outputs.json",
                                       "SPPO-Mistral7B-PairRM.model_outputs.json"],
                       "arena_hard_v0.1": ["question.jsonl", "gpt-4-0314.answers.jsonl", "judge_config.yaml"],
                       "mt_bench": ["question.jsonl", "reference_answer.gpt-4.jsonl"]}.items():
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(shared / sub / name, dest / sub / name)
    questions = read_jsonl(dest / "mt_bench" / "question.jsonl")
    questions[0]["turns"][0] = EVIL_PROMPT
    questions[0]["category"] = EVIL_CATEGORY
    write_jsonl(dest / "mt_bench" / "question.jsonl", questions)
    return dest


def hostile_store(root: Path, shared: Path, **spec) -> tuple[Path, Path]:
    """(results dir, data dir): Iter1-3 on 7 AlpacaEval, 5 Arena-Hard and 4 MT-Bench items; Iter2's first
    AlpacaEval answer and every checkpoint's third Arena-Hard answer are `EVIL`, Iter1's first Arena-Hard game
    says `EVIL_JUDGE`."""
    data = copy_data(shared, root / "data")
    texts = Texts(data)

    def answer(suite: str, k: int, i: int, turn: int) -> str:
        if (suite == "alpaca_eval" and k == 1 and i == 0) or (suite == "arena_hard" and i == 2):
            return EVIL
        return texts.pick(suite, k, i, turn, 600)

    results = root / "results"
    build_store(results, data, StoreSpec(alpaca=SIZES["alpaca"], arena=SIZES["arena"], mt=SIZES["mt"],
                                         answer=answer, bootstrap_rounds=10, **spec))
    jpath = results / "arena_hard" / "model_judgment" / "gpt-4-1106-preview" / "Iter1.jsonl"
    rows = read_jsonl(jpath)
    rows[0]["games"][0]["judgment"] = EVIL_JUDGE
    write_jsonl(jpath, rows)
    return results, data


def training_run(run: Path, iterations: int = 2) -> Path:
    """The training side of a run as sppo-train writes it: iterN/train/log.jsonl and iterN/dataset/sppo.jsonl."""
    for n in range(1, iterations + 1):
        (run / f"iter{n}" / "train").mkdir(parents=True, exist_ok=True)
        (run / f"iter{n}" / "dataset").mkdir(parents=True, exist_ok=True)
        log = [{"step": s, "epoch": s / 4, "loss": 1.0 / (s + n), "lr": 5e-7 * s / 4, "chosen_reward": 0.1,
                "rejected_reward": -0.1, "margin": 0.2, "grad_norm": 1.0} for s in range(1, 5)]
        (run / f"iter{n}" / "train" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        rows = [{"id": f"p{i}", "prompt": "q", "chosen": "a" * (10 * n), "rejected": "b" * 30,
                 "responses": ["a" * (10 * n), "b" * 30, "c" * 20], "scores": [0.5, -0.5, 0.0],
                 "probabilities": [[0.5] * 3] * 3, "chosen_index": 0, "rejected_index": 1,
                 "p_win": 0.6 + 0.05 * n, "p_lose": 0.4 - 0.05 * n} for i in range(3)]
        (run / f"iter{n}" / "dataset" / "sppo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run
