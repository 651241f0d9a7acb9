"""The one promotion rule, used by the local loop and by the SageMaker pipeline's evaluate step.

A challenger and the current champion are scored on the same out-of-time rows, and the rule
decides on evidence, not on two point estimates: a paired bootstrap resamples players (all
their rows together, Efron & Tibshirani's nonparametric bootstrap; the two models see the same
resample) and gives a percentile confidence interval of each metric's gain. The challenger is
promoted when the lower bound of the primary metric's gain exceeds `min_effect` (default 0:
better with confidence; a tie is not a win) and no guard metric's upper bound of loss exceeds
its tolerance. A retrain asked for by a label-decay policy may instead show its gain on the
metric that decayed, on the cohorts that decayed (`Focus`); the primary metric then becomes a
guard with `primary_tolerance`.

With no champion, the first valid model is promoted. A challenger whose primary or guard metric
is NaN/inf is rejected, with or without a champion: a metric it cannot show is one it fails.
Promoted means Approved, or PendingManualApproval when the config asks for manual approval.
Reasons avoid `( ) ; ,` and JSON: they go into SageMaker metadata values.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ltv import metrics
from ltv.config import LOWER_IS_BETTER, Bootstrap, PromotionRule
from ltv.errors import BootstrapError
from ltv.registry import APPROVED, PENDING, REJECTED  # noqa: F401 - the rule's outcomes, re-exported

BLOCK = 200  # resamples scored at once: bounds the memory of the (resamples x rows) weight matrix


@dataclass(frozen=True)
class Focus:
    """What a label-decay retrain must fix: `metric` on the rows of `cutoffs` (the decayed cohorts)."""

    policy: str
    metric: str
    cutoffs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    promote: bool
    status: str
    reason: str
    primary: dict[str, Any] = field(default_factory=dict)
    guards: dict[str, Any] = field(default_factory=dict)
    focus: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The evaluation contract's `promotion` block; `promote` is 1/0 for the pipeline's JsonGet,
        NaN/inf are null (as everywhere in metrics.json)."""
        return _json_safe(asdict(self) | {"promote": int(self.promote)})


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ----------------------------------------------------------------------------------------------
# metrics under bootstrap weights: each row's weight is how often its player was drawn, so a
# weighted metric equals the plain metric (ltv.metrics) on the resample with rows repeated


