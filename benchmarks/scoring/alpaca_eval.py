"""AlpacaEval 2 scoring (annotator ``weighted_alpaca_eval_gpt4_turbo``, baseline ``gpt4_1106_preview``).

Official method (alpaca_eval 0.6.6), reused from the installed package wherever it fits:

* Judge parsing: the judge (gpt-4-1106-preview, 1 token, top-5 logprobs) names the better output ``m``
  (the prompt's ``output_1``) or ``M`` (``output_2``). ``logprob_parser`` with numerator ``m`` and denominators
  ``m, M`` gives ``preference = 2 - P(m) / (P(m) + P(M))``: 1 means output_1 wins, 2 means output_2 wins.
  Before prompting, alpaca_eval swaps output_1/output_2 for a pseudo-random half of the instructions (seeded by
  the instruction text, seed 0) and maps the preference back with ``3 - p``; identical outputs get 1.5 without a
  judge call. Annotations store the un-swapped preference with output_1 = baseline, output_2 = model.
* Win rate: ``alpaca_eval.metrics.get_winrate`` (mean of (preference - 1) x 100, its standard error, discrete win
  rate, counts); preferences that are missing (NaN) are dropped from n_total, as the official code does, and
  counted here as ``n_invalid``.
* avg_length: ``int(mean character length of the model's outputs)``.
* Length-controlled win rate: the GLM ``length_controlled_v1`` of ``alpaca_eval.metrics.glm_winrate`` fitted with
  the package's own design-matrix and logistic-regression helpers; the data loading (the Hub file
  ``df_gamed.csv``, or a local copy that works offline) is ``benchmarks.inputs``'s. Without that file LC is None
  with a note.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping, Sequence

import pandas as pd

from sppo.errors import UserError

from . import locator

with warnings.catch_warnings():  # alpaca_eval 0.6.6 imports the deprecated pkg_resources
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import alpaca_eval.metrics  # noqa: F401  (also loads alpaca_eval.utils)

log = logging.getLogger(__name__)

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
BASELINE = "gpt4_1106_preview"
HUB_DATASET = "tatsu-lab/alpaca_eval"
DF_GAMED = "df_gamed.csv"
GLM_NAME = "length_controlled_v1"
NUMERATOR_TOKEN = "m"
DENOMINATOR_TOKENS = ("m", "M")
SWITCH_SEED = 0  # the seed alpaca_eval's pairwise annotator gives its RandomSwitchTwoColumnsProcessor
JUDGE_MODEL = "gpt-4-1106-preview"
JUDGE_PARAMS = {"max_tokens": 1, "temperature": 1.0, "top_logprobs": 5}  # weighted_alpaca_eval_gpt4_turbo config
_GLM_FEATURES = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")


# --- judge side (used by the runner's judge client) -------------------------------------------------------------

def preference_from_top_logprobs(top_logprobs: Sequence[Mapping[str, Any]],
                                 numerator_token: str = NUMERATOR_TOKEN,
                                 denominator_tokens: Sequence[str] = DENOMINATOR_TOKENS) -> float | None:
    """Preference in [1, 2] from the judge's top logprobs of its single output token, as alpaca_eval's
    ``logprob_parser(is_binarize=False)``: ``2 - P(m) / (P(m) + P(M))``, where ``m`` names the prompt's output_1.

    1.0 = the prompt's output_1 is better, 2.0 = output_2 is better. A token absent from the top list has
    probability 0. Returns None (the official NaN) when neither token is in the list. Calls alpaca_eval's own
    parser on a completion holding just these logprobs."""
    from alpaca_eval.completion_parsers import logprob_parser

    completion = {"logprobs": {"content": [{"top_logprobs": [dict(t) for t in top_logprobs]}]}}
    wanted = set(denominator_tokens) | {numerator_token}
    if not any(t["token"] in wanted for t in top_logprobs):
        return None  # the official parser returns NaN (after logging a warning with the whole completion)
    out = logprob_parser(completion, numerator_token=numerator_token,
                         denominator_tokens=list(denominator_tokens), is_binarize=False)[0]
    return float(out)


def is_switched_outputs(instruction: str, seed: int = SWITCH_SEED) -> bool:
    """Whether alpaca_eval shows the judge the two outputs swapped for this instruction (then the prompt's
    output_1 is the model's output and the parsed preference must be mapped back with ``3 - p``)."""
    from alpaca_eval.utils import random_seeded_choice

    return bool(random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed), choices=[False, True]))


def unswitch_preference(preference: float | None, switched: bool) -> float | None:
    """Map a preference parsed on a swapped prompt back to (output_1 = baseline, output_2 = model)."""
    if preference is None or not switched:
        return preference
    return 3 - preference


