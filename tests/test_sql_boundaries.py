"""Every window edge of ltv/sql/*.sql, pinned by a hand-made player on each side (fast: no simulation).

One small log run through the real ETL on DuckDB, under two configs whose label horizons differ
in both directions (ltv_days 7 > purchase_days 3, and 3 < 7) and whose players tables differ
(daily partitions, one flat export). Cutoff C = Monday 2025-03-10, built after the previous
cutoff P = 03-03 so C's summary continues from P's. Windows at C (galaxy-raiders, two weekly
steps, a 7-day population window):

    steps  w2 = [02-24, 03-03), w1 = [03-03, 03-10)    population: active in [03-03, 03-10)
    config A (ltv 7, purchase 3): ltv/churn [03-10, 03-17), next purchase day [03-10, 03-13)
    config B (ltv 3, purchase 7): ltv/churn [03-10, 03-13), next purchase day [03-10, 03-17)

Each assert is an exact value that one off-by-one moves (benchmarks/mutation.py's SQL_MUTANTS
are run against this file).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_config
from handmade import day, event, write_lake
from ltv import etl
from ltv.engine import DuckDBEngine

C, P = day("2025-03-10"), day("2025-03-03")
FEATURES = {"step_days": 7, "n_steps": 2, "population_window_days": 7}

EVENTS = [
    # A: buys in both steps (02-24 is the first day of w2, 03-03 of w1 and of the population window;
    # 03-03 is also P, where C's incremental summary takes over), is active at the cutoff instant and
    # the day after without buying, then buys on the last day inside the purchase window (03-12), the
    # first outside it (03-13), the last microsecond inside the ltv window (03-16) and the first
    # instant outside it (03-17); its last event, 03-20, is the last day of the player_day build
    event("A", "2025-02-24 10:00", "login"),
    event("A", "2025-02-24 10:05", "purchase", 2.0),
    event("A", "2025-03-03 08:00", "login"),
    event("A", "2025-03-03 08:05", "purchase", 3.0),
    event("A", "2025-03-09 22:00", "login"),
    event("A", "2025-03-10 00:00:00", "login"),
    event("A", "2025-03-11 09:00", "login"),
    event("A", "2025-03-12 09:00", "purchase", 7.0),
    event("A", "2025-03-13 09:00", "purchase", 11.0),
    event("A", "2025-03-16 23:59:59.999999", "purchase", 13.0),
    event("A", "2025-03-17 00:00:00", "purchase", 17.0),
    event("A", "2025-03-20 12:00", "login"),
    # B: comes back only on 03-13, the first day after the purchase window, inside the ltv window of A
    event("B", "2025-03-05 12:00", "login"),
    event("B", "2025-03-13 00:00:00", "purchase", 4.0),
    # W: active only at the first instant of the population window (= P, = w1's first day)
    event("W", "2025-03-03 00:00:00", "login"),
    # O: active only at the last microsecond before the population window
    event("O", "2025-03-02 23:59:59.999999", "login"),
    # F: first active (a purchase) at the cutoff instant: in no population of C
    event("F", "2025-03-10 00:00:00", "purchase", 5.0),
    # L: in the population, buys only on label_end (the first day outside both label windows)
    event("L", "2025-03-04 12:00", "login"),
    event("L", "2025-03-17 12:00", "purchase", 20.0),
    # H: four purchases long before the recent days (the first on the log's first day), gaps 1, 3, 6
    event("H", "2025-02-10 12:00", "purchase", 1.0),
    event("H", "2025-02-11 12:00", "purchase", 1.0),
    event("H", "2025-02-14 12:00", "purchase", 1.0),
    event("H", "2025-02-20 12:00", "purchase", 1.0),
    event("H", "2025-03-05 12:00", "login"),
    # installs at the cutoff instant and one microsecond before it; N has no install record
    event("I_AT", "2025-03-05 12:00", "login"),
    event("I_BEFORE", "2025-03-05 12:00", "login"),
    event("N", "2025-03-06 12:00", "login"),
]
INSTALLS = {"A": "2025-02-20 09:00", "B": "2025-02-20 09:00", "W": "2025-02-01 09:00", "O": "2025-02-01 09:00",
            "F": "2025-03-10 00:00:00", "L": "2025-02-20 09:00", "H": "2025-02-01 09:00",
            "I_AT": "2025-03-10 00:00:00", "I_BEFORE": "2025-03-09 23:59:59.999999"}
DAYS = ("2025-02-10", "2025-03-20")  # the raw partitions, every one built into player_day in one range


def built(root: Path, horizons: dict, partitioned: bool) -> DuckDBEngine:
    config = make_config(features=FEATURES, horizons=horizons,
                         logs={"players": {"partitioned": partitioned}})
    engine = write_lake(root, config, EVENTS, INSTALLS, days=DAYS)
    etl.build_player_day(engine, config, day(DAYS[0]), day(DAYS[1]))
    for cutoff in (P, C):
        etl.build_features(engine, config, cutoff)
    etl.build_labels(engine, config, C)
    return engine


@pytest.fixture(scope="module")
def a(tmp_path_factory) -> DuckDBEngine:
    """Config A: ltv 7 days > purchase 3 days; daily install partitions."""
    return built(tmp_path_factory.mktemp("a"), {"ltv_days": 7, "purchase_days": 3}, partitioned=True)


@pytest.fixture(scope="module")
def b(tmp_path_factory) -> DuckDBEngine:
    """Config B: ltv 3 days < purchase 7 days; the players table one flat export."""
    return built(tmp_path_factory.mktemp("b"), {"ltv_days": 3, "purchase_days": 7}, partitioned=False)


def table(engine: DuckDBEngine, name: str, cutoff: dt.date = C) -> pd.DataFrame:
    return engine.query(f"SELECT * FROM {name} WHERE cutoff = '{cutoff}'").set_index("player_id").sort_index()


def test_player_day_holds_each_active_day_of_the_range_both_ends_included(a) -> None:
    got = a.query("SELECT player_id, dt, purchases, revenue FROM player_day ORDER BY player_id, dt")
    expected = pd.DataFrame([(e["user_id"], str(e["event_ts"].date()), int(e["event_name"] == "iap_purchase"),
                              e["revenue_usd"] or 0.0) for e in EVENTS], columns=got.columns)
    expected = expected.groupby(["player_id", "dt"], as_index=False).sum().sort_values(["player_id", "dt"])
    assert (got.dt.min(), got.dt.max()) == DAYS
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)


def test_player_day_counts_an_event_on_its_own_days_partition_only(tmp_path) -> None:
    """A row stamped a microsecond before its partition's day, or at the next day's first instant, is
    another day's event (validation reports it): it counts nowhere."""
    config = make_config()
    engine = write_lake(tmp_path, config, [event("A", "2025-03-05 00:00:00", "purchase", 2.0),
                                           event("A", "2025-03-05 23:59:59.999999", "purchase", 3.0)],
                        {"A": "2025-03-01 09:00"})
    part = engine.lake.raw_partition("events", day("2025-03-05")) / "part-0.parquet"
    strays = pd.DataFrame([event("A", "2025-03-04 23:59:59.999999", "purchase", 50.0),
                           event("A", "2025-03-06 00:00:00", "purchase", 70.0)])
    merged = pd.concat([pd.read_parquet(part), strays.astype({"level": "int32"})], ignore_index=True)
    merged.astype({"event_ts": "datetime64[us]"}).to_parquet(part, index=False)
    etl.build_player_day(engine, config, day("2025-03-05"))
    got = engine.query("SELECT player_id, dt, purchases, revenue FROM player_day")
    assert got.values.tolist() == [["A", "2025-03-05", 2, 5.0]]


