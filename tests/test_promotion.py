"""The promotion rule: better, worse, tie, guard breached, no champion, invalid, manual approval."""
from __future__ import annotations

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


def test_first_valid_model_becomes_champion_and_invalid_ones_never_do() -> None:
    assert decide({"normalized_gini": 0.3}, None, RULE).status == APPROVED
    assert decide({"normalized_gini": None}, None, RULE).status == REJECTED
    assert decide({"normalized_gini": float("nan")}, CHAMPION, RULE).status == REJECTED


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
