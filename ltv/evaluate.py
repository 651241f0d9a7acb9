"""Evaluation: a model, its baselines and the oracle, scored on the same out-of-time rows.

`evaluate` returns an `Evaluation`: the machine-readable `metrics.json` payload (read by the
promotion rule locally and by the SageMaker pipeline's condition step) and the frames the HTML
report plots. The oracle is the simulator's ground truth (only for simulated games): it uses
the true expected values, with its payer/churn thresholds chosen on the validation period
exactly as the model's are.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ltv import metrics
from ltv.config import LOWER_IS_BETTER
from ltv.errors import InSampleError
from ltv.lake import Lake, is_complete
from ltv.models import LTVModel, baselines, seen_until
from ltv.simulate import TRUTH_DEFINITION

# metrics compared as ratios (model / reference) in the report and benchmarks
RATIO_METRICS = ("normalized_gini", "spearman", "spearman_payers", "minmax", "minmax_payers", "payer_f1",
                 "payer_roc_auc", "top1_revenue_capture", "top10_revenue_capture", "purchase_day_mae", "purchase_day_accuracy",
                 "purchase_day_f1", "churn_f1", "total_ratio")
HEADLINE = ("normalized_gini", "minmax", "payer_f1", "purchase_day_mae", "purchase_day_accuracy")


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    frame: pd.DataFrame                       # actuals + model predictions
    oracle: pd.DataFrame | None               # actuals + oracle predictions, same rows
    baselines: dict[str, pd.DataFrame] = field(default_factory=dict)


def actuals(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["player_id", "cutoff", "ltv", "payer", "next_purchase_day", "churned"]].reset_index(drop=True)


def read_truth(lake: Lake, cutoffs: list[str], horizons: dict[str, int]) -> tuple[pd.DataFrame | None, str | None]:
    """The simulator's oracle at these cutoffs, or None and why not: a real game has no truth,
    and truth computed for other horizons than the model predicts is not its oracle."""
    parts = [lake.partition("truth", "cutoff", c) for c in cutoffs]
    if not all(is_complete(p) for p in parts):
        return None, "no ground truth at these cutoffs (it exists only for simulated games)"
    wanted = {k: horizons[k] for k in ("ltv_days", "purchase_days")}
    for p, c in zip(parts, cutoffs):
        recorded = json.loads((p / TRUTH_DEFINITION).read_text()) if (p / TRUTH_DEFINITION).exists() else None
        if recorded != wanted:
            return None, (f"the ground truth at {c} is for horizons {recorded or 'unrecorded'}, the model predicts "
                          f"{wanted}: re-simulate the game with the current config to get its oracle")
    return pd.concat([pd.read_parquet(p).assign(cutoff=c) for p, c in zip(parts, cutoffs)], ignore_index=True), None


def oracle_predictions(truth: pd.DataFrame, payer_threshold: float, churn_threshold: float, days: int) -> pd.DataFrame:
    """The oracle in the model's vocabulary: two-stage with the true p_payer and E[LTV | payer]."""
    p = truth["p_payer"].to_numpy()
    value = np.divide(truth["expected_ltv"].to_numpy(), p, out=np.zeros(len(p)), where=p > 0)
    payer_pred = (p >= payer_threshold).astype(int)
    p_churn = 1 - truth["p_active"].to_numpy()
    p_days = truth[[f"p_day_{d}" for d in range(1, days + 1)]].to_numpy()
    day_columns = {f"p_day_{d}": truth[f"p_day_{d}"].to_numpy() for d in range(1, days + 1)}
    return pd.DataFrame({"player_id": truth["player_id"], "cutoff": truth["cutoff"], "p_payer": p,
                         "value_if_payer": value, "payer_pred": payer_pred, "ltv_pred": np.where(payer_pred, value, 0.0),
                         "ltv_expected": truth["expected_ltv"].to_numpy(), "p_churn": p_churn,
                         "churn_pred": (p_churn >= churn_threshold).astype(int), "offer_day": metrics.offer_day(p_days),
                         "likely_day": metrics.likely_day(p_days), **day_columns})


