"""The Glue job entrypoints, offline.

- their logic for real: each entrypoint with the DuckDB engine over a small simulated lake
  produces the partitions and markers it should, checked against independent computations;
- their cloud wiring against moto (S3, Glue, Athena): the Athena engine writes one parquet
  object, then the marker, then the catalog partition, and the daily entrypoint on Athena
  writes the same partition DuckDB computes;
- the Trino text each job sends to Athena, snapshot-tested in tests/snapshots/glue_jobs/<game>/;
- the Glue packaging: a script run the way Glue runs it, with the core wheel on its path.

Update snapshots after an intended SQL change: LTV_UPDATE_SNAPSHOTS=1 pytest tests/test_glue_jobs.py
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

for _var, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                     "AWS_DEFAULT_REGION": "eu-west-1"}.items():
    os.environ[_var] = _value

from conftest import GAMES, ROOT, make_config  # noqa: E402

sys.path.append(str(ROOT))  # glue_jobs/ and stacks/ are not installed packages

from glue_jobs import _common as common  # noqa: E402
from glue_jobs import cutoffs, daily, dataset, validate  # noqa: E402
from ltv import config as cfg  # noqa: E402
from ltv import etl  # noqa: E402
from ltv.athena import AthenaEngine, raw_columns, row_count_sql, statement, table_specs  # noqa: E402
from ltv.engine import DuckDBEngine, WriteResult  # noqa: E402
from ltv.errors import LtvError  # noqa: E402
from ltv.lake import SUCCESS, Lake  # noqa: E402
from ltv.simulate import simulate  # noqa: E402
from stacks.packaging import GLUE_JOB_DEPENDENCIES, GLUE_PROVIDED, build_core_wheel, python_path_zip  # noqa: E402

SNAPSHOTS = Path(__file__).parent / "snapshots" / "glue_jobs"
REGION = "eu-west-1"
START = dt.date(2025, 1, 6)   # the simulation's first day (a Monday)
DAYS = 60
LAST = START + dt.timedelta(days=DAYS - 1)
NOW = dt.datetime(2025, 3, 11, 3, 0)


@pytest.fixture(scope="module")
def config() -> cfg.GameConfig:
    """galaxy-raiders, small, with one-week horizons and splits so a rolling dataset fits in 60 days."""
    return make_config(simulation={"daily_installs": 40, "days": DAYS}, horizons={"ltv_days": 7, "purchase_days": 7},
                       datasets={"rolling_train_weeks": 1, "validation_weeks": 1, "test_weeks": 1})


def write_config(config: cfg.GameConfig, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{config.game.id}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


@pytest.fixture(scope="module")
def config_file(config, tmp_path_factory) -> Path:
    return write_config(config, tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="module")
def simulated(config, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim") / "lake"
    simulate(config, Lake(root, config.game.id), days=DAYS)
    return root


@pytest.fixture
def lake(simulated, tmp_path) -> Path:
    """A private copy of the simulated raw logs (jobs write into it)."""
    return Path(shutil.copytree(simulated, tmp_path / "lake"))


def local_args(config_file: Path, lake: Path, *extra: str) -> list[str]:
    return ["--game", "galaxy-raiders", "--config", str(config_file), "--engine", "duckdb", "--lake", str(lake), *extra]


def build_player_day(config: cfg.GameConfig, lake: Path, end: dt.date = LAST) -> None:
    etl.build_player_day(DuckDBEngine(Lake(lake, config.game.id), config), config, START, end)


def table_dir(lake: Path, *parts: str) -> Path:
    return lake.joinpath("galaxy-raiders", *parts)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith((".tmp-", ".staging-", ".old-"))] \
        if directory.exists() else []


# ----------------------------------------------------------------------------------------------
# the jobs' logic, for real, on the DuckDB engine


def test_daily_job_writes_the_days_partition_matching_an_independent_count(config, config_file, lake):
    day = "2025-01-20"
    assert daily.main(local_args(config_file, lake, "--date", day)) == 0
    part = table_dir(lake, "player_day", f"dt={day}")
    assert sorted(p.name for p in part.iterdir()) == [SUCCESS, etl.DEFINITION_FILE, "part-0.parquet"]
    got = pd.read_parquet(part / "part-0.parquet")
    assert "dt" not in got.columns, "the partition column lives in the path only"
    raw = pd.read_parquet(table_dir(lake, "raw", "events", f"dt={day}")).drop_duplicates()
    raw = raw[raw.user_id.notna() & (raw.event_ts.dt.date.astype(str) == day)]
    purchases = raw[raw.event_name.isin(config.logs.events.event_types.purchase)]
    assert len(got) == raw.user_id.nunique() > 20
    assert got.revenue.sum() == pytest.approx(purchases.revenue_usd.sum())
    assert got.events.sum() == len(raw)


def test_glue_own_arguments_are_ignored_and_a_rerun_replaces_the_partition(config_file, lake):
    glue_args = ["--JOB_NAME", "ltv-galaxy-raiders-player-day", "--JOB_RUN_ID", "jr_1", "--TempDir", "s3://t/",
                 "--job-bookmark-option", "job-bookmark-disable", "--enable-continuous-cloudwatch-log", "true"]
    argv = [*glue_args, *local_args(config_file, lake, "--date", "2025-01-21")]
    assert daily.main(argv) == 0
    first = pd.read_parquet(table_dir(lake, "player_day", "dt=2025-01-21", "part-0.parquet"))
    assert daily.main(argv) == 0
    part = table_dir(lake, "player_day", "dt=2025-01-21")
    assert sorted(p.name for p in part.iterdir()) == [SUCCESS, etl.DEFINITION_FILE, "part-0.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(part / "part-0.parquet").sort_values("player_id", ignore_index=True),
                                  first.sort_values("player_id", ignore_index=True))
    assert not leftovers(part.parent)


def test_a_missing_raw_day_fails_the_job_without_leaving_a_partition(config_file, lake, caplog):
    assert daily.main(local_args(config_file, lake, "--date", "2025-04-01")) == 2
    assert "has no partition for 2025-04-01" in caplog.text
    assert not table_dir(lake, "player_day", "dt=2025-04-01").exists()
    assert not leftovers(table_dir(lake, "player_day"))


def test_validate_job_passes_a_clean_day_and_writes_its_report(config_file, lake):
    assert validate.main(local_args(config_file, lake, "--date", "2025-01-20"), now=lambda: NOW) == 0
    report = json.loads(table_dir(lake, "monitoring", "validation", "dt=2025-01-20.json").read_text())
    assert report["passed"] is True and report["day"] == "2025-01-20"
    assert {r["name"] for r in report["results"]} >= {"schema", "freshness", "event_types", "null_ids"}


def test_validate_job_fails_on_bad_rows_and_still_writes_its_report(config_file, lake):
    part = table_dir(lake, "raw", "events", "dt=2025-01-21")
    good = pq.read_table(part / "part-0.parquet")
    bad = good.slice(0, 1).set_column(good.schema.get_field_index("event_name"), "event_name",
                                      pa.array(["wallhack"], type=pa.string()))
    pq.write_table(bad, part / "part-1.parquet")
    assert validate.main(local_args(config_file, lake, "--date", "2025-01-21"), now=lambda: NOW) == 2
    report = json.loads(table_dir(lake, "monitoring", "validation", "dt=2025-01-21.json").read_text())
    failed = [r for r in report["results"] if not r["passed"] and r["severity"] == "error"]
    assert report["passed"] is False and [r["name"] for r in failed] == ["event_types"]
    assert failed[0]["failing_rows"] == 1


def test_daily_job_skips_deduplication_only_while_the_validated_partition_is_unchanged(config, config_file, lake,
                                                                                       caplog):
    day = "2025-01-22"
    part = table_dir(lake, "raw", "events", f"dt={day}")
    original = pq.read_table(part / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(original.to_pandas().drop_duplicates(), preserve_index=False)
                   .cast(original.schema), part / "part-0.parquet")
    assert validate.main(local_args(config_file, lake, "--date", day), now=lambda: NOW) == 0
    caplog.set_level(logging.INFO, logger="ltv.glue")
    assert daily.main(local_args(config_file, lake, "--date", day)) == 0
    assert "(validated duplicate-free)" in caplog.text

    pq.write_table(original.slice(0, 50), part / "part-1.parquet")  # late re-export: 50 events twice
    caplog.clear()
    assert daily.main(local_args(config_file, lake, "--date", day)) == 0
    assert "(deduplicated)" in caplog.text
    got = pd.read_parquet(table_dir(lake, "player_day", f"dt={day}", "part-0.parquet"))
    raw = pd.read_parquet(part).drop_duplicates()
    raw = raw[raw.user_id.notna() & (raw.event_ts.dt.date.astype(str) == day)]
    assert got.events.sum() == len(raw)


def test_due_cutoffs_follow_each_games_weekday_and_label_horizon():
    galaxy, dragon = cfg.load(GAMES / "galaxy-raiders.yaml"), cfg.load(GAMES / "dragon-merge.yaml")
    sunday, monday = dt.date(2025, 3, 9), dt.date(2025, 3, 10)
    assert cutoffs.due_cutoffs(galaxy, sunday) == ([monday], [monday - dt.timedelta(days=28)])
    assert cutoffs.due_cutoffs(galaxy, monday) == ([], [])
    tuesday, wednesday = dt.date(2025, 3, 11), dt.date(2025, 3, 12)
    assert cutoffs.due_cutoffs(dragon, tuesday) == ([wednesday], [wednesday - dt.timedelta(days=21)])
    assert cutoffs.due_cutoffs(dragon, sunday) == ([], [])


def population(lake: Path, cutoff: dt.date, days: int) -> set[str]:
    """Players with an active day in [cutoff - days, cutoff), read straight from player_day."""
    frames = [pd.read_parquet(table_dir(lake, "player_day", f"dt={d}", "part-0.parquet"))
              for d in etl.day_range(cutoff - dt.timedelta(days=days), cutoff)]
    return set(pd.concat(frames).player_id)


def test_cutoffs_job_builds_the_features_and_labels_the_day_completes(config, config_file, lake):
    build_player_day(config, lake, end=dt.date(2025, 2, 23))
    assert cutoffs.main(local_args(config_file, lake, "--date", "2025-02-23")) == 0  # a Sunday
    features_at, labels_at = dt.date(2025, 2, 24), dt.date(2025, 2, 17)
    features = pd.read_parquet(table_dir(lake, "features", f"cutoff={features_at}", "part-0.parquet"))
    labels = pd.read_parquet(table_dir(lake, "labels", f"cutoff={labels_at}", "part-0.parquet"))
    assert (table_dir(lake, "features", f"cutoff={features_at}", SUCCESS).exists()
            and table_dir(lake, "labels", f"cutoff={labels_at}", SUCCESS).exists())
    window = config.features.population_window_days
    assert set(features.player_id) == population(lake, features_at, window)
    assert set(labels.player_id) == population(lake, labels_at, window)
    assert sorted(p.name for p in table_dir(lake, "features").iterdir()) == [f"cutoff={features_at}"]
    assert cutoffs.main(local_args(config_file, lake, "--date", "2025-02-24")) == 0  # nothing due on a Monday
    assert sorted(p.name for p in table_dir(lake, "features").iterdir()) == [f"cutoff={features_at}"]


def test_cutoffs_job_fails_cleanly_without_player_day(config_file, lake, caplog):
    assert cutoffs.main(local_args(config_file, lake, "--cutoff", "2025-02-24")) == 2
    assert "player_day is empty" in caplog.text
    assert not table_dir(lake, "features").exists() or not any(table_dir(lake, "features").iterdir())


def test_dataset_job_builds_an_immutable_rolling_version(config, config_file, lake):
    build_player_day(config, lake)
    argv = local_args(config_file, lake, "--version", "rolling", "--date", "2025-03-02")
    assert dataset.main(argv) == 0
    version = table_dir(lake, "datasets", "rolling-2025-03-03")
    manifest = json.loads((version / "manifest.json").read_text())
    assert (version / SUCCESS).exists()
    assert manifest["cutoffs"] == {"train": ["2025-02-10"], "validation": ["2025-02-17"], "test": ["2025-02-24"]}
    for split in ("train", "validation", "test"):
        rows = pd.read_parquet(version / f"split={split}" / "part-0.parquet")
        assert len(rows) == manifest["rows"][split] > 0 and "split" not in rows.columns
    assert dataset.main(argv) == 0
    assert json.loads((version / "manifest.json").read_text()) == manifest, "a version never changes"


def test_run_date_is_fixed_by_the_first_job_of_a_workflow_run(config, lake):
    from moto import mock_aws

    with mock_aws():
        import boto3

        glue = boto3.client("glue", region_name=REGION)
        glue.create_workflow(Name="ltv-galaxy-raiders-daily-etl")
        run_id = glue.start_workflow_run(Name="ltv-galaxy-raiders-daily-etl")["RunId"]
        args = {"WORKFLOW_NAME": "ltv-galaxy-raiders-daily-etl", "WORKFLOW_RUN_ID": run_id}

        def at(when: dt.datetime) -> common.Runtime:
            return common.Runtime(config, DuckDBEngine(Lake(lake, "galaxy-raiders"), config),
                                  Lake(lake, "galaxy-raiders"), lambda: when, _glue=glue)

        assert at(dt.datetime(2025, 3, 10, 23, 59)).run_date(args) == dt.date(2025, 3, 9)
        assert at(dt.datetime(2025, 3, 11, 0, 1)).run_date(args) == dt.date(2025, 3, 9), "same run, same day"
        props = glue.get_workflow_run_properties(Name=args["WORKFLOW_NAME"], RunId=run_id)["RunProperties"]
        assert props == {"date": "2025-03-09"}
        assert at(dt.datetime(2025, 3, 11, 0, 1)).run_date({}) == dt.date(2025, 3, 10)
        assert at(dt.datetime(2025, 3, 11, 0, 1)).run_date({**args, "date": "2024-12-31"}) == dt.date(2024, 12, 31)


def test_glue_and_argparse_parse_the_same_arguments(monkeypatch):
    """In Glue, getResolvedOptions (faked here as awsglue's: required options over argv[1:])."""
    import argparse

    def get_resolved_options(argv: list[str], options: list[str]) -> dict[str, Any]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--job-bookmark-option")
        for name in options:
            parser.add_argument(f"--{name}", required=True)
        return vars(parser.parse_known_args(argv[1:])[0])

    argv = ["--JOB_NAME", "j", "--job-bookmark-option", "job-bookmark-disable", "--game", "g", "--config", "c.yaml",
            "--engine", "duckdb", "--lake", "/l", "--date", "2025-01-02"]
    plain = common.parse_args(argv)
    glue = types.ModuleType("awsglue")
    glue.utils = types.SimpleNamespace(getResolvedOptions=get_resolved_options)
    monkeypatch.setitem(sys.modules, "awsglue", glue)
    monkeypatch.setitem(sys.modules, "awsglue.utils", glue.utils)
    assert common.parse_args(argv) == plain == {"game": "g", "config": "c.yaml", "engine": "duckdb", "lake": "/l",
                                                "date": "2025-01-02"}
    with pytest.raises(LtvError, match="--database, --workgroup, --raw_uri, --curated_uri"):
        common.parse_args(["--game", "g", "--config", "c.yaml"])


def test_a_config_of_another_game_is_refused(config_file, lake, caplog):
    argv = local_args(config_file, lake, "--date", "2025-01-20")
    argv[1] = "dragon-merge"
    assert daily.main(argv) == 2 and "not of --game 'dragon-merge'" in caplog.text


# ----------------------------------------------------------------------------------------------
# the cloud wiring, against moto


@pytest.fixture
def aws(config):
    """Mocked S3 (raw, curated, Athena results, assets), the game's Glue catalog and its workgroup."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3")
        for bucket in ("raw", "curated", "results", "assets"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        glue = session.client("glue")
        glue.create_database(DatabaseInput={"Name": "ltv_galaxy_raiders"})
        for name, spec in table_specs(config).items():
            glue.create_table(DatabaseName="ltv_galaxy_raiders", TableInput={
                "Name": name, "PartitionKeys": [{"Name": k, "Type": t} for k, t in spec.partition_keys],
                "StorageDescriptor": {"Columns": [{"Name": c, "Type": t} for c, t in spec.columns],
                                      "Location": f"s3://{'raw' if spec.bucket == 'raw' else 'curated'}/{name}/"}})
        session.client("athena").create_work_group(Name="ltv-galaxy-raiders", Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://results/"}, "EnforceWorkGroupConfiguration": True})
        yield session


def athena_engine(config: cfg.GameConfig, session: Any) -> AthenaEngine:
    return AthenaEngine(config, database="ltv_galaxy_raiders", workgroup="ltv-galaxy-raiders", raw_uri="s3://raw",
                        curated_uri="s3://curated", boto3_session=session)


ATHENA_TYPES = {"string": "varchar", "bigint": "bigint", "int": "integer", "double": "double"}


def queue_athena_result(frame: pd.DataFrame, types: dict[str, str]) -> None:
    """Make moto's Athena answer the next query with `frame` (header row first, like Athena)."""
    import requests

    def cell(value: Any) -> dict[str, str]:
        return {} if pd.isna(value) else {"VarCharValue": str(value)}

    rows = [{"Data": [{"VarCharValue": c} for c in frame.columns]}]
    rows += [{"Data": [cell(v) for v in row]} for row in frame.itertuples(index=False)]
    info = [{"Name": c, "Label": c, "Type": ATHENA_TYPES[types[c]]} for c in frame.columns]
    response = requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results",
                             json={"region": REGION, "results": [{"rows": rows, "column_info": info}]})
    assert response.status_code == 201


