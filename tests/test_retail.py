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


def test_the_oracle_follows_each_buyers_phase_in_their_gap() -> None:
    """Regular buyers just after an order and those near the end of their usual gap expect
    different futures; the oracle must match what the shop draws for each group."""
    shop = RetailShop(retail())
    for _ in range(150):
        shop.step()
    truth = shop.truth(150).set_index("player")
    regular = truth.index[(shop.segment[truth.index] == 2) & truth["alive"]]
    phase = shop.phase[regular]
    groups = {"just ordered": regular[phase == 0], "gap nearly over": regular[phase == shop.retail.regular_shape - 1]}
    revenue = {name: [] for name in groups}
    soon = {name: [] for name in groups}  # buyers in the first 16 days (the purchase-day horizon)
    for seed in range(40):
        future = copy.deepcopy(shop)
        future.settings = future.settings.model_copy(update={"seed": 2000 + seed})
        days = [future.step()[0] for _ in range(60)]
        orders, early = pd.concat(days), pd.concat(days[:16])
        for name, players in groups.items():
            revenue[name].append(orders.loc[orders["player"].isin(players), "revenue"].sum())
            soon[name].append(early.loc[early["player"].isin(players), "player"].nunique())
    days = [f"p_day_{d}" for d in range(1, 17)]
    for name, players in groups.items():
        assert np.mean(revenue[name]) == pytest.approx(truth.loc[players, "expected_ltv"].sum(), rel=0.06), name
        assert np.mean(soon[name]) == pytest.approx(truth.loc[players, days].to_numpy().sum(), rel=0.06), name
    late, fresh = (truth.loc[groups[n], days].to_numpy().sum(axis=1).mean() for n in ("gap nearly over", "just ordered"))
    assert late > 2 * fresh, "a regular buyer near the end of their gap orders soon; one who just ordered does not"


def wheat_morrison(orders: pd.DataFrame, players: np.ndarray) -> float:
    """Wheat & Morrison (1990)'s regularity estimate, as BTYDplus's estimateRegularity: M = g1 /
    (g1 + g2) of two consecutive gaps is Beta(k, k) for Erlang-k gaps, so k = (1 - 4 Var M) / (8 Var M)."""
    times = orders[orders["player"].isin(players)].sort_values("time_us").groupby("player")["time_us"]
    gaps = times.diff().dropna()
    pairs = gaps.groupby(orders.loc[gaps.index, "player"]).head(2).groupby(orders.loc[gaps.index, "player"])
    two = pairs.agg(["first", "last", "size"])
    two = two[two["size"] == 2]
    m = (two["first"] / (two["first"] + two["last"])).var()
    return (1 - 4 * m) / (8 * m)


@pytest.mark.parametrize("shape", [1, 4])
def test_a_segments_gaps_are_as_regular_as_configured(shape: int) -> None:
    config = retail(days=273, daily_installs=60, retail={"regular_shape": shape},
                    btyd={"season_amplitude": 0.0})  # the season would stretch and squeeze gaps
    shop = RetailShop(config)
    orders = pd.concat([shop.step()[0] for _ in range(273)], ignore_index=True)
    regular = np.flatnonzero(shop.segment == 2)
    assert wheat_morrison(orders, regular) == pytest.approx(shape, rel=0.25)
