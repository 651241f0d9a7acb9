"""The SQL ETL against an independent pandas implementation (benchmarks/pandas_reference.py).

On a small simulated game with dirty logs (duplicates, late, out-of-order and future events,
missing ids) and a perturbed players table (missing install records, missing attributes,
conflicting duplicate install records), player_day and the features at several cutoffs built
by the core (DuckDB + ltv.etl) must equal the pandas reference column by column: integers and
strings exactly, floats within 1e-9 relative (the revenue std within 1e-6, see ATOL), nulls in
the same places. Features are built cutoff after cutoff, so all but the first come from a summary
merged with the previous one (ltv/sql/player_summary.sql).
"""
from __future__ import annotations

import datetime as dt
import importlib.util

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, make_config

from ltv import etl
from ltv.engine import DuckDBEngine
from ltv.lake import Lake
from ltv.simulate import simulate

DIRTY = {"duplicate_rate": 0.01, "late_rate": 0.005, "out_of_order_rate": 0.01, "null_id_rate": 0.005,
         "future_rate": 0.002}
RTOL = 1e-9
# the summary keeps the standard deviation of purchase-day revenue as exact sums of the revenue
# rounded to a millionth (ltv/sql/player_summary.sql): within sqrt(2) * 5e-7 of the unrounded std
ATOL = {"purchase_day_revenue_std": 1e-6}


def _load_reference():
    spec = importlib.util.spec_from_file_location("pandas_reference", ROOT / "benchmarks" / "pandas_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()


def assert_frames_equal(core: pd.DataFrame, expected: pd.DataFrame, key: list[str]) -> None:
    """Same columns in the same order, same rows (sorted by `key`), equal values column by column."""
    assert list(core.columns) == list(expected.columns)
    assert len(core) == len(expected), f"{len(core)} rows from the SQL, {len(expected)} from pandas"
    core = core.sort_values(key, ignore_index=True)
    expected = expected.sort_values(key, ignore_index=True)
    for col in core.columns:
        a, b = core[col], expected[col]
        a_null, b_null = a.isna().to_numpy(), b.isna().to_numpy()
        bad = np.flatnonzero(a_null != b_null)
        assert not len(bad), f"{col}: nulls differ at {len(bad)} rows, e.g. SQL {a[bad[0]]!r} vs pandas {b[bad[0]]!r}"
        a, b = a[~a_null], b[~b_null]
        if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isclose(x, y, rtol=RTOL, atol=ATOL.get(col, 0.0)))
        elif pd.api.types.is_numeric_dtype(a):
            assert pd.api.types.is_integer_dtype(b), f"{col}: integer in SQL, {b.dtype} in pandas"
            x, y = a.to_numpy(dtype=np.int64), b.to_numpy(dtype=np.int64)
            bad = np.flatnonzero(x != y)
        else:
            x, y = a.astype(str).to_numpy(), b.astype(str).to_numpy()
            bad = np.flatnonzero(x != y)
        if len(bad):
            i = bad[0]
            raise AssertionError(f"{col}: {len(bad)} of {len(x)} values differ, e.g. at {key} = "
                                 f"{core.loc[~a_null, key].iloc[i].tolist()}: SQL {x[i]!r} vs pandas {y[i]!r}")


def _perturb_players(config, lake: Lake) -> None:
    """Make the players table exercise the install rules of features.sql.

    - a third of day 3's installs lose their record; it reappears in day 40's partition stamped
      day 41 (so: no record before cutoff 41, a record at or after the cutoff at 41, visible after);
    - day 5's installs lose one attribute (-> 'unknown');
    - day 10's installs get a second, later record on day 40 with another attribute value
      (install time and each attribute take their minimum independently).
    """
    pl = config.logs.players
    parts = sorted(lake.raw(pl.table).glob("dt=*"))
    attribute = next(iter(pl.attributes.values()))
    day = [dt.date.fromisoformat(p.name.split("=")[1]) for p in parts]

    def read(i: int) -> pa.Table:
        return pq.read_table(parts[i] / "part-0.parquet")

    def stamped(table: pa.Table, when: pd.Timestamp) -> pa.Table:
        frame = table.to_pandas()
        frame[attribute] = "AA"
        frame[pl.columns.install_time] = when
        return pa.Table.from_pandas(frame, preserve_index=False).cast(table.schema)

    day3 = read(3)
    keep = 2 * day3.num_rows // 3
    pq.write_table(day3.slice(0, keep), parts[3] / "part-0.parquet")
    late = stamped(day3.slice(keep), pd.Timestamp(day[41]) + pd.Timedelta(hours=3))
    day5 = read(5)
    i = day5.schema.get_field_index(attribute)
    pq.write_table(day5.set_column(i, attribute, pa.nulls(day5.num_rows, pa.string())), parts[5] / "part-0.parquet")
    again = stamped(read(10), pd.Timestamp(day[40]) + pd.Timedelta(hours=3))
    pq.write_table(pa.concat_tables([read(40), late, again]), parts[40] / "part-0.parquet")


