"""How a card names where things came from, in Markdown: base model, prompt sets, ranker and judges. Only Hub ids
are linked; local paths, the embedded prompt set and local models are named plainly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.judge import LocalJudge
from benchmarks.store import SuiteResult
from sppo.checkpoint import local_judge_model
from sppo.scrub import public_url

from .markdown import md_code, md_text
from .naming import HUB_URL, hub_id


def source_md(name: Any, kind: str = "model") -> str:
    """A Markdown link to a Hub model or dataset (``kind="dataset"``); anything else named plainly."""
    hub = hub_id(name)
    if hub:
        return f"[{hub}]({HUB_URL}/{'datasets/' if kind == 'dataset' else ''}{hub})"
    return "the toolkit's embedded prompt set" if (kind == "dataset" and name == "embedded") else md_code(name)


def prompts_md(src: str | None, split_by: str | None, num_iterations: int) -> str:
    """Where the prompts came from (the manifest's ``prompt_source_dataset`` split by ``prompt_dataset``),
    linking only real Hub datasets."""
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
    """The ranker as the manifest records it: a PairRM model (Hub id or path), a local judge
    (``sppo.checkpoint.ranker_record``) or a plug-in ``python:module:Class[:model]``."""
    text = str(ranker)
    model = local_judge_model(text)
    return source_md(text) if model is None else f"a local chat-model judge ({source_md(model)})"


@dataclass(frozen=True)
class JudgeRecord:
    """A judge as the results store records it (``benchmarks.judge.Judge.info``)."""

    model: Any
    backend: str | None = None
    base_url: str | None = None

    @classmethod
    def of(cls, result: SuiteResult) -> "JudgeRecord | None":
        """The judge behind a result; None when it records none (figures transcribed from a published card)."""
        j = result.judge
        return cls(j.get("model"), j.get("backend"), j.get("base_url")) if j else None

    @property
    def local(self) -> bool:
        """An in-process model rather than the suite's judge endpoint (the offline default)."""
        return self.backend == LocalJudge.backend

    def markdown(self) -> str:
        """The judge named in a card; the userinfo of its URL, should a results store hold one, is never
        shown."""
        text = md_code(self.model)
        if self.base_url:
            text += f" at {md_text(public_url(str(self.base_url)))}"
        if self.local:
            text += " (a local model, in process)"
        return text


def locally_judged(result: SuiteResult) -> bool:
    judge = JudgeRecord.of(result)
    return judge is not None and judge.local


def judge_md(result: SuiteResult) -> str:
    """The judge of a result in Markdown; empty when it records none."""
    judge = JudgeRecord.of(result)
    return judge.markdown() if judge else ""


def evaluation_note(results: list[SuiteResult]) -> str:
    """Which judge (and, for AlpacaEval, which annotator config) produced these figures, as recorded in the
    results store; empty when the results record none (figures transcribed from a published card)."""
    judges = sorted({judge_md(r) for r in results if r.judge})
    annotators = sorted({md_code(r.settings["annotator"]) for r in results if r.settings.get("annotator")})
    parts = []
    if judges:
        parts.append(f"Judge{'s' if len(judges) > 1 else ''}: {', '.join(judges)}.")
    if annotators:
        parts.append(f"AlpacaEval annotator config{'s' if len(annotators) > 1 else ''}: {', '.join(annotators)}.")
    return " ".join(parts)
