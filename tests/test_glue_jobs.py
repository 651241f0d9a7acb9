"""The Glue job entrypoints, offline, run the way the cloud runs them.

- their logic for real: each entrypoint with the DuckDB engine over a small simulated lake
  produces the partitions and markers it should, checked against independent computations;
- their cloud path as the synthesized templates define it: moto buckets, Glue catalog and Athena
  workgroup created from the DataLake template, Athena answering each query by running its
  Trino text transpiled back to DuckDB over the S3 objects the catalog points at (tests/cloud.py);
  every job of both example games must produce what the DuckDB source produces, and every AWS
  call they make (theirs, and Athena's on their behalf) must be allowed by the jobs' IAM policy
  in the template;
- the Trino text each job sends to Athena, snapshot-tested in tests/snapshots/glue_jobs/<game>/
  (review-only: a change fails with its diff; LTV_UPDATE_SNAPSHOTS=1 rewrites the files and still
  fails, so a rewrite shows up as a git diff and never passes silently);
- the packaging: each job script run as Glue runs it, from the synthesized cdk.out, with only the
  files the template names (`--extra-py-files` under their S3 names, the wheels of
  `--additional-python-modules` installed with --no-index into a clean environment).
"""
from __future__ import annotations

import datetime as dt
import difflib
import io
import json
import logging
import os
import re
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
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cloud import (AthenaQueryError, CallRecorder, FakeAthena, Need, PolicyEvaluator, Role, Templates,  # noqa: E402
                   moto_account, role)
from conftest import GAMES, ROOT, make_config  # noqa: E402

sys.path.append(str(ROOT))  # stacks/ is not an installed package

from glue_jobs import _common as common  # noqa: E402
from glue_jobs import cutoffs, daily, dataset, validate  # noqa: E402
from ltv import config as cfg  # noqa: E402
from ltv import etl  # noqa: E402
from ltv.athena import AthenaEngine, raw_columns, row_count_sql, statement, table_specs  # noqa: E402
from ltv.engine import DuckDBEngine, WriteResult  # noqa: E402
from ltv.errors import ConfigError, DataValidationError, LtvError, MissingPartitionError  # noqa: E402
from ltv.lake import SUCCESS, Lake  # noqa: E402
from ltv.simulate import simulate  # noqa: E402
from stacks.game import build_app  # noqa: E402
from stacks.names import Names  # noqa: E402
from stacks.packaging import GLUE_LOCK, build_core_wheel, read_lock  # noqa: E402

SNAPSHOTS = Path(__file__).parent / "snapshots" / "glue_jobs"
START = dt.date(2025, 1, 6)   # the simulation's first day (a Monday)
DAYS = 60
LAST = START + dt.timedelta(days=DAYS - 1)
NOW = dt.datetime(2025, 3, 11, 3, 0)
SMALL = {"horizons": {"ltv_days": 7, "purchase_days": 7},
         "datasets": {"rolling_train_weeks": 1, "validation_weeks": 1, "test_weeks": 1}}


def small_config(game: str = "galaxy-raiders") -> cfg.GameConfig:
    """An example game, small: one-week horizons and splits so a rolling dataset fits in 60 days."""
    return make_config(game, **cfg.merge(SMALL, {
        "simulation": {"start": str(START), "daily_installs": 40, "days": DAYS, "campaign": None, "drift": None},
        "aws": {"logs_start": str(START)}}))


@pytest.fixture(scope="module")
def config() -> cfg.GameConfig:
    return small_config()


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


def table_dir(lake: Path, *parts: str, game: str = "galaxy-raiders") -> Path:
    return lake.joinpath(game, *parts)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith((".tmp-", ".staging-", ".old-"))] \
        if directory.exists() else []


# ----------------------------------------------------------------------------------------------
# the jobs' logic, for real, on the DuckDB engine


def test_daily_job_writes_the_days_partition_matching_an_independent_count(config, config_file, lake):
    day = "2025-01-20"
    daily.main(local_args(config_file, lake, "--date", day))
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
                 "--job-bookmark-option", "job-bookmark-disable", "--custom-logGroup-prefix", "/aws-glue/jobs/x"]
    argv = [*glue_args, *local_args(config_file, lake, "--date", "2025-01-21")]
    daily.main(argv)
    first = pd.read_parquet(table_dir(lake, "player_day", "dt=2025-01-21", "part-0.parquet"))
    daily.main(argv)
    part = table_dir(lake, "player_day", "dt=2025-01-21")
    assert sorted(p.name for p in part.iterdir()) == [SUCCESS, etl.DEFINITION_FILE, "part-0.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(part / "part-0.parquet").sort_values("player_id", ignore_index=True),
                                  first.sort_values("player_id", ignore_index=True))
    assert not leftovers(part.parent)


def test_a_failing_job_raises_its_named_error_with_the_fix_and_leaves_no_partition(config_file, lake, caplog):
    """Glue shows the exception's type and message as the run's error message (what the alert
    mails): the job must raise the named error, not return an exit code."""
    with pytest.raises(MissingPartitionError, match="has no partition for 2025-04-01") as failure:
        daily.main(local_args(config_file, lake, "--date", "2025-04-01"))
    assert "log export for those days has not arrived" in str(failure.value)
    assert "player-day failed: raw table 'events' has no partition" in caplog.text
    assert not table_dir(lake, "player_day", "dt=2025-04-01").exists()
    assert not leftovers(table_dir(lake, "player_day"))


def test_validate_job_passes_a_clean_day_and_writes_its_report(config_file, lake):
    assert "passed" in validate.main(local_args(config_file, lake, "--date", "2025-01-20"), now=lambda: NOW)
    report = json.loads(table_dir(lake, "monitoring", "validation", "dt=2025-01-20.json").read_text())
    assert report["passed"] is True and report["day"] == "2025-01-20"
    assert {r["name"] for r in report["results"]} >= {"schema", "freshness", "event_types", "null_ids", "volume"}


def test_validate_job_fails_on_bad_rows_and_still_writes_its_report(config_file, lake):
    part = table_dir(lake, "raw", "events", "dt=2025-01-21")
    good = pq.read_table(part / "part-0.parquet")
    bad = good.slice(0, 1).set_column(good.schema.get_field_index("event_name"), "event_name",
                                      pa.array(["wallhack"], type=pa.string()))
    pq.write_table(bad, part / "part-1.parquet")
    with pytest.raises(DataValidationError, match="event_types on events") as failure:
        validate.main(local_args(config_file, lake, "--date", "2025-01-21"), now=lambda: NOW)
    assert "add the new event type to logs.events.event_types" in str(failure.value)
    report = json.loads(table_dir(lake, "monitoring", "validation", "dt=2025-01-21.json").read_text())
    failed = [r for r in report["results"] if not r["passed"] and r["severity"] == "error"]
    assert report["passed"] is False and [r["name"] for r in failed] == ["event_types"]
    assert failed[0]["failing_rows"] == 1


def test_volume_check_counts_the_trailing_days_in_one_query(config, lake):
    """One `GROUP BY dt` over the trailing days, not one count per day (one Athena query each)."""
    from ltv.validation import Validator

    class Counting(DuckDBEngine):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.counts: list[str] = []

        def query(self, sql_text: str) -> pd.DataFrame:
            if "COUNT(*)" in sql_text and "events" in sql_text:
                self.counts.append(sql_text)
            return super().query(sql_text)

        def raw_partition_stats(self, table: str, day: str):
            self.counts.append(f"stats {table} {day}")
            return super().raw_partition_stats(table, day)

    engine = Counting(Lake(lake, config.game.id), config, threads=1)
    result = Validator(engine, config, NOW)._volume("2025-01-20")
    assert result.passed and "trailing 7-day mean" in result.message
    assert len(engine.counts) == 2 and engine.counts[0] == "stats events 2025-01-20", engine.counts
    assert "GROUP BY dt" in engine.counts[1] and "IN ('2025-01-13'" in engine.counts[1]
    expected = [len(pd.read_parquet(table_dir(lake, "raw", "events", f"dt={d}")))
                for d in etl.day_range(dt.date(2025, 1, 13), dt.date(2025, 1, 20))]
    assert f"mean {sum(expected) / 7:,.0f}" in result.message