def _join(rows: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Actuals of `rows` with predictions matched on (player_id, cutoff); unmatched rows are an error."""
    keyed = predictions.drop_duplicates(["player_id", "cutoff"])
    out = actuals(rows).merge(keyed, on=["player_id", "cutoff"], how="left", validate="one_to_one")
    if out["ltv_expected"].isna().any():
        raise ValueError(f"{int(out['ltv_expected'].isna().sum())} rows have no prediction")
    return out


def _oracle(lake: Lake | None, splits: dict[str, pd.DataFrame], horizons: dict[str, int]) -> tuple[pd.DataFrame | None, str | None]:
    """The oracle's predictions on the test rows (thresholds chosen on validation), or None and why."""
    if lake is None:
        return None, "no lake given: the oracle is read from the simulator's ground truth in the lake"
    test_cutoffs = sorted(splits["test"]["cutoff"].unique())
    val_cutoffs = sorted(splits["validation"]["cutoff"].unique())
    truth, why = read_truth(lake, test_cutoffs, horizons)
    val_truth, val_why = read_truth(lake, val_cutoffs, horizons)
    if truth is None or val_truth is None:
        return None, why or val_why
    val = actuals(splits["validation"]).merge(val_truth, on=["player_id", "cutoff"], how="inner")
    payer_t = metrics.best_f1_threshold(val["payer"], val["p_payer"])
    churn_t = metrics.best_f1_threshold(val["churned"], 1 - val["p_active"])
    return _join(splits["test"], oracle_predictions(truth, payer_t, churn_t, horizons["purchase_days"])), None


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None where either is missing or not finite, or b is 0."""
    return float(a / b) if a is not None and b not in (None, 0) and np.isfinite(a) and np.isfinite(b) else None


def _ratios(model: dict[str, float], reference: dict[str, float]) -> dict[str, float | None]:
    return {k: _ratio(model.get(k), reference.get(k)) for k in RATIO_METRICS}


def strongest_baselines(model: dict[str, Any], baseline_metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per metric, the baseline that does best on it and the model's ratio to it: targets and
    verdicts are stated against the strongest simple comparator, never a convenient one."""
    out = {}
    for k in RATIO_METRICS:
        if k == "total_ratio":  # closeness to 1, not larger/smaller: no "best"
            continue
        values = {name: m.get(k) for name, m in baseline_metrics.items()
                  if m.get(k) is not None and np.isfinite(m.get(k))}
        if not values:
            continue
        pick = min if k in LOWER_IS_BETTER else max
        name = pick(values, key=values.get)
        a, b = model.get(k), values[name]
        out[k] = {"baseline": name, "value": b, "ratio": _ratio(a, b),
                  "model_wins": None if a is None else bool(a < b if k in LOWER_IS_BETTER else a > b)}
    return out


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: NaN/inf become None."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in values.items()}


def in_sample_cutoffs(model: LTVModel, cutoffs: list[str]) -> list[str]:
    """The cutoffs among `cutoffs` that the model's training or validation data reached (their
    rows are in-sample for it); all of them when the model's training period is unknown."""
    until = seen_until(model.manifest)
    return sorted(str(c) for c in cutoffs if until is None or str(c) < str(until))


def require_out_of_sample(model: LTVModel, cutoffs: list[str], *, allow_in_sample: bool = False) -> list[str]:
    """Raise `InSampleError` if the model has seen any of these cutoffs' rows, unless
    `allow_in_sample` (then the in-sample cutoffs are returned, for labelling every output)."""
    seen = in_sample_cutoffs(model, cutoffs)
    if seen and not allow_in_sample:
        until = seen_until(model.manifest)
        trained = "an unknown period (an artifact without lineage)" if until is None else (
            f"data up to {until - dt.timedelta(days=1)} (its last training/validation cutoff plus the label horizon)")
        raise InSampleError(
            f"model {model.manifest.get('game')}/{(model.manifest.get('dataset') or {}).get('name') or model.path} "
            f"was trained on {trained}; test cutoffs {seen[0]}..{seen[-1]} lie in that period, so its metrics would be "
            f"in-sample. Evaluate it on a dataset whose test period starts on or after {until or 'its training period'}"
            " (a later version or rolling-YYYY-MM-DD), or ask for an in-sample evaluation explicitly "
            "(--allow-in-sample), which labels every output 'in-sample'.")
    return seen


def evaluate(model: LTVModel, splits: dict[str, pd.DataFrame], lake: Lake | None = None, *,
             allow_in_sample: bool = False) -> Evaluation:
    """Score the model, the baselines and (if available) the oracle on the test split.

    Refuses (`InSampleError`) when the model's training or validation labels reach the test
    period, unless `allow_in_sample`, which records the in-sample cutoffs in `metrics["in_sample"]`."""
    test = splits["test"].reset_index(drop=True)
    in_sample = require_out_of_sample(model, sorted(test["cutoff"].unique().tolist()), allow_in_sample=allow_in_sample)
    days = model.purchase_days
    frame = _join(test, model.predict(test))
    result: dict[str, Any] = {
        "game": model.manifest["game"], "evaluated_on": "test",
        "dataset": (model.manifest.get("dataset") or {}).get("name"),
        "cutoffs": sorted(test["cutoff"].unique().tolist()), "rows": int(len(test)),
        "in_sample": {"cutoffs": in_sample, "seen_until": str(seen_until(model.manifest))} if in_sample else None,
        "model": clean(metrics.flat_metrics(frame, days)),
    }
    base_frames = {}
    for name, pred in baselines.predict(model.manifest["baselines"], test).items():
        base_frames[name] = pd.concat([actuals(test), pred.reset_index(drop=True)], axis=1)
    result["baselines"] = {name: clean(metrics.flat_metrics(f, days)) for name, f in base_frames.items()}
    oracle, result["oracle_note"] = _oracle(lake, splits, model.manifest["horizons"])
    result["oracle"] = clean(metrics.flat_metrics(oracle, days)) if oracle is not None else None
    ratios = {f"model_vs_{name}": _ratios(result["model"], m) for name, m in result["baselines"].items()}
    if result["oracle"]:
        ratios["model_vs_oracle"] = _ratios(result["model"], result["oracle"])
    result["ratios"] = ratios
    result["strongest_baseline"] = strongest_baselines(result["model"], result["baselines"])
    result["deciles"] = {"model": metrics.decile_table(frame["ltv"], frame["ltv_expected"]).to_dict("records")}
    if oracle is not None:
        result["deciles"]["oracle"] = metrics.decile_table(oracle["ltv"], oracle["ltv_expected"]).to_dict("records")
    result["purchase_day_by_segment"] = _day_mae_by_segment(test, frame, base_frames, model)
    return Evaluation(result, frame, oracle, base_frames)


def _day_mae_by_segment(test: pd.DataFrame, frame: pd.DataFrame, base_frames: dict[str, pd.DataFrame],
                        model: LTVModel) -> list[dict[str, Any]]:
    """Purchase-day MAE of the model and the per-segment baselines (mode, median) per
    purchase-frequency segment."""
    params = model.manifest["baselines"]["popularity"]
    seg = baselines.segments(test, params["cuts"])
    names = {0: "low / none", 1: "medium", 2: "high"}
    rows = []
    actual_all = frame["next_purchase_day"].to_numpy()
    for s in range(3):
        m = (seg == s) & (actual_all > 0)
        if m.sum() == 0:
            continue
        mae = lambda offer: float(np.abs(offer[m] - actual_all[m]).mean())  # noqa: E731
        row = {"segment": names[s], "players": int(m.sum()), "model_mae": mae(frame["offer_day"].to_numpy())}
        for name in ("popularity", "segment_median"):
            if name in base_frames:
                row[f"{name}_mae"] = mae(base_frames[name]["offer_day"].to_numpy())
        rows.append(row)
    return rows


DRIFT_METRICS = ("normalized_gini", "minmax", "minmax_payers", "payer_f1", "purchase_day_mae")
DRIFT_LABELS = {"normalized_gini": "Gini", "minmax": "minmax", "minmax_payers": "minmax (payers)", "payer_f1": "payer F1",
                "purchase_day_mae": "day MAE"}


def drift_cells(drift: pd.DataFrame, metrics: tuple[str, ...] = DRIFT_METRICS, oracle: bool = True) -> pd.DataFrame:
    """The drift table for reading: one row per version, each metric as one cell
    `stale → retrained (oracle)` (the retrained model only has a value on the last version)."""
    def cell(row: pd.Series, key: str) -> str:
        stale, fresh, best = (row.get(f"{who}_{key}") for who in ("stale", "retrained", "oracle"))
        text = "–" if pd.isna(stale) else f"{stale:.3f}"
        text += "" if pd.isna(fresh) else f" → {fresh:.3f}"
        return text + ("" if not oracle or pd.isna(best) else f" ({best:.3f})")

    in_sample = lambda r: " (stale model in-sample)" if r.get("in_sample") is True else ""  # noqa: E731
    return pd.DataFrame([{"version": r["version"] + in_sample(r), "test cutoffs": r.get("test_cutoffs", ""),
                          **{DRIFT_LABELS[key]: cell(r, key) for key in metrics}} for _, r in drift.iterrows()])


def drift_table(stale: LTVModel, retrained: LTVModel | None, versions: dict[str, dict[str, pd.DataFrame]],
                lake: Lake | None = None) -> pd.DataFrame:
    """Kakao's drift experiment: the model trained on the first version (`stale`) scored on the
    test period of every version; the model retrained on the latest version scored on the
    latest; the oracle on each, for scale. One row per version, in order."""
    rows = []
    names = list(versions)
    for name, splits in versions.items():
        row: dict[str, Any] = {"version": name, "test_cutoffs": f"{splits['test'].cutoff.min()}..{splits['test'].cutoff.max()}"}
        # a later version whose test period the stale model saw (overlapping versions) is flagged, not hidden
        evaluation = evaluate(stale, splits, lake, allow_in_sample=True)
        row["in_sample"] = bool(evaluation.metrics["in_sample"])
        row |= {f"stale_{k}": evaluation.metrics["model"].get(k) for k in DRIFT_METRICS}
        row |= {f"oracle_{k}": (evaluation.metrics["oracle"] or {}).get(k) for k in DRIFT_METRICS}
        fresh = evaluate(retrained, splits).metrics["model"] if retrained is not None and name == names[-1] else {}
        row |= {f"retrained_{k}": fresh.get(k) for k in DRIFT_METRICS}
        rows.append(row)
    return pd.DataFrame(rows)


NEW_PLAYER_DAYS = 28  # "new": installed in the four weeks before the cutoff; "veteran": earlier
SEGMENT_DRIVERS = 3


def explain_evaluation(model: LTVModel, splits: dict[str, pd.DataFrame], evaluation: Evaluation, rows: int) -> None:
    """Add `explanations` to the evaluation's metrics: mean driver contributions per segment of a
    seeded sample of `rows` test rows (value deciles, actual payers vs non-payers, new vs veteran)
    and the permutation importance of each feature on `rows` validation rows. Bounded by `rows`,
    not by time; an unexplainable artifact records why instead."""
    from ltv import explain

    test = splits["test"].reset_index(drop=True)
    if test.empty:
        evaluation.metrics["explanations"] = {"unavailable": "no test rows to explain"}
        return
    sample = in_order(test).sample(min(rows, len(test)), random_state=0)
    try:
        dec = model.explain(sample)
    except explain.Unexplainable as e:
        evaluation.metrics["explanations"] = {"unavailable": str(e)}
        return
    c = pd.DataFrame(dec.contributions, columns=dec.features, index=sample.index)
    value = pd.Series(dec.ltv_expected, index=sample.index)
    groups: list[tuple[str, str, pd.Series]] = []
    ranks = value.rank(method="first", ascending=False)
    decile = np.ceil(ranks / len(value) * 10).astype(int) if len(value) else ranks
    groups += [("predicted value decile", f"decile {d}" + (" (highest)" if d == 1 else ""), decile == d)
               for d in range(1, 11)]
    groups += [("actual payer in the horizon", label, (sample["ltv"] > 0) == flag)
               for label, flag in (("payers", True), ("non-payers", False))]
    if "days_since_install" in sample:
        new = sample["days_since_install"] < NEW_PLAYER_DAYS
        groups += [("player age", f"new (< {NEW_PLAYER_DAYS} days)", new), ("player age", "veteran", ~new)]
    segments = []
    for kind, label, mask in groups:
        if not mask.any():
            continue
        mean = c[mask].mean().sort_values()
        segments.append({"kind": kind, "segment": label, "players": int(mask.sum()),
                         "mean_ltv_expected": float(value[mask].mean()),
                         "up": [[f, float(v)] for f, v in mean[::-1].head(SEGMENT_DRIVERS).items() if v > 0],
                         "down": [[f, float(v)] for f, v in mean.head(SEGMENT_DRIVERS).items() if v < 0]})
    evaluation.metrics["explanations"] = {
        "rows": int(len(sample)), "base": float(dec.base[0]) if len(sample) else None, "segments": segments,
        "permutation": permutation_importance(model, splits["validation"], rows)}


def in_order(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows by (cutoff, player), so a seeded sample of them does not depend on the order the engine
    returned them in (a resumed or rebuilt dataset's files may come back in another order)."""
    keys = [k for k in ("cutoff", "player_id") if k in rows]
    return rows.sort_values(keys, kind="stable", ignore_index=True) if keys else rows


def permutation_importance(model: LTVModel, rows: pd.DataFrame, count: int, seed: int = 0) -> dict[str, Any]:
    """Drop of the normalized Gini of ltv_expected when one feature's values are shuffled across a
    seeded sample of `count` rows (Breiman's permutation importance), for every feature; all
    shuffled copies are scored in one call per stage."""
    sample = in_order(rows).sample(min(count, len(rows)), random_state=seed).reset_index(drop=True)
    if sample.empty or sample["ltv"].sum() <= 0:
        return {"rows": int(len(sample)), "gini": None, "drop": {}}
    x = model.inputs(sample)
    rng = np.random.default_rng(seed)
    copies = []
    for feature in model.features:
        shuffled = x.copy()
        shuffled[feature] = x[feature].to_numpy()[rng.permutation(len(x))]
        copies.append(shuffled)
    p, v = model.value_stages(pd.concat([x, *copies], ignore_index=True))
    scores = (p * v).reshape(len(model.features) + 1, len(x))
    y = sample["ltv"].to_numpy()
    gini = metrics.normalized_gini(y, scores[0])
    drop = {f: float(gini - metrics.normalized_gini(y, s)) for f, s in zip(model.features, scores[1:])}
    return {"rows": int(len(sample)), "gini": float(gini),
            "drop": dict(sorted(drop.items(), key=lambda kv: -kv[1]))}
