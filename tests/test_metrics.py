"""Metrics against hand-computed values and independent references (scikit-learn, SciPy)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from ltv import metrics


def test_minmax_hand_values_and_edge_cases() -> None:
    assert metrics.minmax_score([0, 10, 5], [0, 5, 10]) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics.minmax_score([0, 0, 0], [0, 0, 0]) == 1.0, "0/0 counts as 1"
    assert metrics.minmax_score([0, 0], [1, 0]) == 0.5
    assert metrics.minmax_score([4], [-3]) == 0.0, "negative predictions are clipped to 0"


def test_normalized_gini_perfect_random_reversed_and_constant() -> None:
    rng = np.random.default_rng(0)
    y = rng.lognormal(0, 2, 20_000) * (rng.random(20_000) < 0.1)
    assert metrics.normalized_gini(y, y) == pytest.approx(1.0)
    assert abs(metrics.normalized_gini(y, rng.random(len(y)))) < 0.05
    assert metrics.normalized_gini(y, np.ones(len(y))) == pytest.approx(0.0), "all-tied predictions rank nothing"
    ranked = y + rng.random(len(y)) * 1e-6  # strictly increasing in y: perfect order, no ties
    assert metrics.normalized_gini(y, -ranked) < -0.9


def test_normalized_gini_of_binary_value_is_2auc_minus_1() -> None:
    """For 0/1 values the gain-curve Gini normalised by the perfect one equals 2·AUC - 1."""
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.2).astype(float)
    score = y * 0.5 + rng.random(5000)
    score = np.round(score, 2)  # with ties
    assert metrics.normalized_gini(y, score) == pytest.approx(2 * roc_auc_score(y, score) - 1, abs=1e-9)


def test_gini_ignores_order_within_ties() -> None:
    y = np.array([5.0, 0, 0, 1])
    assert metrics.gini(y, [1, 1, 1, 0]) == metrics.gini(y[[1, 2, 0, 3]], [1, 1, 1, 0])


def test_revenue_capture_and_whale_recall() -> None:
    y = np.array([100.0] + [0.0] * 9 + [10.0] * 10)
    pred = np.arange(20, 0, -1, dtype=float)  # ranks player 0 first
    assert metrics.revenue_capture(y, pred, 0.05) == pytest.approx(100 / 200)
    assert metrics.revenue_capture(y, y, 0.55) == pytest.approx(1.0)
    assert metrics.revenue_capture(y, y, 0.5) == pytest.approx(0.95), "ties at the boundary count pro rata"
    assert metrics.whale_recall(y, pred, 0.05) == 1.0
    assert metrics.whale_recall(y, -pred, 0.05) == 0.0
    assert metrics.total_ratio([1, 2, 3], [2, 2, 2]) == 1.0


def test_decile_table_and_mape() -> None:
    y = np.arange(1, 21, dtype=float)
    t = metrics.decile_table(y, y * 2)
    assert list(t.players) == [2] * 10
    assert t.mean_actual.iloc[0] == pytest.approx(19.5) and t.mean_predicted.iloc[0] == pytest.approx(39.0)
    assert metrics.decile_mape(y, y * 2) == pytest.approx(1.0)
    assert metrics.decile_mape(y, y) == 0.0


def test_spearman_matches_scipy_and_is_nan_for_constants() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(100), rng.random(100)
    assert metrics.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert np.isnan(metrics.spearman(a, np.ones(100)))


def test_classification_metrics_match_references() -> None:
    assert metrics.precision_recall_f1([1, 1, 0, 0], [1, 0, 1, 0]) == (0.5, 0.5, 0.5)
    assert metrics.precision_recall_f1([0, 0], [0, 0]) == (0.0, 0.0, 0.0)
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.15).astype(int)
    s = np.round(y * 0.3 + rng.random(3000), 1)  # many ties
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert metrics.pr_auc(y, s) == pytest.approx(average_precision_score(y, s))
    assert np.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_best_f1_threshold_is_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(500) < 0.2).astype(int)
    s = np.round(y * 0.4 + rng.random(500), 2)
    t = metrics.best_f1_threshold(y, s)
    best = max(metrics.precision_recall_f1(y, s >= c)[2] for c in np.unique(s))
    assert metrics.precision_recall_f1(y, s >= t)[2] == pytest.approx(best)


def test_purchase_day_metrics_hand_example() -> None:
    actual = [1, 3, 5, 0, 16]        # 0 = no purchase: not evaluated
    offer = [2, 3, 9, 4, 16]
    likely = [1, 3, 9, 4, 15]
    m = metrics.purchase_day_metrics(actual, offer, likely, days=16)
    assert m["purchase_day_n"] == 4
    assert m["purchase_day_mae"] == pytest.approx((1 + 0 + 4 + 0) / 4)
    assert m["purchase_day_accuracy"] == pytest.approx(2 / 4)
    # classes {1,3,5,9,15,16}: F1 = 1 for days 1 and 3, 0 for the others
    assert m["purchase_day_f1"] == pytest.approx(2 / 6)


def test_offer_day_is_where_the_conditional_cdf_reaches_half() -> None:
    p = np.array([[0.1, 0.1, 0.1, 0.1],     # conditional CDF .25 .5 -> day 2
                  [0.0, 0.0, 0.0, 0.3],     # all mass on day 4
                  [0.0, 0.0, 0.0, 0.0],     # no purchase expected -> day 1
                  [0.3, 0.05, 0.05, 0.1]])  # .6 at day 1
    assert metrics.offer_day(p).tolist() == [2, 4, 1, 1]
    assert metrics.likely_day(p).tolist()[1] == 4


def test_flat_metrics_skips_what_is_not_predicted() -> None:
    frame = pd.DataFrame({"ltv": [0.0, 5.0], "payer": [0, 1], "next_purchase_day": [0, 2], "churned": [1, 0],
                          "ltv_pred": [0.0, 4.0], "ltv_expected": [0.1, 3.0]})
    m = metrics.flat_metrics(frame)
    assert m["minmax"] == pytest.approx((1 + 0.8) / 2) and "payer_f1" not in m and "purchase_day_mae" not in m


def test_minmax_over_payers_leaves_out_the_non_spenders_zero_over_zero() -> None:
    """Most players spend nothing, and a zero prediction for each scores 1: `minmax` rises with their
    share whatever the model does on the spenders; `minmax_payers` scores only the players who paid."""
    frame = pd.DataFrame({"ltv": [0.0] * 8 + [10.0, 4.0], "ltv_pred": [0.0] * 7 + [3.0, 5.0, 0.0]})
    m = metrics.flat_metrics(frame)
    assert m["minmax"] == pytest.approx((7 + 0 + 0.5 + 0) / 10)
    assert m["minmax_payers"] == pytest.approx((0.5 + 0) / 2)


def _reference_gini(y: np.ndarray, p: np.ndarray) -> float:
    """The textbook (Kaggle) normalized Gini, written independently: sort by prediction, sum the
    cumulative share of actual value; defined for predictions without ties."""
    def raw(order_by: np.ndarray) -> float:
        ordered = y[np.argsort(-order_by, kind="stable")]
        cum = np.cumsum(ordered) / ordered.sum()
        return float(cum.sum() / len(y) - (len(y) + 1) / (2 * len(y)))
    return raw(p) / raw(y + np.arange(len(y)) * 1e-12)  # the perfect order, ties in y broken arbitrarily


def test_normalized_gini_matches_an_independent_reference_without_ties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        y = rng.lognormal(0, 1.5, 3000) * (rng.random(3000) < 0.15)
        p = y * rng.lognormal(0, 1, 3000) + rng.random(3000)  # informative, no ties
        assert metrics.normalized_gini(y, p) == pytest.approx(_reference_gini(y, p), abs=2e-3)
    # hand value: y = [0, 1, 3] taken in the order 3, 1, 0: cumulative shares 3/4, 1, 1;
    # area 1/3 * (3/8 + 7/8 + 1) = 3/4, Gini 2 * 3/4 - 1 = 1/2
    assert metrics.gini([0.0, 1, 3], [1.0, 2, 3]) == pytest.approx(0.5)


def test_gini_with_ties_is_the_mean_over_every_order_within_the_ties() -> None:
    """The trapezoid (tie-averaged) Gini equals the expected Gini when tied players are taken in
    a random order: checked by enumerating every order of the tied groups."""
    import itertools

    y = np.array([5.0, 0, 0, 1, 2, 0, 7])
    p = np.array([1.0, 1, 1, 0, 2, 2, 3])  # two tie groups
    groups = [np.flatnonzero(p == v) for v in np.unique(p)[::-1]]
    values = []
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        sequence = np.concatenate([np.array(o) for o in orders])
        strict = np.empty(len(p))
        strict[sequence] = -np.arange(len(p), dtype=float)  # that order, without ties
        values.append(metrics.gini(y, strict))
    assert metrics.gini(y, p) == pytest.approx(np.mean(values))


def test_spearman_is_reported_on_the_hurdle_prediction_and_among_payers() -> None:
    """Mostly-zero actuals: the rank correlation is taken on `ltv_pred` (exact zeros) and, among
    actual payers, on `ltv_expected`; checked against SciPy on the same columns."""
    rng = np.random.default_rng(6)
    n = 4000
    y = rng.lognormal(1, 1, n) * (rng.random(n) < 0.1)
    expected = y * rng.lognormal(0, 0.5, n) + rng.random(n) * 0.5
    hurdle = np.where(expected > 0.6, expected, 0.0)
    frame = pd.DataFrame({"ltv": y, "payer": (y > 0).astype(int), "next_purchase_day": 0, "churned": 0,
                          "ltv_pred": hurdle, "ltv_expected": expected})
    m = metrics.flat_metrics(frame)
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, hurdle).statistic)
    assert m["spearman_payers"] == pytest.approx(stats.spearmanr(y[y > 0], expected[y > 0]).statistic)
    assert m["spearman"] > stats.spearmanr(y, expected).statistic, "exact zeros fit zero-inflated actuals"
    assert metrics.METRIC_SCORE["spearman"] == "ltv_pred" and metrics.METRIC_SCORE["normalized_gini"] == "ltv_expected"