def test_daily_job_skips_deduplication_only_while_the_validated_partition_is_unchanged(config, config_file, lake,
                                                                                       caplog):
    day = "2025-01-22"
    part = table_dir(lake, "raw", "events", f"dt={day}")
    original = pq.read_table(part / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(original.to_pandas().drop_duplicates(), preserve_index=False)
                   .cast(original.schema), part / "part-0.parquet")
    validate.main(local_args(config_file, lake, "--date", day), now=lambda: NOW)
    caplog.set_level(logging.INFO, logger="ltv.glue")
    assert "(validated duplicate-free)" in daily.main(local_args(config_file, lake, "--date", day))

    pq.write_table(original.slice(0, 50), part / "part-1.parquet")  # late re-export: 50 events twice
    assert "(deduplicated)" in daily.main(local_args(config_file, lake, "--date", day))
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
    summary = cutoffs.main(local_args(config_file, lake, "--date", "2025-02-23"))  # a Sunday
    features_at, labels_at = dt.date(2025, 2, 24), dt.date(2025, 2, 17)
    assert summary.startswith(f"summary {features_at}: ") and f"features {features_at}: " in summary
    assert table_dir(lake, "player_summary", f"cutoff={features_at}", SUCCESS).exists()
    features = pd.read_parquet(table_dir(lake, "features", f"cutoff={features_at}", "part-0.parquet"))
    labels = pd.read_parquet(table_dir(lake, "labels", f"cutoff={labels_at}", "part-0.parquet"))
    assert (table_dir(lake, "features", f"cutoff={features_at}", SUCCESS).exists()
            and table_dir(lake, "labels", f"cutoff={labels_at}", SUCCESS).exists())
    window = config.features.population_window_days
    assert set(features.player_id) == population(lake, features_at, window)
    assert set(labels.player_id) == population(lake, labels_at, window)
    assert sorted(p.name for p in table_dir(lake, "features").iterdir()) == [f"cutoff={features_at}"]
    assert cutoffs.main(local_args(config_file, lake, "--date", "2025-02-24")) == "no cutoff is due"  # a Monday
    assert sorted(p.name for p in table_dir(lake, "features").iterdir()) == [f"cutoff={features_at}"]


def test_cutoffs_job_fails_cleanly_without_player_day(config_file, lake):
    with pytest.raises(MissingPartitionError, match="player_day is empty"):
        cutoffs.main(local_args(config_file, lake, "--cutoff", "2025-02-24"))
    assert not table_dir(lake, "features").exists() or not any(table_dir(lake, "features").iterdir())


def test_dataset_job_builds_an_immutable_rolling_version(config, config_file, lake):
    build_player_day(config, lake)
    argv = local_args(config_file, lake, "--version", "rolling", "--date", "2025-03-02")
    dataset.main(argv)
    version = table_dir(lake, "datasets", "rolling-2025-03-03")
    manifest = json.loads((version / "manifest.json").read_text())
    assert (version / SUCCESS).exists()
    assert manifest["cutoffs"] == {"train": ["2025-02-10"], "validation": ["2025-02-17"], "test": ["2025-02-24"]}
    for split in ("train", "validation", "test"):
        rows = pd.read_parquet(version / f"split={split}" / "part-0.parquet")
        assert len(rows) == manifest["rows"][split] > 0 and "split" not in rows.columns
    dataset.main(argv)
    assert json.loads((version / "manifest.json").read_text()) == manifest, "a version never changes"


def test_run_date_is_fixed_by_the_first_job_of_a_workflow_run(config, lake):
    from moto import mock_aws

    with mock_aws():
        import boto3

        glue = boto3.client("glue", region_name=config.aws.region)
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

    argv = ["--JOB_NAME", "j", "--job-bookmark-option", "job-bookmark-disable", "--game", "space-golf", "--config",
            "c.yaml", "--engine", "duckdb", "--lake", "/l", "--date", "2025-01-02"]
    plain = common.parse_args(argv)
    glue = types.ModuleType("awsglue")
    glue.utils = types.SimpleNamespace(getResolvedOptions=get_resolved_options)
    monkeypatch.setitem(sys.modules, "awsglue", glue)
    monkeypatch.setitem(sys.modules, "awsglue.utils", glue.utils)
    assert common.parse_args(argv) == plain == {"game": "space-golf", "config": "c.yaml", "engine": "duckdb",
                                                "lake": "/l", "date": "2025-01-02"}
    with pytest.raises(LtvError, match="--database, --workgroup, --raw_uri, --curated_uri"):
        common.parse_args(["--game", "g", "--config", "c.yaml"])


def test_a_config_of_another_game_is_refused(config_file, lake):
    argv = local_args(config_file, lake, "--date", "2025-01-20")
    argv[1] = "dragon-merge"
    with pytest.raises(LtvError, match="not of --game 'dragon-merge'"):
        daily.main(argv)


# ----------------------------------------------------------------------------------------------
# the Trino text each job sends, snapshot-tested (review-only)


class RecordingEngine:
    """An engine that records what the Athena engine would send for each call, answering with
    just enough for the jobs to go on: every partition exists, every check passes."""

    def __init__(self, config: cfg.GameConfig, days: list[dt.date]):
        self.config, self.days, self.sent = config, [str(d) for d in days], []
        self.raw = set(config.logs.tables)
        self.written: dict[str, list[str]] = {}

    def _record(self, sql_text: str) -> None:
        self.sent.append(statement(sql_text))

    def query(self, sql_text: str) -> pd.DataFrame:
        self._record(sql_text)
        if "COUNT(*) AS copies" in sql_text:
            return pd.DataFrame({"copies": pd.Series([], dtype="int64")})
        if "GROUP BY dt" in sql_text:
            return pd.DataFrame({"dt": re.findall(r"'(\d{4}-\d\d-\d\d)'", sql_text), "n": 1000})
        if "COUNT(*) AS n" in sql_text:
            return pd.DataFrame({"n": [1000]})
        if " AS n, SUM(" in sql_text:  # rows and revenue a deduplication rule would remove: none
            return pd.DataFrame({"n": [0], "r": [0.0]})
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
        self.written.setdefault(table, []).append(value)
        return WriteResult(table, [value], 100)

    def partitions(self, table: str) -> list[str]:
        if table in self.raw or table == "player_day":
            return self.days
        return sorted({*self.complete, *self.written.get(table, [])})

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


def previous_cutoff(config: cfg.GameConfig, day: dt.date) -> dt.date:
    """The scheduled cutoff before the one `day` completes."""
    cutoff = day
    while not config.cutoffs.is_cutoff(cutoff):
        cutoff -= dt.timedelta(days=1)
    return cutoff


