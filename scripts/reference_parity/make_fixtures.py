"""Golden data from the reference itself: run uclaml/SPPO's own functions under its pinned stack.

    bash scripts/reference_parity/run.sh <uclaml/SPPO checkout at 5e61c4e>      # build_env.sh, then this
    # or by hand:
    bash scripts/reference_parity/build_env.sh /tmp/refenv
    git -C <uclaml/SPPO clone> archive 5e61c4e | tar -x -C /tmp/sppo-ref
    /tmp/refenv/bin/python scripts/reference_parity/make_fixtures.py --reference /tmp/sppo-ref \
        --out tests/fixtures/reference_parity

For each tokenizer (real Mistral-7B-Instruct-v0.2, Meta-Llama-3-8B-Instruct and gemma-2-9b-it tokenizers, built by
tokenizer_files.py) and each case of cases.py, records what the reference computes with its own code,
imported from the checkout (nothing of it is copied):
  - scripts/generate.py `apply_template`: the generation prompt string (rank.py's copy must agree), and the ids
    its vLLM engine received for it (`vllm_prompt_ids`);
  - sppo/run_sppo.py `load_and_process_datasets` (through alignment/data.py `apply_chat_template`) on a
    dataset laid out as scripts/compute_prob.py writes it, with the tokenizer of alignment/model_utils.py
    `get_tokenizer` (truncation side left, as run_sppo.py sets it);
  - `SPPOTrainer.tokenize_row` (run by the trainer's own __init__): prompt/chosen/rejected ids and labels;
  - `SPPOTrainer.concatenated_forward` / `get_batch_logps` on a tiny float64 Llama whose weights are a fixed
    integer formula (tiny_model.py, identical under both stacks), and `sppo_loss` for each loss branch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import cases  # noqa: E402
from tiny_model import LOGP_MAX_TOKENS, float64_logits, tiny_llama  # noqa: E402
from tokenizer_files import FAMILIES, build_tokenizer_dir  # noqa: E402

MAX_LENGTH, MAX_PROMPT_LENGTH = 1024, 512  # recipes/uclaml-sppo/config_full.yaml:31-32
BETAS = (0.001, 0.1)
LOSS_TYPES = ("sppo", "sppo_single", "sigmoid", "ipo")


def import_reference(root: Path):
    """The reference's modules. generate.py and rank.py import vLLM and llm-blender at the top; those are
    stubbed (apply_template uses neither)."""
    for name in ("vllm", "llm_blender"):
        stub = types.ModuleType(name)
        stub.LLM = stub.SamplingParams = stub.Blender = object
        sys.modules.setdefault(name, stub)
    sys.path[:0] = [str(root / "sppo"), str(root / "scripts")]
    import generate
    import rank
    import run_sppo
    import trainer
    from alignment import DataArguments, ModelArguments, SPPOConfig
    from alignment.model_utils import get_tokenizer

    return types.SimpleNamespace(generate=generate, rank=rank, run_sppo=run_sppo, trainer=trainer,
                                 DataArguments=DataArguments, ModelArguments=ModelArguments,
                                 SPPOConfig=SPPOConfig, get_tokenizer=get_tokenizer)


def vllm_prompt_ids(tokenizer, text: str) -> list[int]:
    """The ids of the reference's text prompt as vLLM gave them to its engine: generate.py hands `llm.generate` the
    prompt strings (scripts/generate.py:81, 98), and vLLM tokenizes a text prompt with the model's own tokenizer
    (AutoTokenizer of the model path) and its special tokens (vLLM 0.5, the reference's time:
    vllm/transformers_utils/tokenizer_group/tokenizer_group.py `encode`: `tokenizer.encode(prompt,
    add_special_tokens=True)`), so a template that writes a BOS gets a second one from the tokenizer."""
    return tokenizer.encode(text, add_special_tokens=True)


def targets(i: int) -> dict:
    """Deterministic per-case win probabilities (the columns prepare_score writes)."""
    return {"chosen_probs": 0.5 + 0.45 * math.sin(i + 1), "chosen_probs_win": 0.5 + 0.4 * math.cos(i),
            "chosen_probs_lose": 0.5 - 0.3 * math.sin(2 * i + 1)}


def write_dataset(directory: Path, rows) -> None:
    """train.parquet as compute_prob.py's prepare_score writes it: chosen/rejected are [user, assistant] turns."""
    import pandas as pd

    records = []
    for i, (_, prompt, chosen, rejected) in enumerate(rows):
        turn = lambda text: [{"content": prompt, "role": "user"}, {"content": text, "role": "assistant"}]  # noqa
        records.append({"chosen": turn(chosen), "rejected": turn(rejected), **targets(i)})
    directory.mkdir(parents=True)
    pd.DataFrame(records).to_parquet(directory / "train.parquet", index=False)


