"""The promotion rule: a paired bootstrap over players decides, on predictions of both models on
the same rows. Synthetic holdouts with a known truth: a clearly better challenger, an equal one,
a guard breach, a decay-focused win, invalid metrics, too few rows, and the weighted metrics
checked against ltv.metrics on repeated rows (an independent reference)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ltv import config as cfg
from ltv import metrics
from ltv.config import Bootstrap, PromotionRule
from ltv.errors import BootstrapError, ConfigError
from ltv.promotion import APPROVED, PENDING, REJECTED, WEIGHTED, Focus, decide, metric_under_weights, paired_bootstrap

RULE = PromotionRule(primary_metric="normalized_gini", min_effect=0.0,
                     guard_metrics={"payer_f1": 0.02, "purchase_day_mae": 0.3},
                     bootstrap=Bootstrap(resamples=400, seed=3, min_rows=100))


def holdout(players: int = 600, cutoffs: tuple[str, ...] = ("2025-05-05", "2025-05-12"), seed: int = 0) -> pd.DataFrame:
    """Actuals of a synthetic holdout: each player at every cutoff, a latent value that drives spending."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in cutoffs:
        latent = rng.gamma(0.5, 1.0, players)
        payer = rng.random(players) < np.clip(latent / 2, 0, 0.9)
        ltv = np.where(payer, latent * 20 * rng.lognormal(0, 0.3, players), 0.0)
        day = np.where(payer, rng.integers(1, 17, players), 0)
        rows.append(pd.DataFrame({"player_id": [f"p{i}" for i in range(players)], "cutoff": c, "latent": latent,
                                  "ltv": ltv, "payer": payer.astype(int), "next_purchase_day": day,
                                  "churned": (rng.random(players) < 0.3).astype(int)}))
    return pd.concat(rows, ignore_index=True)