def compare_snapshot(path: Path, content: str, update: bool) -> str | None:
    """None if the snapshot holds `content`; else the problem, with the unified diff. With `update`,
    a differing snapshot is rewritten, and that is still reported: the rewrite is a change to review."""
    old = path.read_text() if path.exists() else ""
    if old == content:
        return None
    diff = "".join(difflib.unified_diff(old.splitlines(keepends=True), content.splitlines(keepends=True),
                                        f"{path.name} (snapshot)", f"{path.name} (now)", n=2))
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return f"rewrote {path}: review `git diff {path}`, then rerun without LTV_UPDATE_SNAPSHOTS\n{diff}"
    how = "create it" if not old else "if the change is intended, rewrite it"
    return f"{path} differs from what the job sends ({how} with LTV_UPDATE_SNAPSHOTS=1 and review the diff):\n{diff}"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_trino_text_of_every_job_matches_its_snapshot(game, tmp_path):
    config = cfg.load(GAMES / f"{game}.yaml")
    day = due_day(config)
    spec_cutoffs = [str(d) for d in etl.day_range(dt.date(2024, 1, 1), dt.date(2025, 12, 31))]
    texts = {
        "validate": recorded(config, tmp_path, validate, {"date": str(day)}),
        "player_day": recorded(config, tmp_path, daily, {"date": str(day)}),
        # the summary of the previous cutoff exists: the daily path's incremental summary
        "cutoffs": recorded(config, tmp_path, cutoffs, {"date": str(day)}, complete=[str(previous_cutoff(config, day))]),
        "dataset": recorded(config, tmp_path, dataset, {"version": "rolling", "date": str(day)}, complete=spec_cutoffs),
    }
    assert texts["cutoffs"].count("\n-- [") == 4 and texts["dataset"].count("\n-- [") == 3
    assert texts["cutoffs"].count("FROM player_summary") == 2, "the summary continues from the previous one"
    update = os.environ.get("LTV_UPDATE_SNAPSHOTS") == "1"
    problems = [compare_snapshot(SNAPSHOTS / game / f"{job}.sql",
                                 f"-- Trino text the {job} job of {game} sends to Athena for run date {day}.\n"
                                 f"-- Generated by tests/test_glue_jobs.py; review any change to it as a code change.\n"
                                 f"{text}", update) for job, text in texts.items()]
    problems = [p for p in problems if p]
    assert not problems, "\n\n".join(problems)


def test_a_changed_snapshot_fails_with_its_diff_and_a_rewrite_is_never_silent(tmp_path):
    path = tmp_path / "job.sql"
    path.write_text("SELECT 1\n")
    assert compare_snapshot(path, "SELECT 1\n", update=False) is None
    problem = compare_snapshot(path, "SELECT 2\n", update=False)
    assert "-SELECT 1\n+SELECT 2" in problem and path.read_text() == "SELECT 1\n"
    problem = compare_snapshot(path, "SELECT 2\n", update=True)
    assert problem.startswith("rewrote") and "-SELECT 1\n+SELECT 2" in problem, "a rewrite still fails the test"
    assert path.read_text() == "SELECT 2\n" and compare_snapshot(path, "SELECT 2\n", update=True) is None


# ----------------------------------------------------------------------------------------------
# the synthesized stacks the cloud tests run against


CLOUD_GAMES = ("galaxy-raiders", "dragon-merge")


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> dict[str, Any]:
    """Both example games (small), synthesized with the real core wheel and the Glue wheelhouse:
    {game: (config, Templates)}."""
    out = tmp_path_factory.mktemp("synth")
    wheel = build_core_wheel(ROOT, out / "dist")
    configs = {game: small_config(game) for game in CLOUD_GAMES}
    app = build_app(core_wheel=wheel, configs=list(configs.values()), outdir=str(out / "cdk.out"))
    app.synth()
    return {game: (config, Templates(out / "cdk.out", config.aws.account, config.aws.region))
            for game, config in configs.items()}


def etl_job(tpl: Templates, config: cfg.GameConfig, job: str) -> dict[str, Any]:
    stack = Names.of(config).stack("Etl")
    for logical_id, res in tpl.resources(stack, "AWS::Glue::Job").items():
        props = tpl.props(stack, logical_id)
        if props["Name"] == Names.of(config).resource(job):
            return props
    raise KeyError(job)


def template_argv(props: dict[str, Any], **override: str) -> list[str]:
    """The arguments Glue passes a run: its own, then the job's DefaultArguments (then overrides)."""
    args = {**props["DefaultArguments"], **{f"--{k}": v for k, v in override.items()}}
    return ["--JOB_NAME", props["Name"], "--JOB_RUN_ID", "jr_test", *[x for kv in args.items() for x in kv]]


# ----------------------------------------------------------------------------------------------
# the cloud path: moto built from the template, Athena answering with the Trino text


class Cloud:
    """One game's account in moto: what the DataLake template creates, Athena over DuckDB, and a
    recorder of every permission the code's calls need. `session` is the test's own (its calls are
    not recorded); the code under test uses boto3's default session, which is."""

    def __init__(self, config: cfg.GameConfig, tpl: Templates, session: Any, athena: FakeAthena,
                 recorder: CallRecorder):
        self.config, self.tpl, self.session, self.athena, self.recorder = config, tpl, session, athena, recorder
        self.names = Names.of(config)

    @property
    def lake_stack(self) -> str:
        return self.names.stack("DataLake")

    def bucket(self, purpose: str) -> str:
        return self.names.bucket(purpose)

    def engine(self) -> AthenaEngine:
        return AthenaEngine(self.config, database=self.names.database, workgroup=self.names.workgroup,
                            raw_uri=f"s3://{self.bucket('raw')}", curated_uri=f"s3://{self.bucket('curated')}")

    def upload(self, root: Path, bucket: str, under: str = "") -> None:
        """The files of `root/under`, at their paths relative to `root`."""
        s3 = self.session.client("s3")
        for path in sorted((root / under).rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), bucket, path.relative_to(root).as_posix())

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.session.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> pd.DataFrame:
        body = self.session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return pq.read_table(pa.BufferReader(body)).to_pandas()


@pytest.fixture
def cloud(request, synthesized, monkeypatch) -> Cloud:
    """moto in the game's account and region, with the DataLake template's resources, FakeAthena
    and the call recorder hooked into every boto3 client created from now on."""
    config, tpl = synthesized[getattr(request, "param", "galaxy-raiders")]
    with moto_account(tpl, [Names.of(config).stack("DataLake")], monkeypatch, dt.date(2025, 12, 31)) as account:
        yield Cloud(config, tpl, account.session, account.athena, account.recorder)


def test_the_moto_catalog_is_the_synthesized_one(cloud):
    """Buckets, database, tables (with projection) and workgroup come from the template."""
    glue = cloud.session.client("glue")
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName=cloud.names.database)["TableList"]}
    assert set(tables) == set(table_specs(cloud.config))
    player_day = tables["player_day"]
    assert player_day["StorageDescriptor"]["Location"] == f"s3://{cloud.bucket('curated')}/player_day/"
    assert player_day["Parameters"]["projection.dt.range"] == f"{START},NOW"
    wg = cloud.session.client("athena").get_work_group(WorkGroup=cloud.names.workgroup)["WorkGroup"]["Configuration"]
    assert wg["ResultConfiguration"]["OutputLocation"] == f"s3://{cloud.bucket('athena-results')}/"
    assert wg["ResultConfiguration"]["ExpectedBucketOwner"] == cloud.config.aws.account


PLAYER_DAY = pd.DataFrame({"player_id": ["p1", "p2"], "logins": [1, 2], "sessions": [2, 0], "play_seconds": [30.5, 0.0],
                           "level_ups": [0, 1], "max_level": [4, 7], "purchases": [1, 0], "revenue": [2.99, 0.0],
                           "events": [7, 3]})


def literal_select(frame: pd.DataFrame) -> str:
    """A query whose result is `frame` (typed like the player_day SQL's columns)."""
    rows = []
    for row in frame.itertuples(index=False):
        cells = [f"'{v}'" if isinstance(v, str) else (f"CAST({v} AS DOUBLE)" if isinstance(v, float)
                                                       else f"CAST({v} AS BIGINT)") for v in row]
        rows.append("SELECT " + ", ".join(f"{c} AS {n}" for c, n in zip(cells, frame.columns)))
    return " UNION ALL ".join(rows)


