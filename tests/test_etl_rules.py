"""ltv.etl's rules on a recording stand-in engine (fast: no DuckDB, no data): each cutoff's date
windows, which player_day days a step requires and how it says what is missing or stale, what
every build writes (partitions, definitions, lineage, statistics) and what it rebuilds. The SQL
these windows parameterise is checked on real rows in tests/test_etl.py and test_summary.py."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import pandas as pd
import pytest

from conftest import make_config
from ltv import etl
from ltv.engine import WriteResult
from ltv.errors import EmptyWindowError, MissingPartitionError, StaleDefinitionError

CUTOFF = dt.date(2025, 3, 10)  # a Monday


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def days(first: str, last: str) -> list[str]:
    """Every day from `first` to `last`, inclusive, as text."""
    return [str(d) for d in etl.day_range(day(first), day(last) + etl.DAY)]


def config(**features):
    return make_config(features={"step_days": 7, "n_steps": 2, "population_window_days": 14, **features},
                       horizons={"ltv_days": 28, "purchase_days": 7})


class Recorder:
    """An engine that holds partitions and their JSON files in memory and records every call."""

    def __init__(self, cfg, **tables: list[str]):
        self.config = cfg
        self.tables = {name: set(values) for name, values in tables.items()}
        self.json: dict[tuple[str, str, str], dict] = {}
        self.writes: list[tuple[str, str | None, str]] = []
        self.calls: Counter = Counter()
        self.rows = 3                      # rows each write reports
        self.range_days: list[str] = []    # the partitions a range write of player_day produces

    def current(self, table: str, values: list[str]) -> None:
        """Mark partitions complete and computed under the config's present definition."""
        self.tables.setdefault(table, set()).update(values)
        for v in values:
            self.json[(table, v, etl.DEFINITION_FILE)] = etl.definition(self.config, table)

    def partitions(self, table: str) -> list[str]:
        self.calls["partitions", table] += 1
        return sorted(self.tables.get(table, ()))

    def write_partitions(self, table: str, sql: str, value: str | None = None) -> WriteResult:
        self.writes.append((table, value, sql))
        written = [value] if value else list(self.range_days)
        self.tables.setdefault(table, set()).update(written)
        return WriteResult(table, written, self.rows)

    def put_partition_json(self, table: str, value: str, name: str, payload: dict) -> None:
        self.json[(table, value, name)] = payload

    def get_partition_json(self, table: str, value: str, name: str) -> dict | None:
        self.calls["json", table, value] += 1
        return self.json.get((table, value, name))

    def query(self, sql: str) -> pd.DataFrame:
        self.calls["query"] += 1
        return pd.DataFrame({"player_id": ["A", "B", "C"], "cutoff": str(CUTOFF), "revenue_total": [1.0, 2.0, 6.0]})


def test_the_windows_of_a_cutoff() -> None:
    w = etl.Windows.of(config(), CUTOFF)
    assert (w.cutoff, w.window_start, w.steps_start, w.ltv_end, w.purchase_end, w.label_end) == (
        CUTOFF, day("2025-02-24"), day("2025-02-24"), day("2025-04-07"), day("2025-03-17"), day("2025-04-07"))
    assert w.steps(config()) == [{"start": "2025-03-03", "end": "2025-03-10"}, {"start": "2025-02-24", "end": "2025-03-03"}]
    longer = etl.Windows.of(config(n_steps=4, step_days=5, population_window_days=9), CUTOFF)
    assert (longer.window_start, longer.steps_start, longer.recent_start) == (day("2025-03-01"), day("2025-02-18"),
                                                                             day("2025-02-18"))
    wide = etl.Windows.of(config(population_window_days=30), CUTOFF)
    assert wide.recent_start == wide.window_start == day("2025-02-08"), "the earlier of the two starts"
    days_longer = make_config(horizons={"ltv_days": 7, "purchase_days": 21})
    assert etl.Windows.of(days_longer, CUTOFF).label_end == day("2025-03-31") == CUTOFF + dt.timedelta(days=21)
    assert etl.label_horizon(days_longer) == 21 and etl.label_horizon(config()) == 28


def test_day_ranges_are_half_open_and_long_lists_are_summarised() -> None:
    assert etl.day_range(day("2025-02-27"), day("2025-03-02")) == [day("2025-02-27"), day("2025-02-28"), day("2025-03-01")]
    assert etl.day_range(CUTOFF, CUTOFF) == []
    assert etl._days(["a", "b", "c", "d", "e"]) == "a, b, c, d, e"
    assert etl._days(days("2025-03-01", "2025-03-06")) == "6 days (2025-03-01 .. 2025-03-06)"


