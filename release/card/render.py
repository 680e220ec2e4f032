"""Rendering: a Jinja template (``release/templates/model_card.md.j2`` or the user's own) filled with the
card's metadata block and everything else a template can use, parsed back as a ``ModelCard``. Every template is
rendered in Jinja's sandbox with a time and an output-size bound (``sppo.bounded.render_template``): a
``--template`` runs no Python, reads no file and cannot hang the release."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import ModelCard

from sppo.bounded import render_template
from sppo.errors import UserError

from ..run import HYPERPARAMETERS, Iteration
from .markdown import md_text
from .metadata import card_data
from .naming import HUB_URL, ReleaseInfo
from .results import Results
from .sources import prompts_md, ranker_md, source_md
from .tables import build_tables, other_results

PAPER_URL = "https://arxiv.org/abs/2405.00675"
TEMPLATE_NAME = "model_card.md.j2"
CITATION = """@misc{wu2024self,
title={Self-Play Preference Optimization for Language Model Alignment},
author={Wu, Yue and Sun, Zhiqing and Yuan, Huizhuo and Ji, Kaixuan and Yang, Yiming and Gu, Quanquan},
year={2024},
eprint={2405.00675},
archivePrefix={arXiv},
primaryClass={cs.LG}
}"""


def hyperparameter_lines(it: Iteration) -> list[tuple[str, str]]:
    """(name, value) as the card lists them, values as Markdown text; epochs read ``18.0 (stop at epoch=1.0)``."""
    hp = it.hyperparameters
    out = []
    for key in HYPERPARAMETERS:
        value = str(hp[key])
        if key == "num_train_epochs" and hp.get("stop_at_epoch") is not None:
            value = f"{value} (stop at epoch={hp['stop_at_epoch']})"
        out.append((key, md_text(value)))
    return out


def template_context(release: ReleaseInfo, iterations: list[Iteration], it: Iteration,
                     results: Results) -> dict[str, Any]:
    """Everything a card template can use (besides ``card_data``, the YAML block)."""
    m = it.manifest
    links = [{"name": release.model_name(x), "url": release.url(x)} for x in iterations] + list(release.links)
    return {
        "model_name": release.model_name(it),
        "repo_id": release.repo_id(it),
        "family": release.family,
        "iteration": it.number,
        "num_iterations": len(iterations),
        "base_model": md_text(m.base_model),  # names from a manifest: Markdown text, never HTML or a new line
        "prompt_dataset": md_text(m.prompt_dataset),
        "prompt_source_dataset": md_text(m.prompt_source_dataset),
        "ranker": md_text(m.ranker),
        "base_model_md": source_md(m.base_model),
        "prompts_md": prompts_md(m.prompt_source_dataset, m.prompt_dataset, len(iterations)),
        "ranker_md": ranker_md(m.ranker),
        "data_repo_md": source_md(release.data_repo_id(it), "dataset") if release.data_repo_id(it) else "",
        "other_results": other_results(results, iterations),
        "k": m.k,
        "hub_url": HUB_URL,
        "paper_url": PAPER_URL,
        "model_type": release.model_type,
        "license_name": release.license_name,
        "note": release.notes.get(it.number, ""),
        "links": links,
        "tables": build_tables(release, iterations, results),
        "hyperparameters": hyperparameter_lines(it),
        "citation": CITATION,
    }


def load_template(template: str | os.PathLike | None = None) -> str:
    """The user's template file, or the one shipped in ``release/templates/``."""
    if template is None:
        return (resources.files("release.templates") / TEMPLATE_NAME).read_text(encoding="utf-8")
    path = Path(template)
    if not path.is_file():
        raise UserError(f"{path}: template not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: template is not a UTF-8 text file (byte {e.start})") from None


def render_card(release: ReleaseInfo, iterations: list[Iteration], it: Iteration, results: Results,
                template: str | os.PathLike | None = None) -> ModelCard:
    """The model card of iteration `it` (tables cover all `iterations`)."""
    data = card_data(release, it, results)
    name = str(template) if template else TEMPLATE_NAME
    # a --template is code someone else may have written: Jinja's sandbox, a time and an output-size bound
    text = render_template(load_template(template),
                           {"card_data": data.to_yaml(), **template_context(release, iterations, it, results)},
                           name, undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                           lstrip_blocks=True)
    card = ModelCard(text)
    if card.data.to_dict() != data.to_dict():
        raise UserError(f"{name}: the template must start with the metadata block '---\\n{{{{ card_data }}}}\\n---'")
    return card


def render_all(release: ReleaseInfo, iterations: list[Iteration], results: Results,
               template: str | os.PathLike | None = None) -> dict[int, ModelCard]:
    """Cards of every iteration, keyed by iteration number."""
    return {it.number: render_card(release, iterations, it, results, template) for it in iterations}
