"""The SQL engine seam: DuckDB over the local lake, Athena over S3 (see `ltv.athena`).

ETL code talks to an `Engine` only: it runs the canonical (DuckDB-dialect) SQL from `ltv.sql`
and writes query results as partitions of the game's tables. Tables are addressed by name:
the game's raw log tables (from its config) and the derived tables `player_day`, `player_summary`,
`features`, `labels`, each Hive-partitioned (`dt=` or `cutoff=`), plus `predictions`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import pandas as pd

from ltv.config import GameConfig
from ltv.errors import MissingPartitionError
from ltv.lake import SUCCESS, Lake, atomic_dir, complete_partitions, scratch, storage_errors, write_json_atomic, write_with

# derived tables and their partition key
DERIVED = {"player_day": "dt", "player_summary": "cutoff", "features": "cutoff", "labels": "cutoff"}


@dataclass(frozen=True)
class WriteResult:
    table: str
    partitions: list[str]
    rows: int


class Engine(Protocol):
    config: GameConfig

    def query(self, sql: str) -> pd.DataFrame:
        """Run canonical SQL and return its result."""

    def write_partitions(self, table: str, sql: str, value: str | None = None) -> WriteResult:
        """Write the result of `sql` as partitions of `table`, each atomically with a success marker.

        With `value`, the whole result is the one partition `key=value` (the partition column is
        not stored in the files); without it, the result's partition column splits the rows.
        """

    def partitions(self, table: str) -> list[str]:
        """The complete partitions (values of the partition key) of a table, sorted."""

    def raw_partition_stats(self, table: str, day: str) -> tuple[int, int] | None:
        """(rows, bytes) of one raw log partition, or None if it does not exist."""

    def raw_partition_columns(self, table: str, day: str) -> dict[str, str]:
        """Column name -> SQL type of the files of one raw partition (not the table's union)."""

    def raw_partition_fingerprint(self, table: str, day: str) -> str | None:
        """Identity of one raw partition's files (names, sizes, versions), None if it has none:
        it changes whenever the partition is rewritten, so a stored validation result can be
        trusted only while it is unchanged."""

    def put_partition_json(self, table: str, value: str, name: str, payload: dict) -> None:
        """Store a JSON document beside a complete partition (`_`-prefixed: readers skip it)."""

    def get_partition_json(self, table: str, value: str, name: str) -> dict | None:
        """The JSON document `name` stored beside a partition, or None if there is none."""


class DuckDBEngine:
    """In-process engine over the parquet files of a local lake."""

    def __init__(self, lake: Lake, config: GameConfig, threads: int | None = None):
        self.lake, self.config = lake, config
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {threads or int(os.environ.get('LTV_THREADS', os.cpu_count() or 2))}")
        self.con.execute("SET preserve_insertion_order = false")
        self._raw_tables = config.logs.tables
        players = config.logs.players
        self._flat = {players.table} if players is not None and not players.partitioned else set()
        self._views: dict[str, tuple[str, ...]] = {}

    def _glob(self, table: str) -> tuple[Path, str]:
        if table in self._raw_tables:
            return self.lake.raw(table), "dt"
        return self.lake.table(table), DERIVED.get(table, "dt")

    def _refresh_views(self, sql: str) -> None:
        """(Re)create the views of the tables `sql` mentions whose partitions changed.

        Binding a view reads every file's footer, so a view is only rebuilt when its set of
        partition directories differs from the last time."""
        for table in [*self._raw_tables, *DERIVED]:
            if not re.search(rf"\b{table}\b", sql):
                continue
            base, key = self._glob(table)
            flat = table in self._flat  # an unpartitioned raw table: its files lie in the table's folder
            listing = sorted(os.listdir(base)) if base.exists() else []
            parts = tuple(n for n in listing if (n.endswith(".parquet") if flat else n.startswith(f"{key}=")))
            if self._views.get(table) == parts:
                continue
            if flat and parts:
                self.con.execute(f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{base}/*.parquet', "
                                 "union_by_name = true)")
            elif flat or not any(base.glob(f"{key}=*/*.parquet")):
                self.con.execute(f'DROP VIEW IF EXISTS "{table}"')
            else:
                self.con.execute(
                    f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{base}/{key}=*/*.parquet', "
                    f"hive_partitioning = true, hive_types = {{'{key}': VARCHAR}}, union_by_name = true)")
            self._views[table] = parts

    def query(self, sql: str) -> pd.DataFrame:
        self._refresh_views(sql)
        try:
            return self.con.execute(sql).df()
        except duckdb.CatalogException as e:
            raise MissingPartitionError(f"a table this query reads has no data yet: {e}") from None

    def relation(self, sql: str) -> duckdb.DuckDBPyRelation:
        self._refresh_views(sql)
        return self.con.sql(sql)

    def write_partitions(self, table: str, sql: str, value: str | None = None) -> WriteResult:
        self._refresh_views(sql)
        base, key = self._glob(table)
        if value is not None:
            target = base / f"{key}={value}"
            with atomic_dir(target) as tmp:
                rows = self._copy(f"SELECT * EXCLUDE ({key}) FROM ({sql})", tmp / "part-0.parquet")
            return WriteResult(table, [value], rows)
        staging = scratch(base.parent, "staging", table)
        try:
            with storage_errors(base):
                self.con.execute(f"COPY ({sql}) TO '{staging}' (FORMAT PARQUET, COMPRESSION ZSTD, PARTITION_BY ({key}))")
            written, rows = [], 0
            for part in sorted(staging.glob(f"{key}=*")):
                value = part.name.split("=", 1)[1]
                files = sorted(part.glob("*.parquet"))
                rows += sum(pq_rows(f) for f in files)
                write_with(base / part.name, lambda d: [shutil.move(f, d / f"part-{i}.parquet") for i, f in enumerate(files)])
                written.append(value)
            return WriteResult(table, written, rows)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _copy(self, sql: str, path: Path) -> int:
        self.con.execute(f"COPY ({sql}) TO '{path}' (FORMAT PARQUET, COMPRESSION ZSTD)")
        return pq_rows(path)

    def partitions(self, table: str) -> list[str]:
        base, key = self._glob(table)
        if table in self._raw_tables:  # raw logs come from the game's own pipeline: no markers
            return sorted(p.name.split("=", 1)[1] for p in base.glob(f"{key}=*") if any(p.glob("*.parquet")))
        return complete_partitions(base, key)

    def raw_partition_stats(self, table: str, day: str) -> tuple[int, int] | None:
        part = self.lake.raw(table) / f"dt={day}"
        files = sorted(part.glob("*.parquet"))
        if not files:
            return None
        return sum(pq_rows(f) for f in files), sum(f.stat().st_size for f in files)

    def raw_partition_columns(self, table: str, day: str) -> dict[str, str]:
        files = sorted((self.lake.raw(table) / f"dt={day}").glob("*.parquet"))
        if not files:
            return {}
        listing = ", ".join(f"'{f}'" for f in files)
        rows = self.con.execute(f"DESCRIBE SELECT * FROM read_parquet([{listing}], union_by_name = true)").fetchall()
        return {name: sql_type for name, sql_type, *_ in rows}

    def raw_partition_fingerprint(self, table: str, day: str) -> str | None:
        files = sorted((self.lake.raw(table) / f"dt={day}").glob("*.parquet"))
        return fingerprint((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files) if files else None

    def put_partition_json(self, table: str, value: str, name: str, payload: dict) -> None:
        write_json_atomic(self.partition_dir(table, value) / name, payload)

    def get_partition_json(self, table: str, value: str, name: str) -> dict | None:
        path = self.partition_dir(table, value) / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def partition_dir(self, table: str, value: str) -> Path:
        base, key = self._glob(table)
        return base / f"{key}={value}"


def fingerprint(items: Iterable[tuple]) -> str:
    """A short stable hash of a listing of files."""
    return hashlib.sha256(json.dumps(sorted(items), default=str).encode()).hexdigest()[:16]


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


__all__ = ["DERIVED", "DuckDBEngine", "Engine", "SUCCESS", "WriteResult"]