def sent_queries(session: Any) -> list[str]:
    athena = session.client("athena")
    ids = athena.list_query_executions()["QueryExecutionIds"]
    executions = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    return [e["Query"] for e in sorted(executions, key=lambda e: e["Status"]["SubmissionDateTime"])]


def keys(session: Any, bucket: str, prefix: str = "") -> list[str]:
    listed = session.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


PLAYER_DAY = pd.DataFrame({"player_id": ["p1", "p2"], "logins": [1, 2], "sessions": [2, 0], "play_seconds": [30.5, 0.0],
                           "level_ups": [0, 1], "max_level": [4, 7], "purchases": [1, 0], "revenue": [2.99, 0.0],
                           "events": [7, 3]})


def test_athena_writes_one_object_then_the_marker_then_the_catalog_partition(config, aws, monkeypatch):
    import awswrangler as wr

    engine = athena_engine(config, aws)
    calls: list[str] = []
    to_parquet, put, add = wr.s3.to_parquet, engine._put, wr.catalog.add_parquet_partitions
    monkeypatch.setattr(wr.s3, "to_parquet", lambda df, path, **kw: calls.append(f"data {path}") or to_parquet(df, path, **kw))
    monkeypatch.setattr(engine, "_put", lambda uri, body: calls.append(f"put {uri}") or put(uri, body))
    monkeypatch.setattr(wr.catalog, "add_parquet_partitions",
                        lambda *a, **kw: calls.append("register") or add(*a, **kw))
    queue_athena_result(PLAYER_DAY, table_specs(config)["player_day"].types())
    result = engine.write_partitions("player_day", etl.player_day_sql(config, START, START), value=str(START))
    prefix = f"s3://curated/player_day/dt={START}/"
    assert result == WriteResult("player_day", [str(START)], 2)
    assert calls == [f"data {prefix}part-0.parquet", f"put {prefix}{SUCCESS}", "register"]
    assert keys(aws, "curated") == [f"player_day/dt={START}/{SUCCESS}", f"player_day/dt={START}/part-0.parquet"]
    written = wr.s3.read_parquet(f"{prefix}part-0.parquet", boto3_session=aws)
    assert list(written.columns) == [c for c, _ in table_specs(config)["player_day"].columns]
    assert written.revenue.tolist() == [2.99, 0.0]
    partition = aws.client("glue").get_partition(DatabaseName="ltv_galaxy_raiders", TableName="player_day",
                                                 PartitionValues=[str(START)])["Partition"]
    assert partition["StorageDescriptor"]["Location"] == prefix
    assert sent_queries(aws) == [statement(etl.player_day_sql(config, START, START))]


