"""The table model: how benchmark figures become the tables of an SPPO model card - the published cards' columns,
rounding, units, row names and model-index values - used alike by `sppo-bench table` (the console), the card and its
model-index (`sppo-release`), so the two can never disagree. Where they show different things by design, that is
one declared option, the `View` (`CONSOLE`, `CARD`).

    TableSpec / Column   one benchmark's table: its columns (metric keys, number format, model-index entry)
    View                 what the console and the card show differently (the unweighted MMLU column, results
                         measured on other tasks, the mark of verdicts read from token probabilities)
    build_table          -> Table: its columns and rows, each row's Cells (printed text, model-index value)
    in_table, variants   which results a table holds, the variants in order (the default first)
    subset_annotation    ``n = 3 of 805`` on each figure measured on a subset of the benchmark (``--limit``),
                         with the sentence under its table (`Table.notes`)
    family_name, card_row_label   the name a run's models carry, a row's name

Which results a table shows (the store's every model, or a run's iterations) and the Markdown they print as is the
caller's; what each cell says is decided here alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from sppo.errors import UserError
from sppo.files import clean_name

from benchmarks.store import DEFAULT_VARIANT, SuiteName, SuiteResult, variant_suffix

# --------------------------------------------------------------------------------------------- number formats

def fmt_fixed(digits: int) -> Callable[[Any], str]:
    """Fixed decimals: ``fmt_fixed(2)(7.9) == "7.90"`` (percentages, MT-Bench scores)."""
    return lambda x: f"{float(x):.{digits}f}"


def fmt_short(x: Any) -> str:
    """Rounded to 2 decimals without trailing zeros, as Python prints ``round(x, 2)``: 69.40 -> "69.4"."""
    s = f"{float(x):.2f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def fmt_int(x: Any) -> str:
    """Whole number (lengths in characters or tokens)."""
    return str(int(round(float(x))))


def fmt_ci(lower: Any, upper: Any) -> str:
    """Arena-Hard 95% interval from the offsets around the score: ``(-1.8, 1.8)``."""
    return f"({float(lower):.1f}, {float(upper):.1f})"


# ---------------------------------------------------------------------------------------------- table layout

@dataclass(frozen=True)
class Column:
    """One table column: header, the metric key(s) it reads, how it prints, and its model-index entry."""

    header: str
    keys: tuple[str, ...]
    fmt: Callable[..., str]
    metric_type: str
    metric_name: str
    numeric: bool = True
    aggregate: bool = False  # computed from the other columns: alone it does not put a result in the table

    def missing(self, metrics: dict[str, Any]) -> list[str]:
        return [k for k in self.keys if metrics.get(k) is None]

    def cell(self, metrics: dict[str, Any], source: str) -> str:
        """The printed value; ``n/a`` when a metric is missing (see `missing_metrics`)."""
        if self.missing(metrics):
            return MISSING
        try:
            return self.fmt(*(metrics[k] for k in self.keys))
        except (TypeError, ValueError):
            raise UserError(f"{source}: metric {self.keys[0]!r} is not a number ({metrics[self.keys[0]]!r})") from None


@dataclass(frozen=True)
class Dataset:
    """What a figure was measured on, for the model-index."""

    type: str
    name: str
    config: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One benchmark table of the card."""

    suite: SuiteName
    title: str
    url: str
    first_header: str
    columns: tuple[Column, ...]
    datasets: tuple[Dataset, ...]  # one for the whole suite, or one per column
    label: str = "spaced"  # "spaced": "<family> Iter 2"; "repo": "<family>-Iter2"
    intro: str = ""
    heading: str = ""  # the table's title in `sppo-bench table`
    plot_metric: str = ""  # the headline figure plotted across the models
    plot_fallback: str | None = None  # plotted when no model has `plot_metric`
    axis_top: float | None = None  # the figure's full scale (the plot's y axis ends there)
    model_index: bool = True  # a leaderboard benchmark: its figures go to the card's model-index
    items: int | None = None  # how many items the whole benchmark has (None: per task, lm-eval; a suite of your own)
    item_name: str = "items"


