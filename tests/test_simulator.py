"""The game simulator: deterministic, in the game's own schema, realistic, and its oracle is true."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import make_config
from ltv.lake import Lake
from ltv.simulate import Simulator, oracle, simulate
from ltv.simulate import dynamics as dyn


def _read(path: Path) -> pd.DataFrame:
    return duckdb.sql(f"select * from read_parquet('{path}/*/*.parquet', hive_partitioning=true)").df()


def test_same_seed_same_logs_other_seed_other_logs(tmp_path: Path) -> None:
    c = make_config(simulation={"daily_installs": 30, "days": 20})
    other = make_config(simulation={"daily_installs": 30, "days": 20, "seed": 99})
    for name, conf in [("a", c), ("b", c), ("c", other)]:
        simulate(conf, Lake(tmp_path / name, "g"))
    a, b, o = (_read(tmp_path / n / "g" / "raw" / "events") for n in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(o) or not a.equals(o)
    pd.testing.assert_frame_equal(_read(tmp_path / "a/g/truth"), _read(tmp_path / "b/g/truth"))


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_logs_follow_the_configured_schema(game: str, tmp_path: Path) -> None:
    c = make_config(game, simulation={"daily_installs": 40, "days": 15})
    simulate(c, Lake(tmp_path, game))
    ev = c.logs.events
    events = _read(tmp_path / game / "raw" / ev.table)
    players = _read(tmp_path / game / "raw" / c.logs.players.table)
    cols = ev.columns
    expected = {cols.player_id, cols.event_time, cols.event_type, cols.revenue, cols.level, cols.session_length, "dt"}
    if cols.currency:
        expected.add(cols.currency)
    assert set(events.columns) == expected
    assert set(events[cols.event_type]) <= set(ev.event_types.allowed())
    assert set(players.columns) == {c.logs.players.columns.player_id, c.logs.players.columns.install_time, "dt",
                                    *c.logs.players.attributes.values()}
    ids = events[cols.player_id]
    assert (ids.dtype == object) == (c.logs.player_id_type == "string")
    assert set(ids) <= set(players[c.logs.players.columns.player_id])
    purchases = events[events[cols.event_type].isin(ev.event_types.purchase)]
    assert (purchases[cols.revenue] > 0).all()
    if cols.currency:
        assert set(purchases[cols.currency]) <= {ev.revenue.base_currency, *ev.revenue.fx_rates}
    sessions = events[events[cols.event_type].isin(ev.event_types.session)][cols.session_length]
    scale = {"seconds": 60, "milliseconds": 60_000}[ev.session_length_unit]
    assert 0.5 < sessions.median() / scale < 60, "median session between half a minute and an hour"
    # every event lies inside its partition's day
    day = pd.to_datetime(events["dt"].astype(str))
    assert ((events[cols.event_time] >= day) & (events[cols.event_time] < day + pd.Timedelta(days=1))).all()


@pytest.fixture(scope="module")
def mid_game(tmp_path_factory) -> tuple:
    """~25k players over 100 days with a drift on day 60."""
    c = make_config(simulation={"daily_installs": 250, "days": 100, "campaign": None,
                                "drift": {"day": "2025-03-07", "purchase_rate_multiplier": {"dolphin": 2.0, "whale": 0.5},
                                          "price_shift": {"dolphin": 1}, "nonpayer_conversion": 0.0,
                                          "dropout_hazard": 0.0, "conversion_hazard": 0.0,
                                          "period_multiplier": {}}})
    root = tmp_path_factory.mktemp("mid")
    summary = simulate(c, Lake(root, "g"))
    return c, root / "g", summary


def test_payer_and_whale_shares_are_realistic(mid_game) -> None:
    c, base, s = mid_game
    assert 0.01 <= s.players_by_type["whale"] / s.players <= 0.03
    assert 0.05 <= s.payer_share <= 0.2
    events = _read(base / "raw" / "events")
    truth = _read(base / "truth")[["player_id", "player_type"]].drop_duplicates()
    before = events[(events.event_name == "iap_purchase") & (events.event_ts < pd.Timestamp("2025-03-07"))]
    by_type = before.merge(truth, left_on="user_id", right_on="player_id").groupby("player_type").revenue_usd.sum()
    assert 0.5 <= by_type["whale"] / by_type.sum() <= 0.85, "before the drift, whales bring most revenue"
    realised_payers = events.loc[events.event_name == "iap_purchase", "user_id"].nunique()
    assert 0.01 <= realised_payers / s.players <= 0.12


def test_drift_changes_spending_by_type(mid_game) -> None:
    c, base, _ = mid_game
    events = _read(base / "raw" / "events")
    truth = _read(base / "truth")[["player_id", "player_type"]].drop_duplicates()
    buys = events[events.event_name == "iap_purchase"].merge(truth, left_on="user_id", right_on="player_id")
    buys["after"] = buys.event_ts >= pd.Timestamp("2025-03-07")
    logins = events[events.event_name == "login"].merge(truth, left_on="user_id", right_on="player_id")
    logins["after"] = logins.event_ts >= pd.Timestamp("2025-03-07")
    spend = buys.groupby(["player_type", "after"]).revenue_usd.sum()
    days = logins.groupby(["player_type", "after"]).user_id.count()
    per_day = spend / days
    assert per_day["dolphin", True] > 2.0 * per_day["dolphin", False]
    assert per_day["whale", True] < 0.75 * per_day["whale", False]


def test_oracle_matches_realised_spend_on_average(mid_game) -> None:
    c, base, _ = mid_game
    events = _read(base / "raw" / "events")
    cutoff = pd.Timestamp("2025-02-17")
    truth = _read(base / "truth").query("cutoff == @cutoff.date()") if False else \
        duckdb.sql(f"select * from read_parquet('{base}/truth/cutoff=2025-02-17/*.parquet')").df()
    window = events[(events.event_ts >= cutoff) & (events.event_ts < cutoff + pd.Timedelta(days=28))]
    realised = window[window.event_name == "iap_purchase"].groupby("user_id").revenue_usd.sum()
    merged = truth.set_index("player_id").join(realised).fillna({"revenue_usd": 0})
    for kind, group in merged.groupby("player_type"):
        expected, actual = group.expected_ltv.sum(), group.revenue_usd.sum()
        if expected > 0:
            assert abs(actual / expected - 1) < 0.15, (kind, actual, expected)
    active = window.groupby("user_id").size()
    assert abs(merged.index.isin(active.index).mean() / merged.p_active.mean() - 1) < 0.05


def _forked_outcomes(sim: Simulator, horizon: int, n_days: int, n_forks: int) -> tuple[np.ndarray, np.ndarray]:
    """Realised spend in [t, t + horizon) and first purchase day (n_days + 1 = none) of every
    player installed before t, in `n_forks` independent futures of the same latent state."""
    n = int((sim.players.install_day < sim.t).sum())
    spend = np.zeros((n_forks, n))
    first_day = np.full((n_forks, n), n_days + 1)
    for f in range(n_forks):
        fork = sim.fork(f + 1)
        for k in range(max(horizon, n_days)):
            buys = fork.step().events.query("role == 2 and player < @n")
            np.add.at(spend[f], buys.player.to_numpy(), buys.revenue.to_numpy() * (k < horizon))
            first_day[f, buys.player.unique()] = np.minimum(first_day[f, buys.player.unique()], k + 1)
    return spend, first_day


def test_oracle_converges_over_many_seeds_per_player() -> None:
    """Fork one latent state into many futures: the mean realised outcome per player converges
    to the oracle's expectation (spend, payer probability and first-purchase-day distribution)."""
    c = make_config(simulation={"daily_installs": 40, "days": 60, "campaign": None, "sales": None,
                                "player_mix": {"minnow": 0.15, "dolphin": 0.1, "whale": 0.05}})
    sim = Simulator(c)
    for _ in range(35):
        sim.step()
    t, horizon, n_days, n_forks = sim.t, 14, 16, 300
    truth = oracle(sim.players, t, sim.world, horizon, n_days).set_index("player")
    payers = truth.index[(truth.expected_ltv > 0)]
    spend, first_day = _forked_outcomes(sim, horizon, n_days, n_forks)
    mean, sd = spend.mean(axis=0), spend.std(axis=0) + 1e-9
    z = (mean[payers] - truth.expected_ltv[payers]) / (sd[payers] / np.sqrt(n_forks))
    assert len(payers) > 20
    assert np.mean(np.abs(z) < 4) > 0.97
    assert abs(mean.sum() / truth.expected_ltv.sum() - 1) < 0.03
    paid = (spend > 0).mean(axis=0)
    assert np.abs(paid - truth.p_payer.to_numpy()).max() < 0.12
    for d in range(1, n_days + 1):
        empirical = (first_day == d).mean()
        assert abs(empirical - truth[f"p_day_{d}"].mean()) < 0.01, d