def reference_trainer(ref, tokenizer, dataset, workdir: Path, model):
    args = ref.SPPOConfig(output_dir=str(workdir / "out"), beta=BETAS[0], loss_type="sppo", max_length=MAX_LENGTH,
                          max_prompt_length=MAX_PROMPT_LENGTH, report_to=[], per_device_train_batch_size=8,
                          remove_unused_columns=False, use_cpu=True, seed=42)
    return ref.trainer.SPPOTrainer(model, model, args=args, beta=args.beta, train_dataset=dataset,
                                   tokenizer=tokenizer, max_length=args.max_length,
                                   max_prompt_length=args.max_prompt_length, loss_type=args.loss_type)


def shuffled_order(n: int) -> list[int]:
    """The order get_datasets leaves the rows in (concatenate + shuffle(seed=42), alignment/data.py:225)."""
    from datasets import Dataset

    return Dataset.from_dict({"i": list(range(n))}).shuffle(seed=42)["i"]


def pair_logps(ref, trainer, model, row) -> list[float]:
    """(chosen, rejected) summed log-probs of one tokenized row through the reference's collator and forward."""
    import torch

    batch = trainer.data_collator([row])
    with torch.no_grad():
        chosen, rejected, _, _ = trainer.concatenated_forward(float64_logits(model), batch)
    return [chosen.item(), rejected.item()]


def losses_for(ref, trainer, logps: dict, case_targets: list[dict]) -> dict:
    """Each loss branch of SPPOTrainer.sppo_loss on the recorded log-probs (policy = model A, ref = model B)."""
    import torch

    names = sorted(logps)
    t = lambda key, i: torch.tensor([logps[n][key][i] for n in names], dtype=torch.float64)  # noqa: E731
    probs = {k: torch.tensor([case_targets[n][k] for n in names], dtype=torch.float64)
             for k in ("chosen_probs", "chosen_probs_win", "chosen_probs_lose")}
    out = {}
    for beta in BETAS:
        for loss_type in LOSS_TYPES:
            trainer.beta, trainer.loss_type = beta, loss_type
            losses, chosen_rewards, rejected_rewards = trainer.sppo_loss(
                t("policy", 0), t("policy", 1), t("reference", 0), t("reference", 1),
                probs["chosen_probs"], probs["chosen_probs_win"], probs["chosen_probs_lose"])
            out[f"{loss_type}@beta={beta}"] = {"cases": names, "losses": losses.tolist(),
                                                "chosen_rewards": chosen_rewards.tolist(),
                                                "rejected_rewards": rejected_rewards.tolist()}
    return out


