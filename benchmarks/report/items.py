"""Every prompt a suite judged, with each checkpoint's answer and the judge's verdict and explanation, read from the
files a result records (``settings``: AlpacaEval's ``annotations``, Arena-Hard's ``judgments`` and ``answers``,
MT-Bench's ``judgments`` and ``answers``) in the official formats, and the question file of the benchmark's data
directory (``settings["data"]``, or ``--data-dir``) for question texts and categories.

A store that was moved still reads: a recorded path that no longer exists is looked up at the same place under the
store's root (`benchmarks.store.StoreLayout`, the one spelling of the store's paths). Only the items a result was computed on are shown (its first
``n`` questions: ``--limit``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sppo.errors import UserError
from sppo.files import read_json, read_jsonl

from benchmarks.data import ARENA_BASELINE, ARENA_DIR, ARENA_QUESTIONS, MT_DIR, MT_QUESTIONS, MT_REFERENCES
from benchmarks.store import DEFAULT_VARIANT, StoreLayout, SuiteResult

from . import verdicts as v

NO_QUESTION_FILE = "(question text unavailable: the benchmark's question file was not found; pass --data-dir)"


@dataclass
class Cell:
    """One checkpoint's answer to one prompt and what the judge said: ``verdicts`` (the filter's classes),
    ``badge`` (the verdict in a few words), ``notes`` ((title, the judge's own text)), ``values`` (the raw verdicts
    whose spread the page shows)."""

    answer: list[str]
    verdicts: list[str]
    badge: str
    notes: list[tuple[str, str]]
    values: list[str]


@dataclass
class Item:
    id: str
    category: str
    prompt: list[str]  # the user turns
    baseline: list[str] | None = None  # the baseline's answer (pairwise suites) or the reference answer (MT-Bench)
    cells: dict[str, Cell] = field(default_factory=dict)  # column -> cell

    def changed(self) -> bool:
        """The verdict differs between two checkpoints that both have one."""
        seen = {tuple(c.verdicts) for c in self.cells.values()}
        return len(seen) > 1


@dataclass
class Browser:
    """One suite's prompts: ``columns`` (one per checkpoint and variant, in iteration order), ``verdict_order`` (the
    filter's classes), ``baseline_name`` (what ``Item.baseline`` holds)."""

    suite: str
    title: str
    columns: list[str]
    verdict_order: list[str]
    baseline_name: str
    unit: str  # what a verdict value is (the spread's unit)
    items: list[Item] = field(default_factory=list)


def column_name(r: SuiteResult) -> str:
    return r.model if r.variant == DEFAULT_VARIANT else f"{r.model} ({r.variant})"


def artifact(r: SuiteResult, key: str, in_store: Callable[[], Path]) -> Path | None:
    """The file a result records under ``settings[key]``; where it is gone (a moved store), the same place in this
    store (`in_store`)."""
    recorded = r.settings.get(key)
    return Path(recorded) if recorded and Path(recorded).exists() else existing(in_store)


def existing(in_store: Callable[[], Path]) -> Path | None:
    """A `StoreLayout` path where it exists; None where not, or where a recorded name cannot name a file there."""
    try:
        path = in_store()
    except UserError:
        return None
    return path if path.exists() else None


def data_file(r: SuiteResult, data_dir: Path | None, sub: str, name: str) -> Path | None:
    """A benchmark file of the suite's data: ``--data-dir`` if given, else the directory the result records."""
    base = data_dir / sub if data_dir is not None else Path(r.settings["data"]) if r.settings.get("data") else None
    return base / name if base is not None and (base / name).is_file() else None


def n_items(r: SuiteResult) -> int | None:
    """How many items the result was computed on (its first n questions)."""
    n = r.settings.get("n_instructions", r.settings.get("n_questions"))
    return int(n) if isinstance(n, int) else None


# ------------------------------------------------------------------------------------------------- AlpacaEval

def alpaca_cell(record: dict) -> Cell:
    pref = record.get("preference")
    raw = record.get("raw_completion") or {}
    if record.get("output_1") == record.get("output_2"):
        note = "identical to the baseline's output: 1.5 without a judge call, as alpaca_eval does"
    else:
        first = "this answer" if record.get("is_switched_outputs") else "the baseline's output"
        second = "the baseline's output" if record.get("is_switched_outputs") else "this answer"
        probs = ", ".join(f"{t.get('token')!r} {t.get('logprob', math.nan):.2f}"
                          for t in (raw.get("top_logprobs") or [])[:5] if isinstance(t, dict))
        note = (f"The judge saw {first} as 'm' and {second} as 'M' and answered {raw.get('text')!r}"
                + (f" (top log-probabilities of its first token: {probs})" if probs else ""))
    p = pref if isinstance(pref, (int, float)) and not isinstance(pref, bool) else None
    title = "no judge call" if record.get("output_1") == record.get("output_2") else f"answered {raw.get('text')!r}"
    return Cell([str(record.get("output_2", ""))], [v.alpaca_outcome(p)], v.alpaca_badge(p),
                [(title, note)], [f"{p - 1:.2f}"] if p is not None and 1 <= p <= 2 else [])


def alpaca_items(store: StoreLayout, results: list[SuiteResult], browser: Browser) -> None:
    items: dict[str, Item] = {}
    for r in results:
        path = artifact(r, "annotations", lambda: store.annotations(r.variant, r.model))
        records = read_json(path) if path else []
        for rec in (records[:n_items(r)] if n_items(r) is not None else records):
            key = str(rec.get("instruction"))
            item = items.setdefault(key, Item(key, str(rec.get("dataset") or "alpaca_eval"), [key],
                                              [str(rec.get("output_1", ""))]))
            item.cells[column_name(r)] = alpaca_cell(rec)
    for i, item in enumerate(items.values()):
        item.id = str(i + 1)
    browser.items = list(items.values())


# ------------------------------------------------------------------------------------------------- Arena-Hard

def arena_question(game_prompt: str) -> str:
    """The question inside a game's judge prompt (arena-hard's template: ``<|User Prompt|>\\n{question_1}\\n\\n<|The
    Start of Assistant A's Answer|>``), for a store whose question file is gone."""
    head, sep, rest = game_prompt.partition("<|User Prompt|>\n")
    question, found, _ = rest.partition("\n\n<|The Start of Assistant A's Answer|>")
    return question if sep and found else NO_QUESTION_FILE


def dig(obj: Any, *path: Any, default: Any = "") -> Any:
    """``obj[p0][p1]...``, or `default` where a record lacks the field (a hand-edited or older file)."""
    for key in path:
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return default
    return obj


def arena_cell(row: dict, answer: dict | None) -> Cell:
    games = [g for g in row.get("games") or [] if isinstance(g, dict)]
    labels = [g.get("score") for g in games]
    notes = []
    for g, game in enumerate(games):
        sides = "A = the baseline, B = this answer" if g % 2 == 0 else "A = this answer, B = the baseline"
        source = " (read from token probabilities)" if game.get("verdict_source") else ""
        notes.append((f"game {g + 1} ({sides}): {game.get('score') or 'no verdict'}{source}",
                      str(game.get("judgment", "")).strip()))
    return Cell([str(dig(answer, "choices", 0, "turns", 0, "content"))], [v.arena_outcome(labels)],
                v.arena_badge(labels), notes, [str(x) for x in labels if isinstance(x, str)])


def _questions(r: SuiteResult, data_dir: Path | None, sub: str, name: str, key: str = "question_id") -> dict:
    path = data_file(r, data_dir, sub, name)
    return {str(q.get(key)): q for q in read_jsonl(path)} if path else {}


def _answers(store: StoreLayout, r: SuiteResult) -> dict[str, dict]:
    """The model's answer records (``model_answer/<model>.jsonl``: in the directory the result records, else in this
    store) by question id."""
    try:
        in_store = store.answers(r.suite, r.variant, r.model)
    except UserError:  # a model name that cannot name a file
        return {}
    recorded = Path(str(r.settings["answers"])) / in_store.name if r.settings.get("answers") else None
    path = recorded if recorded is not None and recorded.is_file() else in_store
    return {str(a.get("question_id")): a for a in read_jsonl(path)} if path.is_file() else {}


def _arena_item(qid: str, q: dict | None, baseline: dict | None, row: dict) -> Item:
    question = dig(q, "turns", 0, "content") if q else arena_question(str(dig(row, "games", 0, "user_prompt")))
    return Item(qid, str(q.get("cluster") or q.get("category")) if q else "unknown", [str(question)],
                [str(dig(baseline, "choices", 0, "turns", 0, "content"))] if baseline else None)


def arena_items(store: StoreLayout, results: list[SuiteResult], browser: Browser, data_dir: Path | None) -> None:
    items: dict[str, Item] = {}
    for r in results:
        questions = _questions(r, data_dir, ARENA_DIR, ARENA_QUESTIONS)
        baseline = _questions(r, data_dir, ARENA_DIR, ARENA_BASELINE)
        judge = Path(str(r.settings.get("judgments", ""))).parent.name
        jpath = artifact(r, "judgments", lambda: store.judgments(r.suite, r.variant, judge, r.model))
        answers = _answers(store, r)
        rows = read_jsonl(jpath) if jpath else []
        wanted = _first_ids(list(questions) or [str(x.get("question_id")) for x in rows], n_items(r))
        for row in (x for x in rows if str(x.get("question_id")) in wanted):
            qid = str(row.get("question_id"))
            item = items.setdefault(qid, _arena_item(qid, questions.get(qid), baseline.get(qid), row))
            item.cells[column_name(r)] = arena_cell(row, answers.get(qid))
    browser.items = _in_order(items, questions_order(results, data_dir, ARENA_DIR, ARENA_QUESTIONS))


def _first_ids(ids: list[str], n: int | None) -> set[str]:
    return set(ids[:n] if n is not None else ids)


def questions_order(results: list[SuiteResult], data_dir: Path | None, sub: str, name: str) -> list[str]:
    for r in results:
        order = list(_questions(r, data_dir, sub, name))
        if order:
            return order
    return []


def _in_order(items: dict[str, Item], order: list[str]) -> list[Item]:
    rank = {qid: i for i, qid in enumerate(order)}
    return sorted(items.values(), key=lambda it: rank.get(it.id, len(rank)))  # stable: unknown ids as read


# ------------------------------------------------------------------------------------------------- MT-Bench

def mt_cell(rows: dict[int, dict], answer: dict | None) -> Cell:
    turns = dig(answer, "choices", 0, "turns", default=[]) or []
    ratings = [v.mt_rating(rows[t].get("score")) if t in rows else "no rating" for t in (1, 2)]
    notes = [(f"turn {t}: rating {ratings[t - 1]}"
              + (" (read from token probabilities)" if rows.get(t, {}).get("verdict_source") else ""),
              str(rows[t].get("judgment", "")).strip()) for t in (1, 2) if t in rows]
    return Cell([str(x) for x in turns], sorted(set(ratings)), f"turn 1: {ratings[0]} · turn 2: {ratings[1]}",
                notes, [x for x in ratings if x != "no rating"])


def _mt_item(qid: str, q: dict | None, ref: dict | None) -> Item:
    return Item(qid, str(q.get("category")) if q else "unknown",
                [str(t) for t in dig(q, "turns", default=[])] if q else [NO_QUESTION_FILE],
                [str(t) for t in dig(ref, "choices", 0, "turns", default=[])] if ref else None)


def mt_items(store: StoreLayout, results: list[SuiteResult], browser: Browser, data_dir: Path | None) -> None:
    items: dict[str, Item] = {}
    for r in results:
        questions = _questions(r, data_dir, MT_DIR, MT_QUESTIONS)
        refs = _questions(r, data_dir, MT_DIR, MT_REFERENCES)
        judge = Path(str(r.settings.get("judgments", ""))).name.removesuffix("_single.jsonl")
        jpath = artifact(r, "judgments", lambda: store.shared_judgments(r.suite, r.variant, judge))
        answers = _answers(store, r)
        by_q: dict[str, dict[int, dict]] = {}
        for row in (read_jsonl(jpath) if jpath else []):
            if row.get("model") == r.model:
                by_q.setdefault(str(row.get("question_id")), {})[row.get("turn")] = row
        wanted = _first_ids(list(questions) or list(by_q), n_items(r))
        for qid in (q for q in by_q if q in wanted):
            item = items.setdefault(qid, _mt_item(qid, questions.get(qid), refs.get(qid)))
            item.cells[column_name(r)] = mt_cell(by_q[qid], answers.get(qid))
    browser.items = _in_order(items, questions_order(results, data_dir, MT_DIR, MT_QUESTIONS))
