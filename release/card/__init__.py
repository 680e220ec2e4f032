"""Render SPPO model cards from a run's manifests and the benchmark results store.

A card is a :class:`huggingface_hub.ModelCard`: YAML metadata built as a ``ModelCardData`` (license, base_model,
datasets, language, pipeline_tag, tags and a ``model-index`` holding every benchmark figure of the iteration as
``EvalResult``s) and a Markdown body rendered by a Jinja template (``release/templates/model_card.md.j2`` or the
user's own). The tables show every iteration of the run, best-of-16 and other variants included, with the
columns, rounding and units of the published SPPO cards.

One job a module: ``naming`` (family, model names, Hub ids, license), ``results`` (which results a card shows),
``sources`` (how models, prompts, ranker and judges are named in Markdown), ``tables`` (the result tables),
``metadata`` (``ModelCardData`` and its ``EvalResult``s), ``render`` (the template), ``markdown`` (Markdown
tables written and parsed) and ``figures`` (the figures of a card read back). This package's public names are
re-exported here.
"""

from .figures import card_figures
from .markdown import parse_tables, split_row, table_markdown
from .metadata import card_data, eval_results
from .naming import CARD_FILE, HUB_URL, ReleaseInfo, card_path, default_family, default_license, hub_id
from .render import load_template, render_all, render_card, template_context
from .results import Results, find_result, missing_metrics, results_from_store, subset_results
from .sources import judge_md, prompts_md, ranker_md, source_md
from .tables import CardTable, build_tables, other_results

__all__ = ["CARD_FILE", "HUB_URL", "CardTable", "ReleaseInfo", "Results", "build_tables", "card_data",
           "card_figures", "card_path", "default_family", "default_license", "eval_results", "find_result",
           "hub_id", "judge_md", "load_template", "missing_metrics", "other_results", "parse_tables", "prompts_md",
           "ranker_md", "render_all", "render_card", "results_from_store", "source_md", "split_row", "subset_results",
           "table_markdown", "template_context"]