P2 = fmt_fixed(2)
MISSING = "n/a"
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        suite="alpaca_eval", title="AlpacaEval Leaderboard Evaluation Results",
        url="https://tatsu-lab.github.io/alpaca_eval/", first_header="Model",
        columns=(Column("LC. Win Rate", ("length_controlled_winrate",), P2, "lc_win_rate", "LC Win Rate"),
                 Column("Win Rate", ("win_rate",), P2, "win_rate", "Win Rate"),
                 Column("Avg. Length", ("avg_length",), fmt_int, "avg_length", "Avg. Length (characters)")),
        datasets=(Dataset("tatsu-lab/alpaca_eval", "AlpacaEval 2.0", "alpaca_eval_gpt4_baseline"),),
        heading="AlpacaEval 2", plot_metric="length_controlled_winrate", axis_top=100,
        plot_fallback="win_rate", items=805, item_name="instructions"),  # LC needs df_gamed.csv; without it the plot shows the win rate
    TableSpec(
        suite="arena_hard", title="Arena-Hard Evaluation Results", url="https://github.com/lm-sys/arena-hard",
        first_header="Model", label="repo",
        columns=(Column("Score", ("score",), fmt_fixed(1), "score", "Score"),
                 Column("95% CI", ("lower", "upper"), fmt_ci, "ci_95", "95% CI", numeric=False),
                 Column("average \\# Tokens", ("avg_tokens",), fmt_int, "avg_tokens", "Average # Tokens")),
        datasets=(Dataset("lmarena-ai/arena-hard-auto-v0.1", "Arena-Hard v0.1"),),
        heading="Arena-Hard v0.1", plot_metric="score", axis_top=100, items=500, item_name="questions"),
    TableSpec(
        suite="lm_eval", title="Open LLM Leaderboard Evaluation Results",
        url="https://github.com/EleutherAI/lm-evaluation-harness", first_header="",
        intro="Results are reported by using [lm-evaluation-harness](https://github.com/EleutherAI/"
              "lm-evaluation-harness) v{version}",
        columns=(Column("arc_challenge", ("arc_challenge",), fmt_short, "acc_norm", "arc_challenge"),
                 Column("truthfulqa_mc2", ("truthfulqa_mc2",), fmt_short, "mc2", "truthfulqa_mc2"),
                 Column("winogrande", ("winogrande",), fmt_short, "acc", "winogrande"),
                 Column("gsm8k", ("gsm8k",), fmt_short, "exact_match", "gsm8k"),
                 Column("hellaswag", ("hellaswag",), fmt_short, "acc_norm", "hellaswag"),
                 Column("mmlu", ("mmlu",), fmt_short, "acc", "mmlu"),
                 Column("average", ("average",), fmt_short, "average", "Open LLM Leaderboard average",
                        aggregate=True)),
        datasets=(Dataset("allenai/ai2_arc", "AI2 Reasoning Challenge", "ARC-Challenge"),
                  Dataset("truthfulqa/truthful_qa", "TruthfulQA", "multiple_choice"),
                  Dataset("allenai/winogrande", "Winogrande", "winogrande_xl"),
                  Dataset("openai/gsm8k", "GSM8k", "main"),
                  Dataset("Rowan/hellaswag", "HellaSwag"),
                  Dataset("cais/mmlu", "MMLU", "all"),
                  Dataset("open-llm-leaderboard", "Open LLM Leaderboard (average of the 6 tasks)")),
        heading="Open LLM Leaderboard (lm-evaluation-harness v0.4.1)", plot_metric="average", axis_top=100),
    TableSpec(
        suite="mt_bench", title="MT-Bench Evaluation Results",
        url="https://github.com/lm-sys/FastChat/tree/main/fastchat/llm_judge", first_header="",
        columns=(Column("1st Turn", ("turn_1",), P2, "score_turn_1", "MT-Bench 1st turn"),
                 Column("2nd Turn", ("turn_2",), P2, "score_turn_2", "MT-Bench 2nd turn"),
                 Column("Average", ("average",), P2, "score", "MT-Bench average")),
        datasets=(Dataset("lmsys/mt_bench", "MT-Bench"),),
        heading="MT-Bench", plot_metric="average", axis_top=10, items=80, item_name="questions"),
)


