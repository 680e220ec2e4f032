"""Render SPPO model cards from a run's manifests and the benchmark results store.

A card is a :class:`huggingface_hub.ModelCard`: YAML metadata built as a ``ModelCardData`` (license, base_model,
datasets, language, pipeline_tag, tags and a ``model-index`` holding every benchmark figure of the iteration as
``EvalResult``s) and a Markdown body rendered by a Jinja template (``release/templates/model_card.md.j2`` or the
user's own). The tables show every iteration of the run, best-of-16 and other variants included, with the
columns, rounding and units of the published SPPO cards.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from benchmarks.card_layout import TABLES, Column, TableSpec, card_row_label, family_name, fmt_int, fmt_short
from benchmarks.store import DEFAULT_VARIANT, ResultsStore, SuiteResult
from sppo.errors import UserError
from sppo.scrub import public_url

from .run import HYPERPARAMETERS, Iteration

log = logging.getLogger(__name__)

PAPER_URL = "https://arxiv.org/abs/2405.00675"
HUB_URL = "https://huggingface.co"
TEMPLATE_NAME = "model_card.md.j2"
CITATION = """@misc{wu2024self,
title={Self-Play Preference Optimization for Language Model Alignment},
author={Wu, Yue and Sun, Zhiqing and Yuan, Huizhuo and Ji, Kaixuan and Yang, Yiming and Gu, Quanquan},
year={2024},
eprint={2405.00675},
archivePrefix={arXiv},
primaryClass={cs.LG}
}"""
LICENSE_NAMES = {"apache-2.0": "Apache-2.0", "mit": "MIT", "cc-by-4.0": "CC-BY-4.0", "cc-by-nc-4.0": "CC-BY-NC-4.0",
                 "gemma": "Gemma"}
# Gemma's terms carry over to models trained from it: the published Gemma-2-9B-It-SPPO cards say `license: gemma`
BASE_LICENSES = {"google/gemma-2-9b-it": "gemma", "google/gemma-2-27b-it": "gemma"}


DEFAULT_LM_EVAL_VERSION = "0.4.1"


# ------------------------------------------------------------------------------------------- release and data

@dataclass
class ReleaseInfo:
    """What names and labels a release: ``family`` (``Mistral7B-PairRM-SPPO``), the Hub ``org`` (None for a
    local dry run), metadata defaults, extra links and per-iteration notes (Markdown)."""

    family: str
    org: str | None = None
    license: str = "apache-2.0"
    language: list[str] = field(default_factory=lambda: ["en"])
    pipeline_tag: str = "text-generation"
    tags: list[str] = field(default_factory=lambda: ["sppo", "self-play-preference-optimization", "alignment"])
    model_type: str = "A GPT-like model fine-tuned on synthetic datasets."
    links: list[dict[str, str]] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)
    datasets: bool = False  # each iteration's scored synthetic dataset is published as <repo id>-data

    def data_repo_id(self, it: Iteration) -> str | None:
        """``ORG/<family>-IterN-data``: the Hub dataset of an iteration's scored synthetic data, when published."""
        return f"{self.repo_id(it)}-data" if self.datasets and self.org else None

    def model_name(self, it: Iteration) -> str:
        """``<family>-IterN``: the card's title and the repository name."""
        return f"{self.family}-{it.name}"

    def repo_id(self, it: Iteration) -> str | None:
        return f"{self.org}/{self.model_name(it)}" if self.org else None

    def url(self, it: Iteration) -> str:
        """Hub page of an iteration, or the relative path of its local card when no org is set."""
        return f"{HUB_URL}/{self.repo_id(it)}" if self.org else f"../{self.model_name(it)}/README.md"


def default_license(iterations: list[Iteration]) -> str:
    """The license of the run's cards: its base model's where that binds derivatives (Gemma), else Apache-2.0."""
    return BASE_LICENSES.get(str(iterations[0].manifest["base_model"]), "apache-2.0")


def default_family(iterations: list[Iteration]) -> str:
    """The run's family name (``benchmarks.card_layout.family_name`` of its base model and ranker)."""
    m = iterations[0].manifest
    return family_name(str(m["base_model"]), str(m["ranker"]))


Results = dict[int, list[SuiteResult]]  # iteration number -> its results (all suites and variants)


def results_from_store(store: ResultsStore, iterations: list[Iteration], release: ReleaseInfo) -> Results:
    """Each iteration's results, stored under its checkpoint name (``Iter2``) or its full name."""
    out: Results = {}
    for it in iterations:
        for model in (it.name, release.model_name(it)):
            found = store.results(model) if (store.root / model).is_dir() else []
            if found:
                out[it.number] = found
                break
        else:
            out[it.number] = []
    return out