def run_family(ref, family: str, workdir: Path) -> dict:
    tok_dir = build_tokenizer_dir(family, workdir / f"tokenizer-{family}")
    model_args = ref.ModelArguments(model_name_or_path=str(tok_dir))
    data_args = ref.DataArguments(dataset_mixer={str(workdir / f"data-{family}"): 1.0},
                                  preprocessing_num_workers=None)
    data_args.truncation_side = "left"  # run_sppo.py main_inner
    tokenizer = ref.get_tokenizer(model_args, data_args)
    rows = cases()
    write_dataset(workdir / f"data-{family}", rows)
    processed = ref.run_sppo.load_and_process_datasets(data_args, tokenizer)["train"]
    from transformers import AutoTokenizer

    engine_tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))  # what vLLM loads from the model directory
    order = shuffled_order(len(rows))
    policy, reference = tiny_llama(len(tokenizer), variant=0), tiny_llama(len(tokenizer), variant=1)
    trainer = reference_trainer(ref, tokenizer, processed, workdir, policy)
    out_cases, logps, case_targets = [], {}, {}
    for pos, i in enumerate(order):
        name, prompt, chosen, rejected = rows[i]
        row, texts = trainer.train_dataset[pos], processed[pos]
        generation_prompt = ref.generate.apply_template(prompt, tokenizer)
        assert generation_prompt == ref.rank.apply_template(prompt, tokenizer), name
        out_cases.append({
            "name": name, "prompt": prompt, "chosen": chosen, "rejected": rejected,
            "generation_prompt": generation_prompt,
            "generation_prompt_ids": vllm_prompt_ids(engine_tokenizer, generation_prompt),
            "text_prompt": texts["prompt"], "text_chosen": texts["chosen"], "text_rejected": texts["rejected"],
            **{k: row[k] for k in ("prompt_input_ids", "chosen_input_ids", "chosen_labels",
                                   "rejected_input_ids", "rejected_labels")}})
        if max(len(row["chosen_input_ids"]), len(row["rejected_input_ids"])) <= LOGP_MAX_TOKENS[family]:
            logps[name] = {"policy": pair_logps(ref, trainer, policy, row),
                           "reference": pair_logps(ref, trainer, reference, row)}
            case_targets[name] = targets(i)
    out_cases.sort(key=lambda c: [r[0] for r in rows].index(c["name"]))
    return {"tokenizer": family, "tokenizer_config": f"sppo/data/templates/{FAMILIES[family][2]}",
            "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT_LENGTH,
            "pad_token_id": tokenizer.pad_token_id, "cases": out_cases,
            "logps": logps, "targets": case_targets, "losses": losses_for(ref, trainer, logps, case_targets)}


REFERENCE_FILES = ("scripts/generate.py", "scripts/rank.py", "sppo/run_sppo.py", "sppo/trainer.py",
                   "sppo/alignment/data.py", "sppo/alignment/model_utils.py", "sppo/alignment/configs.py")


def provenance(reference: Path) -> dict:
    import hashlib

    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    commit = os.environ.get("SPPO_REFERENCE_COMMIT", "5e61c4e")  # the checkout's commit (an archive has no .git)
    digests = {f: hashlib.sha256((reference / f).read_bytes()).hexdigest() for f in REFERENCE_FILES}
    return {"script": "scripts/reference_parity/make_fixtures.py (environment: build_env.sh)",
            "reference": "uclaml/SPPO", "reference_commit": commit, "reference_files_sha256": digests,
            "python": sys.version.split()[0],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "pip_freeze": freeze.splitlines()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, required=True, help="checkout of uclaml/SPPO at 5e61c4e")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--family", choices=sorted(FAMILIES), action="append")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    ref = import_reference(a.reference.resolve())
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "cache")
        for family in a.family or sorted(FAMILIES):
            data = {"provenance": provenance(a.reference), **run_family(ref, family, Path(tmp) / family)}
            target = a.out / f"{family}.json"
            tmp_file = target.with_suffix(".json.tmp")
            tmp_file.write_text(json.dumps(data, ensure_ascii=False, indent=None) + "\n")
            tmp_file.replace(target)
            print(f"{target}: {len(data['cases'])} cases, {len(data['logps'])} with log-probs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
