"""The feature/label ETL: exact values on a handmade log, no leakage, incremental == full."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_config
from handmade import day, event, write_lake
from ltv import datasets, etl
from ltv.engine import DuckDBEngine
from ltv.errors import EmptyWindowError, ImmutableVersionError, MissingPartitionError
from ltv.lake import Lake
from ltv.simulate import simulate

CUTOFF = day("2025-03-10")  # a Monday


@pytest.fixture
def small_steps():
    """Two weekly steps, a 14-day population window, 28-day LTV horizon."""
    return make_config(features={"step_days": 7, "n_steps": 2, "population_window_days": 14})


def handmade_events() -> list[dict]:
    return [
        # A: three purchase days four days apart, one two-purchase day, a purchase on the cutoff day
        event("A", "2025-02-25 10:00", "login", level=1),
        event("A", "2025-02-25 10:10", "session", level=1, seconds=600),
        event("A", "2025-02-25 10:05", "level_up", level=2),
        event("A", "2025-02-25 10:06", "purchase", 4.99, level=2),
        event("A", "2025-03-01 12:00", "login", level=2),
        event("A", "2025-03-01 12:20", "session", level=2, seconds=1200),
        event("A", "2025-03-01 12:10", "purchase", 9.99, level=2),
        event("A", "2025-03-05 08:00", "login", level=2),
        event("A", "2025-03-05 08:05", "session", level=2, seconds=300),
        event("A", "2025-03-05 08:01", "purchase", 1.99, level=2),
        event("A", "2025-03-05 08:02", "purchase", 0.99, level=2),
        event("A", "2025-03-10 09:00", "purchase", 99.99, level=2),  # at the cutoff: label, not feature
        # B: active only before the population window
        event("B", "2025-02-05 09:00", "login"),
        # C: installed two days before the cutoff, first purchase on day 3 of the horizon
        event("C", "2025-03-08 20:00", "login"),
        event("C", "2025-03-08 20:01", "session", seconds=60),
        event("C", "2025-03-12 18:00", "purchase", 4.99),
        # D: in the population, never comes back
        event("D", "2025-03-09 07:00", "login"),
    ]


INSTALLS = {"A": "2025-02-20 09:00", "B": "2025-02-01 09:00", "C": "2025-03-08 19:59", "D": "2025-03-01 07:00"}


def build(engine: DuckDBEngine, config, cutoff: dt.date = CUTOFF, labels: bool = True) -> None:
    first = min(engine.partitions("events"))
    etl.build_player_day(engine, config, day(first), day(max(engine.partitions("events"))))
    etl.build_features(engine, config, cutoff)
    if labels:
        etl.build_labels(engine, config, cutoff)


def test_hand_computed_features_and_labels(tmp_path: Path, small_steps) -> None:
    engine = write_lake(tmp_path, small_steps, handmade_events(), INSTALLS, days=("2025-02-01", "2025-04-10"))
    build(engine, small_steps)
    f = engine.query("SELECT * FROM features").set_index("player_id")
    assert sorted(f.index) == ["A", "C", "D"], "B was not active in the 14 days before the cutoff"
    a = f.loc["A"]
    expected = {
        "days_since_install": 18, "days_since_last_active": 5, "days_since_first_purchase": 13,
        "days_since_last_purchase": 5, "active_days_total": 3, "active_days_window": 3, "logins_total": 3,
        "sessions_total": 3, "play_minutes_total": 35.0, "level_ups_total": 1, "max_level": 2,
        "purchases_total": 4, "purchase_days_total": 3, "revenue_total": 17.96, "max_daily_revenue": 9.99,
        "revenue_per_purchase": 4.49, "purchase_day_rate": 1.0, "revenue_per_active_day": 17.96 / 3,
        "purchase_gap_mean": 4.0, "purchase_gap_std": 0.0, "purchase_gap_min": 4, "purchase_gap_max": 4,
        "purchase_gap_last": 4, "purchase_gap_median": 4.0, "days_to_median_gap": -1, "days_to_usual_gap": -1,
        "days_to_last_gap": -1,
        # w1 = [03-03, 03-10), w2 = [02-24, 03-03)
        "active_days_w1": 1, "logins_w1": 1, "play_minutes_w1": 5.0, "purchases_w1": 2, "revenue_w1": 2.98,
        "level_ups_w1": 0, "active_days_w2": 2, "logins_w2": 2, "play_minutes_w2": 30.0, "level_ups_w2": 1,
        "purchases_w2": 2, "revenue_w2": 14.98,
        "cutoff_weekday": 1, "cutoff_month": 3, "cutoff_day_of_month": 10, "attr_country": "US",
    }
    for name, value in expected.items():
        assert a[name] == pytest.approx(value), name
    c = f.loc["C"]
    assert c.days_since_install == 2 and c.purchases_total == 0
    stats = json.loads((engine.partition_dir("features", str(CUTOFF)) / etl.STATS_FILE).read_text())
    assert stats["rows"] == 3 and stats["features"]["revenue_total"]["max"] == pytest.approx(17.96)
    assert stats["features"]["attr_country"]["top"] == {"US": 3}
    assert pd.isna(c.days_since_last_purchase) and pd.isna(c.purchase_gap_mean)
    labels = engine.query("SELECT * FROM labels").set_index("player_id")
    expected_labels = {"A": (99.99, 1, 1, 0), "C": (4.99, 1, 3, 0), "D": (0.0, 0, 0, 1)}
    for player, values in expected_labels.items():
        row = labels.loc[player]
        assert (row.ltv, row.payer, row.next_purchase_day, row.churned) == pytest.approx(values), player


def test_events_outside_their_day_duplicates_and_null_ids_do_not_count(tmp_path: Path, small_steps) -> None:
    events = handmade_events()
    dup = event("A", "2025-03-01 12:10", "purchase", 9.99, level=2)
    engine = write_lake(tmp_path, small_steps, [*events, dup], INSTALLS, days=("2025-02-01", "2025-04-10"))
    # a late event: timestamped 03-04 but stored in the 03-05 partition
    late = pd.DataFrame([event("A", "2025-03-04 23:00", "purchase", 50.0, level=2),
                         event(None, "2025-03-05 10:00", "purchase", 70.0)])
    part = engine.lake.raw_partition("events", day("2025-03-05"))
    merged = pd.concat([pd.read_parquet(part), late.astype({"level": "int32"})], ignore_index=True)
    merged["event_ts"] = merged["event_ts"].astype("datetime64[us]")
    merged.to_parquet(part / "part-0.parquet", index=False)
    build(engine, small_steps, labels=False)
    a = engine.query("SELECT * FROM features WHERE player_id = 'A'").iloc[0]
    assert a.revenue_total == pytest.approx(17.96) and a.purchases_total == 4


@st.composite
def future_events(draw, start: dt.date, days: int) -> list[dict]:
    """Arbitrary events on or after `start`."""
    n = draw(st.integers(0, 6))
    out = []
    for _ in range(n):
        when = pd.Timestamp(start) + pd.Timedelta(days=draw(st.integers(0, days - 1)),
                                                  minutes=draw(st.integers(0, 24 * 60 - 1)))
        role = draw(st.sampled_from(["login", "session", "purchase", "level_up"]))
        out.append(event(draw(st.sampled_from(["A", "C", "D", "E"])), str(when), role,
                         revenue=draw(st.floats(0.5, 200)) if role == "purchase" else None,
                         level=draw(st.integers(1, 50)), seconds=draw(st.floats(1, 5000)) if role == "session" else None))
    return out


FEATURE_SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


@FEATURE_SETTINGS
@given(one=future_events(CUTOFF, 20), other=future_events(CUTOFF, 20))
def test_no_feature_sees_an_event_at_or_after_the_cutoff(tmp_path_factory, one, other) -> None:
    config = make_config(features={"step_days": 7, "n_steps": 2, "population_window_days": 14})
    frames = []
    for future in (one, other):
        root = tmp_path_factory.mktemp("leak")
        engine = write_lake(root, config, handmade_events()[:-6] + future, INSTALLS, days=("2025-02-01", "2025-03-29"))
        build(engine, config, labels=False)
        frames.append(engine.query("SELECT * FROM features ORDER BY player_id"))
    pd.testing.assert_frame_equal(*frames)


@FEATURE_SETTINGS
@given(one=future_events(CUTOFF + dt.timedelta(days=28), 10), other=future_events(CUTOFF + dt.timedelta(days=28), 10),
       revenue=st.floats(0.5, 500), seconds=st.floats(1, 9000))
def test_labels_see_only_their_window(tmp_path_factory, one, other, revenue, seconds) -> None:
    """Events after the label window, and changed values of events before the cutoff, leave labels alone."""
    config = make_config(features={"step_days": 7, "n_steps": 2, "population_window_days": 14})
    frames = []
    for future, rev, sec in ((one, 4.99, 600.0), (other, revenue, seconds)):
        base = handmade_events()
        base[3] = event("A", "2025-02-25 10:06", "purchase", rev, level=2)
        base[1] = event("A", "2025-02-25 10:10", "session", level=1, seconds=sec)
        root = tmp_path_factory.mktemp("labels")
        engine = write_lake(root, config, base + future, INSTALLS, days=("2025-02-01", "2025-04-16"))
        build(engine, config)
        frames.append(engine.query("SELECT * FROM labels ORDER BY player_id"))
    pd.testing.assert_frame_equal(*frames)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small simulated galaxy-raiders, with player_day built incrementally (one day per run)."""
    config = make_config(simulation={"daily_installs": 40, "days": 75, "campaign": None})
    root = tmp_path_factory.mktemp("sim")
    simulate(config, Lake(root, config.game.id))
    engine = DuckDBEngine(Lake(root, config.game.id), config, threads=1)
    for d in engine.partitions("events"):
        etl.build_player_day(engine, config, day(d))
    return config, root, engine


