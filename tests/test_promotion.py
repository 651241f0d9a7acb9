"""The promotion rule: better, worse, tie, guard breached, no champion, invalid, manual approval."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ltv.config import PromotionRule
from ltv.promotion import APPROVED, PENDING, REJECTED, decide

RULE = PromotionRule(primary_metric="normalized_gini", min_improvement=0.01,
                     guard_metrics={"payer_f1": 0.02, "purchase_day_mae": 0.3})
CHAMPION = {"normalized_gini": 0.80, "payer_f1": 0.70, "purchase_day_mae": 3.0}


def test_a_clearly_better_challenger_is_approved() -> None:
    d = decide({"normalized_gini": 0.82, "payer_f1": 0.69, "purchase_day_mae": 3.2}, CHAMPION, RULE)
    assert d.promote and d.status == APPROVED and "beats champion" in d.reason
    assert d.primary["gain"] == 0.82 - 0.80
    assert d.to_json()["promote"] == 1


def test_worse_or_not_better_by_the_margin_is_rejected() -> None:
    for value in (0.79, 0.805):
        d = decide({"normalized_gini": value, "payer_f1": 0.7, "purchase_day_mae": 3.0}, CHAMPION, RULE)
        assert not d.promote and d.status == REJECTED and "below the required 0.01" in d.reason


def test_a_tie_is_not_a_win_even_without_margin() -> None:
    rule = RULE.model_copy(update={"min_improvement": 0.0})
    d = decide(dict(CHAMPION), CHAMPION, rule)
    assert not d.promote and d.status == REJECTED


def test_a_breached_guard_rejects_a_better_primary() -> None:
    d = decide({"normalized_gini": 0.90, "payer_f1": 0.60, "purchase_day_mae": 3.1}, CHAMPION, RULE)
    assert not d.promote and "payer_f1 worse by 0.1000" in d.reason
    d = decide({"normalized_gini": 0.90, "payer_f1": 0.70, "purchase_day_mae": 3.5}, CHAMPION, RULE)
    assert not d.promote and "purchase_day_mae worse by 0.5000" in d.reason, "lower-is-better guard"


GUARDS_OK = {"payer_f1": 0.70, "purchase_day_mae": 3.0}  # the challenger's guards, all within tolerance


def test_first_valid_model_becomes_champion_and_invalid_ones_never_do() -> None:
    assert decide({"normalized_gini": 0.3}, None, RULE).status == APPROVED
    assert decide({"normalized_gini": None}, None, RULE).status == REJECTED
    # the guards are fine, so the NaN primary metric alone is what rejects (a challenger without
    # its guard metrics would be rejected for those, whatever the primary metric said)
    d = decide(GUARDS_OK | {"normalized_gini": float("nan")}, CHAMPION, RULE)
    assert d.status == REJECTED and "normalized_gini is not a finite number" in d.reason
    assert decide(GUARDS_OK | {"normalized_gini": 0.9}, CHAMPION, RULE).status == APPROVED, "the same, valid"


def _as_written(value: float) -> object:
    """A metric after the evaluation's metrics JSON (evaluation.json / metrics.json) round trip."""
    return json.loads(json.dumps({"m": value}))["m"]


# what a primary metric the challenger cannot show looks like on the real paths: numpy's NaN and
# inf (float64 and float32, as metric functions return them), None (`ltv.evaluate.clean` and
# JSON null), the NaN that json writes and reads back, a missing key
UNSHOWABLE = [float("nan"), np.float64("nan"), np.float32("nan"), np.float64("inf"), -np.inf, None,
              _as_written(float("nan")), "nan", "0.9", True]


@pytest.mark.parametrize("champion", [None, CHAMPION], ids=["no-champion", "champion"])
@pytest.mark.parametrize("bad", UNSHOWABLE, ids=repr)
def test_a_primary_metric_the_challenger_cannot_show_is_rejected_with_or_without_a_champion(bad, champion) -> None:
    d = decide(GUARDS_OK | {"normalized_gini": bad}, champion, RULE)
    assert not d.promote and d.status == REJECTED and "not a finite number" in d.reason
    assert decide(GUARDS_OK, champion, RULE).status == REJECTED, "missing entirely"