def _sorted_groups(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descending stable order of `score` and the positions (in that order) ending each tie group."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    return order, np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]


def _gini_area(w: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """2 x area under the weighted gain curve - 1, ties taken together (as `metrics.gini`).

    With groups k of tied scores in decreasing order, weight W_k, value Y_k and C_k the cumulative
    weight up to and including k: area = sum_k Y_k (W - C_k + W_k / 2) / (W x Y). Only groups
    holding value contribute, so rows after the last of them count only in the total weight."""
    order, last = _sorted_groups(score)
    valued = np.flatnonzero(np.add.reduceat(y[order], np.r_[0, last[:-1] + 1]) > 0)
    if not len(valued):
        return np.full(len(w), np.nan)
    end = last[valued[-1]] + 1
    ws, ys = w[:, order[:end]], y[order[:end]].astype(w.dtype)
    cum = np.c_[np.zeros(len(w), dtype=w.dtype), np.cumsum(ws, axis=1)]  # cum[:, i] = weight of the first i rows
    upto = cum[:, last[valued] + 1]
    group_w = upto - cum[:, np.r_[0, last[:-1] + 1][valued]]
    group_y = np.add.reduceat(ws * ys, np.r_[0, last[:-1] + 1][: valued[-1] + 1], axis=1)[:, valued]
    total_w, total_y = w.sum(axis=1), group_y.sum(axis=1)
    area = np.sum(group_y * (total_w[:, None] - upto + group_w / 2), axis=1)
    return np.divide(2 * area, total_w * total_y, out=np.full(len(w), np.nan), where=total_y > 0) - 1


def _normalized_gini(w: np.ndarray, f: pd.DataFrame, days: int) -> np.ndarray:
    y = f["ltv"].to_numpy(float)
    perfect = _gini_area(w, y, y)
    return np.divide(_gini_area(w, y, f["ltv_expected"].to_numpy(float)), perfect,
                     out=np.full(len(w), np.nan), where=perfect > 0)


def _mean(w: np.ndarray, values: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    if keep is not None:
        w, values = w[:, keep], values[keep]
    n = w.sum(axis=1)
    return np.divide(w @ values.astype(w.dtype), n, out=np.full(len(w), np.nan), where=n > 0)


def _minmax(w: np.ndarray, f: pd.DataFrame, days: int) -> np.ndarray:
    y, p = f["ltv"].to_numpy(float), np.clip(f["ltv_pred"].to_numpy(float), 0, None)
    hi, lo = np.maximum(y, p), np.minimum(y, p)
    return _mean(w, np.divide(lo, hi, out=np.ones_like(hi), where=hi > 0))


def _f1(actual: str, predicted: str) -> Callable[[np.ndarray, pd.DataFrame, int], np.ndarray]:
    def f1(w: np.ndarray, f: pd.DataFrame, days: int) -> np.ndarray:
        y, p = f[actual].to_numpy(float) > 0.5, f[predicted].to_numpy(float) > 0.5
        tp, both = w @ (y & p).astype(w.dtype), w @ (p.astype(w.dtype) + y.astype(w.dtype))
        return np.divide(2 * tp, both, out=np.zeros(len(w)), where=both > 0)
    return f1


def _pr_auc(w: np.ndarray, f: pd.DataFrame, days: int) -> np.ndarray:
    y, s = f["payer"].to_numpy(float) > 0.5, f["p_payer"].to_numpy(float)
    order, last = _sorted_groups(s)
    ws = w[:, order]
    tp, taken = np.cumsum(ws * y[order].astype(w.dtype), axis=1)[:, last], np.cumsum(ws, axis=1)[:, last]
    positives = tp[:, -1:]
    precision = np.divide(tp, taken, out=np.zeros_like(tp), where=taken > 0)
    step = np.divide(np.diff(np.c_[np.zeros(len(w)), tp], axis=1), positives, out=np.zeros_like(tp),
                     where=positives > 0)
    return np.where(positives[:, 0] > 0, np.sum(precision * step, axis=1), np.nan)


def _day(kind: str) -> Callable[[np.ndarray, pd.DataFrame, int], np.ndarray]:
    def day_metric(w: np.ndarray, f: pd.DataFrame, days: int) -> np.ndarray:
        a = f["next_purchase_day"].to_numpy(int)
        keep = (a >= 1) & (a <= days)
        if kind == "mae":
            return _mean(w, np.abs(a - f["offer_day"].to_numpy(int)).astype(float), keep)
        return _mean(w, (a == f["likely_day"].to_numpy(int)).astype(float), keep)
    return day_metric


def _total_ratio_error(w: np.ndarray, f: pd.DataFrame, days: int) -> np.ndarray:
    actual = w @ f["ltv"].to_numpy(w.dtype)
    ratio = np.divide(w @ f["ltv_expected"].to_numpy(w.dtype), actual, out=np.full(len(w), np.nan), where=actual > 0)
    return np.abs(ratio - 1)


# the metrics with a vectorised weighted form; any other configured metric is bootstrapped by
# rescoring each resample with `metrics.flat_metrics` (exact, slower)
WEIGHTED: dict[str, Callable[[np.ndarray, pd.DataFrame, int], np.ndarray]] = {
    "normalized_gini": _normalized_gini, "minmax": _minmax, "payer_f1": _f1("payer", "payer_pred"),
    "churn_f1": _f1("churned", "churn_pred"), "payer_pr_auc": _pr_auc, "purchase_day_mae": _day("mae"),
    "purchase_day_accuracy": _day("accuracy"), "total_ratio_error": _total_ratio_error}


def metric_under_weights(metric: str, frame: pd.DataFrame, weights: np.ndarray, days: int) -> np.ndarray:
    """`metric` of `frame` (actuals + one model's predictions) under each row of `weights`
    (resamples x rows of integer counts): one value per resample."""
    if metric in WEIGHTED:
        return WEIGHTED[metric](weights, frame, days)
    rows = np.arange(len(frame))
    return np.array([metrics.flat_metrics(frame.iloc[np.repeat(rows, w.astype(int))], days).get(metric, np.nan)
                     for w in weights], dtype=float)


def point(metric: str, frame: pd.DataFrame, days: int) -> float:
    """`metric` of `frame` on its rows as they are (every weight 1)."""
    return float(metric_under_weights(metric, frame, np.ones((1, len(frame))), days)[0])


def _gain(metric: str, challenger: Any, champion: Any) -> Any:
    """How much better the challenger is (positive = better), whatever the metric's direction."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion


def _finite(x: Any) -> bool:
    """A real number that is not NaN/inf: numpy scalars count (np.float32 is no `float`), booleans
    and strings do not."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _weights(players: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` resamples of the players (with replacement) as per-row counts (n x rows); float32 holds
    the counts exactly and halves the memory the metrics stream through."""
    codes, uniques = pd.factorize(players, sort=True)  # a player's resample counts do not depend on row order
    k = len(uniques)
    draws = rng.integers(0, k, size=(n, k)) + (np.arange(n) * k)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n * k).reshape(n, k)
    return counts[:, codes].astype(np.float32)


def paired_bootstrap(challenger: pd.DataFrame, champion: pd.DataFrame, names: list[str], settings: Bootstrap,
                     days: int) -> dict[str, dict[str, Any]]:
    """Per metric: both models' values, the gain (positive = challenger better) and its percentile
    interval at `settings.confidence`, from `settings.resamples` resamples of the players shared by
    both frames (the same resample scores both). `BootstrapError` below `settings.min_rows` rows."""
    keys = ["player_id", "cutoff"]
    if len(challenger) != len(champion) or not challenger[keys].reset_index(drop=True).equals(
            champion[keys].reset_index(drop=True)):
        raise ValueError("a paired bootstrap needs both models' predictions on the same rows in the same order")
    if len(challenger) < settings.min_rows:
        cutoffs = sorted(map(str, challenger["cutoff"].unique()))
        raise BootstrapError(
            f"the promotion bootstrap needs at least {settings.min_rows} holdout rows, the rows both models are "
            f"compared on have {len(challenger)} (cutoffs {', '.join(cutoffs) or 'none'}): lengthen "
            "datasets.test_weeks, wait for more players, or lower promotion.bootstrap.min_rows")
    rng = np.random.default_rng(settings.seed)
    gains: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for start in range(0, settings.resamples, BLOCK):
        w = _weights(challenger["player_id"].to_numpy(), min(BLOCK, settings.resamples - start), rng)
        for m in names:
            gains[m].append(_gain(m, metric_under_weights(m, challenger, w, days),
                                  metric_under_weights(m, champion, w, days)))
    alpha = (1 - settings.confidence) / 2
    out = {}
    for m in names:
        values, (c, k) = np.concatenate(gains[m]), (point(m, f, days) for f in (challenger, champion))
        finite = values[np.isfinite(values)]
        low, high = (np.quantile(finite, [alpha, 1 - alpha]) if len(finite) else (np.nan, np.nan))
        out[m] = {"metric": m, "challenger": c, "champion": k, "gain": _gain(m, c, k), "low": float(low),
                  "high": float(high), "confidence": settings.confidence, "rows": int(len(challenger)),
                  "players": int(challenger["player_id"].nunique()), "resamples": settings.resamples,
                  "seed": settings.seed}
    return out


def _ci(b: dict[str, Any]) -> str:
    return f"CI{round(100 * b['confidence'])} {b['low']:+.4f}..{b['high']:+.4f}"


# ----------------------------------------------------------------------------------------------
# the rule


def decide(challenger: pd.DataFrame, champion: pd.DataFrame | None, rule: PromotionRule, *, days: int = 16,
           focus: Focus | None = None) -> Decision:
    """Apply the promotion rule to both models' predictions on the same holdout rows (`champion`
    None = no champion yet). Each frame holds the actuals and one model's prediction columns
    (`ltv.evaluate.Evaluation.frame`)."""
    name = rule.primary_metric
    ok_status = APPROVED if rule.approval == "auto" else PENDING
    shown = {m: point(m, challenger, days) for m in [name, *rule.guard_metrics]}
    invalid = [f"{m} is {v}" for m, v in shown.items() if not _finite(v)]
    if invalid:
        return Decision(False, REJECTED, f"invalid challenger: {' and '.join(invalid)} - a metric it cannot show "
                                         "is one it fails", primary={"metric": name, "challenger": shown[name]})
    if champion is None:
        return Decision(True, ok_status, f"no champion yet: the first valid model becomes champion with {name} "
                                         f"{shown[name]:.4f}", primary={"metric": name, "challenger": shown[name]})
    cis = paired_bootstrap(challenger, champion, list(dict.fromkeys([name, *rule.guard_metrics])), rule.bootstrap, days)
    primary = cis[name] | {"required": rule.min_effect}
    guards, breached = {}, []
    for g, tolerance in rule.guard_metrics.items():
        b = cis[g]
        if not _finite(b["champion"]):  # the champion has no value to compare with: nothing to guard against
            guards[g] = b | {"checked": False}
            continue
        upper = -b["low"]  # the upper bound of the loss
        guards[g] = b | {"loss": -b["gain"], "loss_upper": upper, "tolerance": tolerance, "checked": True}
        if not upper <= tolerance:
            breached.append(f"{g} loss up to {upper:.4f} exceeds tolerance {tolerance}")
    if not _finite(primary["champion"]):
        won, why = True, f"the champion has no valid {name} on these rows"
    else:
        won = primary["low"] > rule.min_effect
        why = (f"{name} {primary['challenger']:.4f} vs champion {primary['champion']:.4f} gain {primary['gain']:+.4f} "
               f"{_ci(primary)} {'clears' if won else 'does not clear'} min effect {rule.min_effect}")
    focused = None if focus is None else _focus(challenger, champion, rule, focus, days)  # recorded either way
    if not won and focused is not None:
        if focused["won"]:
            won, why = True, why + " but " + focused["why"]
            tolerance, upper = rule.primary_tolerance, -primary["low"]
            if _finite(primary["champion"]) and not upper <= tolerance:
                breached.append(f"{name} loss up to {upper:.4f} exceeds primary tolerance {tolerance}")
        else:
            why += " and " + focused["why"]
    if not won:
        return Decision(False, REJECTED, why, primary, guards, focused)
    if breached:
        return Decision(False, REJECTED, why + " but guards breached: " + " and ".join(breached), primary, guards,
                        focused)
    return Decision(True, ok_status, why + " and guards within tolerance", primary, guards, focused)


def _focus(challenger: pd.DataFrame, champion: pd.DataFrame, rule: PromotionRule, focus: Focus,
           days: int) -> dict[str, Any]:
    """The decayed metric's bootstrap on the decayed cohorts' rows (all rows if none is among them)."""
    rows = challenger["cutoff"].astype(str).isin(focus.cutoffs)
    if not rows.any():
        rows[:] = True
    b = paired_bootstrap(challenger[rows], champion[rows], [focus.metric], rule.bootstrap, days)[focus.metric]
    won = _finite(b["champion"]) and _finite(b["challenger"]) and b["low"] > rule.min_effect
    cohorts = " ".join(sorted(map(str, challenger.loc[rows, "cutoff"].unique())))
    why = (f"on the cohorts that decayed {cohorts} {focus.metric} gain {b['gain']:+.4f} {_ci(b)} "
           f"{'clears' if won else 'does not clear'} min effect {rule.min_effect}")
    return b | {"policy": focus.policy, "cutoffs": cohorts.split(), "won": bool(won), "why": why}