def test_incremental_daily_runs_equal_the_full_recompute(simulated, tmp_path: Path) -> None:
    config, root, daily = simulated
    full_root = tmp_path / "full"
    (full_root / config.game.id).mkdir(parents=True)
    (full_root / config.game.id / "raw").symlink_to(root / config.game.id / "raw")
    full = DuckDBEngine(Lake(full_root, config.game.id), config, threads=1)
    days = full.partitions("events")
    result = etl.build_player_day(full, config, day(days[0]), day(days[-1]))
    assert result.partitions == days == daily.partitions("player_day")
    order = "ORDER BY dt, player_id"
    pd.testing.assert_frame_equal(daily.query(f"SELECT * FROM player_day {order}"),
                                  full.query(f"SELECT * FROM player_day {order}"))
    cutoff = day("2025-03-10")
    etl.build_features(daily, config, cutoff)
    etl.build_features(full, config, cutoff)
    pd.testing.assert_frame_equal(daily.query("SELECT * FROM features ORDER BY player_id"),
                                  full.query("SELECT * FROM features ORDER BY player_id"))


def test_skipping_deduplication_on_validated_days_changes_nothing(simulated) -> None:
    """Days validation found free of duplicates skip the (costly) duplicate removal: same rows."""
    config, root, engine = simulated
    days = engine.partitions("events")
    start, end = day(days[5]), day(days[15])
    order = "ORDER BY dt, player_id"
    everything = engine.query(f"SELECT * FROM ({etl.player_day_sql(config, start, end)}) {order}")
    some = frozenset(days[5:15:2])
    for clean in (some, frozenset(days)):
        pd.testing.assert_frame_equal(everything, engine.query(
            f"SELECT * FROM ({etl.player_day_sql(config, start, end, clean)}) {order}"))
    assert "DISTINCT" not in etl.player_day_sql(config, start, end, frozenset(days))
    assert "SELECT DISTINCT" in etl.player_day_sql(config, start, end, some)


