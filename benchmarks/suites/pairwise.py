"""A user's own benchmark in one file: ``sppo-bench --suite FILE.yaml MODEL...`` runs the pairwise judged benchmark
the file defines - its prompts, a baseline's answers, a judge prompt and its verdict labels - on the judging engine
every suite shares (`benchmarks.judging`): answers, judging, caching, resume, several ranks, ``sppo-bench table``
and the card come with it. An example: ``examples/pairwise-suite/suite.yaml``.

Each prompt is judged twice, the model's answer as assistant A and then as B (the baseline's the other one), and
scored by `benchmarks.scoring.pairwise` (the share of games won, a tie counting half). Files, in the results
store (`benchmarks.store.StoreLayout`): ``<suite>[.<variant>]/model_answer/<model>.jsonl`` and
``<suite>[.<variant>]/model_judgment/<judge>/<model>.jsonl``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppo.errors import UserError
from sppo.files import read_jsonl, write_jsonl
from sppo.settings import SettingError, check, doc, from_mapping, read_yaml_mapping, section

from benchmarks.answers import ModelAnswerer, answer_id, reusable
from benchmarks.data import by_id
from benchmarks.judge import Judge, JudgeRequest
from benchmarks.judging import LOGPROB_VERDICT, Conversation, Item, JsonlFile, JudgedTask, Verdicts, judge_task
from benchmarks.scoring import pairwise
from benchmarks.store import SUITES, digest
from benchmarks.tables import PAIRWISE, pairwise_table
from benchmarks.suites.common import (ModelTarget, RunContext, Suite, SuiteOutcome, figure, judge_label,
                                      prompt_version as _digest_prompt, require_judge, reused_counts, suite_result)

@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = doc("sampling temperature of the answers (0: greedy)", 0.0, ge=0)
    top_p: float = doc("nucleus sampling threshold", 1.0, gt=0, le=1)
    max_new_tokens: int = doc("longest answer, in tokens (--max-new-tokens overrides it)", 512, ge=1)


@dataclass(frozen=True)
class JudgeSettings:
    model: str | None = doc("the judge model of an endpoint judge (--judge-model overrides it)", None)
    max_tokens: int = doc("longest judgment, in tokens", 1024, ge=1)
    temperature: float = doc("the judge's sampling temperature", 0.0, ge=0)


@dataclass(frozen=True)
class PairwiseSuite:
    """The file of a user's own pairwise benchmark (YAML; relative paths are relative to the file)."""

    name: str = doc("the suite's name in the results store and on the command line's summary (letters, digits, "
                    "'_', '-')", "")
    title: str = doc("the table's title (sppo-bench table, the card)", "")
    url: str = doc("where the benchmark is described (the card's link); empty: none", "")
    prompts: Path = doc("JSONL, one prompt a line: {\"id\": ..., \"prompt\": ...}", Path("prompts.jsonl"))
    baseline: Path = doc("JSONL, the baseline's answer to each prompt: {\"id\": ..., \"answer\": ...}",
                         Path("baseline.jsonl"))
    baseline_model: str = doc("the baseline's name in tables and notes", "baseline")
    judge_prompt: Path = doc("the judge's user message, a text file in which {question}, {answer_a} and {answer_b} "
                             "are replaced by the prompt and the two answers", Path("judge.txt"))
    system_prompt: str = doc("the judge's system message; empty: none", "")
    verdicts: dict = doc("each label the judge writes as [[LABEL]] and whom it favours: a (assistant A), b "
                         "(assistant B) or tie", {"A": "a", "B": "b", "C": "tie"})
    generation: GenerationSettings = section(GenerationSettings, "how the answers are generated")
    judge: JudgeSettings = section(JudgeSettings, "the judge's settings")

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.verdicts)


@dataclass(frozen=True)
class LoadedSuite:
    """A suite file read and checked: its settings, prompts, baseline answers, judge template and their digest."""

    spec: PairwiseSuite
    source: Path
    prompts: list[dict]
    baseline: dict[str, str]
    template: str
    files_digest: str