def find_result(results: Results, number: int, suite: str, variant: str = DEFAULT_VARIANT) -> SuiteResult | None:
    for r in results.get(number, []):
        if r.suite == suite and r.variant == variant:
            return r
    return None


def in_table(spec: "TableSpec", r: SuiteResult) -> bool:
    """Whether a result's figures belong in this table: it records at least one of the table's own (not
    aggregate) metrics, possibly as null (then printed n/a and reported by `missing_metrics`). A result measured
    on other tasks, like the toolkit's small local multiple-choice task whose ``average`` is not the Open LLM
    Leaderboard average, gets no row and no model-index entry."""
    return r.suite == spec.suite and any(not c.aggregate and all(k in r.metrics for k in c.keys)
                                         for c in spec.columns)


def variants(results: Results, spec: "TableSpec") -> list[str]:
    """Variants of a suite that have figures for this table: the default first."""
    found = {r.variant for rs in results.values() for r in rs if in_table(spec, r)}
    return sorted(found, key=lambda v: (v != DEFAULT_VARIANT, v))


# ------------------------------------------------------------------------------------ sources, judges, notes

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".tsv", ".txt", ".yaml", ".yml", ".arrow", ".gguf")


def hub_id(name: Any) -> str | None:
    """`name` when it is a Hugging Face Hub id (``owner/name``), else None: local paths (absolute, relative,
    with a file suffix), ``embedded`` and None are not."""
    if not isinstance(name, str) or not _HUB_ID.match(name) or ".." in name:
        return None
    return None if name.lower().endswith(_FILE_SUFFIXES) else name


def source_md(name: Any, kind: str = "model") -> str:
    """A Markdown link to a Hub model or dataset (``kind="dataset"``); anything else named plainly."""
    hub = hub_id(name)
    if hub:
        return f"[{hub}]({HUB_URL}/{'datasets/' if kind == 'dataset' else ''}{hub})"
    return "the toolkit's embedded prompt set" if (kind == "dataset" and name == "embedded") else f"`{name}`"


def prompts_md(m: dict[str, Any], num_iterations: int) -> str:
    """Where the prompts came from, linking only real Hub datasets."""
    src, split_by = m["prompt_source_dataset"], m["prompt_dataset"]
    if hub_id(src) and hub_id(split_by):
        return (f"We utilized the prompt sets from the {source_md(src, 'dataset')} dataset, split into "
                f"{num_iterations} parts for {num_iterations} iterations by {source_md(split_by, 'dataset')}.")
    if hub_id(split_by):
        return f"We utilized the prompt sets of the {source_md(split_by, 'dataset')} dataset, one split per iteration."
    origin = f", which come from the {source_md(src, 'dataset')} dataset" if hub_id(src) else ""
    where = source_md(split_by, "dataset")
    where = where if where.startswith("the ") else f"the local prompt file {where}"
    return f"We utilized the prompts of {where}{origin}, one split per iteration (not a Hub dataset)."


def ranker_md(ranker: Any) -> str:
    """The ranker as the manifest records it: a PairRM model (Hub id or path), ``local-judge:MODEL`` or a
    plug-in ``python:module:Class[:model]``."""
    text = str(ranker)
    if text.startswith("local-judge:"):
        return f"a local chat-model judge ({source_md(text.split(':', 1)[1])})"
    return source_md(text)


def locally_judged(result) -> bool:
    """Judged by an in-process model rather than the suite's judge endpoint (the offline default)."""
    return bool(result.judge) and result.judge.get("backend") == "local"


def judge_md(judge: dict[str, Any]) -> str:
    """A judge as the results store records it (``benchmarks.judge.Judge.info``); a URL's userinfo (from a store
    written before URLs were recorded without it) is never shown."""
    text = f"`{judge.get('model')}`"
    if judge.get("base_url"):
        text += f" at {public_url(str(judge['base_url']))}"
    if judge.get("backend") == "local":
        text += " (a local model, in process)"
    return text


def evaluation_note(results: list[SuiteResult]) -> str:
    """Which judge (and, for AlpacaEval, which annotator config) produced these figures, as recorded in the
    results store; empty when the results record none (figures transcribed from a published card)."""
    judges = sorted({judge_md(r.judge) for r in results if r.judge})
    annotators = sorted({f"`{r.settings['annotator']}`" for r in results if r.settings.get("annotator")})
    parts = []
    if judges:
        parts.append(f"Judge{'s' if len(judges) > 1 else ''}: {', '.join(judges)}.")
    if annotators:
        parts.append(f"AlpacaEval annotator config{'s' if len(annotators) > 1 else ''}: {', '.join(annotators)}.")
    return " ".join(parts)