def test_athena_lists_complete_derived_partitions_and_every_raw_day(config, aws):
    s3 = aws.client("s3")
    s3.put_object(Bucket="curated", Key="player_day/dt=2025-01-06/part-0.parquet", Body=b"x")
    s3.put_object(Bucket="curated", Key="player_day/dt=2025-01-06/_SUCCESS", Body=b"")
    s3.put_object(Bucket="curated", Key="player_day/dt=2025-01-07/part-0.parquet", Body=b"x")  # no marker yet
    s3.put_object(Bucket="raw", Key="events/dt=2025-01-06/export-000.parquet", Body=b"x")
    s3.put_object(Bucket="raw", Key="events/dt=2025-01-07/export-000.parquet", Body=b"x")
    engine = athena_engine(config, aws)
    assert engine.partitions("player_day") == ["2025-01-06"]
    assert engine.partitions("events") == ["2025-01-06", "2025-01-07"]
    assert engine.partitions("features") == []


def test_a_failed_athena_write_leaves_nothing_visible(config, aws, monkeypatch):
    import awswrangler as wr

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("connection reset while uploading")

    monkeypatch.setattr(wr.s3, "to_parquet", broken)
    queue_athena_result(PLAYER_DAY, table_specs(config)["player_day"].types())
    engine = athena_engine(config, aws)
    with pytest.raises(OSError):
        engine.write_partitions("player_day", etl.player_day_sql(config, START, START), value=str(START))
    assert keys(aws, "curated") == [] and engine.partitions("player_day") == []
    assert aws.client("glue").get_partitions(DatabaseName="ltv_galaxy_raiders", TableName="player_day")["Partitions"] == []