def load(path: Path) -> LoadedSuite:
    """Read a suite file and the files it names; every problem is one line naming the file and the field."""
    spec = from_mapping(PairwiseSuite, read_yaml_mapping(path), str(path))
    base = path.parent
    spec = PairwiseSuite(**{**spec.__dict__, **{k: base / getattr(spec, k) for k in ("prompts", "baseline",
                                                                                     "judge_prompt")}})
    try:
        check(spec)
        _rules(spec)
    except SettingError as e:
        raise e.located(str(path)) from None
    prompts = _records(spec.prompts, ("id", "prompt"))
    baseline = {str(r["id"]): r["answer"] for r in _records(spec.baseline, ("id", "answer"))}
    missing = [str(p["id"]) for p in prompts if str(p["id"]) not in baseline]
    if missing:
        raise UserError(f"{spec.baseline}: no baseline answer for prompt {missing[0]!r}")
    template = _text(spec.judge_prompt)
    h = hashlib.sha256()
    for f in (spec.prompts, spec.baseline, spec.judge_prompt):
        h.update(f"{f.name}\0".encode() + f.read_bytes() + b"\0")
    return LoadedSuite(spec, path, prompts, baseline, template, h.hexdigest())


def _rules(spec: PairwiseSuite) -> None:
    if not spec.name or spec.name != spec.name.strip() or spec.name in SUITES:
        raise SettingError("name", f"must be a name of your own, not empty and none of {', '.join(SUITES)}")
    bad = next((v for v in spec.verdicts.values() if v not in pairwise.MEANINGS), None)
    if not spec.verdicts or bad is not None or not all(isinstance(k, str) and k for k in spec.verdicts):
        raise SettingError("verdicts", f"each label must favour one of {', '.join(pairwise.MEANINGS)}, got {bad!r}")


def _records(path: Path, fields: tuple[str, ...]) -> list[dict]:
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            raise UserError(f"{path}: record {i}: missing field {missing[0]!r}")
    by_id([{**r, "id": str(r["id"])} for r in rows], "id", path)  # ids must not repeat
    if not rows:
        raise UserError(f"{path}: no records")
    return rows


def _text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start})") from None


# --- answers ------------------------------------------------------------------------------------------------------

def answers(suite: LoadedSuite, answerer: ModelAnswerer, wanted: list[dict], path: Path, model: str,
            max_new_override: int | None) -> tuple[dict[str, dict], dict[str, Any]]:
    """The model's answer to each wanted prompt, reused under the same key, the others generated and written."""
    g = suite.spec.generation
    max_new = max_new_override or g.max_new_tokens
    key = digest({**answerer.identity(), "temperature": g.temperature, "top_p": g.top_p, "max_new_tokens": max_new,
                  "suite": suite.spec.name})
    existing = reusable({str(r.get("id")): r for r in read_jsonl(path)} if path.exists() else {}, key)
    todo = [p for p in wanted if str(p["id"]) not in existing]
    outs = answerer.answer([[{"role": "user", "content": p["prompt"]}] for p in todo], g.temperature, max_new, g.top_p)
    for p, out in zip(todo, outs):
        existing[str(p["id"])] = {"id": str(p["id"]), "answer_id": answer_id(), "model": model, "answer": out,
                                  "tstamp": time.time(), "sppo_key": key}
    if todo:
        write_jsonl(path, [existing[str(p["id"])] for p in suite.prompts if str(p["id"]) in existing])
    info = {"temperature": g.temperature, "top_p": g.top_p, "max_new_tokens": max_new, "best_of": answerer.best_of,
            "n_generated": len(todo), "n_reused": len(wanted) - len(todo), "key": key}
    return {str(p["id"]): existing[str(p["id"])] for p in wanted}, info


# --- judging ------------------------------------------------------------------------------------------------------

