"""Onboarding a purchase-only log by writing a config and nothing else.

The log has a third schema, deliberately unlike the example games: integer customer ids under
another name, no event type column (every row is an order), amounts in `total`, the same order
twice on one day (two real orders: `deduplicate: none`), and a flat, unpartitioned customers
file whose sign-up is a DATE. No `aws:` section, no `schema: warn`. The user's commands run on
it: features daily -> datasets build -> train -> predict.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ltv import config as cfg
from ltv.cli import app
from ltv.engine import DuckDBEngine
from ltv.lake import Lake
from ltv.scoring import read_predictions

START, DAYS = dt.date(2025, 1, 6), 175
CONFIG = """
game: {id: corner-shop, name: Corner Shop}
logs:
  player_id_type: integer
  events:
    table: sales
    columns: {player_id: buyer, event_time: sold_at, revenue: total}
    deduplicate: none
    revenue: {max_amount: 5000}
  players:
    table: accounts
    partitioned: false
    columns: {player_id: buyer, install_time: joined}
features: {step_days: 14, n_steps: 3, population_window_days: 120}
horizons: {ltv_days: 28, purchase_days: 14}
datasets: {first_start: 2025-03-10, count: 1, train_weeks: [4], validation_weeks: 1, test_weeks: 1}
model: {hyperparameters: {GBM: {num_boost_round: 40}}, fit_weighted_ensemble: false, time_limit_s: 3600, num_cpus: 1}
"""


def write_shop(root: Path, seed: int = 5) -> tuple[int, float]:
    """Raw files in the shop's own layout; returns (customer id with a same-day repeat order, its day total)."""
    rng = np.random.default_rng(seed)
    n = 900
    joined = rng.integers(0, DAYS - 20, n)
    rate = rng.gamma(0.8, 1 / 20, n)                 # orders per day
    life = rng.exponential(90, n)
    rows = []
    for i in range(n):
        t = joined[i]
        days = [t] + [d for d in range(t + 1, min(DAYS, int(t + life[i]))) if rng.random() < rate[i]]
        rows += [(100_000 + i, d, rng.gamma(2.0, 15.0 * (1 + i % 3))) for d in days]
    sales = pd.DataFrame(rows, columns=["buyer", "day", "total"])
    sales["sold_at"] = pd.to_datetime(START) + pd.to_timedelta(sales["day"], "D") + pd.to_timedelta(
        rng.integers(0, 86_000, len(sales)), "s")
    repeat = sales[sales["day"] == 40].iloc[[0]]     # the same order twice on one day: two real orders
    sales = pd.concat([sales, repeat], ignore_index=True)
    for day, part in sales.groupby("day"):
        target = root / "raw" / "sales" / f"dt={START + dt.timedelta(days=int(day))}"
        target.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part[["sold_at", "buyer", "total"]], preserve_index=False),
                       target / "part-0.parquet")
    for day in range(DAYS):  # a day without orders still has its (empty) export
        target = root / "raw" / "sales" / f"dt={START + dt.timedelta(days=day)}"
        if not target.exists():
            target.mkdir(parents=True)
            pq.write_table(pa.table({"sold_at": pa.array([], pa.timestamp("us")), "buyer": pa.array([], pa.int64()),
                                     "total": pa.array([], pa.float64())}), target / "part-0.parquet")
    accounts = pa.table({"buyer": pa.array(100_000 + np.arange(n), pa.int64()),
                         "joined": pa.array([START + dt.timedelta(days=int(d)) for d in joined], pa.date32())})
    (root / "raw" / "accounts").mkdir(parents=True)
    pq.write_table(accounts, root / "raw" / "accounts" / "accounts.parquet")
    buyer, day = int(repeat["buyer"].iloc[0]), int(repeat["day"].iloc[0])
    day_total = float(sales.loc[(sales["buyer"] == buyer) & (sales["day"] == day), "total"].sum())
    return buyer, day_total