def test_the_sql_is_rendered_with_the_cutoffs_windows() -> None:
    cfg = config(n_steps=4)
    features = etl.features_sql(cfg, CUTOFF)
    assert "i.install_time < TIMESTAMP '2025-03-10 00:00:00'" in features
    assert "WHERE dt < '2025-03-10' AND (dt >= '2025-02-10' OR purchases > 0)" in features, "recent_start: the steps'"
    assert "CASE WHEN dt >= '2025-02-24' THEN 1" in features, "the population window"
    assert "AS revenue_w4" in features and "AS revenue_w5" not in features, "one column per step"
    assert "1 AS cutoff_weekday" in features and "3 AS cutoff_month" in features and "10 AS cutoff_day_of_month" in features
    labels = etl.labels_sql(cfg, CUTOFF)
    assert "WHERE dt >= '2025-02-24' AND dt < '2025-03-10'" in labels, "population"
    assert "WHERE dt >= '2025-03-10' AND dt < '2025-04-07'" in labels, "labels read [cutoff, label_end)"
    assert "f.dt < '2025-03-17'" in labels and "f.dt < '2025-04-07'" in labels
    assert "next_purchase_day  d in 1..7" in labels
    assert "dt >= '2025-03-03' AND dt < '2025-03-10'" in etl.summary_sql(cfg, CUTOFF, day("2025-03-03"))
    assert "FROM player_summary" not in etl.summary_sql(cfg, CUTOFF)
    with pytest.raises(ValueError, match="a summary at 2025-03-10 cannot continue from the one at 2025-03-10"):
        etl.summary_sql(cfg, CUTOFF, CUTOFF)
    day_sql = etl.player_day_sql(cfg, day("2025-03-01"), day("2025-03-03"), frozenset({"2025-03-02", "2025-04-01"}))
    assert "'2025-03-02'" in day_sql and "'2025-03-03'" in day_sql and "'2025-04-01'" not in day_sql
    plain, dedup = day_sql.index("dt IN ('2025-03-02')"), day_sql.index("dt IN ('2025-03-01', '2025-03-03')")
    assert plain < dedup, "the validated day read as is, the others deduplicated"
    assert day_sql != etl.player_day_sql(cfg, day("2025-03-01"), day("2025-03-03"))


def test_a_player_day_build_needs_every_raw_day_and_marks_later_summaries_stale() -> None:
    cfg = config()
    raw = cfg.logs.events.table
    engine = Recorder(cfg, **{raw: days("2025-03-01", "2025-03-05"), "player_summary": ["2025-03-03", "2025-03-10"]})
    engine.current("player_summary", ["2025-02-24", "2025-03-03", "2025-03-10"])
    with pytest.raises(MissingPartitionError, match=rf"raw table '{raw}' has no partition for 2025-03-06, 2025-03-07; "
                                                    "the game's log export for those days has not arrived"):
        etl.build_player_day(engine, cfg, day("2025-03-04"), day("2025-03-07"))
    assert engine.writes == [] and etl.previous_summary(engine, cfg, day("2025-03-11")) == day("2025-03-10")
    result = etl.build_player_day(engine, cfg, day("2025-03-03"))
    assert result == WriteResult("player_day", ["2025-03-03"], 3)
    assert [(t, v) for t, v, _ in engine.writes] == [("player_day", "2025-03-03")]
    assert engine.json[("player_day", "2025-03-03", etl.DEFINITION_FILE)] == etl.definition(cfg, "player_day")
    assert etl._recorded_hash(engine, "player_summary", "2025-03-03") == etl.definition(cfg, "player_summary")["hash"]
    assert engine.json[("player_summary", "2025-03-10", etl.DEFINITION_FILE)] == {
        "hash": None, "table": "player_summary", "stale": "player_day from 2025-03-03 to 2025-03-03 was rebuilt after it"}
    assert etl.previous_summary(engine, cfg, day("2025-03-11")) == day("2025-03-03"), "the summary holding the day"

    engine.writes.clear()
    engine.range_days = ["2025-03-01", "2025-03-03"]  # 03-02 and 03-04 had no valid event
    result = etl.build_player_day(engine, cfg, day("2025-03-01"), day("2025-03-04"))
    assert result == WriteResult("player_day", days("2025-03-01", "2025-03-04"), 3)
    assert [(t, v) for t, v, _ in engine.writes] == [("player_day", None), ("player_day", "2025-03-02"),
                                                    ("player_day", "2025-03-04")]
    assert engine.writes[1][2] == etl.player_day_sql(cfg, day("2025-03-02"), day("2025-03-02"))
    assert all((("player_day", d, etl.DEFINITION_FILE) in engine.json) for d in days("2025-03-01", "2025-03-04"))
    assert etl.stale_partitions(engine, cfg, "player_summary", ["2025-02-24", "2025-03-03"]) == ["2025-03-03"]