def other_results(results: Results, iterations: list[Iteration]) -> list[str]:
    """Results no table shows (e.g. the toolkit's local multiple-choice task), as plain lines: they are not
    leaderboard figures and go to no model-index."""
    out = []
    for it in iterations:
        for r in results.get(it.number, []):
            if any(in_table(spec, r) for spec in TABLES):
                continue
            figures = ", ".join(f"{k} {fmt_short(v)}" for k, v in r.metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool))
            notes = " ".join(str(n) for n in r.metrics.get("notes") or [])
            variant = "" if r.variant == DEFAULT_VARIANT else f" ({r.variant})"
            judge = f"; judge {judge_md(r.judge)}" if r.judge else ""
            out.append(f"{it.name}, {r.suite}{variant}: {figures or 'no figures'}{judge}" + (f". {notes}" if notes else ""))
    return out


# ---------------------------------------------------------------------------------------------------- tables

def row_label(spec: TableSpec, release: ReleaseInfo, it: Iteration, variant: str) -> str:
    return card_row_label(spec, release.family, it.number, variant)


def table_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns centred."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def build_table(spec: TableSpec, release: ReleaseInfo, iterations: list[Iteration],
                results: Results) -> dict[str, Any] | None:
    """One table's header, rows and Markdown, or None when no iteration has results for the suite."""
    rows = []
    for variant in variants(results, spec):
        for it in iterations:
            r = find_result(results, it.number, spec.suite, variant)
            if r is not None and in_table(spec, r):
                source = f"results of {r.model} ({spec.suite}, {variant})"
                rows.append([row_label(spec, release, it, variant)] + [c.cell(r.metrics, source)
                                                                       for c in spec.columns])
    if not rows:
        return None
    header = [spec.first_header] + [c.header for c in spec.columns]
    intro = spec.intro.format(version=_lm_eval_version(results)) if spec.intro else ""
    shown = [r for rs in results.values() for r in rs if in_table(spec, r)]
    return {"suite": spec.suite, "title": spec.title, "url": spec.url, "intro": intro, "header": header,
            "rows": rows, "markdown": table_markdown(header, rows), "evaluation": evaluation_note(shown)}


def _lm_eval_version(results: Results) -> str:
    found = {r.versions.get("lm-eval") for rs in results.values() for r in rs if r.suite == "lm_eval"}
    found.discard(None)
    return ", ".join(sorted(found)) if found else DEFAULT_LM_EVAL_VERSION


def missing_metrics(results: Results) -> list[str]:
    """Figures a card would print as ``n/a``: ``"Iter3: arena_hard metric 'avg_tokens' missing"``."""
    out = []
    for spec in TABLES:
        shown = variants(results, spec)
        for rs in results.values():
            for r in rs:
                if r.suite == spec.suite and r.variant in shown:
                    variant = "" if r.variant == DEFAULT_VARIANT else f" ({r.variant})"
                    out += [f"{r.model}: {spec.suite}{variant} metric {k!r} missing"
                            for c in spec.columns for k in c.missing(r.metrics)]
    return out


def build_tables(release: ReleaseInfo, iterations: list[Iteration], results: Results) -> list[dict[str, Any]]:
    return [t for spec in TABLES if (t := build_table(spec, release, iterations, results)) is not None]


# ------------------------------------------------------------------------------------------------- metadata

def _metric_value(col: Column, cell: str) -> Any:
    """The model-index value: the number exactly as the table prints it (the CI stays a string)."""
    if not col.numeric:
        return cell
    value = float(cell)
    return int(value) if col.fmt is fmt_int else value


def eval_results(release: ReleaseInfo, it: Iteration, results: Results) -> list[EvalResult]:
    """Every figure of one iteration, as it appears in the card's tables, as `EvalResult`s."""
    out = []
    for spec in TABLES:
        for variant in variants(results, spec):
            r = find_result(results, it.number, spec.suite, variant)
            if r is None or not in_table(spec, r) or locally_judged(r):
                continue  # a local judge's figures stay in the card's tables, never in the leaderboard metadata
            source = f"results of {r.model} ({spec.suite}, {variant})"
            for i, col in enumerate(spec.columns):
                if col.missing(r.metrics):
                    continue
                ds = spec.datasets[i] if len(spec.datasets) > 1 else spec.datasets[0]
                suffix = "" if variant == DEFAULT_VARIANT else f" ({variant})"
                out.append(EvalResult(
                    task_type="text-generation", task_name="Text Generation",
                    dataset_type=ds.type, dataset_name=ds.name, dataset_config=ds.config,
                    metric_type=col.metric_type, metric_name=col.metric_name + suffix,
                    metric_value=_metric_value(col, col.cell(r.metrics, source)),
                    metric_config=None if variant == DEFAULT_VARIANT else variant,
                    source_name=spec.title.replace(" Evaluation Results", ""), source_url=spec.url))
    return out


