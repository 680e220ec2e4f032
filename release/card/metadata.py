"""The card's YAML metadata as huggingface_hub objects: a ``ModelCardData`` whose model-index holds every
figure of the iteration's tables as an ``EvalResult``, with the value the table prints."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCardData

from benchmarks.store import DEFAULT_VARIANT, variant_suffix
from benchmarks.tables import TABLES, Row, TableSpec, annotated

from ..run import Iteration
from .naming import ReleaseInfo, hub_id
from .results import Results, card_table
from .sources import locally_judged


def result_entries(spec: TableSpec, row: Row) -> list[EvalResult]:
    """The `EvalResult`s of one row of the card's table: one per column with a figure, its value as printed; a
    figure with an annotation says so in its name (``Win Rate (n = 3 of 805)``, a subset of the benchmark)."""
    out = []
    variant = row.result.variant
    for i, (col, cell) in enumerate(zip(spec.columns, row.cells)):
        if cell.missing:
            continue
        ds = spec.datasets[i] if len(spec.datasets) > 1 else spec.datasets[0]
        out.append(EvalResult(
            task_type="text-generation", task_name="Text Generation",
            dataset_type=ds.type, dataset_name=ds.name, dataset_config=ds.config,
            metric_type=col.metric_type,
            metric_name=annotated(col.metric_name + variant_suffix(variant), cell.annotation),
            metric_value=cell.value, metric_config=None if variant == DEFAULT_VARIANT else variant,
            source_name=spec.title.replace(" Evaluation Results", ""), source_url=spec.url))
    return out


def eval_results(release: ReleaseInfo, it: Iteration, results: Results) -> list[EvalResult]:
    """Every figure of one iteration, as it appears in the card's tables, as `EvalResult`s. A local judge's
    figures stay in the card's tables, never in the leaderboard metadata, and so do the tables of suites of your
    own (`TableSpec.model_index`)."""
    return [e for spec in TABLES if spec.model_index and (table := card_table(spec, release.family, [it], results))
            for row in table.rows if not locally_judged(row.result) for e in result_entries(spec, row)]


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
        eval_results=eval_results(release, it, results) or None,
    )