def test_athena_refuses_columns_the_catalog_does_not_know(config, aws):
    queue_athena_result(PLAYER_DAY.assign(surprise=1), table_specs(config)["player_day"].types() | {"surprise": "bigint"})
    with pytest.raises(LtvError, match=r"not in the catalog: \['surprise'\]"):
        athena_engine(config, aws).write_partitions("player_day", "SELECT 1", value=str(START))
    assert keys(aws, "curated") == []


def test_athena_raw_partition_stats_and_file_schema(config, simulated, aws):
    source = table_dir(simulated, "raw", "events", f"dt={START}", "part-0.parquet")
    aws.client("s3").upload_file(str(source), "raw", f"events/dt={START}/part-0.parquet")
    engine = athena_engine(config, aws)
    queue_athena_result(pd.DataFrame({"n": [1234]}), {"n": "bigint"})
    assert engine.raw_partition_stats("events", str(START)) == (1234, source.stat().st_size)
    assert sent_queries(aws)[-1] == statement(row_count_sql("events", str(START)))
    assert engine.raw_partition_stats("events", "2025-01-07") is None
    assert engine.raw_partition_columns("events", str(START)) == {
        "user_id": "STRING", "event_ts": "TIMESTAMP", "event_name": "STRING", "level": "INT",
        "session_seconds": "DOUBLE", "revenue_usd": "DOUBLE"}
    assert engine.raw_partition_columns("events", "2025-01-07") == {}
    assert len(sent_queries(aws)) == 1, "the schema comes from the parquet footers, not from a query"


