"""The label horizon against the length of the logs (ltv.horizon)."""
from __future__ import annotations

import datetime as dt

import pytest

from ltv import datasets, horizon
from ltv.errors import HorizonError
from conftest import make_config

FIRST = dt.date(2025, 1, 6)


def nine_months(**choice) -> object:
    return make_config(horizons={"ltv_days": 270, "purchase_days": 16}, datasets=choice)


def test_a_horizon_that_fits_changes_nothing() -> None:
    config = make_config()
    need = horizon.needed_days(config)
    assert need == 7 + 7 * (8 + 2 + 2) + 3 * 28  # weeks, two embargoes and the last test labels
    checked = horizon.fit(config, FIRST, FIRST + dt.timedelta(days=need - 1))
    assert checked.config is config and checked.message == ""


def test_a_horizon_longer_than_the_logs_allow_says_so_and_names_both_ways_out() -> None:
    config = nine_months()
    last = FIRST + dt.timedelta(days=364)  # 9 months of value from one year of logs cannot be tested
    with pytest.raises(HorizonError) as err:
        horizon.fit(config, FIRST, last)
    text = str(err.value)
    assert "365 days" in text and f"needs {horizon.needed_days(config)}" in text
    best = horizon.longest_fitting(config, 365)
    assert f"at most {best} days" in text and "train_shorter" in text and "BTYD" in text
    assert "rankings carry over" in text and "absolute values do not" in text


def test_train_shorter_trains_at_the_longest_horizon_that_fits_or_the_configured_one() -> None:
    last = FIRST + dt.timedelta(days=364)
    checked = horizon.fit(nine_months(when_history_short="train_shorter"), FIRST, last)
    best = horizon.longest_fitting(checked.config, 365)
    assert checked.config.horizons.ltv_days == best and horizon.needed_days(checked.config) <= 365
    assert horizon.needed_days(checked.config.model_copy(update={"horizons": checked.config.horizons.model_copy(
        update={"ltv_days": best + 1})})) > 365, "it is the longest"
    assert "Rankings carry over" in checked.message
    # a rolling dataset at the shorter horizon has its test labels inside the logs
    spec = datasets.rolling_spec(checked.config, last + dt.timedelta(days=1))
    assert spec.train[0] >= FIRST
    fixed = horizon.fit(nine_months(when_history_short="train_shorter", training_ltv_days=90), FIRST, last)
    assert fixed.config.horizons.ltv_days == 90
    with pytest.raises(HorizonError, match="does not fit either"):
        horizon.fit(nine_months(when_history_short="train_shorter", training_ltv_days=200), FIRST, last)