@pytest.mark.slow
def test_a_purchase_only_log_onboards_by_config_alone(tmp_path: Path) -> None:
    path = tmp_path / "corner-shop.yaml"
    path.write_text(CONFIG)
    lake_root = tmp_path / "lake"
    repeat_buyer, repeat_total = write_shop(lake_root / "corner-shop")
    config = cfg.load(path)
    assert config.aws is None and config.logs.events.purchase_only

    run = CliRunner()
    last = START + dt.timedelta(days=DAYS - 1)
    result = run.invoke(app, ["features", "daily", "--game", str(path), "--date", str(START), "--to", str(last),
                              "--lake", str(lake_root)])
    assert result.exit_code == 0, result.output
    # validation saw the repeat order and says what each rule would do, dropping nothing under `none`
    report = json.loads((lake_root / "corner-shop" / "monitoring" / "validation" / "dt=2025-02-15.json").read_text())
    dup = next(r for r in report["results"] if r["name"] == "duplicate_events")
    assert dup["passed"] and "exact_rows removes 1 rows" in dup["message"] and "none (in force)" in dup["message"]

    engine = DuckDBEngine(Lake(lake_root, "corner-shop"), config, threads=1)
    day = engine.query(f"SELECT purchases, revenue FROM player_day WHERE player_id = {repeat_buyer} "
                       "AND dt = '2025-02-15'")
    assert int(day["purchases"].iloc[0]) == 2 and day["revenue"].iloc[0] == pytest.approx(repeat_total)

    result = run.invoke(app, ["datasets", "build", "--game", str(path), "--version", "v1", "--lake", str(lake_root)])
    assert result.exit_code == 0, result.output
    features = engine.query("SELECT * FROM features")
    for absent in ("logins_total", "sessions_total", "play_minutes_total", "level_ups_total", "max_level",
                   "logins_w1", "play_minutes_w1", "level_ups_w1", "purchase_day_rate"):
        assert absent not in features, f"{absent} is generated for a log without that role"
    numeric = features.select_dtypes("number")
    constant_zero = [c for c in numeric if (numeric[c].fillna(0) == 0).all()]
    assert not constant_zero, f"constant-zero feature columns: {constant_zero}"
    # install time from the flat file's DATE: days_since_install counts from the sign-up day
    assert (features["days_since_install"] >= features["days_since_first_purchase"]).all()

    result = run.invoke(app, ["train", "--game", str(path), "--dataset", "v1", "--lake", str(lake_root)])
    assert result.exit_code == 0, result.output
    assert all(f"{stage}: done" in result.output for stage in ("payer", "value", "churn")), result.output
    run_dir = next((lake_root / "corner-shop" / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the BTYD and past-spend baselines are fitted and scored on the same test rows as the model, with
    # a ranking better than chance (a purchase history predicts future spend) and a ratio the report shows
    for name in ("btyd", "past_spend"):
        scores = metrics["baselines"][name]
        assert scores["players"] == metrics["model"]["players"] > 0, name
        assert 0 < scores["normalized_gini"] <= 1 and scores["actual_total"] == metrics["model"]["actual_total"], name
        assert metrics["ratios"][f"model_vs_{name}"]["normalized_gini"] == pytest.approx(
            metrics["model"]["normalized_gini"] / scores["normalized_gini"]), name
    assert "btyd" in (run_dir / "report.html").read_text()

    result = run.invoke(app, ["predict", "--game", str(path), "--date", "2025-06-23", "--lake", str(lake_root)])
    assert result.exit_code == 0, result.output
    scored = read_predictions(Lake(lake_root, "corner-shop"), "2025-06-23")
    population = engine.query("SELECT COUNT(DISTINCT player_id) AS n FROM player_day "
                              "WHERE dt >= '2025-02-23' AND dt < '2025-06-23'")["n"].iloc[0]
    assert len(scored) == population > 0
    assert scored["ltv_expected"].notna().all()


def test_train_progress_names_the_model_being_fitted(tmp_path: Path, monkeypatch) -> None:
    """While AutoGluon fits, a heartbeat reports the stage, the models done so far and the time."""
    import time

    from ltv.models import automl

    monkeypatch.setattr(automl, "HEARTBEAT_S", 0.02)
    lines: list[str] = []
    with automl._heartbeat(tmp_path, "payer", lines.append, ["GBM", "CAT"]):
        time.sleep(0.1)
        (tmp_path / "models" / "LightGBM").mkdir(parents=True)
        time.sleep(0.1)
    assert any(line.startswith("payer: fitting, ") and "models done: none yet (planned: GBM, CAT)" in line
               for line in lines)
    assert any("models done: LightGBM (planned" in line for line in lines)
    assert lines[-1].startswith("payer: done in ") and lines[-1].endswith("(LightGBM)")


def test_without_an_aws_section_only_the_aws_commands_fail_with_a_clear_error(tmp_path: Path) -> None:
    from ltv.errors import ConfigError
    from stacks.names import Names

    path = tmp_path / "corner-shop.yaml"
    path.write_text(CONFIG)
    config = cfg.load(path)
    with pytest.raises(ConfigError, match=r"no `aws:` section .* synthesize or deploy .* Local commands work"):
        Names.of(config)


def _orders_lake(tmp_path: Path, yaml: str) -> tuple[cfg.GameConfig, DuckDBEngine, Path]:
    """One day of orders with an order id: order 1 exported twice (same id, same row), orders 2
    and 3 identical but for their ids (two real orders), and a flat-partitioned players table
    whose install time is a DATE."""
    path = tmp_path / "ids.yaml"
    path.write_text(yaml)
    config = cfg.load(path)
    root = tmp_path / "lake"
    day = root / "ids-shop" / "raw" / "orders" / "dt=2025-03-03"
    day.mkdir(parents=True)
    at = pd.Timestamp("2025-03-03 10:00")
    pq.write_table(pa.Table.from_pandas(pd.DataFrame({
        "cid": ["a", "a", "b", "b"], "oid": ["o1", "o1", "o2", "o3"], "ts": [at] * 4,
        "amount": [10.0, 10.0, 7.5, 7.5]}), preserve_index=False), day / "part-0.parquet")
    players = root / "ids-shop" / "raw" / "signups" / "dt=2025-03-03"
    players.mkdir(parents=True)
    pq.write_table(pa.table({"cid": ["a", "b"], "joined": pa.array([dt.date(2025, 3, 3)] * 2, pa.date32())}),
                   players / "part-0.parquet")
    return config, DuckDBEngine(Lake(root, "ids-shop"), config, threads=1), root


IDS_CONFIG = """
game: {id: ids-shop, name: Ids}
logs:
  events:
    table: orders
    columns: {player_id: cid, event_time: ts, revenue: amount, event_id: oid}
  players:
    table: signups
    columns: {player_id: cid, install_time: joined}
datasets: {first_start: 2025-03-03}
"""


def test_deduplicate_by_id_keeps_identical_orders_with_distinct_ids_and_reports_every_rule(tmp_path: Path) -> None:
    from ltv import etl
    from ltv.validation import validate_day

    config, engine, root = _orders_lake(tmp_path, IDS_CONFIG)
    assert config.logs.events.dedup == "by_id"  # the documented default when an event id is mapped
    report = validate_day(engine, config, dt.date(2025, 3, 3), now=dt.datetime(2025, 3, 4))
    schema = [r for r in report.results if r.name == "schema"]
    assert schema and all(r.passed for r in schema), "a DATE install time is read, not refused"
    dup = next(r for r in report.results if r.name == "duplicate_events")
    assert dup.failing_rows == 1 and not dup.passed and dup.severity == "warn"
    assert "by_id (in force) removes 1 rows / 10.00 USD" in dup.message
    assert "exact_rows removes 1 rows / 10.00 USD" in dup.message
    etl.build_player_day(engine, config, dt.date(2025, 3, 3))
    day = engine.query("SELECT player_id, purchases, revenue FROM player_day ORDER BY player_id")
    assert day["purchases"].tolist() == [1, 2] and day["revenue"].tolist() == [10.0, 15.0]
    # exact_rows would keep o2 and o3 too (their ids differ), and drop the copy of o1; none keeps all four
    for rule, purchases in (("exact_rows", [1, 2]), ("none", [2, 2])):
        other = cfg.load(tmp_path / "ids.yaml", {"logs": {"events": {"deduplicate": rule}}})
        engine = DuckDBEngine(Lake(root, "ids-shop"), other, threads=1)
        etl.build_player_day(engine, other, dt.date(2025, 3, 3))
        assert engine.query("SELECT purchases FROM player_day ORDER BY player_id")["purchases"].tolist() == purchases


def test_a_role_without_its_column_is_a_config_error() -> None:
    from ltv.errors import ConfigError

    base = cfg.parse({"game": {"id": "x-shop", "name": "X"}, "datasets": {"first_start": "2025-01-06"},
                      "logs": {"events": {"table": "o", "columns": {"player_id": "c", "event_time": "t", "revenue": "a"}}}})
    assert base.logs.events.purchase_only and base.logs.players is None and base.aws is None
    bad = {"game": {"id": "x-shop", "name": "X"}, "datasets": {"first_start": "2025-01-06"},
           "logs": {"events": {"table": "o", "columns": {"player_id": "c", "event_time": "t", "revenue": "a"},
                               "event_types": {"purchase": ["buy"]}}}}
    with pytest.raises(ConfigError, match="columns.event_type is not"):
        cfg.parse(bad)
    bad["logs"]["events"]["columns"]["event_type"] = "kind"
    bad["logs"]["events"]["event_types"] = {"purchase": ["buy"], "session": ["end"]}
    with pytest.raises(ConfigError, match="columns.session_length is not"):
        cfg.parse(bad)
    bad["logs"]["events"]["event_types"] = {"login": ["in"]}
    with pytest.raises(ConfigError, match="event_types.purchase is empty"):
        cfg.parse(bad)
    bad["logs"]["events"]["event_types"] = {"purchase": ["buy"]}
    bad["logs"]["events"]["deduplicate"] = "by_id"
    with pytest.raises(ConfigError, match="by_id needs columns.event_id"):
        cfg.parse(bad)


def test_the_example_configs_are_valid() -> None:
    """config/examples/ is documentation users copy: it must load (no aws section, no players)."""
    examples = sorted((Path(__file__).parent.parent / "config" / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        config = cfg.load(path)
        assert config.aws is None and config.logs.events.purchase_only