def test_athena_raw_partition_fingerprint_changes_when_the_partition_is_rewritten(config, simulated, aws):
    source = table_dir(simulated, "raw", "events", f"dt={START}", "part-0.parquet")
    s3, engine = aws.client("s3"), athena_engine(config, aws)
    assert engine.raw_partition_fingerprint("events", str(START)) is None
    s3.upload_file(str(source), "raw", f"events/dt={START}/part-0.parquet")
    s3.put_object(Bucket="raw", Key=f"events/dt={START}/_SUCCESS", Body=b"")  # not data: Athena skips it
    first = engine.raw_partition_fingerprint("events", str(START))
    assert first is not None and engine.raw_partition_fingerprint("events", str(START)) == first
    s3.put_object(Bucket="raw", Key=f"events/dt={START}/part-0.parquet", Body=source.read_bytes()[:-1] + b"!")
    assert engine.raw_partition_fingerprint("events", str(START)) not in (None, first)
    assert sent_queries(aws) == [], "a listing, not a query"


def test_athena_publishes_a_directory_marker_last_and_fetches_all_or_nothing(config, aws, tmp_path, monkeypatch):
    engine = athena_engine(config, aws)
    local = tmp_path / "datasets" / "v1"
    (local / "split=train").mkdir(parents=True)
    (local / "split=train" / "part-0.parquet").write_bytes(b"rows")
    (local / "manifest.json").write_text('{"name": "v1"}')
    (local / SUCCESS).write_text("done")
    uploaded = engine.publish(local, "datasets/v1")
    assert uploaded[-1] == f"s3://curated/datasets/v1/{SUCCESS}" and len(uploaded) == 3
    assert engine.publish(local, "datasets/v1", replace=False) == [], "a complete version is not rewritten"
    assert engine.fetch("datasets/v1", [SUCCESS, "manifest.json"], tmp_path / "copy") == [SUCCESS, "manifest.json"]
    assert (tmp_path / "copy" / "manifest.json").read_text() == '{"name": "v1"}'
    aws.client("s3").put_object(Bucket="curated", Key="datasets/v2/manifest.json", Body=b"{}")  # no marker
    assert engine.fetch("datasets/v2", [SUCCESS, "manifest.json"], tmp_path / "v2") == []
    assert not (tmp_path / "v2").exists()