def card_data(release: ReleaseInfo, it: Iteration, results: Results) -> ModelCardData:
    """The card's YAML metadata."""
    m = it.manifest
    datasets = [d for d in (hub_id(m["prompt_source_dataset"]) or hub_id(m["prompt_dataset"]),
                            release.data_repo_id(it)) if d]
    return ModelCardData(
        license=release.license,
        base_model=hub_id(m["base_model"]),  # the metadata names Hub models only
        datasets=datasets or None,
        language=list(release.language),
        pipeline_tag=release.pipeline_tag,
        tags=list(release.tags),
        model_name=release.model_name(it),
        eval_results=eval_results(release, it, results) or None,
    )


# ------------------------------------------------------------------------------------------------- rendering

def hyperparameter_lines(it: Iteration) -> list[tuple[str, str]]:
    """(name, value) as the card lists them; epochs read ``18.0 (stop at epoch=1.0)``."""
    hp = it.hyperparameters
    out = []
    for key in HYPERPARAMETERS:
        value = str(hp[key])
        if key == "num_train_epochs" and hp.get("stop_at_epoch") is not None:
            value = f"{value} (stop at epoch={hp['stop_at_epoch']})"
        out.append((key, value))
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
        "base_model": m["base_model"],
        "prompt_dataset": m["prompt_dataset"],
        "prompt_source_dataset": m["prompt_source_dataset"],
        "ranker": m["ranker"],
        "base_model_md": source_md(m["base_model"]),
        "prompts_md": prompts_md(m, len(iterations)),
        "ranker_md": ranker_md(m["ranker"]),
        "data_repo_md": source_md(release.data_repo_id(it), "dataset") if release.data_repo_id(it) else "",
        "other_results": other_results(results, iterations),
        "k": m["k"],
        "hub_url": HUB_URL,
        "paper_url": PAPER_URL,
        "model_type": release.model_type,
        "license_name": LICENSE_NAMES.get(release.license, release.license),
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
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    name = str(template) if template else TEMPLATE_NAME
    try:
        text = env.from_string(load_template(template)).render(
            card_data=data.to_yaml(), **template_context(release, iterations, it, results))
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)
        raise UserError(f"{name}{f':{lineno}' if lineno else ''}: template error ({e.message})") from None
    card = ModelCard(text)
    if card.data.to_dict() != data.to_dict():
        raise UserError(f"{name}: the template must start with the metadata block '---\\n{{{{ card_data }}}}\\n---'")
    return card


def render_all(release: ReleaseInfo, iterations: list[Iteration], results: Results,
               template: str | os.PathLike | None = None) -> dict[int, ModelCard]:
    """Cards of every iteration, keyed by iteration number."""
    return {it.number: render_card(release, iterations, it, results, template) for it in iterations}


# ------------------------------------------------------------------------------------------- reading a card

_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_HEADING = re.compile(r"^#+\s*(.*?)\s*$")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def split_row(line: str) -> list[str]:
    """Cells of one Markdown table row; leading/trailing pipes optional."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def parse_tables(markdown: str) -> list[dict[str, Any]]:
    """Tables of a Markdown document: ``{"title": <last heading, links stripped>, "header": [...],
    "rows": [[...], ...]}``. Works on hand-written cards too (rows without leading pipes)."""
    lines = markdown.splitlines()
    tables, title, i = [], "", 0
    while i < len(lines):
        heading = _HEADING.match(lines[i])
        if heading:
            title = _LINK.sub(r"\1", heading.group(1)).strip()
        if ("|" in lines[i] and i + 1 < len(lines) and "|" in lines[i + 1]
                and all(_SEPARATOR_CELL.match(c) for c in split_row(lines[i + 1]) if c)):
            header, rows, i = split_row(lines[i]), [], i + 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(split_row(lines[i]))
                i += 1
            tables.append({"title": title, "header": header, "rows": rows})
            continue
        i += 1
    return tables


def card_figures(text: str) -> dict[str, Any]:
    """The numbers a card publishes: every table cell keyed by (table, row, column), and the model-index.
    Two cards with equal figures show the same results, whatever their prose."""
    out: dict[str, Any] = {}
    try:
        card = ModelCard(text, ignore_metadata_errors=True)
        body, eval_results = card.text, card.data.get("eval_results") or []
    except Exception:  # unreadable metadata (hand-edited card): its tables still count
        body, eval_results = text, []
    for t in parse_tables(body):
        for row in t["rows"]:
            for col, cell in zip(t["header"][1:], row[1:]):
                out[f"{t['title']} | {row[0]} | {col}"] = cell
    for r in eval_results:
        key = f"model-index | {r.dataset_type} {r.dataset_config or ''} | {r.metric_type} {r.metric_config or ''}"
        out[key] = r.metric_value
    return out