def test_oracle_holds_across_a_content_update_with_conversion_and_sales() -> None:
    """The same fork test with what the demo game has inside the horizon: a sale, then a content
    update that converts non-payers (who must buy like their new type, second purchases
    included) and changes every payer type's rates, prices and rhythm."""
    c = make_config(simulation={
        "daily_installs": 40, "days": 60, "campaign": None,
        "sales": {"every_days": 10, "duration_days": 3, "purchase_boost": 1.6},   # a sale on days 39-41
        "drift": {"day": "2025-02-15", "nonpayer_conversion": 0.6, "conversion_type": "dolphin",  # day 40
                  "purchase_rate_multiplier": {"minnow": 1.3, "dolphin": 2.0, "whale": 0.4},
                  "price_shift": {"dolphin": 1, "whale": -1}, "period_multiplier": {"dolphin": 0.6, "whale": 1.8}},
        "player_mix": {"minnow": 0.1, "dolphin": 0.05, "whale": 0.03}})
    sim = Simulator(c)
    for _ in range(35):
        sim.step()
    t, horizon, n_days, n_forks = sim.t, 14, 16, 200
    assert sim.world.regime(t) == 0 and sim.world.regime(t + horizon - 1) == 1
    truth = oracle(sim.players, t, sim.world, horizon, n_days).set_index("player")
    spend, first_day = _forked_outcomes(sim, horizon, n_days, n_forks)
    idx = truth.index.to_numpy()
    converted = (sim.players.ptype[idx] == 0) & (sim.players.ptype_after[idx] > 0) & sim.players.alive[idx]
    assert converted.sum() > 100
    for name, group in (("converted", converted), ("payers before the update", sim.players.ptype[idx] > 0)):
        realised, expected = spend[:, group].mean(axis=0).sum(), truth.expected_ltv.to_numpy()[group].sum()
        assert abs(realised / expected - 1) < 0.03, (name, realised / expected)
    paid = (spend > 0).mean(axis=0)
    assert abs(paid[converted].mean() / truth.p_payer.to_numpy()[converted].mean() - 1) < 0.03
    for d in range(1, n_days + 1):
        assert abs((first_day == d).mean() - truth[f"p_day_{d}"].mean()) < 0.01, d