def test_athena_writes_one_parquet_object_then_the_marker_and_registers_nothing(cloud, monkeypatch):
    engine = cloud.engine()
    calls: list[str] = []
    upload, put = engine._upload, engine._put
    monkeypatch.setattr(engine, "_upload", lambda local, uri: calls.append(f"data {uri}") or upload(local, uri))
    monkeypatch.setattr(engine, "_put", lambda uri, body: calls.append(f"put {uri}") or put(uri, body))
    result = engine.write_partitions("player_day", literal_select(PLAYER_DAY), value=str(START))
    prefix = f"s3://{cloud.bucket('curated')}/player_day/dt={START}/"
    assert result == WriteResult("player_day", [str(START)], 2)
    assert calls == [f"data {prefix}part-0.parquet", f"put {prefix}{SUCCESS}"]
    assert cloud.keys(cloud.bucket("curated")) == [f"player_day/dt={START}/{SUCCESS}",
                                                   f"player_day/dt={START}/part-0.parquet"]
    written = cloud.read(cloud.bucket("curated"), f"player_day/dt={START}/part-0.parquet")
    assert list(written.columns) == [c for c, _ in table_specs(cloud.config)["player_day"].columns]
    assert written.revenue.tolist() == [2.99, 0.0]
    partitions = cloud.session.client("glue").get_partitions(DatabaseName=cloud.names.database, TableName="player_day")
    assert partitions["Partitions"] == [], "partition projection: nothing to register"
    assert engine.query("SELECT COUNT(*) AS n, SUM(events) AS e FROM player_day").to_dict("records") == [{"n": 2, "e": 10}]
    assert all(text.startswith("UNLOAD (") for text in cloud.athena.sent), "results come back as Parquet"
    assert not cloud.keys(cloud.bucket("athena-results"), "unload/"), "the unloaded files are removed"


def test_athena_streams_a_large_result_into_one_object_chunk_by_chunk(cloud, monkeypatch):
    import ltv.athena

    monkeypatch.setattr(ltv.athena, "CHUNK_ROWS", 1000)
    rows = 4321
    text = (f"SELECT CAST(i AS VARCHAR) AS player_id, i AS logins, 0 AS sessions, 0.5 AS play_seconds, 0 AS level_ups, "
            f"1 AS max_level, 0 AS purchases, 0.0 AS revenue, i AS events FROM UNNEST(SEQUENCE(1, {rows})) AS t(i)")
    seen = []
    chunks = AthenaEngine._unload

    def counting(self, sql_text, chunk_rows=None):
        for chunk in chunks(self, sql_text, chunk_rows):
            seen.append(len(chunk))
            yield chunk

    monkeypatch.setattr(AthenaEngine, "_unload", counting)
    assert cloud.engine().write_partitions("player_day", text, value=str(START)).rows == rows
    assert max(seen) <= 1000 and sum(seen) == rows, "never more than one chunk in memory"
    written = cloud.read(cloud.bucket("curated"), f"player_day/dt={START}/part-0.parquet")
    assert len(written) == rows and written.events.sum() == rows * (rows + 1) // 2


def test_an_empty_result_is_an_empty_partition_with_the_catalog_schema(cloud):
    engine = cloud.engine()
    empty = literal_select(PLAYER_DAY) + " LIMIT 0"
    assert engine.write_partitions("player_day", f"SELECT * FROM ({empty})", value=str(START)).rows == 0
    written = cloud.read(cloud.bucket("curated"), f"player_day/dt={START}/part-0.parquet")
    assert len(written) == 0 and list(written.columns) == [c for c, _ in table_specs(cloud.config)["player_day"].columns]
    assert engine.query(f"SELECT * FROM ({empty})").columns.tolist() == PLAYER_DAY.columns.tolist()


def test_a_failed_athena_write_leaves_nothing_visible(cloud, monkeypatch):
    engine = cloud.engine()

    def broken(local: Path, uri: str) -> None:
        raise OSError("connection reset while uploading")

    monkeypatch.setattr(engine, "_upload", broken)
    with pytest.raises(OSError):
        engine.write_partitions("player_day", literal_select(PLAYER_DAY), value=str(START))
    assert cloud.keys(cloud.bucket("curated")) == [] and engine.partitions("player_day") == []


def test_a_failed_query_raises_with_athenas_reason(cloud):
    import awswrangler as wr

    with pytest.raises(wr.exceptions.QueryFailed, match="no_such_column"):
        cloud.engine().query("SELECT no_such_column FROM player_day")


def test_athena_refuses_columns_the_catalog_does_not_know(cloud):
    text = literal_select(PLAYER_DAY.assign(surprise=1))
    with pytest.raises(LtvError, match=r"not in the catalog: \['surprise'\]"):
        cloud.engine().write_partitions("player_day", text, value=str(START))
    assert cloud.keys(cloud.bucket("curated")) == []


def test_athena_refuses_days_before_the_partition_projection(cloud):
    """Athena would see nothing there (the projection starts at aws.logs_start): an error, not an
    empty partition."""
    with pytest.raises(ConfigError, match="before the first day of the tables' partition projection"):
        cloud.engine().write_partitions("player_day", literal_select(PLAYER_DAY), value="2024-12-31")
    with pytest.raises(ConfigError, match="set aws.logs_start"):
        cloud.engine().raw_partition_stats("events", "2024-12-31")


def test_athena_lists_complete_derived_partitions_and_every_raw_day(cloud):
    s3, raw, curated = cloud.session.client("s3"), cloud.bucket("raw"), cloud.bucket("curated")
    s3.put_object(Bucket=curated, Key="player_day/dt=2025-01-06/part-0.parquet", Body=b"x")
    s3.put_object(Bucket=curated, Key="player_day/dt=2025-01-06/_SUCCESS", Body=b"")
    s3.put_object(Bucket=curated, Key="player_day/dt=2025-01-07/part-0.parquet", Body=b"x")  # no marker yet
    s3.put_object(Bucket=raw, Key="events/dt=2025-01-06/export-000.parquet", Body=b"x")
    s3.put_object(Bucket=raw, Key="events/dt=2025-01-07/export-000.parquet", Body=b"x")
    engine = cloud.engine()
    assert engine.partitions("player_day") == ["2025-01-06"]
    assert engine.partitions("events") == ["2025-01-06", "2025-01-07"]
    assert engine.partitions("features") == []


def test_athena_raw_partition_stats_and_file_schema(cloud, simulated):
    source = table_dir(simulated, "raw", "events", f"dt={START}", "part-0.parquet")
    cloud.session.client("s3").upload_file(str(source), cloud.bucket("raw"), f"events/dt={START}/part-0.parquet")
    engine = cloud.engine()
    assert engine.raw_partition_stats("events", str(START)) == (len(pd.read_parquet(source)), source.stat().st_size)
    assert re.sub(r"\s+", " ", cloud.athena.sent[-1]).startswith("UNLOAD (SELECT COUNT(*) AS n FROM \"events\"")
    assert engine.raw_partition_stats("events", "2025-01-07") is None
    assert engine.raw_partition_columns("events", str(START)) == {
        "user_id": "STRING", "event_ts": "TIMESTAMP", "event_name": "STRING", "level": "INT",
        "session_seconds": "DOUBLE", "revenue_usd": "DOUBLE"}
    assert engine.raw_partition_columns("events", "2025-01-07") == {}
    assert len(cloud.athena.sent) == 1, "the schema comes from the parquet footers, not from a query"


def test_athena_raw_partition_fingerprint_changes_when_the_partition_is_rewritten(cloud, simulated):
    source = table_dir(simulated, "raw", "events", f"dt={START}", "part-0.parquet")
    s3, raw, engine = cloud.session.client("s3"), cloud.bucket("raw"), cloud.engine()
    assert engine.raw_partition_fingerprint("events", str(START)) is None
    s3.upload_file(str(source), raw, f"events/dt={START}/part-0.parquet")
    s3.put_object(Bucket=raw, Key=f"events/dt={START}/_SUCCESS", Body=b"")  # not data: Athena skips it
    first = engine.raw_partition_fingerprint("events", str(START))
    assert first is not None and engine.raw_partition_fingerprint("events", str(START)) == first
    s3.put_object(Bucket=raw, Key=f"events/dt={START}/part-0.parquet", Body=source.read_bytes()[:-1] + b"!")
    assert engine.raw_partition_fingerprint("events", str(START)) not in (None, first)
    assert cloud.athena.sent == [], "a listing, not a query"