def judge_messages(prompt_template: str, instruction: str, output_1: str, output_2: str) -> list[dict[str, str]]:
    """Chat messages for the judge: ``alpaca_eval_clf.txt`` filled with one example (already in the order the judge
    should see, i.e. after any switch), converted from ChatML text as alpaca_eval's OpenAI client does."""
    from alpaca_eval.utils import make_prompts, prompt_to_chatml

    row = pd.DataFrame([{"instruction": instruction, "output_1": output_1, "output_2": output_2}])
    prompts, _ = make_prompts(row, template=prompt_template)
    return prompt_to_chatml(prompts[0])


def annotate_preference(instruction: str, baseline_output: str, model_output: str,
                        top_logprobs: Sequence[Mapping[str, Any]] | None) -> float | None:
    """The stored preference of one example (output_1 = baseline): 1.5 for identical outputs (no judge call
    needed), else the judge's parsed preference mapped back if alpaca_eval would have switched the outputs."""
    if baseline_output == model_output:
        return 1.5
    if top_logprobs is None:
        return None
    return unswitch_preference(preference_from_top_logprobs(top_logprobs), is_switched_outputs(instruction))


# --- scoring ------------------------------------------------------------------------------------------------------

def _checked_preference(value: Any, where: str) -> float:
    """A preference as float (NaN for missing); anything outside [1, 2] (except 0, which alpaca_eval's annotation files use for a draw) is an error."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise UserError(f"{where}: preference {value!r} is not a number")
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: preference {value!r} is not a number") from None
    if math.isnan(p) or p == 0 or 1 <= p <= 2:
        return p
    raise UserError(f"{where}: preference {p} outside [1, 2]")


def annotations_frame(records: Sequence[Mapping[str, Any]], source: str | None = None,
                      lines: Sequence[int] | None = None) -> pd.DataFrame:
    """Validate official annotation records (instruction, output_1, output_2, generator_1, generator_2,
    preference) into a DataFrame in the given order. Missing fields, bad preferences and duplicate
    (generator_2, instruction) pairs raise UserError naming file and record."""
    where = locator(source, lines)
    rows, seen = [], {}
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise UserError(f"{where(i)}: expected a JSON object")
        for key in ("instruction", "output_1", "output_2", "preference"):
            if key not in r:
                raise UserError(f"{where(i)}: missing field {key!r}")
        for key in ("instruction", "output_1", "output_2", "generator_1", "generator_2"):
            if r.get(key) is not None and not isinstance(r[key], str):
                raise UserError(f"{where(i)}: field {key!r} must be a string, got {type(r[key]).__name__}")
        model = r.get("generator_2") or "model"
        key = (model, r["instruction"])
        if key in seen:
            raise UserError(f"{where(i)}: duplicate annotation of {model!r} on the instruction of {seen[key]}")
        seen[key] = where(i)
        rows.append({**r, "generator_1": r.get("generator_1") or BASELINE, "generator_2": model,
                     "output_1": str(r["output_1"] or ""), "output_2": str(r["output_2"] or ""),
                     "preference": _checked_preference(r["preference"], where(i))})
    if not rows:
        raise UserError(f"{source or '<records>'}: no annotations")
    return pd.DataFrame.from_records(rows)


def win_rate_metrics(preferences: Sequence[float]) -> dict[str, Any]:
    """Official head-to-head figures (``alpaca_eval.metrics.get_winrate``) plus ``n_invalid``, the number of
    missing preferences the official code drops."""
    from alpaca_eval.metrics import get_winrate

    prefs = pd.Series(preferences, dtype=float)
    out = get_winrate(pd.DataFrame({"preference": prefs}))
    out = {k: (int(v) if k.startswith("n_") else float(v)) for k, v in out.items()}
    out["n_invalid"] = int(prefs.isna().sum())
    return out


def avg_length(outputs: Sequence[str]) -> int:
    """Official ``avg_length``: ``int`` of the mean character length of the model's outputs."""
    return int(pd.Series(list(outputs), dtype=object).str.len().mean())


