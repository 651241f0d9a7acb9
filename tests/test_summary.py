"""The running whole-history summary (`player_summary`) and the features built from it.

On small simulated games (both example games and the purchase-only shop), features are built
cutoff after cutoff, so each summary merges the previous one with the days since. Checked:
- every incremental summary equals the one computed from scratch, row for row, exactly;
- the features equal those built from from-scratch summaries exactly, and the whole-history
  pandas reference (benchmarks/pandas_reference.py, independent of the SQL) within its tolerances;
- leakage: a summary at c holds no day >= c, and changing every event from c on changes no
  summary up to c;
- staleness: a summary built under another definition, or holding a player_day day rewritten
  since, is neither continued from nor served; it is rebuilt.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, make_config
from ltv import config as cfg
from ltv import etl
from ltv.engine import DuckDBEngine
from ltv.lake import Lake
from ltv.simulate import simulate
from test_etl_reference import assert_frames_equal, ref

SHOP = ROOT / "config" / "examples" / "shop.yaml"
DATES = ["first_active_dt", "last_active_dt", "first_purchase_dt", "last_purchase_dt"]


def small(game: str) -> cfg.GameConfig:
    if game == "shop":
        return cfg.load(SHOP, {"simulation": {"days": 196, "daily_installs": 40}})
    return make_config(game, simulation={"daily_installs": 25, "days": 98, "campaign": None})


@pytest.fixture(scope="module", params=["galaxy-raiders", "dragon-merge", "shop"])
def game(request, tmp_path_factory):
    """A small simulated game with player_day built, and the features of every scheduled cutoff
    from its fourth week on, built in order: (config, lake, engine, cutoffs)."""
    config = small(request.param)
    lake = Lake(tmp_path_factory.mktemp("summary"), config.game.id)
    simulate(config, lake)
    engine = DuckDBEngine(lake, config, threads=1)
    s = config.simulation
    etl.build_player_day(engine, config, s.start, s.end - etl.DAY)
    cutoffs = [c for c in etl.day_range(s.start + dt.timedelta(days=21), s.end + etl.DAY) if config.cutoffs.is_cutoff(c)]
    for c in cutoffs:
        etl.build_features(engine, config, c)
    return config, lake, engine, cutoffs


def summary_at(engine: DuckDBEngine, cutoff: dt.date) -> pd.DataFrame:
    return engine.query(f"SELECT * FROM player_summary WHERE cutoff = '{cutoff}' ORDER BY player_id")


def features_at(engine: DuckDBEngine, cutoff: dt.date) -> pd.DataFrame:
    return engine.query(f"SELECT * FROM features WHERE cutoff = '{cutoff}' ORDER BY player_id")


def lineage(engine: DuckDBEngine, cutoff: dt.date) -> str | None:
    return engine.get_partition_json("player_summary", str(cutoff), etl.LINEAGE_FILE)["previous"]


def sharing(config: cfg.GameConfig, lake: Lake, root: Path) -> DuckDBEngine:
    """An engine on a new lake that reads `lake`'s raw logs and player_day (read-only)."""
    other = Lake(root, lake.game)
    other.base.mkdir(parents=True)
    for name in ("raw", "player_day"):
        (other.base / name).symlink_to(lake.base / name)
    return DuckDBEngine(other, config, threads=1)


def test_incremental_summaries_equal_from_scratch_ones(game) -> None:
    config, lake, engine, cutoffs = game
    assert len(cutoffs) >= 6
    assert [lineage(engine, c) for c in cutoffs] == [None, *map(str, cutoffs[:-1])], \
        "the first summary is built from scratch, every later one continues from the one before"
    describe = [engine.query(f"DESCRIBE {etl.summary_sql(config, cutoffs[1], previous)}")[["column_name", "column_type"]]
                for previous in (None, cutoffs[0])]
    pd.testing.assert_frame_equal(*describe)  # the same columns and types (the catalog's) either way
    bridged = 0
    for previous, cutoff in zip([None, *cutoffs], cutoffs):
        stored = summary_at(engine, cutoff)
        scratch = engine.query(f"SELECT * FROM ({etl.summary_sql(config, cutoff)}) ORDER BY player_id")
        pd.testing.assert_frame_equal(stored, scratch, check_exact=True)
        assert (stored[DATES].dropna() < str(cutoff)).all().all(), "a summary holds no day at or after its cutoff"
        if previous is not None:  # purchase gaps across the boundary were merged, not only sums
            bridged += int(((stored.first_purchase_dt < str(previous)) & (stored.last_purchase_dt >= str(previous))).sum())
    assert bridged > 20


def test_features_equal_those_of_from_scratch_summaries(game, tmp_path: Path) -> None:
    """Exactly, every column: summaries are exact sums, so merging changes no bit of any feature."""
    config, lake, engine, cutoffs = game
    scratch = sharing(config, lake, tmp_path)
    for cutoff in cutoffs:
        shutil.rmtree(scratch.lake.table("player_summary"), ignore_errors=True)
        etl.build_features(scratch, config, cutoff)
        assert lineage(scratch, cutoff) is None
        pd.testing.assert_frame_equal(features_at(engine, cutoff), features_at(scratch, cutoff), check_exact=True)


