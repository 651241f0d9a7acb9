"""The harder shop (simulation.profile: retail): its oracle is the process's own expectation."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltv import config as cfg
from ltv.simulate.retail import RetailShop

SHOP = Path(__file__).resolve().parent.parent / "config" / "examples" / "shop.yaml"


def retail(**sim) -> cfg.GameConfig:
    return cfg.load(SHOP, {"simulation": {"profile": "retail", "days": 200, "daily_installs": 30, **sim},
                           "horizons": {"ltv_days": 60, "purchase_days": 16}})


def test_the_oracle_is_what_the_shop_draws_on_average() -> None:
    shop = RetailShop(retail())
    for _ in range(150):
        shop.step()
    truth = shop.truth(150)
    draws = []
    for seed in range(40):  # the same customers, other futures
        future = copy.deepcopy(shop)
        future.settings = future.settings.model_copy(update={"seed": 1000 + seed})
        orders = pd.concat([future.step()[0] for _ in range(60)])
        mine = orders[orders["player"].isin(truth["player"])]
        draws.append((mine["revenue"].sum(), mine["player"].nunique()))
    revenue = np.mean([d[0] for d in draws])
    buyers = np.mean([d[1] for d in draws])
    assert revenue == pytest.approx(truth["expected_ltv"].sum(), rel=0.06)
    assert buyers == pytest.approx(truth["p_payer"].sum(), rel=0.04)
    assert truth.loc[~truth["alive"], "expected_ltv"].eq(0).all()


def test_most_first_time_buyers_never_return_and_a_few_heavy_ones_bring_much_of_the_revenue() -> None:
    shop = RetailShop(retail(days=273, daily_installs=40))
    orders = pd.concat([shop.step()[0] for _ in range(273)])
    counts = orders.groupby("player").size()
    settled = counts[shop.arrival[counts.index] < 150]  # four months or more to come back
    assert 0.6 <= (settled == 1).mean() <= 0.8, "published: ~28 % of e-commerce customers return (60-80 % never do)"
    revenue = orders.groupby("player")["revenue"].sum().sort_values(ascending=False)
    top = revenue.head(int(0.08 * len(revenue))).sum() / revenue.sum()
    assert 0.35 <= top <= 0.65, "published: ~8 % of customers bring ~41 % of revenue"
    tenure = shop.tenure(np.array([0, 365, 730]))
    assert tenure[0] == 1 and tenure[1] == tenure[2] == 1.5, "spend grows over the first year"