def _glm_design(df: pd.DataFrame, df_gamed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Training design matrix (gamed baselines + this model), test matrix (Δlen = 0) and sample weights, as
    ``alpaca_eval.metrics.glm_winrate._get_featurized_data`` builds them for ``length_controlled_v1``."""
    from alpaca_eval.metrics.glm_winrate import GLM_INFO, make_dmatrix_for_model

    info = GLM_INFO[GLM_NAME]
    difficulty = df_gamed.drop_duplicates("index")["instruction_difficulty"]
    d = df.reset_index(drop=True).reset_index()  # "index" = position of the instruction in the evaluation set
    delta_len = d["output_1"].str.len() - d["output_2"].str.len()
    feats = d[["preference", "index"]].copy()
    feats["std_delta_len"] = delta_len / delta_len.std()
    feats["preference"] = feats["preference"].astype(float).replace({0.0: 1.5}) - 1
    missing = sorted(set(feats["index"]) - set(difficulty.index))
    if missing:
        raise UserError(f"{DF_GAMED} has no instruction difficulty for instruction position {missing[0]}: "
                        "AlpacaEval LC needs the 805 instructions of the official evaluation set, in order")
    feats["instruction_difficulty"] = difficulty.loc[feats["index"]].to_numpy()
    feats["not_gamed_baseline"] = True
    test = feats[["instruction_difficulty", "not_gamed_baseline"]].copy()
    test["std_delta_len"] = 0
    train = pd.concat([df_gamed, feats], axis=0)
    xy_train, x_test = make_dmatrix_for_model(train, test, formula=info["formula"])
    lam = info["regularize_to_baseline_lambda"]
    # the two gamed baselines share the regularisation weight lambda (hence / 2)
    weight = train["not_gamed_baseline"].astype(float) + (lam * (~train["not_gamed_baseline"].astype(bool))) / 2
    return xy_train, x_test, weight


def length_controlled_winrate(df: pd.DataFrame, df_gamed: pd.DataFrame) -> dict[str, Any]:
    """``length_controlled_winrate`` and ``lc_standard_error`` (percent) and the fitted GLM weights of one model's
    annotations (in evaluation-set order), as ``get_length_controlled_winrate`` computes them."""
    import sklearn
    from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV

    if df["generator_2"].iloc[0] == df["generator_1"].iloc[0]:  # baseline vs itself: 0.5 by construction
        return {"length_controlled_winrate": 50.0, "lc_standard_error": 0.0,
                "lc_weights": {f: 0.0 for f in _GLM_FEATURES}}
    xy_train, x_test, weight = _glm_design(df, df_gamed)
    keep = xy_train["preference"].notna().to_numpy()
    # the official fit switches on sklearn's metadata routing globally: keep that inside this call, and keep
    # sklearn's deprecation notices about alpaca_eval's arguments out of the command's output
    with sklearn.config_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = fit_LogisticRegressionCV(xy_train[keep], "preference", is_ytrue_proba=True,
                                         sample_weight=weight[keep], **GLM_INFO[GLM_NAME]["kwargs"])
    predicted = pd.Series(model.predict_proba(x_test)[:, 1])
    return {"length_controlled_winrate": float(predicted.mean() * 100),
            "lc_standard_error": float(predicted.sem() * 100),
            "lc_weights": {c: float(w) for c, w in zip(x_test.columns, model.coef_[0])}}


def score_model(df: pd.DataFrame, df_gamed: pd.DataFrame | None = None,
                lc_unavailable_reason: str | None = None) -> dict[str, Any]:
    """All leaderboard figures of one model's annotations (a frame from ``annotations_frame``, one generator_2,
    rows in evaluation-set order). LC is None, with a note, when ``df_gamed`` is None."""
    out: dict[str, Any] = win_rate_metrics(df["preference"].tolist())
    out["avg_length"] = avg_length(df["output_2"].tolist())
    notes = []
    if out["n_invalid"]:
        notes.append(f"{out['n_invalid']} annotations without a preference were dropped (as the official code does)")
    if df_gamed is not None:
        out.update(length_controlled_winrate(df, df_gamed))
    else:
        out.update(length_controlled_winrate=None, lc_standard_error=None)
        notes.append("length_controlled_winrate not computed: "
                     + (lc_unavailable_reason or f"{DF_GAMED} unavailable; pass a local copy (--df-gamed)"))
    out["notes"] = notes
    return out


def score_annotations(records: Sequence[Mapping[str, Any]], df_gamed: pd.DataFrame | None = None,
                      source: str | None = None, lines: Sequence[int] | None = None,
                      lc_unavailable_reason: str | None = None) -> dict[str, dict[str, Any]]:
    """Score official annotation records: ``{model (generator_2): metrics}``. Records of each model must be in
    evaluation-set order (the LC GLM indexes instructions by position, as the official code does)."""
    df = annotations_frame(records, source, lines)
    results = {}
    for model, group in df.groupby("generator_2", sort=False):
        baselines = group["generator_1"].unique()
        if len(baselines) != 1:
            raise UserError(f"{source or '<records>'}: model {model!r} is compared with several baselines "
                            f"{sorted(baselines)}")
        metrics = score_model(group.reset_index(drop=True), df_gamed, lc_unavailable_reason)
        metrics["baseline"] = str(baselines[0])
        results[str(model)] = metrics
    return results