def test_the_feature_population_is_active_in_the_window_before_the_cutoff(a) -> None:
    """W (the window's first instant) is in, O (a microsecond before it) and F (the cutoff instant) are out."""
    assert list(table(a, "features").index) == ["A", "B", "H", "I_AT", "I_BEFORE", "L", "N", "W"]
    assert list(table(a, "features", P).index) == ["A", "O"]


def test_an_install_at_the_cutoff_instant_is_not_before_it(a, b) -> None:
    """Flat export: the install at 00:00:00 of C is seen and keeps I_AT out; a microsecond earlier is a
    day before. Daily partitions: I_AT's record lies in C's own partition, which features at C do not
    read, so I_AT counts as without record (install = first active day), like N."""
    flat, daily = table(b, "features"), table(a, "features")
    assert "I_AT" not in flat.index
    assert flat.days_since_install.to_dict() == {"A": 18, "B": 18, "H": 37, "I_BEFORE": 1, "L": 18, "N": 4, "W": 37}
    assert daily.days_since_install.to_dict() == {"A": 18, "B": 18, "H": 37, "I_AT": 5, "I_BEFORE": 1, "L": 18,
                                                  "N": 4, "W": 37}


def test_window_and_step_counts_put_each_day_on_its_side_of_every_edge(a) -> None:
    f = table(a, "features")
    columns = ["active_days_window", "active_days_w1", "active_days_w2", "purchases_w1", "revenue_w1",
               "purchases_w2", "revenue_w2", "logins_w1", "logins_w2", "days_since_last_active"]
    assert f.loc["A", columns].tolist() == [2, 2, 1, 1, 3.0, 1, 2.0, 2, 1, 1]
    assert f.loc["W", columns].tolist() == [1, 1, 0, 0, 0.0, 0, 0.0, 1, 0, 7]
    assert f.loc["H", columns].tolist() == [1, 1, 0, 0, 0.0, 0, 0.0, 1, 0, 5]