def test_the_daily_entrypoint_on_athena_writes_what_duckdb_computes(config, config_file, simulated, aws):
    """Athena (mocked) answers with the rows DuckDB computes from the same raw day; the entrypoint
    must turn them into the same player_day partition the local run writes."""
    import awswrangler as wr

    day = dt.date(2025, 1, 20)
    local = DuckDBEngine(Lake(simulated, config.game.id), config)
    expected = local.query(etl.player_day_sql(config, day, day)).drop(columns=["dt"])
    for table in (config.logs.events.table, config.logs.players.table):
        aws.client("s3").upload_file(str(table_dir(simulated, "raw", table, f"dt={day}", "part-0.parquet")),
                                     "raw", f"{table}/dt={day}/part-0.parquet")
    aws.client("s3").upload_file(str(config_file), "assets", "abc123.yaml")
    queue_athena_result(expected.assign(dt=str(day)), table_specs(config)["player_day"].types() | {"dt": "string"})
    argv = ["--JOB_NAME", "ltv-galaxy-raiders-player-day", "--game", "galaxy-raiders", "--config", "s3://assets/abc123.yaml",
            "--database", "ltv_galaxy_raiders", "--workgroup", "ltv-galaxy-raiders", "--raw_uri", "s3://raw",
            "--curated_uri", "s3://curated", "--date", str(day)]
    assert daily.main(argv) == 0
    assert keys(aws, "curated") == [f"player_day/dt={day}/{SUCCESS}", f"player_day/dt={day}/{etl.DEFINITION_FILE}",
                                    f"player_day/dt={day}/part-0.parquet"]
    got = wr.s3.read_parquet(f"s3://curated/player_day/dt={day}/part-0.parquet", boto3_session=aws)
    pd.testing.assert_frame_equal(got.sort_values("player_id", ignore_index=True),
                                  expected.sort_values("player_id", ignore_index=True), check_dtype=False)
    assert sent_queries(aws) == [statement(etl.player_day_sql(config, day, day))]