def test_rerunning_a_day_is_idempotent(simulated) -> None:
    config, root, engine = simulated
    d = engine.partitions("player_day")[10]
    before = engine.query(f"SELECT * FROM player_day WHERE dt = '{d}' ORDER BY player_id")
    etl.build_player_day(engine, config, day(d))
    after = engine.query(f"SELECT * FROM player_day WHERE dt = '{d}' ORDER BY player_id")
    pd.testing.assert_frame_equal(before, after)
    siblings = [p.name for p in engine.lake.table("player_day").iterdir() if p.name.startswith(".")]
    assert siblings == [], "no temporary directories are left behind"


def test_failed_write_leaves_no_partition(simulated) -> None:
    config, root, engine = simulated
    with pytest.raises(duckdb.Error, match="boom"):
        engine.write_partitions("features", "SELECT 1 AS x, 'a' AS cutoff FROM player_day WHERE error('boom')",
                                value="2030-01-01")
    assert not (engine.lake.table("features") / "cutoff=2030-01-01").exists()
    assert [p for p in engine.lake.table("features").glob(".tmp*")] == []


def test_missing_player_day_and_empty_windows_are_named_errors(simulated, tmp_path: Path) -> None:
    config, root, engine = simulated
    with pytest.raises(MissingPartitionError, match="labels at 2025-03-17 needs player_day"):
        etl.build_labels(engine, config, day("2025-03-17"))
    with pytest.raises(EmptyWindowError, match="no player was active"):
        etl.build_features(engine, config, day("2025-01-06"))
    with pytest.raises(MissingPartitionError, match="has no partition for 2030-01-01"):
        etl.build_player_day(engine, config, day("2030-01-01"))