def test_athena_publishes_a_directory_marker_last_and_fetches_all_or_nothing(cloud, tmp_path):
    engine, curated = cloud.engine(), cloud.bucket("curated")
    local = tmp_path / "datasets" / "v1"
    (local / "split=train").mkdir(parents=True)
    (local / "split=train" / "part-0.parquet").write_bytes(b"rows")
    (local / "manifest.json").write_text('{"name": "v1"}')
    (local / SUCCESS).write_text("done")
    uploaded = engine.publish(local, "datasets/v1")
    assert uploaded[-1] == f"s3://{curated}/datasets/v1/{SUCCESS}" and len(uploaded) == 3
    assert engine.publish(local, "datasets/v1", replace=False) == [], "a complete version is not rewritten"
    assert engine.fetch("datasets/v1", [SUCCESS, "manifest.json"], tmp_path / "copy") == [SUCCESS, "manifest.json"]
    assert (tmp_path / "copy" / "manifest.json").read_text() == '{"name": "v1"}'
    cloud.session.client("s3").put_object(Bucket=curated, Key="datasets/v2/manifest.json", Body=b"{}")  # no marker
    assert engine.fetch("datasets/v2", [SUCCESS, "manifest.json"], tmp_path / "v2") == []
    assert not (tmp_path / "v2").exists()


def test_athena_json_beside_a_partition_round_trips_and_is_none_when_absent(cloud):
    engine = cloud.engine()
    assert engine.get_partition_json("features", "2025-02-24", "_definition.json") is None
    engine.put_partition_json("features", "2025-02-24", "_definition.json", {"data_hash": "abc", "n_steps": 8})
    assert cloud.keys(cloud.bucket("curated")) == ["features/cutoff=2025-02-24/_definition.json"]
    assert engine.get_partition_json("features", "2025-02-24", "_definition.json") == {"data_hash": "abc", "n_steps": 8}
    assert engine.get_partition_json("labels", "2025-02-24", "_definition.json") is None


# ----------------------------------------------------------------------------------------------
# every job of both example games on the cloud path == the DuckDB source


def frames_equal(got: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    got = got.sort_values(keys, ignore_index=True)
    expected = expected[list(got.columns)].sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=1e-9)


def glue_platform_needs(cloud: Cloud, props: dict[str, Any]) -> list[Need]:
    """What Glue itself does with the job's role before and around the script: read the script,
    the --extra-py-files and the wheels, write the run's log streams."""
    def obj(uri: str) -> list[Need]:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return cloud.recorder.for_call("s3", "GetObject", {"Bucket": bucket, "Key": key})

    args = props["DefaultArguments"]
    needs = obj(props["Command"]["ScriptLocation"])
    for uri in [*args["--extra-py-files"].split(","), *args["--additional-python-modules"].split(",")]:
        needs += obj(uri)
    prefix = args["--custom-logGroup-prefix"]
    for group in ("output", "error"):
        stream = (f"arn:aws:logs:{cloud.config.aws.region}:{cloud.config.aws.account}:log-group:{prefix}/{group}"
                  ":log-stream:jr_test-driver")
        needs += [Need("logs:CreateLogStream", stream), Need("logs:PutLogEvents", stream)]
    return needs


def job_role(cloud: Cloud) -> Role:
    """The jobs' role with exactly its template statements (the jobs' calls run as it)."""
    stack = cloud.names.stack("Etl")
    logical_id = next(k for k, r in cloud.tpl.resources(stack, "AWS::IAM::Role").items()
                      if r["Properties"].get("RoleName") == cloud.names.resource("etl-jobs"))
    return role(cloud.tpl, stack, logical_id)


def job_role_policy(cloud: Cloud) -> PolicyEvaluator:
    return job_role(cloud).policy


@pytest.mark.slow
@pytest.mark.parametrize("cloud", CLOUD_GAMES, indirect=True)
def test_every_job_on_the_cloud_path_writes_what_the_duckdb_source_writes(cloud, tmp_path):
    """Each job runs with its template's arguments against moto built from the template; Athena
    answers by running the Trino text the job sends, transpiled back to DuckDB, over what is in
    S3. The same jobs on the DuckDB engine over the same raw logs are the reference (the
    whole-history summaries too: the cutoffs job continues from the previous cutoff's). Every
    permission the runs needed (the jobs' calls, Athena's on their behalf, Glue's own) must be
    allowed by the jobs' IAM policy in the template."""
    config, game = cloud.config, cloud.config.game.id
    local = tmp_path / "local"
    simulate(config, Lake(local, game), days=DAYS)
    config_file = write_config(config, tmp_path / "config")
    cloud.upload(local / game / "raw", cloud.bucket("raw"))
    props = {job: etl_job(cloud.tpl, config, job) for job in ("validate", "player-day", "cutoffs", "dataset")}
    config_uri = props["validate"]["DefaultArguments"]["--config"]
    bucket, key = config_uri.removeprefix("s3://").split("/", 1)
    cloud.session.client("s3").upload_file(str(cloud.tpl.asset_file(cloud.names.stack("Etl"), config_uri)), bucket, key)

    def both(job: Any, name: str, **args: str) -> None:
        extra = [x for k, v in args.items() for x in (f"--{k}", v)]
        job.main(["--game", game, "--config", str(config_file), "--engine", "duckdb", "--lake", str(local), *extra],
                 now=lambda: NOW)
        with cloud.recorder.acting_as(job_role(cloud)):  # each call decided against the role before it is sent
            job.main(template_argv(props[name], **args), now=lambda: NOW)

    due = next(d for d in etl.day_range(dt.date(2025, 2, 20), LAST) if all(cutoffs.due_cutoffs(config, d)))
    validated, unvalidated = str(due - dt.timedelta(days=1)), str(due)
    both(validate, "validate", date=validated)
    both(daily, "player-day", date=validated)   # validated: no duplicates, dedup skipped
    both(daily, "player-day", date=unvalidated)
    local_engine = DuckDBEngine(Lake(local, game), config, threads=1)
    etl.build_player_day(local_engine, config, START, due - dt.timedelta(days=2))
    for day in etl.day_range(START, due - dt.timedelta(days=1)):  # the days before, as built earlier
        cloud.upload(local / game, cloud.bucket("curated"), f"player_day/dt={day}")
    # the previous cutoff's summary, as built earlier: both continue from it (the daily path)
    previous = previous_cutoff(config, due)
    etl.build_summary(local_engine, config, previous)
    cloud.upload(local / game, cloud.bucket("curated"), f"player_summary/cutoff={previous}")
    start = len(cloud.recorder.needs)
    both(cutoffs, "cutoffs", date=unvalidated)
    job_s3 = [n for n in cloud.recorder.needs[start:] if n.why in ("s3:ListObjectsV2", "s3:GetObject")]
    both(dataset, "dataset", version="rolling", date=unvalidated)

    curated = cloud.bucket("curated")
    report_key = f"monitoring/validation/dt={validated}.json"
    remote = json.loads(cloud.session.client("s3").get_object(Bucket=curated, Key=report_key)["Body"].read())
    mine = json.loads((local / game / report_key).read_text())
    summary = lambda r: [(c["name"], c["table"], c["passed"], c["failing_rows"]) for c in r["results"]]  # noqa: E731
    assert summary(remote) == summary(mine) and remote["passed"]
    for day in (validated, unvalidated):
        frames_equal(cloud.read(curated, f"player_day/dt={day}/part-0.parquet"),
                     pd.read_parquet(local / game / "player_day" / f"dt={day}" / "part-0.parquet"), ["player_id"])
    features_at, labels_at = cutoffs.due_cutoffs(config, due)
    built = [("features", c) for c in features_at] + [("labels", c) for c in labels_at]
    assert len(built) == 2
    lineage = json.loads(cloud.session.client("s3").get_object(
        Bucket=curated, Key=f"player_summary/cutoff={features_at[0]}/{etl.LINEAGE_FILE}")["Body"].read())
    assert lineage["previous"] == str(previous), "Athena merged the previous summary with the days since"
    # every summary: the cutoffs job's and those the dataset job built from scratch, then cutoff by cutoff
    summaries = sorted(p.name for p in (local / game / "player_summary").iterdir() if p.name.startswith("cutoff="))
    assert len(summaries) >= 4 and summaries == sorted(
        k.split("/")[1] for k in cloud.keys(curated, "player_summary/") if k.endswith("/_SUCCESS"))
    for partition in summaries:
        frames_equal(cloud.read(curated, f"player_summary/{partition}/part-0.parquet"),
                     pd.read_parquet(local / game / "player_summary" / partition / "part-0.parquet"), ["player_id"])
    for table, cutoff in built:
        got = cloud.read(curated, f"{table}/cutoff={cutoff}/part-0.parquet")
        assert len(got) > 20
        frames_equal(got, pd.read_parquet(local / game / table / f"cutoff={cutoff}" / "part-0.parquet"), ["player_id"])
    version = "datasets/" + next(p.name for p in (local / game / "datasets").iterdir() if p.name.startswith("rolling-"))
    remote_manifest = json.loads(cloud.session.client("s3").get_object(
        Bucket=curated, Key=f"{version}/manifest.json")["Body"].read())
    local_manifest = json.loads((local / game / version / "manifest.json").read_text())
    assert remote_manifest["rows"] == local_manifest["rows"] and remote_manifest["cutoffs"] == local_manifest["cutoffs"]
    for split in ("train", "validation", "test"):
        frames_equal(cloud.read(curated, f"{version}/split={split}/part-0.parquet"),
                     pd.read_parquet(local / game / version / f"split={split}" / "part-0.parquet"), ["player_id", "cutoff"])

    # the cutoffs job on S3: player_day listed once, each day's definition read once, every day it reads checked
    listed = [dict(n.context)["s3:prefix"] for n in job_s3 if n.why == "s3:ListObjectsV2"]
    checked = [n.resource.split("/dt=", 1)[1].split("/")[0] for n in job_s3
               if n.why == "s3:GetObject" and "/player_day/dt=" in n.resource and n.resource.endswith(etl.DEFINITION_FILE)]
    assert listed.count("player_day/") == 1 and sorted(checked) == sorted(set(checked)), (listed, checked)
    assert set(checked) == player_day_checked(config, due, previous, first=START)

    policy = job_role_policy(cloud)
    for need in (n for p in props.values() for n in glue_platform_needs(cloud, p)):
        cloud.recorder.needs.append(need)
    denied = cloud.recorder.denied(policy)
    assert not denied, f"the jobs' policy in the template denies {len(denied)} request(s), e.g.:\n" + "\n".join(
        f"  {n.action} on {n.resource} ({n.why})" for n in denied[:15])
    assert len({n.action for n in cloud.recorder.needs}) >= 10, "the recorder saw the jobs' calls"
    assert cloud.recorder.checked >= 20, "the jobs' own calls ran as their role"
    assert not policy.allows("s3:PutObject", f"arn:aws:s3:::{cloud.bucket('raw')}/events/x.parquet"), \
        "the policy evaluator is not vacuous: raw logs are read-only for the jobs"