# ----------------------------------------------------------------------------------------------
# the Trino text each job sends, snapshot-tested


class RecordingEngine:
    """An engine that records what the Athena engine would send for each call, answering with
    just enough for the jobs to go on: every partition exists, every check passes."""

    def __init__(self, config: cfg.GameConfig, days: list[dt.date]):
        self.config, self.days, self.sent = config, [str(d) for d in days], []
        self.raw = {config.logs.events.table, config.logs.players.table}

    def _record(self, sql_text: str) -> None:
        self.sent.append(statement(sql_text))

    def query(self, sql_text: str) -> pd.DataFrame:
        self._record(sql_text)
        if "COUNT(*) AS copies" in sql_text:
            return pd.DataFrame({"copies": pd.Series([], dtype="int64")})
        if "COUNT(*) AS n" in sql_text:
            return pd.DataFrame({"n": [1000]})
        if sql_text.startswith("SELECT SUM(CASE"):
            return pd.DataFrame({f"c{i}": [0] for i in range(len(re.findall(r" AS c\d+\b", sql_text)))})
        if sql_text.startswith("SELECT * FROM features WHERE cutoff"):  # read back for its statistics
            return pd.DataFrame({"player_id": ["p1", "p2"], "cutoff": ["2025-01-06"] * 2, "feature": [1.0, 2.0]})
        if "AS split" in sql_text:
            return pd.DataFrame({"player_id": ["p1", "p2"], "cutoff": ["2025-01-06"] * 2, "feature": [1.0, 2.0],
                                 "ltv": [0.0, 3.0], "payer": [0, 1], "next_purchase_day": [0, 2], "churned": [1, 0],
                                 "split": ["x", "x"]})
        raise AssertionError(f"unexpected query: {sql_text[:80]}")

    def write_partitions(self, table: str, sql_text: str, value: str | None = None) -> WriteResult:
        self._record(sql_text)
        return WriteResult(table, [value], 100)

    def partitions(self, table: str) -> list[str]:
        return self.days if table in self.raw or table == "player_day" else self.complete

    complete: list[str] = []

    def put_partition_json(self, table: str, value: str, name: str, payload: dict) -> None:
        pass  # an S3 object beside the partition: nothing is sent to Athena

    def get_partition_json(self, table: str, value: str, name: str) -> dict:
        return etl.definition(self.config, table)  # every partition is current (an S3 read: nothing sent)

    def raw_partition_stats(self, table: str, day: str) -> tuple[int, int]:
        self._record(row_count_sql(table, day))
        return 1000, 10_000

    def raw_partition_columns(self, table: str, day: str) -> dict[str, str]:
        return {c: t.upper() for c, t in raw_columns(self.config)[table]}  # from the footers: nothing sent

    def raw_partition_fingerprint(self, table: str, day: str) -> str:
        return "listing"  # from an S3 listing: nothing sent


def recorded(config: cfg.GameConfig, tmp_path: Path, job: Any, args: dict[str, str],
             complete: list[str] = ()) -> str:
    engine = RecordingEngine(config, etl.day_range(dt.date(2024, 1, 1), dt.date(2025, 12, 31)))
    engine.complete = list(complete)
    rt = common.Runtime(config, engine, Lake(tmp_path / job.__name__, config.game.id), lambda: NOW)
    job.run(rt, args)
    return "".join(f"\n-- [{i}]\n{text}" for i, text in enumerate(engine.sent, 1))


