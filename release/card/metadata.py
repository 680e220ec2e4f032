"""The card's YAML metadata as huggingface_hub objects: a ``ModelCardData`` whose model-index holds every
figure of the iteration's tables as an ``EvalResult``, with the value the table prints."""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from benchmarks.card_layout import TABLES, Column, TableSpec, fmt_int, subset_note
from benchmarks.store import DEFAULT_VARIANT, SuiteResult

from ..run import Iteration
from .naming import ReleaseInfo, hub_id
from .results import Results, result_source, table_results, variant_suffix
from .sources import locally_judged


def metric_value(col: Column, cell: str) -> Any:
    """The model-index value: the number exactly as the table prints it (the CI stays a string)."""
    if not col.numeric:
        return cell
    value = float(cell)
    return int(value) if col.fmt is fmt_int else value


def result_entries(spec: TableSpec, r: SuiteResult) -> list[EvalResult]:
    """The `EvalResult`s of one table row: one per column with a figure; a figure from a subset of the benchmark
    says so in its name (``Win Rate (n = 3 of 805)``)."""
    out = []
    for i, col in enumerate(spec.columns):
        if col.missing(r.metrics):
            continue
        ds = spec.datasets[i] if len(spec.datasets) > 1 else spec.datasets[0]
        out.append(EvalResult(
            task_type="text-generation", task_name="Text Generation",
            dataset_type=ds.type, dataset_name=ds.name, dataset_config=ds.config,
            metric_type=col.metric_type,
            metric_name=col.metric_name + variant_suffix(r.variant) + subset_note(spec, r.settings),
            metric_value=metric_value(col, col.cell(r.metrics, result_source(spec, r))),
            metric_config=None if r.variant == DEFAULT_VARIANT else r.variant,
            source_name=spec.title.replace(" Evaluation Results", ""), source_url=spec.url))
    return out


def eval_results(it: Iteration, results: Results) -> list[EvalResult]:
    """Every figure of one iteration, as it appears in the card's tables, as `EvalResult`s. A local judge's
    figures stay in the card's tables, never in the leaderboard metadata."""
    return [e for spec in TABLES for _, _, r in table_results(spec, [it], results) if not locally_judged(r)
            for e in result_entries(spec, r)]


def card_data(release: ReleaseInfo, it: Iteration, results: Results) -> ModelCardData:
    """The card's YAML metadata."""
    m = it.manifest
    datasets = [d for d in (hub_id(m.prompt_source_dataset) or hub_id(m.prompt_dataset),
                            release.data_repo_id(it)) if d]
    return ModelCardData(
        license=release.license,
        base_model=hub_id(m.base_model),  # the metadata names Hub models only
        datasets=datasets or None,
        language=list(release.language),
        pipeline_tag=release.pipeline_tag,
        tags=list(release.tags),
        model_name=release.model_name(it),
        eval_results=eval_results(it, results) or None,
    )