def test_required_player_days_name_what_is_missing_or_stale_and_how_to_rebuild_it() -> None:
    cfg = config()
    with pytest.raises(MissingPartitionError, match="^player_day is empty; build it first: ltv features daily --game galaxy-raiders$"):
        etl.require_player_day(Recorder(cfg), cfg, day("2025-03-01"), CUTOFF, "x")
    engine = Recorder(cfg)
    engine.current("player_day", days("2025-03-01", "2025-03-06"))
    with pytest.raises(MissingPartitionError, match=r"^features at 2025-03-10 needs player_day for 2025-03-07, 2025-03-08, "
                                                    r"2025-03-09; run: ltv features daily --game galaxy-raiders --date "
                                                    r"2025-03-07 --to 2025-03-09$"):
        etl.require_player_day(engine, cfg, day("2025-02-01"), CUTOFF, "features at 2025-03-10")
    etl.require_player_day(engine, cfg, day("2025-01-01"), day("2025-03-07"), "before the game's first day: not needed")
    engine.json[("player_day", "2025-03-02", etl.DEFINITION_FILE)] = {"hash": "older"}
    del engine.json[("player_day", "2025-03-04", etl.DEFINITION_FILE)]
    with pytest.raises(StaleDefinitionError, match=r"^labels needs player_day for 2025-03-02, 2025-03-04, which was built "
                                                   r"under another log mapping .* ltv features daily --game galaxy-raiders "
                                                   r"--date 2025-03-02 --to 2025-03-04$"):
        etl.require_player_day(engine, cfg, day("2025-03-01"), day("2025-03-06"), "labels")
    etl.require_player_day(engine, cfg, day("2025-03-05"), day("2025-03-07"), "the current days only")
    pd_days = etl.PlayerDays(engine, cfg)
    assert pd_days.cover(day("2025-03-01"), day("2025-03-07")) and not pd_days.cover(day("2025-03-01"), day("2025-03-08"))
    assert not pd_days.cover(day("2025-02-28"), day("2025-03-02"))
    engine.calls.clear()
    pd_days.require(day("2025-03-05"), day("2025-03-07"), "a")
    pd_days.require(day("2025-03-05"), day("2025-03-07"), "b")
    pd_days.require(day("2025-03-06"), day("2025-03-07"), "c")
    assert engine.calls["partitions", "player_day"] == 0, "listed once, by `cover` above"
    assert [engine.calls["json", "player_day", d] for d in ("2025-03-05", "2025-03-06")] == [1, 1], "each day read once"


def test_a_summary_continues_from_the_newest_current_one_and_records_its_lineage() -> None:
    cfg = config()
    engine = Recorder(cfg)
    engine.current("player_day", days("2025-02-01", "2025-03-09"))
    result = etl.build_summary(engine, cfg, day("2025-02-24"))
    assert result.partitions == ["2025-02-24"]
    assert engine.writes[-1][2] == etl.summary_sql(cfg, day("2025-02-24"))
    assert engine.json[("player_summary", "2025-02-24", etl.LINEAGE_FILE)] == {
        "previous": None, "player_day": {"from": None, "before": "2025-02-24"}}
    assert etl.is_current(engine, cfg, "player_summary", "2025-02-24")
    engine.current("player_summary", ["2025-03-17"])  # after the cutoff: not a previous summary
    engine.tables["player_summary"].add("2025-03-03")  # complete, but without a definition
    engine.json[("player_day", "2025-02-01", etl.DEFINITION_FILE)] = {"hash": "older"}  # before 02-24: not read again
    etl.build_summary(engine, cfg, CUTOFF)
    assert engine.writes[-1] == ("player_summary", "2025-03-10", etl.summary_sql(cfg, CUTOFF, day("2025-02-24")))
    assert engine.json[("player_summary", "2025-03-10", etl.LINEAGE_FILE)] == {
        "previous": "2025-02-24", "player_day": {"from": "2025-02-24", "before": "2025-03-10"}}
    writes = len(engine.writes)
    assert etl.ensure_summary(engine, cfg, CUTOFF) is None and len(engine.writes) == writes, "current: not rebuilt"
    assert etl.previous_summary(engine, cfg, day("2025-02-24")) is None
    engine.json[("player_summary", "2025-03-10", etl.DEFINITION_FILE)] = {"hash": None}
    assert etl.ensure_summary(engine, cfg, CUTOFF) is not None and len(engine.writes) == writes + 1


