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