def test_dirty_knobs_inject_defects(tmp_path: Path) -> None:
    c = make_config(simulation={"daily_installs": 40, "days": 6,
                                "dirty": {"duplicate_rate": 0.02, "null_id_rate": 0.01, "future_rate": 0.01,
                                          "late_rate": 0.02}})
    simulate(c, Lake(tmp_path, "g"))
    ev = _read(tmp_path / "g" / "raw" / "events")
    assert ev.user_id.isna().sum() > 0
    assert ev.duplicated().sum() > 0
    day = pd.to_datetime(ev["dt"].astype(str))
    assert (ev.event_ts >= day + pd.Timedelta(days=300)).sum() > 0, "future timestamps"
    assert (ev.event_ts < day).sum() > 0, "late events land in the next partition"


def test_payers_the_update_stops_spend_nothing_after_it_and_the_oracle_knows() -> None:
    """`payer_dropout`: a share of payers (the less engaged more often) stop at the update; the
    oracle's expectation for them counts only the days before it, as the forked futures show."""
    c = make_config(simulation={
        "daily_installs": 40, "days": 60, "campaign": None, "sales": None,
        "drift": {"day": "2025-02-15", "payer_dropout": 0.5},  # day 40, inside the horizon from day 35
        "player_mix": {"minnow": 0.15, "dolphin": 0.1, "whale": 0.05}})
    sim = Simulator(c)
    for _ in range(35):
        sim.step()
    p = sim.players
    truth = oracle(p, sim.t, sim.world, 14, 16).set_index("player")
    idx = truth.index.to_numpy()
    dropped = (p.ptype[idx] > 0) & (p.ptype_after[idx] == 0) & p.alive[idx]
    kept = (p.ptype[idx] > 0) & (p.ptype_after[idx] > 0) & p.alive[idx]
    assert dropped.sum() > 20 and kept.sum() > 20
    assert p.activity[idx][dropped].mean() < p.activity[idx][kept].mean(), "the less engaged stop more often"
    spend, _ = _forked_outcomes(sim, 14, 16, 200)
    for name, group in (("dropped", dropped), ("kept", kept)):
        realised, expected = spend[:, group].mean(axis=0).sum(), truth.expected_ltv.to_numpy()[group].sum()
        assert abs(realised / expected - 1) < 0.05, (name, realised / expected)
    per_player = lambda group: truth.expected_ltv.to_numpy()[group].mean()  # noqa: E731
    assert per_player(dropped) < 0.6 * per_player(kept), "five of the fourteen days are left to them"


