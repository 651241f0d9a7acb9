"""Baselines, always reported beside the models.

- `popularity` (King's next-purchase-day baseline): players are split into 3 segments by
  historical purchase frequency (purchase days per day since install, cut at the terciles of
  the training payers; players who never purchased form the lowest segment); each segment
  predicts its most frequent next-purchase day in the training data.
- `segment_median`: the same segments, each predicting its median next-purchase day: the
  constant that minimises absolute error, so the strongest per-segment baseline for the MAE
  (the mode is the strongest for exact-day accuracy). Model ratios are stated against the
  stronger of the two on each metric.
- `recent_revenue`: LTV = revenue of the most recent `k` history steps scaled to the horizon,
  revenue in the last k*step days * horizon / (k*step); payer = any revenue in those days.
- `payer_mean`: historical payers get the training mean LTV of historical payers, others the
  mean of historical non-payers; payer = has paid before.
- `past_spend`: the naive ranking by spend over the whole history (revenue_total), scaled to
  the horizon by the training ratio of future to past spend.
- `btyd`: the fitted BG/NBD + Gamma-Gamma model itself (`ltv.models.btyd`), refitted at each
  evaluated cutoff on the history before it, as a practitioner would run it: E[revenue in
  the horizon] = E[purchase days] x E[spend per purchase day]; players who never bought get 0.

Each returns prediction columns in the same vocabulary as the model (`ltv_pred`,
`ltv_expected`, `payer_pred`, `p_payer`, `offer_day`) so the same metrics apply.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ltv.config import GameConfig
from ltv.models import btyd

RECENT_STEPS = 4


def purchase_frequency(features: pd.DataFrame) -> np.ndarray:
    return (features["purchase_days_total"].fillna(0) / features["days_since_install"].clip(lower=1)).to_numpy(float)


def _recent_revenue(features: pd.DataFrame, steps: int) -> np.ndarray:
    cols = [f"revenue_w{i}" for i in range(1, steps + 1) if f"revenue_w{i}" in features]
    return features[cols].fillna(0).sum(axis=1).to_numpy(float)


def fit(train: pd.DataFrame, config: GameConfig) -> dict[str, Any]:
    """Fit every baseline's parameters on the training split (features + labels)."""
    freq = purchase_frequency(train)
    paid = train["purchase_days_total"].fillna(0).to_numpy() > 0
    cuts = np.quantile(freq[paid], [1 / 3, 2 / 3]).tolist() if paid.sum() >= 3 else [np.inf, np.inf]
    segment = np.where(paid, np.searchsorted(np.asarray(cuts), freq, side="right"), 0).clip(0, 2)
    day = train["next_purchase_day"].to_numpy()
    modes, medians = {}, {}
    for s in range(3):
        days = day[(segment == s) & (day > 0)]
        modes[str(s)] = int(np.bincount(days).argmax()) if len(days) else 1
        medians[str(s)] = int(np.percentile(days, 50, method="lower")) if len(days) else 1
    steps = min(RECENT_STEPS, config.features.n_steps)
    return {
        "popularity": {"cuts": cuts, "modes": modes, "medians": medians},
        "recent_revenue": {"steps": steps,
                           "scale": config.horizons.ltv_days / (steps * config.features.step_days)},
        "payer_mean": {"payer": float(train.loc[paid, "ltv"].mean()) if paid.any() else 0.0,
                       "nonpayer": float(train.loc[~paid, "ltv"].mean()) if (~paid).any() else 0.0},
    } | ({"past_spend": {"scale": float(train["ltv"].sum() / max(train["revenue_total"].fillna(0).sum(), 1e-9))}}
         if "revenue_total" in train else {}) | {"btyd": {"horizon_days": config.horizons.ltv_days}}


def segments(features: pd.DataFrame, cuts: list[float]) -> np.ndarray:
    """Purchase-frequency segment 0 (low or never paid), 1 (medium), 2 (high) of each row."""
    paid = features["purchase_days_total"].fillna(0).to_numpy() > 0
    freq = purchase_frequency(features)
    return np.where(paid, np.searchsorted(np.asarray(cuts), freq, side="right"), 0).clip(0, 2)


def predict(params: dict[str, Any], features: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Prediction columns of each baseline for the given feature rows."""
    paid = features["purchase_days_total"].fillna(0).to_numpy() > 0
    seg = segments(features, params["popularity"]["cuts"])
    per_segment = lambda key: np.array([params["popularity"][key][str(s)] for s in seg], dtype=int)  # noqa: E731
    popularity = pd.DataFrame({"offer_day": per_segment("modes")}, index=features.index)
    out = {"popularity": popularity}
    if "medians" in params["popularity"]:  # artifacts from before the median baseline lack it
        out["segment_median"] = pd.DataFrame({"offer_day": per_segment("medians")}, index=features.index)
    rr = params["recent_revenue"]
    recent = _recent_revenue(features, rr["steps"]) * rr["scale"]
    recent_revenue = pd.DataFrame({"ltv_pred": recent, "ltv_expected": recent, "payer_pred": (recent > 0).astype(int),
                                   "p_payer": (recent > 0).astype(float)}, index=features.index)
    pm = params["payer_mean"]
    mean = np.where(paid, pm["payer"], pm["nonpayer"])
    payer_mean = pd.DataFrame({"ltv_pred": mean, "ltv_expected": mean, "payer_pred": paid.astype(int),
                               "p_payer": paid.astype(float)}, index=features.index)
    out |= {"recent_revenue": recent_revenue, "payer_mean": payer_mean}
    if "past_spend" in params and "revenue_total" in features:
        out["past_spend"] = _value_baseline(features["revenue_total"].fillna(0).to_numpy(float)
                                            * params["past_spend"]["scale"], paid.astype(float), features.index)
    if "btyd" in params and btyd.available(features):
        value = btyd.with_features(features, params["btyd"]["horizon_days"])
        # P(a purchase in the horizon) ~ 1 - exp(-E[purchases]) (the Poisson approximation)
        p = 1 - np.exp(-value["btyd_expected_purchases"].fillna(0).to_numpy(float))
        out["btyd"] = _value_baseline(value["btyd_expected_value"].fillna(0).to_numpy(float), p, features.index)
    return out


def _value_baseline(value: np.ndarray, p_payer: np.ndarray, index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({"ltv_pred": value, "ltv_expected": value, "payer_pred": (p_payer >= 0.5).astype(int),
                         "p_payer": p_payer}, index=index)