@pytest.fixture(scope="module", params=["galaxy-raiders", "dragon-merge"])
def game(request, tmp_path_factory):
    config = make_config(request.param, simulation={"daily_installs": 30, "days": 80, "dirty": DIRTY})
    lake = Lake(tmp_path_factory.mktemp("lake"), config.game.id)
    simulate(config, lake)
    _perturb_players(config, lake)
    engine = DuckDBEngine(lake, config)
    first, last = config.simulation.start, config.simulation.end - dt.timedelta(days=1)
    etl.build_player_day(engine, config, first, last)
    return config, lake, engine


def test_player_day_matches_pandas(game):
    config, lake, engine = game
    first, last = config.simulation.start, config.simulation.end - dt.timedelta(days=1)
    core = engine.query("SELECT * FROM player_day")
    expected = ref.player_day_from_lake(config, lake, first, last)
    assert len(core) > 10_000
    assert_frames_equal(core[ref.PLAYER_DAY_COLUMNS], expected, ["dt", "player_id"])


def test_daily_run_matches_pandas(game):
    """A one-day (incremental) run gives the reference's rows for that day too."""
    config, lake, engine = game
    day = config.simulation.start + dt.timedelta(days=30)
    etl.build_player_day(engine, config, day)
    core = engine.query(f"SELECT * FROM player_day WHERE dt = '{day}'")
    expected = ref.player_day_from_lake(config, lake, day, day)
    assert_frames_equal(core[ref.PLAYER_DAY_COLUMNS], expected, ["dt", "player_id"])


def _drop_exact_duplicates(config, lake: Lake, days: list[dt.date]) -> None:
    """Rewrite these raw event partitions without their duplicate rows (as a clean export would be)."""
    for day in days:
        path = lake.raw_partition(config.logs.events.table, day) / "part-0.parquet"
        table = pq.read_table(path)
        pq.write_table(pa.Table.from_pandas(table.to_pandas().drop_duplicates(), preserve_index=False)
                       .cast(table.schema), path)


def test_skipping_dedup_on_validated_days_matches_pandas(game):
    """Days validation finds duplicate-free skip the DISTINCT (plain + deduplicated days in one
    range run); the result is still the reference's, and passing a dirty day would be caught."""
    from ltv.validation import Validator, duplicate_free

    config, lake, engine = game
    first = config.simulation.start
    clean_days = [first + dt.timedelta(days=i) for i in range(50, 56)]
    _drop_exact_duplicates(config, lake, clean_days)
    start, end = clean_days[0] - dt.timedelta(days=3), clean_days[-1] + dt.timedelta(days=2)
    validated = frozenset().union(*(duplicate_free(Validator(engine, config).run(d))
                                    for d in etl.day_range(start, end + dt.timedelta(days=1))))
    assert validated == {str(d) for d in clean_days}  # the dirty neighbours keep their duplicates

    etl.build_player_day(engine, config, start, end, duplicate_free=validated)
    core = engine.query(f"SELECT * FROM player_day WHERE dt BETWEEN '{start}' AND '{end}'")
    expected = ref.player_day_from_lake(config, lake, start, end)
    assert_frames_equal(core[ref.PLAYER_DAY_COLUMNS], expected, ["dt", "player_id"])

    dirty = str(end)  # negative control, not written: a dirty day declared clean counts duplicates twice
    wrong = engine.query(etl.player_day_sql(config, end, end, frozenset({dirty})))
    with pytest.raises(AssertionError, match="values differ"):
        assert_frames_equal(wrong[ref.PLAYER_DAY_COLUMNS], ref.player_day_from_lake(config, lake, end, end),
                            ["dt", "player_id"])


@pytest.mark.parametrize("days_after_start", [20, 41, 45, 79])
def test_features_match_pandas(game, days_after_start):
    """Cutoffs before the history fills every step, after the duplicate installs, the last day."""
    config, lake, engine = game
    first, last = config.simulation.start, config.simulation.end - dt.timedelta(days=1)
    cutoff = first + dt.timedelta(days=days_after_start)
    etl.build_features(engine, config, cutoff)
    core = engine.query(f"SELECT * FROM features WHERE cutoff = '{cutoff}'")
    daily = ref.player_day_from_lake(config, lake, first, last)
    expected = ref.features_from_lake(config, lake, daily, cutoff)
    assert len(core) > 100
    assert_frames_equal(core, expected, ["player_id"])
    assert expected["purchase_gap_std"].notna().any() and expected["days_since_first_purchase"].notna().any()
    if days_after_start >= 41:
        assert (expected.filter(like="attr_") == "AA").any().any()  # the duplicate install records count


def test_comparison_catches_a_difference(game):
    """The comparison is not vacuous: a one-ulp-scale change passes, a real change fails."""
    config, lake, _ = game
    first = config.simulation.start
    expected = ref.player_day_from_lake(config, lake, first, first + dt.timedelta(days=9))
    tweaked = expected.copy()
    tweaked["play_seconds"] *= 1 + 1e-12
    assert_frames_equal(tweaked, expected, ["dt", "player_id"])
    tweaked.loc[3, "revenue"] += 0.01
    with pytest.raises(AssertionError, match="revenue"):
        assert_frames_equal(tweaked, expected, ["dt", "player_id"])
