"""Each iteration's scored synthetic dataset, published beside its model as ``ORG/NAME-IterN-data``.

The rows are those of ``<run>/iterN/dataset/sppo.jsonl`` as sppo-train wrote them (prompt, chosen, rejected, all K
responses, scores, the K x K win probabilities, P_win/P_lose...). The splits follow the reference
(uclaml/SPPO ``scripts/compute_prob.py`` at 5e61c4e): ``train`` holds every row (:114) and ``test`` is a random
sample of 500 of those same rows (:117-119, "cannot use for test/evaluation purpose"), both pushed to one dataset
repository (:134-135). Here the sample is seeded with the run's seed (the reference's ``sample(n=500)`` is not
seeded) and takes every row when there are fewer than 500 (where the reference would fail). The repositories are
created with the Hub's default visibility, like the model repositories (the reference script passes private=True).

The two splits are written as Parquet with ``datasets`` and committed with a dataset card in ONE commit through
``huggingface_hub``, in the layout ``Dataset.push_to_hub`` uses (``data/<split>-00000-of-00001.parquet`` and a
``configs`` entry in the card's metadata), so ``load_dataset("ORG/NAME-IterN-data")`` reads both splits.
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCardData

from sppo.errors import UserError
from sppo.files import read_jsonl, under
from sppo.run_dir import MANIFEST, stage_output

from .card import HUB_URL, ReleaseInfo, ranker_md, source_md
from .run import Iteration

TEST_ROWS = 500  # scripts/compute_prob.py:118
REQUIRED_COLUMNS = ("prompt", "chosen", "rejected", "responses", "scores", "probabilities")
SPLIT_FILE = "data/{split}-00000-of-00001.parquet"


@dataclass
class DataUpload:
    """One iteration's dataset: its repository, card text and the Parquet bytes of each split."""

    iteration: Iteration
    repo_id: str | None
    card: str
    files: dict[str, bytes]  # path in the repository -> content
    rows: int
    test_rows: int


def dataset_file(run_dir: Path, it: Iteration) -> Path:
    """``<run>/iterN/dataset/sppo.jsonl``; the stage must be finished (its manifest.json written)."""
    path = under(run_dir, *stage_output(it.number, "dataset").parts, what="dataset")
    if not (path.parent / MANIFEST).is_file() or not path.is_file():
        raise UserError(f"{path}: no finished dataset of {it.name} in this run (needed by --datasets)")
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        missing = [c for c in REQUIRED_COLUMNS if not isinstance(row, dict) or c not in row]
        if missing:
            raise UserError(f"{path}:{i}: missing field {missing[0]!r}")
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def sample_test_split(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The reference's test split: TEST_ROWS rows drawn from the training rows (all of them when fewer)."""
    k = min(TEST_ROWS, len(rows))
    return [rows[i] for i in random.Random(seed).sample(range(len(rows)), k)]


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The rows as one Parquet file, written by ``datasets`` (its progress bar kept off the console)."""
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        buf = io.BytesIO()
        datasets.Dataset.from_list(rows).to_parquet(buf)
        return buf.getvalue()
    finally:
        if not was_disabled:
            enable_progress_bars()


def dataset_card(release: ReleaseInfo, it: Iteration, rows: int, test_rows: int, digest: str) -> str:
    """The dataset card: metadata (splits as ``configs``), what the rows are and how the splits were made."""
    m = it.manifest
    data = DatasetCardData(license=release.license, language=list(release.language), pretty_name=
                           f"{release.model_name(it)} scored synthetic data",
                           tags=["sppo", "synthetic", "preference"],
                           configs=[{"config_name": "default", "data_files": [
                               {"split": s, "path": SPLIT_FILE.format(split=s)} for s in ("train", "test")]}])
    model = release.repo_id(it)
    model_md = f"[{model}]({HUB_URL}/{model})" if model else f"`{release.model_name(it)}`"
    split = f"split `{m.prompt_split}`" if m.prompt_split else "the iteration's prompt split"
    text = f"""---
{data.to_yaml()}
---
# {release.model_name(it)} scored synthetic data

The data {model_md} was trained on in SPPO iteration {it.number}: for each prompt of {split},
K={m.k} responses sampled from the iteration's starting policy
({source_md(m.init_model or m.base_model)}), ranked pairwise by {ranker_md(m.ranker)}.

Columns: `prompt`, `chosen` and `rejected` (the responses with the highest and lowest score), `responses` (all K),
`scores` (s_i = (1/K) sum_j (C_ij - C_ji)), `probabilities` (the K x K matrix P(i beats j)), `p_win`/`p_lose`
(the training targets of chosen and rejected) and the indices of chosen and rejected.

Splits: `train` holds all {rows} rows; `test` is a random sample of {test_rows} of those same rows, as the
reference SPPO scripts publish it: it is not held out and is no evaluation set.

Rows fingerprint (sha256 of the train split): `{digest}`.
"""
    return text


def plan_data(release: ReleaseInfo, run_dir: Path, targets: list[Iteration]) -> list[DataUpload]:
    """Read and encode every target's dataset (all before anything is pushed)."""
    paths = {it.number: dataset_file(run_dir, it) for it in targets}  # a missing one fails before any work
    out = []
    for it in targets:
        rows = read_rows(paths[it.number])
        test = sample_test_split(rows, int(it.hyperparameters.get("seed", 0)))
        files = {SPLIT_FILE.format(split="train"): parquet_bytes(rows),
                 SPLIT_FILE.format(split="test"): parquet_bytes(test)}
        digest = hashlib.sha256(files[SPLIT_FILE.format(split="train")]).hexdigest()[:16]
        out.append(DataUpload(it, release.data_repo_id(it), dataset_card(release, it, len(rows), len(test), digest),
                              files, len(rows), len(test)))
    return out