def test_features_and_labels_build_what_is_not_current_and_read_only_their_days() -> None:
    cfg = config(n_steps=4)
    engine = Recorder(cfg)
    engine.current("player_day", days("2025-02-10", "2025-04-06"))
    engine.current("player_summary", [str(CUTOFF)])
    result = etl.build_features(engine, cfg, CUTOFF)
    assert result.partitions == [str(CUTOFF)] and [w[:2] for w in engine.writes] == [("features", str(CUTOFF))]
    assert engine.writes[0][2] == etl.features_sql(cfg, CUTOFF)
    stats = engine.json[("features", str(CUTOFF), etl.STATS_FILE)]
    assert stats["rows"] == 3 and stats["features"]["revenue_total"]["max"] == 6.0 and "player_id" not in stats["features"]
    assert engine.json[("features", str(CUTOFF), etl.DEFINITION_FILE)] == etl.definition(cfg, "features")
    labels = etl.build_labels(engine, cfg, CUTOFF)
    assert labels.partitions == [str(CUTOFF)] and engine.writes[-1] == ("labels", str(CUTOFF), etl.labels_sql(cfg, CUTOFF))
    assert engine.json[("labels", str(CUTOFF), etl.DEFINITION_FILE)] == etl.definition(cfg, "labels")
    assert etl.labels_available(engine, cfg, CUTOFF) and not etl.labels_available(engine, cfg, day("2025-03-17"))
    with pytest.raises(MissingPartitionError, match=r"^labels at 2025-03-17 needs player_day for 7 days \(2025-04-07 \.\. 2025-04-13\); .*--to 2025-04-13$"):
        etl.build_labels(engine, cfg, day("2025-03-17"))
    short = Recorder(cfg)
    short.current("player_day", ["2025-02-01", *days("2025-02-11", "2025-03-09")])  # the steps reach back to 02-10
    short.current("player_summary", [str(CUTOFF)])
    with pytest.raises(MissingPartitionError, match="^features at 2025-03-10 needs player_day for 2025-02-10; "):
        etl.build_features(short, cfg, CUTOFF, summary_ensured=True)
    short.current("player_day", ["2025-02-10"])
    short.rows = 0
    with pytest.raises(EmptyWindowError, match=r"^no player was active in \[2025-02-24, 2025-03-10\): the cutoff is "
                                               "before the game's first players or player_day is missing those days$"):
        etl.build_features(short, cfg, CUTOFF)


def test_ensure_cutoff_rebuilds_only_what_is_not_current() -> None:
    cfg = config()
    engine = Recorder(cfg)
    engine.current("player_day", days("2025-02-01", "2025-04-06"))
    engine.current("player_summary", [str(CUTOFF)])
    etl.ensure_cutoff(engine, cfg, CUTOFF, labels=False)
    assert [w[0] for w in engine.writes] == ["features"]
    etl.ensure_cutoff(engine, cfg, CUTOFF)
    assert [w[0] for w in engine.writes] == ["features", "labels"]
    etl.ensure_cutoff(engine, cfg, CUTOFF)
    assert len(engine.writes) == 2, "both current"
    engine.json[("features", str(CUTOFF), etl.DEFINITION_FILE)] = etl.definition(config(n_steps=3), "features")
    etl.ensure_cutoff(engine, cfg, CUTOFF)
    assert [w[0] for w in engine.writes] == ["features", "labels", "features"], "built under other settings: rebuilt"
    engine.json[("player_summary", str(CUTOFF), etl.DEFINITION_FILE)] = {"hash": None}
    engine.json[("labels", str(CUTOFF), etl.DEFINITION_FILE)] = {"hash": None}
    engine.json[("features", str(CUTOFF), etl.DEFINITION_FILE)] = {"hash": None}
    engine.calls.clear()
    etl.ensure_cutoff(engine, cfg, CUTOFF)
    assert [w[0] for w in engine.writes][3:] == ["player_summary", "features", "labels"]
    assert engine.calls["partitions", "player_day"] == 1, "summary, features and labels share one listing"
    assert etl.is_current(engine, cfg, "labels", str(CUTOFF)) and not etl.is_current(engine, cfg, "labels", "2025-03-17")


def test_a_definition_names_its_settings_and_changes_with_what_shapes_the_table() -> None:
    cfg = config()
    labels = etl.definition(cfg, "labels")
    assert labels["table"] == "labels" and set(labels["settings"]) == {"game", "logs", "features", "horizons"}
    assert labels["settings"]["features"] == {"population_window_days": 14}
    assert labels["settings"]["horizons"] == {"ltv_days": 28, "purchase_days": 7}
    assert len(labels["hash"]) == 16
    assert etl.definition(config(step_days=5), "labels") == labels, "steps do not shape labels"
    assert etl.definition(config(step_days=5), "features")["hash"] != etl.definition(cfg, "features")["hash"]
    other = make_config(horizons={"ltv_days": 28, "purchase_days": 14}, features={"population_window_days": 14})
    assert etl.definition(other, "labels")["hash"] != labels["hash"]
    assert etl.definition(other, "player_day") == etl.definition(cfg, "player_day")
    assert etl.shaping_code("labels") != etl.shaping_code("features") != etl.shaping_code("player_day")