def test_dataset_versions_are_immutable_and_out_of_time(simulated) -> None:
    config, root, engine = simulated
    lake = engine.lake
    spec = datasets.DatasetSpec("tiny", (day("2025-01-27"), day("2025-02-03")), (day("2025-02-10"),),
                                (day("2025-02-17"),))
    manifest = datasets.build_dataset(engine, config, lake, spec)
    assert manifest["rows"]["train"] > 0 and set(manifest["cutoffs"]) == {"train", "validation", "test"}
    assert datasets.build_dataset(engine, config, lake, spec) == manifest, "rebuilding is a no-op"
    changed = datasets.DatasetSpec("tiny", spec.train, spec.validation, (day("2025-02-24"),))
    with pytest.raises(ImmutableVersionError, match="already exists with another definition"):
        datasets.build_dataset(engine, config, lake, changed)
    steps = config.features.model_copy(update={"n_steps": config.features.n_steps + 1})
    with pytest.raises(ImmutableVersionError, match="another definition"):
        datasets.build_dataset(engine, config.model_copy(update={"features": steps}), lake, spec)
    budget = config.model.model_copy(update={"time_limit_s": 7})  # not part of what a dataset contains
    promotion = config.promotion.model_copy(update={"min_effect": 0.5})
    assert datasets.build_dataset(engine, config.model_copy(update={"model": budget, "promotion": promotion}),
                                  lake, spec) == manifest
    splits = datasets.load_dataset(lake, "tiny")
    assert set(splits["train"].cutoff) == {"2025-01-27", "2025-02-03"}
    assert (lake.datasets / "tiny" / "stats.json").exists()


def _assert_embargoed(spec: datasets.DatasetSpec, horizon: dt.timedelta) -> None:
    """No label window [c, c + horizon) of a period reaches the first cutoff of the next one."""
    assert max(spec.train) + horizon <= min(spec.validation), f"{spec.name}: training labels reach validation"
    assert max(spec.validation) + horizon <= min(spec.test), f"{spec.name}: validation labels reach the test period"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_configured_versions_follow_kakaos_scheme_with_embargoes(game: str) -> None:
    config = make_config(game)
    specs = datasets.version_specs(config)
    horizon = dt.timedelta(days=etl.label_horizon(config))
    assert len(specs) == config.datasets.count
    for i, s in enumerate(specs):
        assert len(s.train) == config.datasets.train_weeks_of(i)
        assert s.train[0] == config.datasets.first_start + dt.timedelta(weeks=4 * i)
        _assert_embargoed(s, horizon)
        # each period starts at the first cutoff the embargo allows (no gap beyond it)
        assert min(s.validation) < max(s.train) + horizon + dt.timedelta(weeks=config.cutoffs.every_weeks)
        assert min(s.test) < max(s.validation) + horizon + dt.timedelta(weeks=config.cutoffs.every_weeks)
        assert len(s.validation) == config.datasets.validation_weeks and len(s.test) == config.datasets.test_weeks