def table_spec(suite: SuiteName) -> TableSpec:
    """The card's table of one suite."""
    return next(t for t in TABLES if t.suite == suite)


PAIRWISE = "pairwise"  # a result's settings["kind"] for a user's own pairwise benchmark (sppo-bench --suite)


def fmt_games(wins: Any, ties: Any, losses: Any) -> str:
    """Wins / ties / losses of the model's games: ``5 / 1 / 2``."""
    return f"{int(wins)} / {int(ties)} / {int(losses)}"


def pairwise_table(suite: str, title: str, url: str = "", baseline: str = "the baseline") -> TableSpec:
    """The table of a user's own pairwise judged benchmark: its win rate against the baseline, the games won, tied
    and lost, the answers' length. Not a leaderboard benchmark: its figures stay out of the model-index."""
    return TableSpec(
        suite=suite, title=title, url=url, first_header="Model",
        columns=(Column(f"Win Rate vs {baseline}", ("win_rate",), P2, "win_rate", "Win Rate"),
                 Column("Wins / Ties / Losses", ("n_wins", "n_ties", "n_losses"), fmt_games, "games", "Games",
                        numeric=False),
                 Column("Avg. Length", ("avg_length",), fmt_int, "avg_length", "Avg. Length (characters)")),
        datasets=(Dataset(suite, title),), heading=title, plot_metric="win_rate", axis_top=100, model_index=False)


def specs_for(results: Sequence[SuiteResult]) -> tuple[TableSpec, ...]:
    """The tables of these results: the four benchmarks' and one per user's own suite found among them (its title
    and baseline as its results record them), in name order."""
    own = {}
    for r in results:
        if r.settings.get("kind") == PAIRWISE and r.suite not in own:
            own[r.suite] = pairwise_table(r.suite, r.settings.get("title") or r.suite, r.settings.get("url") or "",
                                          r.settings.get("baseline_model") or "the baseline")
    return TABLES + tuple(own[name] for name in sorted(own))


# ------------------------------------------------------------------------------------------- subsets (--limit)

def subset_count(spec: TableSpec, settings: dict[str, Any]) -> tuple[int, int | None] | None:
    """(n, of) when a result's figures come from fewer items than the benchmark has (``sppo-bench --limit``): n the
    items measured (``n_instructions`` / ``n_questions``, else the recorded ``limit``), of the benchmark's count
    (AlpacaEval 805, Arena-Hard 500, MT-Bench 80; None for lm-eval, whose limit applies per task); None for the
    whole benchmark."""
    limit = settings.get("limit")
    n = settings.get("n_instructions", settings.get("n_questions"))
    if spec.items is None:
        return (int(limit), None) if limit else None
    if not isinstance(n, int):
        n = min(int(limit), spec.items) if limit else None
    return (n, spec.items) if n is not None and n < spec.items else None


def subset_annotation(spec: TableSpec, settings: dict[str, Any]) -> str:
    """``n = 3 of 805``, the annotation of a figure from a subset of the benchmark (``n = 3 per task`` for lm-eval);
    nothing for the whole benchmark."""
    count = subset_count(spec, settings)
    if count is None:
        return ""
    n, of = count
    return f"n = {n} of {of}" if of is not None else f"n = {n} per task"


def subset_sentence(spec: TableSpec) -> str:
    """What a table says under figures annotated by `subset_annotation`."""
    whole = f"the benchmark's {spec.items} {spec.item_name}" if spec.items else "each task"
    return (f"Figures marked (n = ...) were measured on the first n of {whole} (`sppo-bench --limit`): they are not "
            "the benchmark's figures.")


# ------------------------------------------------------------------------------------------------ row names