def test_update_ties_spend_per_purchase_to_engagement_and_the_oracle_follows() -> None:
    """`spend_elasticity`: from the update on, each purchase's amount is multiplied by
    engagement ** k. Before the update the engaged and the disengaged payers of a type pay the
    same per purchase; after it the engaged pay more, and forked futures' realised spend of each
    group converges to the oracle's expectation."""
    c = make_config(simulation={
        "daily_installs": 40, "days": 60, "campaign": None, "sales": None,
        "drift": {"day": "2025-02-05", "spend_elasticity": 2.0, "dropout_hazard": 0.0,  # day 30
                  "conversion_hazard": 0.0, "purchase_rate_multiplier": {}, "price_shift": {},
                  "period_multiplier": {}},
        "player_mix": {"minnow": 0.15, "dolphin": 0.1, "whale": 0.05}})
    sim = Simulator(c)
    buys = pd.concat([sim.step().events.query("role == 2").assign(t=sim.t - 1) for _ in range(44)])
    p = sim.players
    engagement = p.activity / dyn.BASE_ACTIVITY[p.ptype]
    per_purchase = buys.assign(engaged=engagement[buys.player] > 1, after=buys.t >= 30,
                               ptype=p.ptype[buys.player]).query("ptype == 1")  # minnows: one price mix
    mean = per_purchase.groupby(["after", "engaged"]).revenue.mean()
    assert 0.8 < mean[False, True] / mean[False, False] < 1.25, "before the update: the same prices"
    assert mean[True, True] / mean[True, False] > 1.4, "after it: the engaged spend more per purchase"
    truth = oracle(p, sim.t, sim.world, 14, 16).set_index("player")
    idx = truth.index.to_numpy()
    spend, _ = _forked_outcomes(sim, 14, 16, 150)
    paying = (p.ptype[idx] > 0) & p.alive[idx]
    for name, group in (("engaged", paying & (engagement[idx] > 1)), ("disengaged", paying & (engagement[idx] <= 1))):
        realised, expected = spend[:, group].mean(axis=0).sum(), truth.expected_ltv.to_numpy()[group].sum()
        assert abs(realised / expected - 1) < 0.05, (name, realised / expected)


def test_oracle_holds_under_the_daily_dropout_and_conversion_after_an_update() -> None:
    """`dropout_hazard` / `conversion_hazard`: after the update, payers stop and non-payers start
    day by day, at rates set by engagement. Forked from a state two weeks into the update (some
    have stopped or converted already), the realised spend of each group converges to the
    oracle's expectation, and the less engaged payers stop more often."""
    c = make_config(simulation={
        "daily_installs": 40, "days": 60, "campaign": None, "sales": None,
        "drift": {"day": "2025-02-05", "dropout_hazard": 0.03, "conversion_hazard": 0.03,  # day 30
                  "engagement_elasticity": 2.0, "conversion_type": "minnow"},
        "player_mix": {"minnow": 0.15, "dolphin": 0.1, "whale": 0.05}})
    sim = Simulator(c)
    for _ in range(44):
        sim.step()
    p = sim.players
    truth = oracle(p, sim.t, sim.world, 14, 16).set_index("player")
    idx = truth.index.to_numpy()
    alive = p.alive[idx]
    stopped, converted = p.stopped[idx] & alive, p.converted[idx] & alive & ~p.stopped[idx]
    paying = (p.ptype[idx] > 0) & ~p.stopped[idx] & alive
    waiting = (p.ptype[idx] == 0) & ~p.converted[idx] & alive
    assert stopped.sum() > 20 and converted.sum() > 20
    assert p.activity[idx][stopped].mean() < p.activity[idx][(p.ptype[idx] > 0) & ~p.stopped[idx]].mean()
    assert (truth.expected_ltv.to_numpy()[stopped] == 0).all()
    spend, first_day = _forked_outcomes(sim, 14, 16, 200)
    assert spend[:, stopped].sum() == 0, "a payer who stopped never buys again"
    for name, group in (("paying", paying), ("converted", converted), ("waiting", waiting)):
        realised, expected = spend[:, group].mean(axis=0).sum(), truth.expected_ltv.to_numpy()[group].sum()
        assert abs(realised / expected - 1) < 0.05, (name, realised / expected)
    paid = (spend > 0).mean(axis=0)
    assert abs(paid[waiting].mean() / truth.p_payer.to_numpy()[waiting].mean() - 1) < 0.05
    for d in range(1, 17):
        assert abs((first_day == d).mean() - truth[f"p_day_{d}"].mean()) < 0.01, d