# ----------------------------------------------------------------------------------------------
# packaging: what Glue runs, as Glue runs it


@pytest.fixture(scope="module")
def glue_python(synthesized, tmp_path_factory) -> dict[str, Any]:
    """A clean Python 3.11 environment holding exactly the wheels `--additional-python-modules`
    names, taken from the wheelhouse asset in cdk.out and installed with --no-index as Glue does
    (any dependency missing from the lock fails the install)."""
    config, tpl = synthesized["galaxy-raiders"]
    stack = Names.of(config).stack("Etl")
    props = etl_job(tpl, config, "player-day")
    deployment = tpl.props(stack, next(iter(tpl.resources(stack, "Custom::CDKBucketDeployment"))))
    source = tpl.asset_file(stack, f"s3://{deployment['SourceBucketNames'][0]}/{deployment['SourceObjectKeys'][0]}")
    target = f"s3://{deployment['DestinationBucketName']}/{deployment['DestinationBucketKeyPrefix']}"
    wheels = []
    for uri in props["DefaultArguments"]["--additional-python-modules"].split(","):
        assert uri.startswith(target), f"{uri} is not deployed by the wheelhouse deployment ({target})"
        wheels.append(source / uri[len(target):])
        assert wheels[-1].is_file(), f"{uri} is not in the deployed wheelhouse"
    assert props["DefaultArguments"]["--python-modules-installer-option"] == "--no-index"
    venv = tmp_path_factory.mktemp("glue-python") / "venv"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    done = subprocess.run([str(uv), "pip", "install", "--quiet", "--no-index", "--offline", "--python",
                           str(venv / "bin" / "python"), *map(str, wheels)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"python": venv / "bin" / "python", "config": config, "tpl": tpl, "stack": stack}


def stage_extra_py_files(glue: dict[str, Any], props: dict[str, Any], directory: Path) -> list[Path]:
    """Each `--extra-py-files` entry from cdk.out, under the name it has in S3 (what Glue gets)."""
    directory.mkdir(parents=True, exist_ok=True)
    staged = []
    for uri in props["DefaultArguments"]["--extra-py-files"].split(","):
        staged.append(directory / uri.rsplit("/", 1)[1])
        shutil.copyfile(glue["tpl"].asset_file(glue["stack"], uri), staged[-1])
    return staged


@pytest.mark.slow
def test_each_job_runs_as_glue_runs_it_from_cdk_out(glue_python, tmp_path, simulated):
    """The script from its asset (named <hash>.py), `--extra-py-files` under their S3 names on
    the Python path (.zip files themselves, .py files by their directory), the wheels installed
    with --no-index, nothing else: no repository, no test environment. Before the fix, `import
    _common` failed here: the helper module arrived as <hash>.py."""
    lake = Path(shutil.copytree(simulated, tmp_path / "lake"))
    build_player_day(glue_python["config"], lake)
    config_uri = etl_job(glue_python["tpl"], glue_python["config"], "validate")["DefaultArguments"]["--config"]
    config_file = glue_python["tpl"].asset_file(glue_python["stack"], config_uri)
    runs = {"validate": {"date": "2025-02-23"}, "player-day": {"date": "2025-02-23"},
            "cutoffs": {"date": "2025-02-23"}, "dataset": {"version": "rolling", "date": "2025-03-02"}}
    for job, args in runs.items():
        props = etl_job(glue_python["tpl"], glue_python["config"], job)
        run_dir = tmp_path / job
        script_uri = props["Command"]["ScriptLocation"]
        script = run_dir / script_uri.rsplit("/", 1)[1]
        run_dir.mkdir()
        shutil.copyfile(glue_python["tpl"].asset_file(glue_python["stack"], script_uri), script)
        assert re.fullmatch(r"[0-9a-f]{64}\.py", script.name), "a file asset is named by its hash in S3"
        staged = stage_extra_py_files(glue_python, props, run_dir / "extra")
        path = [str(p) if p.suffix == ".zip" else str(p.parent) for p in staged]
        argv = template_argv(props, config=str(config_file), engine="duckdb", lake=str(lake), **args)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(path),
               "LTV_THREADS": "1", "PYTHONNOUSERSITE": "1"}
        done = subprocess.run([str(glue_python["python"]), str(script), *argv], capture_output=True, text=True,
                              cwd=run_dir, env=env, timeout=300)
        assert done.returncode == 0, f"{job}:\n{done.stderr[-3000:]}"
    assert table_dir(lake, "player_day", "dt=2025-02-23", SUCCESS).exists()
    assert table_dir(lake, "features", "cutoff=2025-02-24", SUCCESS).exists()
    assert table_dir(lake, "datasets", "rolling-2025-03-03", SUCCESS).exists()