# Base model -> the family name its published SPPO models carry (all ranked by PairRM). uclaml/SPPO README.md:16,
# 50-60 links UCLA-AGI/Mistral7B-PairRM-SPPO-IterN, Llama-3-Instruct-8B-SPPO-IterN and Gemma-2-9B-It-SPPO-IterN;
# Gemma-2-27B has a recipe (run_sppo_gemma-2-27b.sh) but no published model, so it follows the Gemma-2-9B pattern.
PUBLISHED_FAMILIES = {
    "mistralai/Mistral-7B-Instruct-v0.2": "Mistral7B-PairRM-SPPO",
    "meta-llama/Meta-Llama-3-8B-Instruct": "Llama-3-Instruct-8B-SPPO",
    "google/gemma-2-9b-it": "Gemma-2-9B-It-SPPO",
    "google/gemma-2-27b-it": "Gemma-2-27B-It-SPPO",
}
PUBLISHED_RANKER = "llm-blender/PairRM"


def family_name(base_model: str, ranker: str) -> str:
    """The published family name of a published recipe's base model ranked by PairRM (``Gemma-2-9B-It-SPPO``),
    else ``<base model>-<ranker>-SPPO``, e.g. ``SmolLM2-135M-Instruct-LocalJudge-SPPO``."""
    if ranker == PUBLISHED_RANKER and base_model in PUBLISHED_FAMILIES:
        return PUBLISHED_FAMILIES[base_model]
    ranker = "LocalJudge" if ranker.startswith("local-judge") else ranker.split("/")[-1]
    return clean_name(f"{base_model.split('/')[-1]}-{ranker}-SPPO", "-")


def card_row_label(spec: TableSpec, family: str, iteration: int, variant: str = DEFAULT_VARIANT) -> str:
    """A row's name in the card: ``<family> Iter 2`` (``<family>-Iter2`` in Arena-Hard's table), then
    `` (best-of-16)`` for a variant."""
    label = f"{family}-Iter{iteration}" if spec.label == "repo" else f"{family} Iter {iteration}"
    return label + variant_suffix(variant)


# ------------------------------------------------------------------------------------------------ the model

# beside the card's mmlu (v0.4.1's group figure, subjects weighted by size): the Open LLM Leaderboard v1's unweighted
# mean of the 57 subjects
MMLU_UNWEIGHTED = Column("mmlu (unweighted)", ("mmlu_unweighted",), fmt_short, "acc", "mmlu_unweighted")
LOGPROB_MARK = " *"  # after a row with verdicts read from a local judge's token probabilities


@dataclass(frozen=True)
class View:
    """What the console table and the card show differently, by design - the table model's one option.

    ``mmlu_unweighted``: the Open LLM Leaderboard v1's unweighted MMLU beside v0.4.1's weighted one (the cards print
    the weighted one only). ``off_table``: results measured on other tasks than the table's (the offline
    multiple-choice task of lm-eval) get their own columns (``"columns"``) or no row (``"elsewhere"``: the card lists
    them under "Other evaluations", never in the model-index). ``logprob_mark``: `` *`` after a row with verdicts
    read from a local judge's token probabilities (the card says so in its evaluation note)."""

    mmlu_unweighted: bool
    off_table: Literal["columns", "elsewhere"]
    logprob_mark: bool


CONSOLE = View(mmlu_unweighted=True, off_table="columns", logprob_mark=True)
CARD = View(mmlu_unweighted=False, off_table="elsewhere", logprob_mark=False)


@dataclass(frozen=True)
class Cell:
    """One figure as a table shows it: the printed ``text`` (``n/a`` when a metric is missing), the model-index
    ``value`` (the number exactly as printed; the CI stays a string; None when missing) and an optional
    ``annotation`` about the figure (e.g. on how many items it was measured), which renderers print after it."""

    text: str
    value: Any = None
    missing: bool = False
    annotation: str = ""

    @property
    def shown(self) -> str:
        """What a table prints: the figure, then its annotation in parentheses when it has one."""
        return annotated(self.text, self.annotation)


def annotated(text: str, annotation: str) -> str:
    """``text (annotation)``, or the text alone without an annotation: a printed figure (`Cell.shown`), a
    model-index metric name (``Win Rate (n = 3 of 805)``)."""
    return f"{text} ({annotation})" if annotation else text