@pytest.mark.parametrize("good", [np.float64(0.9), np.float32(0.9), 0.9, _as_written(0.9), np.int64(1), 1])
def test_a_valid_primary_metric_of_any_numeric_type_is_judged_on_its_value(good) -> None:
    assert decide(GUARDS_OK | {"normalized_gini": good}, CHAMPION, RULE).status == APPROVED
    assert decide({"normalized_gini": good}, None, RULE).status == APPROVED
    low = type(good)(0) if not isinstance(good, (np.floating, float)) else type(good)(0.5)
    assert decide(GUARDS_OK | {"normalized_gini": low}, CHAMPION, RULE).status == REJECTED
    assert not math.isnan(decide({"normalized_gini": good}, None, RULE).primary["challenger"])


def test_guard_metrics_are_honoured_each_in_its_own_direction() -> None:
    """Each guard rejects alone, by its own tolerance and direction; within tolerance it does not."""
    primary = {"normalized_gini": 0.90}
    base = primary | GUARDS_OK
    assert decide(base, CHAMPION, RULE).promote
    for guard, within, beyond in (("payer_f1", 0.69, 0.67), ("purchase_day_mae", 3.2, 3.4)):
        d = decide(base | {guard: within}, CHAMPION, RULE)
        assert d.promote and d.guards[guard]["checked"], guard
        d = decide(base | {guard: beyond}, CHAMPION, RULE)
        assert not d.promote and d.status == REJECTED and f"{guard} worse by" in d.reason, guard
        assert d.guards[guard]["loss"] == pytest.approx(0.03 if guard == "payer_f1" else 0.4)
    better = decide(base | {"payer_f1": 0.9, "purchase_day_mae": 1.0}, CHAMPION, RULE)
    assert better.promote and better.guards["purchase_day_mae"]["loss"] == pytest.approx(-2.0), "lower is better"
    assert decide(base, CHAMPION, RULE.model_copy(update={"guard_metrics": {}})).guards == {}
    assert decide(primary | {"payer_f1": 0.1, "purchase_day_mae": 9.0}, CHAMPION,
                  RULE.model_copy(update={"guard_metrics": {}})).promote, "no guards configured: none apply"


def test_the_boundaries_of_the_margin_and_of_a_guard_tolerance() -> None:
    """Exactly the required margin wins; exactly the tolerated loss is tolerated (values exact in binary)."""
    rule = PromotionRule(primary_metric="normalized_gini", min_improvement=0.125, guard_metrics={"payer_f1": 0.25})
    champion = {"normalized_gini": 0.5, "payer_f1": 0.75}
    assert decide({"normalized_gini": 0.625, "payer_f1": 0.5}, champion, rule).promote
    assert not decide({"normalized_gini": 0.625, "payer_f1": 0.4375}, champion, rule).promote
    assert not decide({"normalized_gini": 0.5625, "payer_f1": 0.75}, champion, rule).promote


def test_a_tie_is_not_a_win_with_a_margin_either() -> None:
    d = decide(dict(CHAMPION), CHAMPION, RULE)
    assert not d.promote and d.status == REJECTED and d.primary["gain"] == 0
    assert "below the required" in d.reason


def test_manual_approval_registers_winners_as_pending() -> None:
    rule = RULE.model_copy(update={"approval": "manual"})
    assert decide({"normalized_gini": 0.9, "payer_f1": 0.7, "purchase_day_mae": 3.0}, CHAMPION, rule).status == PENDING


def test_lower_is_better_primary_metric() -> None:
    rule = PromotionRule(primary_metric="purchase_day_mae", min_improvement=0.1, guard_metrics={})
    assert decide({"purchase_day_mae": 2.5}, {"purchase_day_mae": 3.0}, rule).promote
    assert not decide({"purchase_day_mae": 2.95}, {"purchase_day_mae": 3.0}, rule).promote


def test_a_guard_metric_the_challenger_cannot_show_rejects_it() -> None:
    """NaN, inf or a missing guard metric in the challenger is a failed guard, not a skipped one."""
    for bad in (float("nan"), float("inf"), float("-inf"), None):
        d = decide({"normalized_gini": 0.95, "payer_f1": bad, "purchase_day_mae": 3.0}, CHAMPION, RULE)
        assert not d.promote and d.status == REJECTED and "payer_f1 is not a finite number" in d.reason, bad
        assert d.guards["payer_f1"]["checked"]


