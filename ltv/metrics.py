"""Every evaluation metric, each with its exact definition.

Sources: Kakao Games' ODIN LTV paper (minmax score, two-stage F1), King's next-purchase-day
paper (purchase-day MAE / accuracy / precision / F1 against a popularity baseline), and
google/lifetime_value (normalized Gini from the cumulative gain curve, decile calibration).
All functions are pure NumPy on 1-d arrays; `flat_metrics` gathers the named metrics that the
promotion rule, the report and the pipeline's condition step read.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

ArrayLike = Sequence[float] | np.ndarray | pd.Series


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=float)


# ----------------------------------------------------------------------------------------------
# LTV value


def minmax_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Kakao's 0-1 score: mean over players of min(y, ŷ) / max(y, ŷ), counting 0/0 as 1.

    Negative predictions are clipped to 0 first (LTV cannot be negative).
    """
    y, p = _arr(y_true), np.clip(_arr(y_pred), 0, None)
    hi, lo = np.maximum(y, p), np.minimum(y, p)
    ratio = np.divide(lo, hi, out=np.ones_like(hi), where=hi > 0)
    return float(ratio.mean()) if len(y) else float("nan")


def total_ratio(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Total predicted revenue / total actual revenue (1 = calibrated in aggregate)."""
    total = _arr(y_true).sum()
    return float(_arr(y_pred).sum() / total) if total > 0 else float("nan")


# ----------------------------------------------------------------------------------------------
# Ranking: gain curve, normalized Gini, Spearman, top-k capture


def gain_curve(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gain: x = share of players taken in decreasing prediction order,
    y = share of total actual value they hold. Tied predictions are taken together (the
    curve is linear across a tie), so the result does not depend on the order within ties."""
    y, p = _arr(y_true), _arr(y_pred)
    order = np.argsort(-p, kind="stable")
    y_sorted, p_sorted = y[order], p[order]
    # ends of tie groups
    last = np.r_[np.flatnonzero(np.diff(p_sorted) != 0), len(p_sorted) - 1]
    cum = np.cumsum(y_sorted)[last]
    total = y.sum()
    x = np.r_[0.0, (last + 1) / len(y)]
    g = np.r_[0.0, cum / total if total > 0 else np.zeros(len(last))]
    return x, g


def gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Gini from the gain curve: 2 * (area under the curve) - 1."""
    x, g = gain_curve(y_true, y_pred)
    return float(2 * np.trapezoid(g, x) - 1)


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Gini of the prediction's ordering divided by the Gini of the perfect ordering
    (google/lifetime_value). 1 = perfect ranking, 0 = random, < 0 = worse than random."""
    perfect = gini(y_true, y_true)
    return gini(y_true, y_pred) / perfect if perfect > 0 else float("nan")


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation (average ranks for ties); nan if either side is constant.

    With mostly zero actuals (non-payers share one tied rank) it rewards predicting exact zeros:
    a continuous score such as `ltv_expected` stays near 0.5 however well it orders players. So
    `flat_metrics` reports it for the hurdle prediction `ltv_pred` (exact zeros where stage 1
    says non-payer) and, as `spearman_payers`, for `ltv_expected` among actual payers only."""
    y, p = _arr(y_true), _arr(y_pred)
    if len(y) < 2 or np.ptp(y) == 0 or np.ptp(p) == 0:
        return float("nan")
    return float(stats.spearmanr(y, p).statistic)


def revenue_capture(y_true: ArrayLike, y_pred: ArrayLike, top: float) -> float:
    """Share of total actual revenue held by the `top` share of players by prediction
    (ties at the boundary are counted pro rata)."""
    x, g = gain_curve(y_true, y_pred)
    return float(np.interp(top, x, g))


def whale_recall(y_true: ArrayLike, y_pred: ArrayLike, top: float) -> float:
    """Of the actual top `top` share of players by value, the share also in the predicted top."""
    y, p = _arr(y_true), _arr(y_pred)
    k = max(1, int(round(top * len(y))))
    best = np.argsort(-y, kind="stable")[:k]
    actual = set(best[y[best] > 0])
    if not actual:
        return float("nan")
    predicted = set(np.argsort(-p, kind="stable")[:k])
    return len(actual & predicted) / len(actual)


def decile_table(y_true: ArrayLike, y_pred: ArrayLike, groups: int = 10) -> pd.DataFrame:
    """Players cut into `groups` equal groups by prediction (1 = highest): mean actual and mean
    predicted value per group."""
    y, p = _arr(y_true), _arr(y_pred)
    rank = np.argsort(np.argsort(-p, kind="stable"), kind="stable")
    decile = (rank * groups // max(len(p), 1)) + 1
    frame = pd.DataFrame({"decile": decile, "actual": y, "predicted": p})
    return frame.groupby("decile").agg(players=("actual", "size"), mean_actual=("actual", "mean"),
                                       mean_predicted=("predicted", "mean")).reset_index()


def decile_mape(y_true: ArrayLike, y_pred: ArrayLike, groups: int = 10) -> float:
    """Mean over prediction deciles of |mean predicted - mean actual| / mean actual
    (deciles whose actual mean is 0 are skipped)."""
    t = decile_table(y_true, y_pred, groups)
    t = t[t.mean_actual > 0]
    return float((np.abs(t.mean_predicted - t.mean_actual) / t.mean_actual).mean()) if len(t) else float("nan")


# ----------------------------------------------------------------------------------------------
# Classification (payer, churn)


def precision_recall_f1(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[float, float, float]:
    """Precision, recall and F1 of binary predictions (positive class 1); 0 where undefined."""
    y, p = _arr(y_true) > 0.5, _arr(y_pred) > 0.5
    tp = float(np.sum(y & p))
    precision = tp / p.sum() if p.sum() else 0.0
    recall = tp / y.sum() if y.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks); nan with one class only."""
    y, s = _arr(y_true) > 0.5, _arr(score)
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Average precision: sum over positives, in decreasing score, of precision at each
    threshold weighted by the recall step (ties form one threshold)."""
    y, s = _arr(y_true) > 0.5, _arr(score)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    y_sorted, s_sorted = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / y.sum()
    return float(np.sum(precision * recall_step))


def best_f1_threshold(y_true: ArrayLike, score: ArrayLike) -> float:
    """The score threshold (predict positive when score >= t) that maximises F1."""
    y, s = _arr(y_true) > 0.5, _arr(score)
    if y.sum() == 0:
        return 1.0
    order = np.argsort(-s, kind="stable")
    y_sorted, s_sorted = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last]
    f1 = 2 * tp / ((last + 1) + y.sum())
    return float(s_sorted[last[int(np.argmax(f1))]])


# ----------------------------------------------------------------------------------------------
# Next purchase day (King)


def purchase_day_metrics(actual_day: ArrayLike, offer_day: ArrayLike, likely_day: ArrayLike | None = None,
                         days: int = 16) -> dict[str, float]:
    """King's table, on players whose actual next purchase falls within 1..days.

    MAE (days) is measured for the offer day (the conditional median, which minimises absolute
    error); exact-day accuracy and precision / recall / F1 for the most likely day (the
    conditional mode; the offer day when no mode is given). Precision, recall and F1 are
    computed per day class and macro-averaged over the classes occurring in actual or
    predicted days.
    """
    a, o = np.asarray(actual_day, dtype=int), np.asarray(offer_day, dtype=int)
    m = np.asarray(likely_day if likely_day is not None else offer_day, dtype=int)
    keep = (a >= 1) & (a <= days)
    a, o, m = a[keep], o[keep], m[keep]
    if len(a) == 0:
        return {"purchase_day_mae": float("nan"), "purchase_day_accuracy": float("nan"),
                "purchase_day_precision": float("nan"), "purchase_day_recall": float("nan"),
                "purchase_day_f1": float("nan"), "purchase_day_n": 0}
    prec, rec, f1 = [], [], []
    for c in np.union1d(a, m):
        pr, rc, f = precision_recall_f1(a == c, m == c)
        prec.append(pr), rec.append(rc), f1.append(f)
    return {"purchase_day_mae": float(np.abs(a - o).mean()), "purchase_day_accuracy": float((a == m).mean()),
            "purchase_day_precision": float(np.mean(prec)), "purchase_day_recall": float(np.mean(rec)),
            "purchase_day_f1": float(np.mean(f1)), "purchase_day_n": int(len(a))}


def likely_day(p_days: np.ndarray) -> np.ndarray:
    """The most probable purchase day 1..N (the 'none' class excluded)."""
    return (np.argmax(p_days, axis=1) + 1).astype(int)


def offer_day(p_days: np.ndarray) -> np.ndarray:
    """King's offer day: the first day d where the CDF of the purchase-day distribution,
    conditional on a purchase within the horizon, reaches 0.5. `p_days` has one column per
    day 1..N (the 'none' class excluded); rows with no purchase probability get day 1."""
    cdf = np.cumsum(p_days, axis=1)
    total = cdf[:, -1:]
    cond = np.divide(cdf, total, out=np.ones_like(cdf), where=total > 0)
    return (np.argmax(cond >= 0.5 - 1e-12, axis=1) + 1).astype(int)


# ----------------------------------------------------------------------------------------------
# All named metrics of one set of predictions


# The prediction each value metric is computed on. `ltv_expected` (p_payer × value) is the
# ranking and calibration score; `ltv_pred` (the two-stage hurdle: value where stage 1 says
# payer, else exactly 0) is the point prediction, and the one a rank correlation fits when most
# actuals are exactly 0 (see `spearman`). The report prints this beside each metric.
METRIC_SCORE = {
    "normalized_gini": "ltv_expected", "top1_revenue_capture": "ltv_expected",
    "top10_revenue_capture": "ltv_expected", "whale_recall_top1": "ltv_expected", "decile_mape": "ltv_expected",
    "total_ratio": "ltv_expected", "total_ratio_error": "ltv_expected",
    "spearman": "ltv_pred", "spearman_payers": "ltv_expected (actual payers only)", "minmax": "ltv_pred",
    "minmax_payers": "ltv_pred (actual payers only)",
    "payer_f1": "payer_pred", "payer_precision": "payer_pred", "payer_recall": "payer_pred",
    "payer_roc_auc": "p_payer", "payer_pr_auc": "p_payer", "purchase_day_mae": "offer_day",
    "purchase_day_accuracy": "likely_day", "purchase_day_f1": "likely_day", "churn_f1": "churn_pred",
    "churn_roc_auc": "p_churn",
}


def flat_metrics(frame: pd.DataFrame, days: int = 16) -> dict[str, float]:
    """Named metrics from a frame with actuals (`ltv`, `payer`, `next_purchase_day`, `churned`)
    and any of the prediction columns `ltv_pred`, `ltv_expected`, `p_payer`, `payer_pred`,
    `offer_day`, `likely_day`, `p_churn`, `churn_pred`, each metric on the column `METRIC_SCORE`
    names (a missing `ltv_expected` or `ltv_pred` stands in for the other). Missing prediction
    columns skip their metrics."""
    y = frame["ltv"].to_numpy(float)
    out: dict[str, float] = {"players": int(len(frame)), "actual_total": float(y.sum())}
    rank = frame["ltv_expected"] if "ltv_expected" in frame else frame.get("ltv_pred")
    point = frame["ltv_pred"] if "ltv_pred" in frame else rank
    payers = y > 0
    if "ltv_pred" in frame:
        out["minmax"] = minmax_score(y, frame["ltv_pred"])
        # without the non-spenders, whose zero predictions score 1 and dominate `minmax` when most spend nothing
        out["minmax_payers"] = minmax_score(y[payers], _arr(frame["ltv_pred"])[payers])
    if rank is not None:
        out |= {"normalized_gini": normalized_gini(y, rank), "spearman": spearman(y, point),
                "spearman_payers": spearman(y[payers], _arr(rank)[payers]),
                "top1_revenue_capture": revenue_capture(y, rank, 0.01),
                "top10_revenue_capture": revenue_capture(y, rank, 0.10),
                "whale_recall_top1": whale_recall(y, rank, 0.01), "decile_mape": decile_mape(y, rank)}
        tr = total_ratio(y, rank)
        out |= {"total_ratio": tr, "total_ratio_error": abs(tr - 1)}
    if "payer_pred" in frame:
        p, r, f = precision_recall_f1(frame["payer"], frame["payer_pred"])
        out |= {"payer_precision": p, "payer_recall": r, "payer_f1": f}
    if "p_payer" in frame:
        out |= {"payer_roc_auc": roc_auc(frame["payer"], frame["p_payer"]),
                "payer_pr_auc": pr_auc(frame["payer"], frame["p_payer"])}
    if "offer_day" in frame:
        out |= purchase_day_metrics(frame["next_purchase_day"], frame["offer_day"], frame.get("likely_day"), days)
    if "churn_pred" in frame:
        p, r, f = precision_recall_f1(frame["churned"], frame["churn_pred"])
        out |= {"churn_precision": p, "churn_recall": r, "churn_f1": f}
    if "p_churn" in frame:
        out["churn_roc_auc"] = roc_auc(frame["churned"], frame["p_churn"])
    return out