def test_features_equal_the_whole_history_reference(game) -> None:
    """The pandas reference recomputes every feature from all of player_day at each cutoff."""
    config, lake, engine, cutoffs = game
    s = config.simulation
    daily = ref.player_day_from_lake(config, lake, s.start, s.end - etl.DAY)
    assert_frames_equal(engine.query("SELECT * FROM player_day")[ref.player_day_columns(config)], daily,
                        ["dt", "player_id"])
    for cutoff in cutoffs:
        expected = ref.features_from_lake(config, lake, daily, cutoff)
        assert len(expected) > 50
        assert_frames_equal(features_at(engine, cutoff), expected, ["player_id"])
    assert expected["purchase_gap_median"].notna().sum() > 20 and expected["purchase_gap_std"].notna().sum() > 20


def test_changing_every_event_from_a_cutoff_on_changes_no_summary_up_to_it(game, tmp_path: Path) -> None:
    config, lake, engine, cutoffs = game
    last = cutoffs[len(cutoffs) // 2]
    other = Lake(tmp_path, lake.game)
    for table in config.logs.tables:
        for part in sorted(lake.raw(table).glob("dt=*")):
            target = other.raw(table) / part.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if part.name < f"dt={last}":
                target.symlink_to(part)
                continue
            target.mkdir()
            frame = pq.read_table(part / "part-0.parquet").to_pandas()
            if table == config.logs.events.table:  # other amounts, two thirds of the events gone
                frame[config.logs.events.columns.revenue] *= 7
                frame = frame.iloc[::3]
            frame.to_parquet(target / "part-0.parquet", index=False)
    future = DuckDBEngine(other, config, threads=1)
    s = config.simulation
    etl.build_player_day(future, config, s.start, s.end - etl.DAY)
    changed = f"SELECT SUM(revenue) AS r FROM player_day WHERE dt >= '{last}'"
    assert future.query(changed).r[0] != pytest.approx(engine.query(changed).r[0])
    for cutoff in [c for c in cutoffs if c <= last]:
        etl.build_features(future, config, cutoff)
        pd.testing.assert_frame_equal(summary_at(future, cutoff), summary_at(engine, cutoff), check_exact=True)
        pd.testing.assert_frame_equal(features_at(future, cutoff), features_at(engine, cutoff), check_exact=True)


ONE_GAME = pytest.mark.parametrize("game", ["galaxy-raiders"], indirect=True)  # the staleness rules: one is enough


@ONE_GAME
def test_a_summary_of_another_definition_is_neither_continued_nor_served(game, tmp_path: Path) -> None:
    config, lake, engine, cutoffs = game
    c1, c2, c3 = cutoffs[:3]
    local = sharing(config, lake, tmp_path)
    for c in (c1, c2):
        etl.build_summary(local, config, c)
    # c2 as an older SQL version left it: other rows (c1's) under another definition hash
    part = local.partition_dir("player_summary", str(c2)) / "part-0.parquet"
    shutil.copy(local.partition_dir("player_summary", str(c1)) / "part-0.parquet", part)
    local.put_partition_json("player_summary", str(c2), etl.DEFINITION_FILE, {"hash": "0123456789abcdef"})
    assert etl.previous_summary(local, config, c3) == c1
    etl.build_features(local, config, c3)
    assert lineage(local, c3) == str(c1)
    pd.testing.assert_frame_equal(summary_at(local, c3), summary_at(engine, c3), check_exact=True)
    assert etl.ensure_summary(local, config, c2) is not None, "the stale summary is rebuilt when its cutoff is needed"
    assert lineage(local, c2) == str(c1) and etl.is_current(local, config, "player_summary", str(c2))
    pd.testing.assert_frame_equal(summary_at(local, c2), summary_at(engine, c2), check_exact=True)
    assert etl.ensure_summary(local, config, c2) is None, "a current summary is left alone"


@ONE_GAME
def test_rewriting_a_player_day_day_stales_the_summaries_holding_it(game, tmp_path: Path) -> None:
    config, lake, engine, cutoffs = game
    c1, c2, c3, c4 = cutoffs[:4]
    own = Lake(tmp_path, lake.game)
    for name in ("raw", "player_day"):
        shutil.copytree(lake.base / name, own.base / name)
    local = DuckDBEngine(own, config, threads=1)
    for c in (c1, c2, c3):
        etl.build_features(local, config, c)
    day = c1 + dt.timedelta(days=2)  # held by the summaries at c2 and c3, not c1
    path = own.raw_partition(config.logs.events.table, day) / "part-0.parquet"
    frame = pq.read_table(path).to_pandas()
    frame[config.logs.events.columns.revenue] *= 10  # a corrected export of that day
    frame.to_parquet(path, index=False)
    etl.build_player_day(local, config, day)
    stale = [str(c) for c in (c2, c3)]
    assert etl.stale_partitions(local, config, "player_summary", [str(c) for c in (c1, c2, c3)]) == stale
    assert "was rebuilt after it" in local.get_partition_json("player_summary", str(c2), etl.DEFINITION_FILE)["stale"]
    etl.build_features(local, config, c4)
    assert lineage(local, c4) == str(c1), "continued from the newest summary that does not hold the day"
    scratch = local.query(f"SELECT * FROM ({etl.summary_sql(config, c4)}) ORDER BY player_id")
    pd.testing.assert_frame_equal(summary_at(local, c4), scratch, check_exact=True)
    assert not summary_at(local, c4).revenue.equals(summary_at(engine, c4).revenue), "the corrected day counts"
    etl.ensure_cutoff(local, config, c3, labels=False)  # features at c3 are current: nothing to rebuild
    assert etl.stale_partitions(local, config, "player_summary", [str(c3)]) == [str(c3)]
    etl.ensure_summary(local, config, c3)
    assert json.loads((local.partition_dir("player_summary", str(c3)) / etl.LINEAGE_FILE).read_text())["previous"] \
        == str(c1)