def test_a_champion_without_a_guard_value_does_not_block_a_valid_challenger() -> None:
    champion = CHAMPION | {"purchase_day_mae": float("nan")}
    d = decide({"normalized_gini": 0.9, "payer_f1": 0.7, "purchase_day_mae": 3.0}, champion, RULE)
    assert d.promote and d.guards["purchase_day_mae"]["checked"] is False


def test_each_decision_carries_its_figures_in_the_evaluation_contract() -> None:
    """`to_json()` is the `promotion` block of evaluation.json: the condition step reads `promote`
    (1/0), the report and the registry the figures behind it, in every branch of the rule."""
    first = decide({"normalized_gini": 0.3}, None, RULE)
    assert first.promote is True and first.primary == {"metric": "normalized_gini", "challenger": 0.3}
    assert first.to_json() == {"promote": 1, "status": APPROVED, "reason": first.reason,
                               "primary": first.primary, "guards": {}}
    assert "0.3000" in first.reason
    invalid = decide({"normalized_gini": None}, None, RULE)
    assert invalid.promote is False and invalid.to_json()["promote"] == 0 and "None" in invalid.reason
    no_valid_champion = decide(GUARDS_OK | {"normalized_gini": 0.6}, CHAMPION | {"normalized_gini": float("nan")},
                               RULE.model_copy(update={"approval": "manual"}))
    assert no_valid_champion.promote is True and no_valid_champion.status == PENDING
    assert no_valid_champion.primary["metric"] == "normalized_gini" and no_valid_champion.primary["challenger"] == 0.6
    assert math.isnan(no_valid_champion.primary["champion"]) and "0.6000 wins" in no_valid_champion.reason
    beaten = decide(GUARDS_OK | {"normalized_gini": 0.5}, CHAMPION, RULE)
    assert beaten.promote is False and beaten.to_json()["promote"] == 0
    assert beaten.primary == {"metric": "normalized_gini", "challenger": 0.5, "champion": 0.8,
                              "gain": pytest.approx(-0.3), "required": 0.01}
    assert beaten.guards["payer_f1"] == {"challenger": 0.7, "champion": 0.7, "loss": 0.0, "tolerance": 0.02,
                                         "checked": True}
    breached = decide({"normalized_gini": 0.9, "payer_f1": 0.5, "purchase_day_mae": 9.0}, CHAMPION, RULE)
    assert breached.promote is False and breached.primary["gain"] == pytest.approx(0.1)
    assert "payer_f1 worse by 0.2000 (tolerance 0.02); purchase_day_mae worse by 6.0000" in breached.reason
    assert breached.guards["purchase_day_mae"]["loss"] == pytest.approx(6.0)
    unshown = decide({"normalized_gini": 0.9, "purchase_day_mae": 3.0}, CHAMPION, RULE)
    assert unshown.guards["payer_f1"] == {"challenger": None, "champion": 0.7, "checked": True}
    unguarded = decide(GUARDS_OK | {"normalized_gini": 0.9}, CHAMPION | {"payer_f1": None}, RULE)
    assert unguarded.guards["payer_f1"] == {"challenger": 0.7, "champion": None, "checked": False}


def test_every_guard_is_checked_after_one_that_cannot_be() -> None:
    """A guard skipped (the champion has no value) or failed (the challenger has none) does not stop
    the guards after it from being checked."""
    champion = CHAMPION | {"payer_f1": float("nan")}
    d = decide({"normalized_gini": 0.9, "payer_f1": 0.7, "purchase_day_mae": 9.0}, champion, RULE)
    assert not d.promote and "purchase_day_mae worse by 6.0000" in d.reason
    d = decide({"normalized_gini": 0.9, "payer_f1": None, "purchase_day_mae": 9.0}, CHAMPION, RULE)
    assert not d.promote and "payer_f1 is not a finite number" in d.reason and "purchase_day_mae worse" in d.reason


def test_without_a_margin_any_gain_wins() -> None:
    rule = RULE.model_copy(update={"min_improvement": 0.0})
    assert decide(GUARDS_OK | {"normalized_gini": 0.8001}, CHAMPION, rule).promote