def due_day(config: cfg.GameConfig) -> dt.date:
    """The first day from 2025-03-01 after which both features and labels are due."""
    return next(d for d in etl.day_range(dt.date(2025, 3, 1), dt.date(2025, 4, 1)) if all(cutoffs.due_cutoffs(config, d)))


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_trino_text_of_every_job_matches_its_snapshot(game, tmp_path):
    config = cfg.load(GAMES / f"{game}.yaml")
    day = due_day(config)
    spec_cutoffs = [str(d) for d in etl.day_range(dt.date(2024, 1, 1), dt.date(2025, 12, 31))]
    texts = {
        "validate": recorded(config, tmp_path, validate, {"date": str(day)}),
        "player_day": recorded(config, tmp_path, daily, {"date": str(day)}),
        "cutoffs": recorded(config, tmp_path, cutoffs, {"date": str(day)}),
        "dataset": recorded(config, tmp_path, dataset, {"version": "rolling", "date": str(day)}, complete=spec_cutoffs),
    }
    assert texts["cutoffs"].count("\n-- [") == 3 and texts["dataset"].count("\n-- [") == 3
    update = os.environ.get("LTV_UPDATE_SNAPSHOTS") == "1"
    for job, text in texts.items():
        content = (f"-- Trino text the {job} job of {game} sends to Athena for run date {day}.\n"
                   f"-- Generated by tests/test_glue_jobs.py; after an intended SQL change rerun it with "
                   f"LTV_UPDATE_SNAPSHOTS=1.\n{text}")
        path = SNAPSHOTS / game / f"{job}.sql"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        assert path.exists(), f"missing snapshot {path}; create it with LTV_UPDATE_SNAPSHOTS=1"
        assert path.read_text() == content, f"{path} changed: review the SQL diff, then LTV_UPDATE_SNAPSHOTS=1"


# ----------------------------------------------------------------------------------------------
# packaging: what Glue runs


def test_a_job_runs_as_glue_runs_it_with_the_core_wheel_on_its_path(config, config_file, lake, tmp_path):
    """Glue runs the script file with _common.py (--extra-py-files) beside it and the core
    wheel, as a .zip, on the Python path: the core must come from that zip."""
    wheel = build_core_wheel(ROOT, tmp_path / "dist")
    core = python_path_zip(wheel, tmp_path / "assets")
    job_dir = tmp_path / "glue"
    job_dir.mkdir()
    for name in ("daily.py", "_common.py"):
        shutil.copy(ROOT / "glue_jobs" / name, job_dir / name)
    script = job_dir / "daily.py"
    argv = [str(script), "--JOB_NAME", "x", *local_args(config_file, lake, "--date", "2025-01-22")]
    run_like_glue = ("import runpy, sys, ltv.sql; "
                     f"assert ltv.sql.__file__.startswith({str(core)!r}), ltv.sql.__file__; "
                     f"sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", run_like_glue], capture_output=True, text=True, cwd=job_dir,
                          env={**os.environ, "PYTHONPATH": f"{job_dir}{os.pathsep}{core}", "LTV_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert table_dir(lake, "player_day", "dt=2025-01-22", SUCCESS).exists()


def test_what_the_jobs_import_is_pinned_or_provided_by_glue():
    """Every third-party distribution the job code imports is a pinned job dependency, provided by
    Glue, or a dependency of those: nothing else gets installed in Glue."""
    from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

    from packaging.requirements import Requirement

    code = ("import sys, glue_jobs.validate, glue_jobs.daily, glue_jobs.cutoffs, glue_jobs.dataset, ltv.athena; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    owners = packages_distributions()
    imported = {d.lower().replace("_", "-") for m in done.stdout.split() for d in owners.get(m, [])}
    # present here but not needed: setuptools' .pth hook loads in every interpreter, and pyarrow
    # imports cloudpickle only if it happens to be installed
    imported -= {"player-ltv", "setuptools", "cloudpickle"}
    allowed: set[str] = set()
    todo = [*GLUE_JOB_DEPENDENCIES, *GLUE_PROVIDED]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in allowed:
            continue
        allowed.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": "", "python_version": "3.11", "sys_platform": "linux",
                                                          "platform_system": "Linux"}):
                todo.append(req.name)
    assert imported - allowed == set(), "add these to stacks/packaging.GLUE_JOB_DEPENDENCIES"
    assert not imported & {"autogluon-tabular", "typer", "matplotlib", "scipy"}