@pytest.mark.parametrize("as_of", ["2025-06-02", "2025-09-17", "2025-12-01"])
def test_rolling_datasets_are_embargoed_and_complete_on_their_date(as_of: str) -> None:
    config = make_config()
    horizon = dt.timedelta(days=etl.label_horizon(config))
    rolling = datasets.rolling_spec(config, day(as_of))
    assert max(rolling.test) + horizon <= day(as_of), "test labels are complete on the as-of date"
    _assert_embargoed(rolling, horizon)
    assert len(rolling.train) == config.datasets.rolling_train_weeks


def test_a_built_dataset_has_no_training_label_inside_validation(tiny_game) -> None:
    """On real rows: the last training cutoff's labels end before the first validation cutoff."""
    config, lake, engine = tiny_game
    spec = datasets.version_specs(config)[0]
    datasets.build_dataset(engine, config, lake, spec)
    splits = datasets.load_dataset(lake, spec.name)
    horizon = dt.timedelta(days=etl.label_horizon(config))
    last_train = day(max(splits["train"].cutoff))
    assert last_train + horizon <= day(min(splits["validation"].cutoff))
    assert day(max(splits["validation"].cutoff)) + horizon <= day(min(splits["test"].cutoff))


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_both_example_schemas_work_without_code_change(game: str, tmp_path: Path) -> None:
    config = make_config(game, simulation={"daily_installs": 40, "days": 50})
    simulate(config, Lake(tmp_path, game))
    engine = DuckDBEngine(Lake(tmp_path, game), config, threads=1)
    days = engine.partitions(config.logs.events.table)
    etl.build_player_day(engine, config, day(days[0]), day(days[-1]))
    cutoff = next(d for d in map(day, days[21:]) if config.cutoffs.is_cutoff(d))
    etl.build_features(engine, config, cutoff)
    etl.build_labels(engine, config, cutoff)
    f = engine.query("SELECT * FROM features")
    assert len(f) > 100 and f.revenue_total.sum() > 0
    assert {f"attr_{a}" for a in config.logs.players.attributes} <= set(f.columns)
    raw_revenue = engine.query(
        f"SELECT SUM({etl.sql.context(config)['revenue_expr']}) AS r FROM {config.logs.events.table} "
        f"WHERE {config.logs.events.columns.event_type} IN {etl.sql.in_list(config.logs.events.event_types.purchase)}").r[0]
    assert engine.query("SELECT SUM(revenue) AS r FROM player_day").r[0] == pytest.approx(raw_revenue)
    assert np.isfinite(engine.query("SELECT * FROM labels").ltv).all()



def _windows(tmp_path: Path, **versions: str) -> dict:
    """`window` functions of the given sources, each from a module file of its own."""
    import importlib.util

    out = {}
    for name, source in versions.items():
        path = tmp_path / f"{name}.py"
        path.write_text("import datetime as dt\n\n\n" + source)
        spec = importlib.util.spec_from_file_location(f"shaping_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[name] = module.window
    return out

def test_a_partitions_definition_covers_the_python_that_shapes_it(monkeypatch, tmp_path: Path) -> None:
    """Partitions built by older code are not reused after an upgrade that changes how their SQL
    is parameterised (the `*_sql` functions, the windows, the rendering): the definition hash
    covers that code, not its comments or docstrings, and only the tables it shapes."""
    config = make_config()
    before = {t: etl.definition(config, t)["hash"] for t in etl._DEFINED_BY}
    w = _windows(tmp_path, a='def window(cutoff):\n    """One wording."""\n    return cutoff - dt.timedelta(days=7)\n',
                 b='def window(cutoff):\n    """Another."""\n    # a comment\n    return cutoff - dt.timedelta(days=7)\n',
                 c='def window(cutoff):\n    """One wording."""\n    return cutoff - dt.timedelta(days=6)\n')
    assert etl._code_hash(w["a"]) == etl._code_hash(w["b"]) != etl._code_hash(w["c"])
    monkeypatch.setattr(etl, "labels_sql", w["c"])
    after = {t: etl.definition(config, t)["hash"] for t in etl._DEFINED_BY}
    assert after["labels"] != before["labels"]
    assert {t: after[t] for t in ("player_day", "player_summary", "features")} == \
        {t: before[t] for t in ("player_day", "player_summary", "features")}
    monkeypatch.setattr(etl, "Windows", w["a"])
    assert all(etl.definition(config, t)["hash"] != before[t] for t in etl._DEFINED_BY), "the windows shape every table"
