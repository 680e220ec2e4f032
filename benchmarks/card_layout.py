"""How benchmark figures print in an SPPO model card - the published cards' tables (columns, rounding, units, row
names and model-index entries) - shared by `sppo-release` (the cards) and `sppo-bench table`, and the family name
a run's models carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sppo.errors import UserError
from sppo.files import clean_name

from benchmarks.store import DEFAULT_VARIANT, SuiteName

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
    items: int | None = None  # how many items the whole benchmark has (None: per task, lm-eval)
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


def subset_note(spec: TableSpec, settings: dict[str, Any]) -> str:
    """`` (n = 3 of 805)`` after a row name or metric whose figures come from a subset of the benchmark
    (`` (n = 3 per task)`` for lm-eval); nothing for the whole benchmark."""
    count = subset_count(spec, settings)
    if count is None:
        return ""
    n, of = count
    return f" (n = {n} of {of})" if of is not None else f" (n = {n} per task)"


def subset_sentence(spec: TableSpec) -> str:
    """What a table says under rows marked by `subset_note`."""
    whole = f"the benchmark's {spec.items} {spec.item_name}" if spec.items else "each task"
    return (f"Rows marked (n = ...) were measured on the first n of {whole} (`sppo-bench --limit`): they are not "
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
    return label if variant == DEFAULT_VARIANT else f"{label} ({variant})"
