"""Each data validation rule has a failing fixture and a message naming check, table, partition."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_config
from handmade import day, event, write_lake
from ltv.errors import DataValidationError
from ltv.lake import Lake
from ltv.simulate import simulate
from ltv.validation import duplicate_free_days, validate_day

NOW = dt.datetime(2025, 3, 9, 3, 0)
DAY = day("2025-03-08")


def clean_events() -> list[dict]:
    out = []
    for d in range(1, 9):
        for p in ("A", "B", "C"):
            out += [event(p, f"2025-03-0{d} 10:00", "login"), event(p, f"2025-03-0{d} 10:30", "session", seconds=1800)]
        out.append(event("A", f"2025-03-0{d} 10:10", "purchase", 4.99))
    return out


def mutate(engine, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    part = engine.lake.raw_partition("events", DAY) / "part-0.parquet"
    frame = change(pd.read_parquet(part))
    frame.to_parquet(part, index=False)


def add(*rows: dict) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        extra = pd.DataFrame(list(rows)).astype({"level": "int32"})
        extra["event_ts"] = extra["event_ts"].astype("datetime64[us]")
        return pd.concat([frame, extra], ignore_index=True)
    return change


CASES = {
    "null_ids": (add(event(None, "2025-03-08 11:00", "login")), "null_ids on events (dt=2025-03-08): 1 rows with a null or empty user_id"),
    "event_types": (add(event("A", "2025-03-08 11:00", "mystery_box_opened")), "event type not in the config"),
    "negative_revenue": (add(event("A", "2025-03-08 11:00", "purchase", -4.99)), "purchases with a negative amount"),
    "revenue_range": (add(event("A", "2025-03-08 11:00", "purchase", 4999.0)), "above max_amount 500.0 USD"),
    "negative_values": (add(event("A", "2025-03-08 11:00", "session", seconds=-30)), "negative session_seconds"),
    "outside_partition_day": (add(event("A", "2025-03-09 00:30", "login")), "events timestamped after their partition's day"),
    "future_events": (add(event("A", "2026-03-08 00:30", "login")), "later than the run time 2025-03-09 03:00"),
    "schema": (lambda f: f.drop(columns=["revenue_usd"]), "missing column 'revenue_usd'"),
    "schema_type": (lambda f: f.assign(level=f.level.astype(str)), "'level' is string, expected float or integer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_fails_with_a_clear_message(case: str, tmp_path: Path) -> None:
    config = make_config()
    engine = write_lake(tmp_path, config, clean_events(), {"A": "2025-03-01 09:00", "B": "2025-03-01 09:00",
                                                            "C": "2025-03-08 09:00"})
    assert validate_day(engine, config, DAY, now=NOW).errors == []
    change, message = CASES[case]
    mutate(engine, change)
    with pytest.raises(DataValidationError) as err:
        validate_day(engine, config, DAY, now=NOW, report_dir=tmp_path / "reports")
    text = str(err.value)
    assert message in text
    assert "dt=2025-03-08" in text and "galaxy-raiders" in text and "fix:" in text
    if case not in ("schema", "schema_type"):
        assert "sample players:" in text, "the offending players are named (their rows are in the report)"
    assert (tmp_path / "reports" / "dt=2025-03-08.json").exists(), "the report is written even on failure"


def test_warnings_do_not_stop_and_severity_is_configurable(tmp_path: Path) -> None:
    config = make_config()
    engine = write_lake(tmp_path, config, clean_events(), {"A": "2025-03-01 09:00", "C": "2025-03-08 09:00"})
    mutate(engine, add(event("B", "2025-03-08 10:00", "login"), event("A", "2025-03-07 23:00", "login")))
    report = validate_day(engine, config, DAY, now=NOW)
    assert {w.name for w in report.warnings} == {"duplicate_events", "late_events"}
    strict = make_config(validation={"severity": {"duplicate_events": "error", "late_events": "off"}})
    with pytest.raises(DataValidationError, match="duplicate_events") as err:
        validate_day(engine, strict, DAY, now=NOW)
    assert "late_events" not in str(err.value)


def test_a_stored_duplicate_free_result_holds_only_for_the_partition_it_validated(tmp_path: Path) -> None:
    config = make_config()
    engine = write_lake(tmp_path, config, clean_events(), {"A": "2025-03-01 09:00", "C": "2025-03-08 09:00"})
    reports = tmp_path / "reports"
    for d in ("2025-03-07", "2025-03-08"):
        validate_day(engine, config, day(d), now=NOW, report_dir=reports)
    assert duplicate_free_days(reports, engine) == {"2025-03-07", "2025-03-08"}
    assert duplicate_free_days(reports, engine, ["2025-03-08", "2025-03-12"]) == {"2025-03-08"}

    mutate(engine, add(event("B", "2025-03-08 10:00", "login")))  # re-exported after validation, with a duplicate
    assert duplicate_free_days(reports, engine) == {"2025-03-07"}
    validate_day(engine, config, DAY, now=NOW, report_dir=reports)  # validated again: it has duplicates
    assert duplicate_free_days(reports, engine) == {"2025-03-07"}

    stale = reports / "dt=2025-03-07.json"  # a report that does not say which files it saw is not trusted
    stale.write_text(stale.read_text().replace('"events_fingerprint"', '"unused"'))
    assert duplicate_free_days(reports, engine) == set()


def test_freshness_and_volume(tmp_path: Path) -> None:
    config = make_config(validation={"severity": {"volume": "error"}})
    engine = write_lake(tmp_path, config, clean_events(), {"A": "2025-03-01 09:00"})
    with pytest.raises(DataValidationError, match="freshness on events \\(dt=2025-03-12\\): partition is missing"):
        validate_day(engine, config, day("2025-03-12"), now=NOW)
    mutate(engine, lambda f: f.head(2))
    with pytest.raises(DataValidationError, match=r"volume on events \(dt=2025-03-08\): 2 rows vs trailing 7-day mean 7"):
        validate_day(engine, config, DAY, now=NOW)


def test_unknown_currency_in_a_local_currency_game(tmp_path: Path) -> None:
    config = make_config("dragon-merge", simulation={"daily_installs": 30, "days": 3})
    simulate(config, Lake(tmp_path, config.game.id))
    from ltv.engine import DuckDBEngine

    engine = DuckDBEngine(Lake(tmp_path, config.game.id), config, threads=1)
    d = day("2025-01-02")
    part = engine.lake.raw_partition("game_events", d) / "part-0.parquet"
    frame = pd.read_parquet(part)
    frame.loc[frame.Currency.notna().idxmax(), "Currency"] = "XYZ"
    frame.to_parquet(part, index=False)
    with pytest.raises(DataValidationError, match="unknown_currency on game_events .* currency without an fx rate"):
        validate_day(engine, config, d, now=dt.datetime(2025, 1, 3, 2))


class _AthenaLike:
    """The local engine with Athena's rule: raw files are read with the catalog's declared types."""

    strict_types = True

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)


def test_types_the_sql_casts_pass_locally_and_must_match_the_catalog_on_athena(tmp_path: Path) -> None:
    """Integer player ids and DATE event times where the config declares string / timestamp:
    DuckDB casts them (valid locally); Athena would fail reading them with the declared types,
    so on a strict engine the schema check fails and names the setting, which then fixes it."""
    from ltv.athena import raw_columns

    config = make_config()
    engine = write_lake(tmp_path, config, clean_events(), {"A": "2025-03-01 09:00", "B": "2025-03-01 09:00",
                                                          "C": "2025-03-01 09:00"})
    mutate(engine, lambda f: f.assign(user_id=f.user_id.map({"A": 1, "B": 2, "C": 3}).astype("int64"),
                                      event_ts=f.event_ts.dt.date))
    assert validate_day(engine, config, DAY, now=NOW).errors == []
    with pytest.raises(DataValidationError) as failed:
        validate_day(_AthenaLike(engine), config, DAY, now=NOW)
    schema = next(r for r in failed.value.results if r.name == "schema" and not r.passed)
    assert "'user_id' is integer, expected string" in schema.message and "'event_ts' is date" in schema.message
    assert "logs.player_id_type" in schema.hint and "logs.events.event_time_type" in schema.hint
    declared = make_config(logs={"player_id_type": "integer", "events": {"event_time_type": "date"}})
    assert [r for r in validate_day(_AthenaLike(engine), declared, DAY, now=NOW).errors if r.name == "schema"] == []
    catalog = dict(raw_columns(declared)["events"])
    assert catalog["user_id"] == "bigint" and catalog["event_ts"] == "date"


def test_features_daily_prints_a_summary_of_the_warnings_it_found(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from ltv.cli import app

    config = make_config()
    engine = write_lake(tmp_path / "lake", config, clean_events(), {"A": "2025-03-01 09:00", "C": "2025-03-08 09:00"})
    mutate(engine, add(event("B", "2025-03-08 10:00", "login"), event("A", "2025-03-07 23:00", "login")))
    path = tmp_path / "game.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["features", "daily", "--game", str(path), "--lake", str(tmp_path / "lake"),
                                      "--date", "2025-03-07", "--to", "2025-03-08"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "validation: 3 warning(s):" in text  # and the players table has no partition for the 7th
    assert "duplicate_events on events: 1 day(s) (dt=2025-03-08)" in text and "late_events on events: 1 day(s)" in text
    assert "freshness on players: 1 day(s) (dt=2025-03-07)" in text and "monitoring/validation/dt=*.json" in text