def judged_task(suite: LoadedSuite, wanted: list[dict], answered: dict[str, dict], model: str, judge: Judge,
                path: Path) -> JudgedTask:
    """Two games per prompt, the model's answer as assistant A and then as B; the label read from ``[[LABEL]]``
    (a local judge's most likely label after its text and `` [[`` when it wrote none)."""
    spec, pattern = suite.spec, pairwise.verdict_pattern(suite.spec.labels)
    items = []
    for p in wanted:
        mine, theirs = answered[str(p["id"])]["answer"], suite.baseline[str(p["id"])]
        requests = tuple(JudgeRequest.make(_messages(suite, p["prompt"], a, b), spec.judge.max_tokens,
                                           spec.judge.temperature) for a, b in ((mine, theirs), (theirs, mine)))
        items.append(Item(str(p["id"]), requests))

    def row(item: Item, convs: list[Conversation], key: str) -> dict:
        games = [{"model_position": pos, "judgment": c.replies[-1].text, "verdict": c.verdict,
                  **({"verdict_source": c.verdict_source} if c.verdict_source else {})}
                 for pos, c in zip("AB", convs)]
        return {"id": item.id, "model": model, "judge": judge.model, "games": games, "sppo_key": key}

    verdicts = Verdicts(lambda c: (pairwise.parse_verdict(c.replies[-1].text, pattern), False), opener=" [[",
                        labels=spec.labels)
    order = [str(p["id"]) for p in suite.prompts]
    return JudgedTask(spec.name, model, items, verdicts, row, JsonlFile(path), lambda r: str(r.get("id")),
                      lambda rows: [rows[i] for i in order if i in rows])


def _messages(suite: LoadedSuite, question: str, answer_a: str, answer_b: str) -> list[dict]:
    user = (suite.template.replace("{question}", question).replace("{answer_a}", answer_a)
            .replace("{answer_b}", answer_b))
    system = [{"role": "system", "content": suite.spec.system_prompt}] if suite.spec.system_prompt else []
    return [*system, {"role": "user", "content": user}]


# --- the suite ----------------------------------------------------------------------------------------------------

def suite_from_file(path: Path) -> Suite:
    """The `Suite` a file defines, for the plan of ``sppo-bench`` beside the four benchmarks."""
    loaded = load(path)
    spec = loaded.spec

    def prompt_version(ctx: RunContext) -> str:
        return _digest_prompt(loaded.template, spec.system_prompt, spec.verdicts, spec.judge.max_tokens,
                              spec.judge.temperature, loaded.files_digest)

    def run(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
        return _run(loaded, ctx, target, prompt_version(ctx))

    return Suite(spec.name, run, pairwise_table(spec.name, spec.title or spec.name, spec.url, spec.baseline_model),
                 headline, prompt_version, judge_model=spec.judge.model)


def _run(suite: LoadedSuite, ctx: RunContext, target: ModelTarget, version: str) -> SuiteOutcome:
    spec = suite.spec
    judge = require_judge(ctx, spec.name)
    before = judge.stats.as_dict()
    limit = ctx.answer_settings.limit
    wanted = suite.prompts[:limit] if limit else suite.prompts
    answered, gen_info = answers(suite, target.answerer, wanted, ctx.layout.answers(spec.name, target.variant,
                                                                                     target.name),
                                 target.name, ctx.answer_settings.max_new_tokens)
    jpath = ctx.layout.judgments(spec.name, target.variant, judge_label(judge), target.name)
    task = judged_task(suite, wanted, answered, target.name, judge, jpath)
    judged = judge_task(judge, task, ctx.progress)
    rows = judged.of(task.items)
    metrics = pairwise.score_games(rows, spec.verdicts, source=str(jpath))
    metrics["avg_length"] = int(sum(len(answered[str(p["id"])]["answer"]) for p in wanted) / len(wanted))
    n_lp = sum(g.get("verdict_source") == LOGPROB_VERDICT for r in rows for g in r["games"])
    if n_lp:
        metrics["n_logprob_verdicts"] = n_lp
        metrics["notes"].append(f"{n_lp} verdicts read from the local judge's token probabilities (its text had no "
                                "valid label)")
    settings = {"kind": PAIRWISE, "suite_file": str(suite.source), "title": spec.title or spec.name, "url": spec.url,
                "baseline_model": spec.baseline_model, "verdicts": spec.verdicts, "limit": limit,
                "n_prompts": len(wanted), "generation": gen_info, "prompt_version": version,
                "reused": reused_counts(gen_info, judged.n_reused, len(wanted)), "judgments": str(jpath),
                "answers": str(ctx.layout.answers_dir(spec.name, target.variant))}
    return SuiteOutcome(suite_result(target, spec.name, metrics, settings, judge, before))


def headline(m: dict[str, Any]) -> str:
    return (f"win rate {figure(m, 'win_rate')}  ({m.get('n_wins')} won, {m.get('n_ties')} tied, "
            f"{m.get('n_losses')} lost)")