@pytest.mark.slow
def test_the_glue_environment_has_the_locked_versions_and_the_athena_path_imports(glue_python, tmp_path):
    """The Athena engine's lazy imports (awswrangler, boto3) resolve from the wheelhouse, and
    numpy/pandas/pyarrow are the locked versions, not Glue's own older ones."""
    props = etl_job(glue_python["tpl"], glue_python["config"], "player-day")
    staged = stage_extra_py_files(glue_python, props, tmp_path / "extra")
    code = ("import json, importlib.metadata as m, glue_jobs._common, ltv.athena, awswrangler, boto3; "
            "print(json.dumps({d: m.version(d) for d in ['numpy', 'pandas', 'pyarrow', 'duckdb', 'awswrangler']}))")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(map(str, staged)), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([str(glue_python["python"]), "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pins = read_lock(GLUE_LOCK)
    assert json.loads(done.stdout) == {name: pins[name].version for name in
                                       ("numpy", "pandas", "pyarrow", "duckdb", "awswrangler")}


def test_the_jobs_do_not_import_the_training_stack():
    """The ETL imports the SQL/engine half of the core only (that the wheelhouse holds everything it
    does import is proven by the clean-environment runs above)."""
    code = ("import sys, glue_jobs.validate, glue_jobs.daily, glue_jobs.cutoffs, glue_jobs.dataset, ltv.athena; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert not set(done.stdout.split()) & {"autogluon", "typer", "matplotlib", "scipy", "sklearn", "sagemaker"}


def stack_job(tpl: Templates, config: cfg.GameConfig, concern: str, job: str) -> dict[str, Any]:
    """The properties of the Glue job `ltv-<game>-<job>` of another stack than the ETL's."""
    stack = Names.of(config).stack(concern)
    for logical_id in tpl.resources(stack, "AWS::Glue::Job"):
        props = tpl.props(stack, logical_id)
        if props["Name"] == Names.of(config).resource(job):
            return props
    raise KeyError(job)


def run_shipped(glue_python: dict[str, Any], concern: str, props: dict[str, Any], tmp_path: Path,
                **args: str) -> subprocess.CompletedProcess:
    """A job of `concern`'s stack run as Glue runs it: its script from its asset, the ETL's core and
    wheels (what its arguments name, as for the ETL jobs), the given arguments on the template's."""
    tpl, config = glue_python["tpl"], glue_python["config"]
    assert props["DefaultArguments"]["--additional-python-modules"] == \
        etl_job(tpl, config, "cutoffs")["DefaultArguments"]["--additional-python-modules"]
    script_uri = props["Command"]["ScriptLocation"]
    script = tmp_path / script_uri.rsplit("/", 1)[1]
    shutil.copyfile(tpl.asset_file(Names.of(config).stack(concern), script_uri), script)
    staged = stage_extra_py_files(glue_python, etl_job(tpl, config, "cutoffs"), tmp_path / "extra")
    argv = template_argv(props, engine="duckdb", **args)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LTV_THREADS": "1", "PYTHONNOUSERSITE": "1",
           "PYTHONPATH": os.pathsep.join(str(p) for p in staged)}
    return subprocess.run([str(glue_python["python"]), str(script), *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)


@pytest.mark.slow
def test_the_monitoring_job_runs_as_glue_runs_it_from_cdk_out(glue_python, scoring_lake, tmp_path):
    """The monitoring job (stacks/monitoring.py) shares the ETL's runtime: its script from its asset,
    the core and the wheels the ETL jobs get (scipy included, for the delayed-label metrics), on a
    local lake with a scored run and a champion (the AWS path is tests/test_scoring_cloud.py)."""
    from ltv.scoring import score

    config, lake, engine, registry = scoring_lake
    day = dt.date(2025, 4, 14)
    score(config, lake, engine, registry, day)
    props = stack_job(glue_python["tpl"], glue_python["config"], "Monitoring", "monitor")
    config_file = write_config(config, tmp_path / "config")
    later = str(day + dt.timedelta(days=etl.label_horizon(config)))
    done = run_shipped(glue_python, "Monitoring", props, tmp_path, config=str(config_file), lake=str(lake.root),
                       date=later)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 measurement(s)" in done.stderr and "metric PolicyValue Signal=label_decay" in done.stderr
    assert (lake.monitoring / f"date={later}.json").exists()


@pytest.mark.slow
def test_the_targets_job_runs_as_glue_runs_it_from_cdk_out(glue_python, scoring_lake, tmp_path):
    """The targets job (stacks/scoring.py) on the ETL's runtime, on a local lake with a published run:
    it writes the list `ltv targets` writes (the AWS path, events and catalog: tests/test_scoring_cloud.py)."""
    from ltv import targets
    from ltv.scoring import Predictions, score

    config, lake, engine, registry = scoring_lake
    day = dt.date(2025, 4, 14)
    run = score(config, lake, engine, registry, day).run_id
    props = stack_job(glue_python["tpl"], glue_python["config"], "Scoring", "targets")
    done = run_shipped(glue_python, "Scoring", props, tmp_path, config=str(write_config(config, tmp_path / "config")),
                       lake=str(lake.root), date=str(day), run=run)
    assert done.returncode == 0, done.stderr[-3000:]
    expected, _ = targets.make(config, Predictions.of(lake), day, run)
    stored = pd.read_parquet(targets.target_dir(lake, day, run) / targets.PART)
    assert len(stored) == len(expected) > 0 and f"{len(expected)} offers" in done.stderr
    pd.testing.assert_frame_equal(stored, pd.read_parquet(io.BytesIO(targets.to_parquet(config, expected))))


# ----------------------------------------------------------------------------------------------
# faults between the jobs (docs/reliability.md)


def test_a_crash_between_the_data_object_and_its_marker_leaves_the_partition_incomplete(cloud, monkeypatch):
    """S3 has no rename: a partition is its data object, then its marker. Killed in between, the
    partition is not complete for the ETL (which reads only days with a marker, so no feature or
    label ever reads it); the rerun of the job replaces the object and publishes the marker."""
    engine = cloud.engine()
    put = engine._put

    def killed(uri: str, body: bytes) -> None:
        if uri.endswith(SUCCESS):
            raise SystemExit("killed before the marker")
        put(uri, body)

    monkeypatch.setattr(engine, "_put", killed)
    with pytest.raises(SystemExit):
        engine.write_partitions("player_day", literal_select(PLAYER_DAY), value=str(START))
    assert cloud.keys(cloud.bucket("curated")) == [f"player_day/dt={START}/part-0.parquet"]
    assert engine.partitions("player_day") == []
    with pytest.raises(MissingPartitionError, match="player_day is empty"):
        etl.require_player_day(engine, cloud.config, START, START + dt.timedelta(days=1), "features")
    monkeypatch.setattr(engine, "_put", put)
    engine.write_partitions("player_day", literal_select(PLAYER_DAY.head(1)), value=str(START))
    assert engine.partitions("player_day") == [str(START)]
    assert len(cloud.read(cloud.bucket("curated"), f"player_day/dt={START}/part-0.parquet")) == 1


def event_matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching for the patterns our rules use: every key of the pattern is in the
    event, a list of values matches if the event's value is one of them, objects recurse."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(k in event and event_matches(v, event[k]) for k, v in pattern.items())
    return event in pattern if isinstance(pattern, list) else event == pattern


def test_an_athena_failure_mid_chain_stops_the_chain_leaves_no_partition_and_alerts(cloud, simulated, tmp_path,
                                                                                  monkeypatch):
    """The daily workflow as its triggers (from the template) chain it: validate succeeds, Athena
    fails the player-day job's query, so that job fails; no player_day object of the day exists,
    the cutoffs job is never started (its trigger waits for SUCCEEDED), and the failure event
    Glue emits matches the failure rule, whose target is the encrypted alert topic, which lets
    that rule publish; the mail carries Athena's reason."""
    config, stack = cloud.config, cloud.names.stack("Etl")
    cloud.upload(simulated / config.game.id / "raw", cloud.bucket("raw"))
    props = {job: etl_job(cloud.tpl, config, job) for job in ("validate", "player-day", "cutoffs")}
    config_uri = props["validate"]["DefaultArguments"]["--config"]
    bucket, key = config_uri.removeprefix("s3://").split("/", 1)
    cloud.session.client("s3").upload_file(str(cloud.tpl.asset_file(stack, config_uri)), bucket, key)
    day = "2025-01-20"
    execute = cloud.athena.execute

    state = {"job": None}

    def athena(text: str, database: str):
        if state["job"] == "player-day":  # every query of that job fails, as in an Athena outage
            raise AthenaQueryError("HIVE_CANNOT_OPEN_SPLIT: Error opening Hive split (injected)")
        return execute(text, database)

    monkeypatch.setattr(cloud.athena, "execute", athena)
    jobs = {"validate": validate, "player-day": daily, "cutoffs": cutoffs}
    by_name = {props[j]["Name"]: j for j in jobs}
    triggers = [cloud.tpl.props(stack, t) for t in cloud.tpl.resources(stack, "AWS::Glue::Trigger")]
    conditional = [t for t in triggers if t["Type"] == "CONDITIONAL" and t["WorkflowName"] == cloud.names.resource("daily-etl")]
    ran, failures, pending = [], {}, ["validate"]
    while pending:
        job = pending.pop(0)
        state["job"] = job
        try:
            jobs[job].main(template_argv(props[job], date=day), now=lambda: NOW)
            outcome = "SUCCEEDED"
        except Exception as e:  # noqa: BLE001 - Glue marks the run FAILED with the exception's message
            outcome, failures[job] = "FAILED", f"{type(e).__name__}: {e}"
        ran.append((job, outcome))
        for t in conditional:
            (condition,) = t["Predicate"]["Conditions"]
            if by_name.get(condition["JobName"]) == job and condition["State"] == outcome:
                pending += [by_name[a["JobName"]] for a in t["Actions"]]
    assert ran == [("validate", "SUCCEEDED"), ("player-day", "FAILED")], ran
    assert "HIVE_CANNOT_OPEN_SPLIT" in failures["player-day"]
    assert cloud.keys(cloud.bucket("curated"), "player_day/") == [], "no partial partition"

    (rule,) = [p for r in cloud.tpl.resources(stack, "AWS::Events::Rule")
               if (p := cloud.tpl.props(stack, r))["Name"] == cloud.names.resource("etl-job-failed")]
    event = {"source": "aws.glue", "detail-type": "Glue Job State Change", "time": "2025-01-21T02:14:00Z",
             "detail": {"jobName": props["player-day"]["Name"], "state": "FAILED", "jobRunId": "jr_1",
                        "message": failures["player-day"]}}
    assert event_matches(rule["EventPattern"], event)
    assert not event_matches(rule["EventPattern"], {**event, "detail": {**event["detail"], "state": "SUCCEEDED"}})
    assert not event_matches(rule["EventPattern"], {**event, "detail": {**event["detail"],
                                                                        "jobName": "ltv-other-game-player-day"}})
    (target,) = rule["Targets"]
    alerts = cloud.names.stack("Alerts")  # the game's one topic, in its alerts stack
    (topic_id,) = cloud.tpl.resources(alerts, "AWS::SNS::Topic")
    assert cloud.tpl.resolve(stack, target["Arn"]) == cloud.tpl.resolve(alerts, {"Ref": topic_id})
    transformer = target["InputTransformer"]
    values = {k: _json_path(event, path) for k, path in transformer["InputPathsMap"].items()}
    mail = json.loads(re.sub(r"<(\w+)>", lambda m: values.get(m.group(1), m.group(0)), transformer["InputTemplate"]))
    assert mail.startswith(f"Glue job {props['player-day']['Name']} FAILED") and "HIVE_CANNOT_OPEN_SPLIT" in mail
    (policy_id,) = cloud.tpl.resources(alerts, "AWS::SNS::TopicPolicy")
    statements = cloud.tpl.resolve(alerts, cloud.tpl.props(alerts, policy_id)["PolicyDocument"]["Statement"])
    rule_arn = f"arn:aws:events:{config.aws.region}:{config.aws.account}:rule/{rule['Name']}"
    topic_arn = cloud.tpl.resolve(alerts, {"Ref": topic_id})
    evaluator = PolicyEvaluator(statements)
    assert evaluator.allows("sns:Publish", topic_arn, principal="events.amazonaws.com",
                            context={"aws:SourceArn": rule_arn})
    assert not evaluator.allows("sns:Publish", topic_arn, principal="events.amazonaws.com",
                                context={"aws:SourceArn": rule_arn.replace("etl-job-failed", "something-else")})


def _json_path(event: dict, path: str) -> Any:
    """The value at an EventBridge input path like `$.detail.jobName`."""
    value: Any = event
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def test_the_cutoffs_job_checks_the_summary_and_each_player_day_day_once(tmp_path):
    """One listing and one definition read of player_summary for the summary it builds (the
    features step does not check it again), and one listing of player_day with one definition
    read per day, though the summary, the features and the labels read overlapping days: on
    Athena each is an S3 LIST / GET (counted on S3 itself in the cloud-path test)."""
    config = cfg.load(GAMES / "galaxy-raiders.yaml")
    day = due_day(config)
    calls: list[tuple[str, str, str | None]] = []

    class Counting(RecordingEngine):
        def partitions(self, table: str) -> list[str]:
            calls.append(("list", table, None))
            return super().partitions(table)

        def get_partition_json(self, table: str, value: str, name: str):
            calls.append(("get", table, value))
            return super().get_partition_json(table, value, name)

    engine = Counting(config, etl.day_range(dt.date(2024, 1, 1), dt.date(2025, 12, 31)))
    engine.complete = [str(previous_cutoff(config, day))]
    cutoffs.run(common.Runtime(config, engine, Lake(tmp_path, config.game.id), lambda: NOW), {"date": str(day)})
    count = lambda kind, table: sum(1 for k, t, _ in calls if (k, t) == (kind, table))  # noqa: E731
    # the check of the summary at the cutoff (not current: it is built), then the previous summary it continues
    assert count("list", "player_summary") == 2 and count("get", "player_summary") == 1, calls
    read = [v for k, t, v in calls if (k, t) == ("get", "player_day")]
    assert count("list", "player_day") == 1 and sorted(read) == sorted(set(read)), calls
    assert set(read) == player_day_checked(config, day, previous_cutoff(config, day)), "every day the steps read"


def player_day_checked(config: cfg.GameConfig, day: dt.date, previous: dt.date,
                       first: dt.date = dt.date.min) -> set[str]:
    """The player_day days the cutoffs job run after `day` reads, the summary continuing from the
    one at `previous`: the summary's [previous, cutoff), the features' recent window, the labels'
    window; none before player_day's `first` day."""
    (features_at,), (labels_at,) = cutoffs.due_cutoffs(config, day)
    recent, label_end = etl.Windows.of(config, features_at).recent_start, etl.Windows.of(config, labels_at).label_end
    return {str(d) for d in [*etl.day_range(min(previous, recent), features_at), *etl.day_range(labels_at, label_end)]
            if d >= first}