def predictions(truth: pd.DataFrame, noise: float, seed: int, day_error: int = 2) -> pd.DataFrame:
    """A model whose scores are the latent value blurred by `noise` (more noise = worse model)."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    score = truth["latent"].to_numpy() * np.exp(rng.normal(0, noise, n))
    p_payer = np.clip(score / 2, 0, 1)
    day = truth["next_purchase_day"].to_numpy()
    offer = np.clip(np.where(day > 0, day, 8) + rng.integers(-day_error, day_error + 1, n), 1, 16)
    return truth.assign(ltv_expected=score * 20 * p_payer, ltv_pred=np.where(p_payer > 0.3, score * 20, 0.0),
                        p_payer=p_payer, payer_pred=(p_payer > 0.3).astype(int), offer_day=offer, likely_day=offer,
                        p_churn=0.3, churn_pred=0)


TRUTH = holdout()
GOOD, BAD = predictions(TRUTH, 0.2, 1), predictions(TRUTH, 1.5, 2)


def test_a_clearly_better_challenger_is_approved_with_its_interval_recorded() -> None:
    d = decide(GOOD, BAD, RULE)
    assert d.promote and d.status == APPROVED and "clears min effect 0.0" in d.reason, d.reason
    assert 0 < d.primary["low"] < d.primary["gain"] < d.primary["high"]
    assert d.primary["resamples"] == 400 and d.primary["players"] == 600 and d.primary["rows"] == 1200
    assert d.to_json()["promote"] == 1


def test_a_worse_or_equal_challenger_is_rejected() -> None:
    assert not decide(BAD, GOOD, RULE).promote
    same = decide(GOOD, GOOD.copy(), RULE)
    assert not same.promote and same.primary["low"] == same.primary["high"] == 0, "a tie is not a win"


def test_an_equal_skill_challenger_is_rarely_promoted() -> None:
    """Two models with the same noise: the lower bound clears 0 in about 2.5 % of holdouts."""
    promoted = sum(decide(predictions(TRUTH, 0.8, 10 + s), predictions(TRUTH, 0.8, 100 + s),
                          RULE.model_copy(update={"guard_metrics": {}})).promote for s in range(40))
    assert promoted <= 4, promoted


def test_a_minimum_effect_raises_the_bar() -> None:
    d = decide(GOOD, BAD, RULE)
    strict = decide(GOOD, BAD, RULE.model_copy(update={"min_effect": d.primary["low"] + 1e-6}))
    assert not strict.promote and "does not clear" in strict.reason


def test_decisions_are_reproducible_and_follow_the_seed() -> None:
    a, b = (decide(predictions(TRUTH, 0.8, 5), predictions(TRUTH, 0.85, 6), RULE) for _ in range(2))
    assert a.primary == b.primary
    other = decide(predictions(TRUTH, 0.8, 5), predictions(TRUTH, 0.85, 6),
                   RULE.model_copy(update={"bootstrap": Bootstrap(resamples=400, seed=4, min_rows=100)}))
    assert other.primary["low"] != a.primary["low"] and other.primary["gain"] == a.primary["gain"]


def test_a_guard_whose_loss_may_exceed_its_tolerance_rejects_a_better_primary() -> None:
    late = GOOD.assign(offer_day=np.clip(GOOD["offer_day"] + 2, 1, 16))  # ~2 days worse on purchase day
    d = decide(late, BAD, RULE)
    assert not d.promote and "purchase_day_mae loss up to" in d.reason and "exceeds tolerance 0.3" in d.reason
    assert d.guards["purchase_day_mae"]["loss_upper"] > 0.3
    assert decide(late, BAD, RULE.model_copy(update={"guard_metrics": {"purchase_day_mae": 3.0}})).promote


def test_the_interval_covers_what_resampled_players_show() -> None:
    """Independent check: players drawn with replacement and rescored with ltv.metrics."""
    ours, theirs = predictions(TRUTH, 0.8, 5), predictions(TRUTH, 0.9, 6)
    b = paired_bootstrap(ours, theirs, ["normalized_gini"], Bootstrap(resamples=400, seed=0, min_rows=10), 16)
    rng, players = np.random.default_rng(1), TRUTH["player_id"].unique()
    gains = []
    for _ in range(200):
        rows = TRUTH.reset_index().merge(pd.DataFrame({"player_id": rng.choice(players, len(players))}))["index"]
        gains.append(metrics.normalized_gini(ours.ltv[rows], ours.ltv_expected[rows])
                     - metrics.normalized_gini(theirs.ltv[rows], theirs.ltv_expected[rows]))
    low, high = np.quantile(gains, [0.025, 0.975])
    assert abs(b["normalized_gini"]["low"] - low) < 0.015 and abs(b["normalized_gini"]["high"] - high) < 0.015


@pytest.mark.parametrize("metric", sorted(WEIGHTED))
def test_weighted_metrics_equal_the_metric_on_repeated_rows(metric) -> None:
    frame = predictions(holdout(150, ("2025-05-05",), seed=7), 0.7, 8).assign(churn_pred=lambda f: f.index % 3 == 0)
    counts = np.random.default_rng(9).integers(0, 3, (3, len(frame)))
    got = metric_under_weights(metric, frame, counts.astype(float), 16)
    for w, value in zip(counts, got):
        expected = metrics.flat_metrics(frame.iloc[np.repeat(np.arange(len(frame)), w)], 16)[metric]
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), metric


def test_a_decay_retrain_may_win_on_the_metric_and_cohorts_that_decayed() -> None:
    """The challenger fixes payer PR-AUC on the last cohort; Gini differs only by noise."""
    recent = TRUTH["cutoff"] == "2025-05-12"
    fixed = GOOD.assign(p_payer=np.where(recent, np.clip(TRUTH["payer"] * 0.6 + 0.2, 0, 1), GOOD["p_payer"]))
    stale = predictions(TRUTH, 0.2, 1)
    plain = decide(fixed, stale, RULE)
    assert not plain.promote and plain.focus is None
    focus = Focus("label_decay", "payer_pr_auc", ("2025-05-12",))
    d = decide(fixed, stale, RULE, focus=focus)
    assert d.promote and "on the cohorts that decayed 2025-05-12 payer_pr_auc" in d.reason, d.reason
    assert decide(GOOD, BAD, RULE, focus=focus).focus["metric"] == "payer_pr_auc", "recorded when the primary wins"
    assert d.focus["rows"] == 600 and d.focus["low"] > 0
    worse = fixed.assign(ltv_expected=np.where(recent, 1.0, fixed["ltv_expected"]))  # ranks the last cohort badly
    d = decide(worse, stale, RULE, focus=focus)
    assert not d.promote and "exceeds primary tolerance" in d.reason, d.reason


def test_first_valid_model_becomes_champion_and_invalid_ones_never_do() -> None:
    assert decide(GOOD, None, RULE).status == APPROVED
    flat = GOOD.assign(ltv=0.0)  # nobody spent: Gini is undefined
    for champion in (None, BAD):
        d = decide(flat, champion, RULE)
        assert d.status == REJECTED and "normalized_gini is nan" in d.reason


def test_a_guard_metric_the_challenger_cannot_show_rejects_it_with_or_without_champion() -> None:
    blind = GOOD.assign(next_purchase_day=0)  # no purchase day to compare: day MAE is NaN
    for champion in (None, BAD):
        d = decide(blind, champion, RULE)
        assert not d.promote and "purchase_day_mae is nan" in d.reason


def test_a_champion_without_a_guard_value_does_not_block_a_valid_challenger() -> None:
    """A constant champion has no rank correlation (NaN): nothing to guard against. Spearman has no
    weighted form, so this also runs the exact fallback (each resample rescored)."""
    rule = RULE.model_copy(update={"guard_metrics": {"spearman": 0.01},
                                   "bootstrap": Bootstrap(resamples=100, min_rows=100)})
    d = decide(GOOD, BAD.assign(ltv_pred=1.0), rule)
    assert d.promote and d.guards["spearman"]["checked"] is False


def test_manual_approval_registers_winners_as_pending() -> None:
    assert decide(GOOD, BAD, RULE.model_copy(update={"approval": "manual"})).status == PENDING


def test_lower_is_better_primary_metric() -> None:
    rule = RULE.model_copy(update={"primary_metric": "purchase_day_mae", "guard_metrics": {}})
    assert decide(predictions(TRUTH, 0.5, 1, day_error=0), predictions(TRUTH, 0.5, 1, day_error=3), rule).promote
    assert not decide(predictions(TRUTH, 0.5, 1, day_error=3), predictions(TRUTH, 0.5, 1, day_error=0), rule).promote


def test_reasons_fit_sagemaker_metadata_values() -> None:
    import re
    focus = Focus("label_decay", "payer_pr_auc", ("2025-05-12",))
    for d in (decide(GOOD, BAD, RULE), decide(BAD, GOOD, RULE, focus=focus), decide(GOOD, None, RULE)):
        assert re.fullmatch(r"[\w\s.:/=+\-@]*", d.reason), d.reason


def test_a_bootstrap_on_too_few_rows_is_a_named_error() -> None:
    small = RULE.model_copy(update={"bootstrap": Bootstrap(min_rows=5000)})
    with pytest.raises(BootstrapError, match="at least 5000 holdout rows.*have 1200.*promotion.bootstrap.min_rows"):
        decide(GOOD, BAD, small)


def test_a_guard_naming_an_unknown_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="promotion.guard_metrics.payer_f2"):
        cfg.load("galaxy-raiders", {"promotion": {"guard_metrics": {"payer_f2": 0.1}}})