def test_whole_history_features_come_from_the_summary_continued_at_the_previous_cutoff(a) -> None:
    """C's summary merges P's with [P, C): the day P itself counts once, the cutoff day never."""
    assert a.get_partition_json("player_summary", str(C), etl.LINEAGE_FILE)["previous"] == str(P)
    f = table(a, "features")
    columns = ["active_days_total", "purchases_total", "purchase_days_total", "revenue_total", "purchase_day_rate",
               "days_since_first_purchase", "days_since_last_purchase", "btyd_frequency", "btyd_recency_days",
               "purchase_gap_min", "purchase_gap_max", "purchase_gap_last", "purchase_gap_median"]
    assert f.loc["A", columns].tolist() == [3, 2, 2, 5.0, pytest.approx(2 / 3), 14, 7, 1, 7, 7, 7, 7, 7.0]
    assert f.loc["W", columns[:3]].tolist() == [1, 0, 0]
    # H's purchases all lie before the recent days: the median gap still reads them
    assert f.loc["H", columns].tolist() == [5, 4, 4, 4.0, pytest.approx(4 / 5), 28, 18, 3, 10, 1, 6, 6, 3.0]
    assert f.loc["H", "purchase_gap_mean"] == pytest.approx(10 / 3)
    assert f.loc["H", "days_to_median_gap"] == 3.0 - 18


LABELS = ["ltv", "payer", "next_purchase_day", "churned"]


def test_the_label_population_is_the_feature_window_whatever_the_installs(a, b) -> None:
    """Labels are read for players active in [window_start, C): W in, O and F (first seen at C) out;
    installs do not filter labels (I_AT has labels where the features leave it out)."""
    for engine in (a, b):
        assert list(table(engine, "labels").index) == ["A", "B", "H", "I_AT", "I_BEFORE", "L", "N", "W"]


def test_labels_when_the_ltv_horizon_is_longer_than_the_purchase_one(a) -> None:
    labels = table(a, "labels")[LABELS]
    assert labels.loc["A"].tolist() == [7.0 + 11.0 + 13.0, 1, 3, 0], "03-13 (day 4): no next purchase day; 03-17: no ltv"
    assert labels.loc["B"].tolist() == [4.0, 1, 0, 0], "a purchase inside the ltv window only"
    for player in ("H", "I_AT", "I_BEFORE", "L", "N", "W"):
        assert labels.loc[player].tolist() == [0.0, 0, 0, 1], player


def test_labels_when_the_purchase_horizon_is_longer_than_the_ltv_one(b) -> None:
    labels = table(b, "labels")[LABELS]
    assert labels.loc["A"].tolist() == [7.0, 1, 3, 0]
    assert labels.loc["B"].tolist() == [0.0, 0, 4, 1], "03-13 is the first day after the ltv window, day 4 of 7"
    for player in ("H", "I_AT", "I_BEFORE", "L", "N", "W"):
        assert labels.loc[player].tolist() == [0.0, 0, 0, 1], player