@dataclass(frozen=True)
class Row:
    label: str
    result: SuiteResult
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    """One benchmark's table: its columns and rows (in the caller's order)."""

    spec: TableSpec
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    @property
    def notes(self) -> list[str]:
        """The sentences printed under the table: why figures carry ``(n = ...)`` when some do."""
        annotated = any(c.annotation for row in self.rows for c in row.cells)
        return [subset_sentence(self.spec)] if annotated else []


def in_table(spec: TableSpec, r: SuiteResult) -> bool:
    """Whether a result's figures belong in this table: it records at least one of the table's own (not
    aggregate) metrics, possibly as null (then printed n/a). A result measured on other tasks, like the toolkit's
    small local multiple-choice task whose ``average`` is not the Open LLM Leaderboard average, is not."""
    return r.suite == spec.suite and any(not c.aggregate and all(k in r.metrics for k in c.keys)
                                         for c in spec.columns)


def variants(results: Sequence[SuiteResult], spec: TableSpec, view: View = CARD) -> list[str]:
    """The variants of a suite with rows in this table: the default first, then by name."""
    found = {r.variant for r in results if r.suite == spec.suite and (view.off_table == "columns" or in_table(spec, r))}
    return sorted(found, key=lambda v: (v != DEFAULT_VARIANT, v))


def table_columns(spec: TableSpec, results: Sequence[SuiteResult], view: View) -> list[Column]:
    """The table's columns: the card's; with ``view.mmlu_unweighted`` the unweighted MMLU beside ``mmlu``; when
    ``view.off_table`` is ``"columns"`` and no result has the table's own metrics, what they measured instead."""
    cols = list(spec.columns)
    if view.off_table == "columns" and results and not any(in_table(spec, r) for r in results):
        measured = sorted({k for r in results for k, v in r.metrics.items()
                           if isinstance(v, (int, float)) and not k.startswith("n_") and k != "average"})
        return [Column(k, (k,), fmt_short, "", k) for k in measured] + [c for c in cols if c.aggregate]
    at = next((i for i, c in enumerate(cols) if c.keys == ("mmlu",)), None)
    if view.mmlu_unweighted and at is not None:
        return cols[:at + 1] + [MMLU_UNWEIGHTED] + cols[at + 1:]
    return cols


def model_index_value(col: Column, text: str) -> Any:
    """The model-index value of a printed figure: the number exactly as the table prints it (the CI stays a
    string)."""
    if not col.numeric:
        return text
    value = float(text)
    return int(value) if col.fmt is fmt_int else value


def result_source(spec: TableSpec, r: SuiteResult) -> str:
    """How a result is named in an error about one of its figures."""
    return f"results of {r.model} ({spec.suite}, {r.variant})"


def build_table(spec: TableSpec, entries: Sequence[tuple[str, SuiteResult]], view: View,
                source: Callable[[TableSpec, SuiteResult], str] = result_source) -> Table | None:
    """The table of ``entries`` - (row name, result) in the order to show - as ``view`` shows it; None when no
    result has a row. ``source`` names a result in the error about a figure that is not a number."""
    results = [r for _, r in entries if r.suite == spec.suite]
    if view.off_table == "elsewhere":
        entries = [(label, r) for label, r in entries if in_table(spec, r)]
    columns = table_columns(spec, results, view)
    rows = []
    for label, r in entries:
        if r.suite != spec.suite:
            continue
        mark = LOGPROB_MARK if view.logprob_mark and r.metrics.get("n_logprob_verdicts") else ""
        subset = subset_annotation(spec, r.settings)
        cells = []
        for c in columns:
            text = c.cell(r.metrics, source(spec, r))
            missing = bool(c.missing(r.metrics))
            cells.append(Cell(text, None if missing else model_index_value(c, text), missing,
                              "" if missing else subset))
        rows.append(Row(label + mark, r, tuple(cells)))
    return Table(spec, tuple(columns), tuple(rows)) if rows else None
