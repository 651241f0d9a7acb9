"""The Athena engine: `ltv.engine.Engine` over S3, the Glue Data Catalog and Athena (Trino).

The only module of the core that talks to AWS (boto3 and awswrangler are imported lazily, so
`import ltv` never needs them). It runs the same canonical SQL as `DuckDBEngine`, transpiled
to Trino by `ltv.sql.to_trino`, and keeps the local lake's contract on S3:

    s3://<raw bucket>/<table>/dt=YYYY-MM-DD/...                 raw logs (the game's own export)
    s3://<curated bucket>/player_day/dt=YYYY-MM-DD/part-0.parquet + _SUCCESS
    s3://<curated bucket>/player_summary/cutoff=.../, features/cutoff=.../, labels/cutoff=.../
    s3://<curated bucket>/datasets/<version>/split=<split>/part-0.parquet, manifest.json, _SUCCESS

A partition is its parquet part objects `part-0.parquet`, `part-1.parquet`, ... (each S3 PUT,
multipart or not, is atomic), then the `_SUCCESS` marker, written last. Parts are cut at half the
scoring's `MaxPayloadInMB` (`scoring.max_payload_mb`): batch transform sends each part of a
features partition as one request, and a request may not exceed it. Most partitions are one
part. The partition column is not stored in the files. Only partitions with a marker are "complete" for the ETL;
raw tables list every `dt=` prefix that holds objects. The tables use partition projection, so
nothing is registered in the catalog.

Results come back through `UNLOAD` as Parquet (typed and compressed, not CSV) and partitions
are written from them chunk by chunk through a local file, so a features cutoff of millions of
players never has to fit in a worker's memory as one frame.

`table_specs(config)` is the schema of every table of a game (columns and Hive types derived
from the SQL itself), shared by this engine and by the CDK stacks that create the catalog.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from ltv import etl, scoring, sql, targets
from ltv.config import GameConfig
from ltv.engine import DERIVED, WriteResult, fingerprint
from ltv.errors import ConfigError, LtvError
from ltv.lake import SUCCESS

CHUNK_ROWS = 200_000            # rows per chunk read back from an UNLOAD (bounds a worker's memory)
MIB = 1024 ** 2
SLICES_PER_PART = 8             # a part grows by at most 1/8 of its budget per write, so it stays below it
FOOTER_BYTES_PER_CHUNK = 160    # parquet footer: metadata and statistics of each column of each row group
FOOTER_BYTES = 8192             # and the schema
_HIVE_TYPES = {"VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "int", "DOUBLE": "double", "FLOAT": "float",
               "BOOLEAN": "boolean", "TIMESTAMP": "timestamp", "DATE": "date", "SMALLINT": "smallint"}


@dataclass(frozen=True)
class TableSpec:
    """One table of a game: where it lives, its columns and its partition keys (Hive types)."""

    name: str
    bucket: str                                  # "raw" or "curated"
    columns: tuple[tuple[str, str], ...]
    partition_keys: tuple[tuple[str, str], ...]
    location_template: str | None = None         # partition path below the table prefix, if not key=value/
    registered: bool = False                     # partitions registered by their writer, not projected

    @property
    def key(self) -> str:
        return self.partition_keys[0][0]

    def types(self) -> dict[str, str]:
        return dict(self.columns)


def hive_type(duckdb_type: str) -> str:
    """The Glue/Hive type of a DuckDB column type."""
    t = duckdb_type.upper()
    if t in _HIVE_TYPES:
        return _HIVE_TYPES[t]
    if t.startswith("DECIMAL"):
        return t.lower()
    raise LtvError(f"no Glue type for the DuckDB type {duckdb_type!r}; add a CAST in the SQL template")


def projection_start(config: GameConfig) -> dt.date:
    """The first day Athena's partition projection enumerates: `aws.logs_start`, else the first
    dataset's start minus the feature history. Every `dt < cutoff` query plans one location per
    projected day, so the range starts at the game's own first day, not at a fixed old date."""
    if config.aws is not None and config.aws.logs_start is not None:
        return config.aws.logs_start
    return etl.Windows.of(config, config.datasets.first_start).steps_start


def arrow_schema(spec: TableSpec) -> Any:
    """The pyarrow schema of a table's data files: its catalog columns, in order, with their types."""
    import pyarrow as pa

    simple = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "smallint": pa.int16(),
              "double": pa.float64(), "float": pa.float32(), "boolean": pa.bool_(), "timestamp": pa.timestamp("us"),
              "date": pa.date32()}

    def arrow(hive: str) -> Any:
        if hive.startswith("decimal"):
            precision, scale = hive[len("decimal("):-1].split(",")
            return pa.decimal128(int(precision), int(scale))
        return simple[hive]

    return pa.schema([(name, arrow(hive)) for name, hive in spec.columns])


def raw_columns(config: GameConfig) -> dict[str, list[tuple[str, str]]]:
    """Columns of the raw tables with the Hive types of the reference export (see ltv.simulate).

    Integer-typed files are readable as bigint and float files as double, so `level` is bigint
    and `session_length` is bigint when counted in milliseconds, else double."""
    ev, pl = config.logs.events, config.logs.players
    c, ident = ev.columns, "string" if config.logs.player_id_type == "string" else "bigint"
    session = "bigint" if ev.session_length_unit == "milliseconds" else "double"
    events = [(c.player_id, ident), (c.event_time, ev.event_time_type)]
    events += [(c.event_type, "string")] if c.event_type else []
    events += [(c.revenue, "double")]
    events += [(c.currency, "string")] if c.currency else []
    events += [(c.event_id, "string")] if c.event_id else []
    events += [(c.level, "bigint")] if c.level else []
    events += [(c.session_length, session)] if c.session_length else []
    if pl is None:
        return {ev.table: events}
    players = [(pl.columns.player_id, ident), (pl.columns.install_time, pl.install_time_type)]
    players += [(column, "string") for column in pl.attributes.values()]
    return {ev.table: events, pl.table: players}


def table_specs(config: GameConfig) -> dict[str, TableSpec]:
    """Every table of a game; derived tables get the columns and types their SQL produces."""
    return _table_specs(config.model_dump_json())


@lru_cache(maxsize=8)
def _table_specs(config_json: str) -> dict[str, TableSpec]:
    config = GameConfig.model_validate_json(config_json)
    raw = raw_columns(config)
    pl = config.logs.players
    flat = {pl.table} if pl is not None and not pl.partitioned else set()
    specs = {name: TableSpec(name, "raw", tuple((c.lower(), t) for c, t in cols),
                             () if name in flat else (("dt", "string"),))
             for name, cols in raw.items()}
    derived = _describe_derived(config, raw)
    for name, key in DERIVED.items():
        specs[name] = TableSpec(name, "curated", tuple((c, t) for c, t in derived[name] if c != key),
                                ((key, "string"),))
    specs["datasets"] = TableSpec("datasets", "curated", tuple((c, t) for c, t in derived["datasets"] if c != "split"),
                                  (("version", "string"), ("split", "string")), "${version}/split=${split}")
    # every complete run is registered by its publisher (ltv.sagemaker_scoring), never projected: a
    # run still being written is invisible; latest_predictions holds each date's `_LATEST` run
    columns = tuple(scoring.prediction_columns(config))
    specs["predictions"] = TableSpec("predictions", "curated", columns, scoring.PARTITION_KEYS, registered=True)
    specs["latest_predictions"] = TableSpec("latest_predictions", "curated", columns, scoring.PARTITION_KEYS[:2],
                                            registered=True)
    # each run's target list, registered by the job that writes it (glue_jobs/targets.py) once complete
    specs[targets.ROOT] = TableSpec(targets.ROOT, "curated", tuple(targets.columns(config)), scoring.PARTITION_KEYS,
                                    registered=True)
    return specs


def _describe_derived(config: GameConfig, raw: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    """Column types of player_day, player_summary, features, labels and datasets, by binding their
    SQL in DuckDB over empty tables of the raw schema (nothing is read; it takes milliseconds)."""
    import duckdb

    duck = {"string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE", "timestamp": "TIMESTAMP"}
    con = duckdb.connect()
    for table, cols in raw.items():
        columns = ", ".join(f"{sql.quote(c)} {duck[t]}" for c, t in cols)
        con.execute(f"CREATE TABLE {sql.quote(table)} ({columns}, dt VARCHAR)")  # flat tables: dt unused
    day = config.datasets.first_start if config.datasets.first_start != "auto" else dt.date(2025, 1, 6)  # types only
    queries = {"player_day": etl.player_day_sql(config, day, day), "player_summary": etl.summary_sql(config, day),
               "features": etl.features_sql(config, day), "labels": etl.labels_sql(config, day)}
    out: dict[str, list[tuple[str, str]]] = {}
    for name, text in queries.items():
        out[name] = [(r[0], hive_type(r[1])) for r in con.execute(f"DESCRIBE {text}").fetchall()]
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM ({text}) LIMIT 0")
    dataset = sql.render("dataset", config, split="train", cutoffs=[str(day)])
    out["datasets"] = [(r[0], hive_type(r[1])) for r in con.execute(f"DESCRIBE {dataset}").fetchall()]
    return out


def row_count_sql(table: str, day: str) -> str:
    """The query that counts a raw partition's rows (for `raw_partition_stats`)."""
    return f"SELECT COUNT(*) AS n FROM {sql.quote(table)} WHERE dt = {sql.literal(day)}"


def statement(query: str) -> str:
    """The exact text the Athena engine sends for a canonical (DuckDB-dialect) query."""
    return sql.to_trino(query)


class AthenaEngine:
    """The `Engine` of a game's AWS account: Athena for SQL, S3 for partitions and documents."""

    # Athena reads raw files with the catalog's declared types (no INT64 read as varchar, no DATE
    # as timestamp): validation holds raw files to exactly those types (ltv.validation.expected_types)
    strict_types = True

    def __init__(self, config: GameConfig, *, database: str, workgroup: str, raw_uri: str, curated_uri: str,
                 boto3_session: Any = None):
        self.config = config
        self.database, self.workgroup = database, workgroup
        self.buckets = {"raw": raw_uri.rstrip("/"), "curated": curated_uri.rstrip("/")}
        self.session = boto3_session
        self.specs = table_specs(config)
        self.first_day = str(projection_start(config))
        self._results: str | None = None
        self._clients: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------
    # locations

    def _spec(self, table: str) -> TableSpec:
        if table not in self.specs:
            raise LtvError(f"unknown table {table!r}; the game's tables are {sorted(self.specs)}")
        return self.specs[table]

    def table_uri(self, table: str) -> str:
        spec = self._spec(table)
        return f"{self.buckets[spec.bucket]}/{table}"

    def partition_uri(self, table: str, value: str) -> str:
        return f"{self.table_uri(table)}/{self._spec(table).key}={value}/"

    def curated_uri(self, key: str) -> str:
        return f"{self.buckets['curated']}/{key.lstrip('/')}"

    def results_uri(self) -> str:
        """The workgroup's (enforced) result location: UNLOAD output goes below it, under `unload/`."""
        if self._results is None:
            wg = self._client("athena").get_work_group(WorkGroup=self.workgroup)["WorkGroup"]
            self._results = wg["Configuration"]["ResultConfiguration"]["OutputLocation"].rstrip("/") + "/"
        return self._results

    def _check_projected(self, table: str, day: str) -> None:
        """Refuse a day Athena cannot see: it would come back empty instead of failing."""
        if (self._spec(table).bucket == "raw" or table == "player_day") and day < self.first_day:
            raise ConfigError(f"{table} dt={day} is before the first day of the tables' partition projection "
                              f"({self.first_day}), so Athena would read nothing for it; set aws.logs_start to the "
                              f"game's first day of logs and redeploy the data-lake stack")

    # -------------------------------------------------------------------------------------------
    # Engine

    def query(self, sql_text: str) -> pd.DataFrame:
        """Run the Trino text of `sql_text` in the workgroup and read its result, unloaded as Parquet."""
        with closing(self._unload(sql_text)) as chunks:
            frames = list(chunks)
        return _numpy_dtypes(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])

    def write_partitions(self, table: str, sql_text: str, value: str | None = None) -> WriteResult:
        spec = self._spec(table)
        if value is not None:
            self._check_projected(table, value)
        chunks = closing(self._unload(sql_text, CHUNK_ROWS))
        with tempfile.TemporaryDirectory(prefix="ltv-partitions-") as tmp, chunks as results:
            files, rows = self._write_local(spec, results, value, Path(tmp))
            for v, parts in sorted(files.items()):
                self._put_partition(spec, v, parts)
        return WriteResult(table, sorted(files), rows)

    def partitions(self, table: str) -> list[str]:
        import awswrangler as wr

        spec = self._spec(table)
        base, prefix = self.table_uri(table) + "/", f"{spec.key}="
        if spec.bucket == "raw":  # the game's own export writes no markers: a dt= prefix with objects counts
            dirs = wr.s3.list_directories(base, boto3_session=self.session)
            return sorted(d.rstrip("/").rsplit("/", 1)[1][len(prefix):] for d in dirs
                          if d.rstrip("/").rsplit("/", 1)[1].startswith(prefix))
        markers = wr.s3.list_objects(base, suffix=f"/{SUCCESS}", boto3_session=self.session)
        return sorted({m[len(base):].split("/", 1)[0][len(prefix):] for m in markers
                       if m[len(base):].startswith(prefix) and m[len(base):].count("/") == 1})

    def raw_partition_stats(self, table: str, day: str) -> tuple[int, int] | None:
        import awswrangler as wr

        self._check_projected(table, day)
        files = self._data_objects(self.partition_uri(table, day))
        if not files:
            return None
        size = sum(wr.s3.size_objects(files, boto3_session=self.session).values())
        rows = self.query(row_count_sql(table, day))
        return int(rows["n"].iloc[0]), int(size)

    def raw_partition_columns(self, table: str, day: str) -> dict[str, str]:
        """Column -> type of a raw partition's files, from their parquet footers (no query), as
        DuckDB reports them: the union over the files, upper-case type names."""
        import awswrangler as wr

        columns: dict[str, str] = {}
        for path in self._data_objects(self.partition_uri(table, day)):
            types, _ = wr.s3.read_parquet_metadata(path, boto3_session=self.session)
            columns |= {name: t.upper() for name, t in types.items() if name not in columns}
        return columns

    def raw_partition_fingerprint(self, table: str, day: str) -> str | None:
        import awswrangler as wr

        files = self._data_objects(self.partition_uri(table, day))
        if not files:
            return None
        described = wr.s3.describe_objects(files, boto3_session=self.session)
        return fingerprint((path, d.get("ETag"), d.get("ContentLength"), d.get("VersionId"))
                           for path, d in described.items())

    def put_partition_json(self, table: str, value: str, name: str, payload: dict) -> None:
        self._put(self.partition_uri(table, value) + name, json.dumps(payload, sort_keys=True, default=str).encode())

    def get_partition_json(self, table: str, value: str, name: str) -> dict | None:
        """The JSON document `put_partition_json` stored beside a partition, or None if there is none."""
        body = self._get(self.partition_uri(table, value) + name)
        return None if body is None else json.loads(body)

    # -------------------------------------------------------------------------------------------
    # files beside the tables: validation reports, dataset versions

    def publish(self, local: Path, key: str, *, replace: bool = True) -> list[str]:
        """Upload a local file, or a directory with its `_SUCCESS` marker last, to curated/<key>.

        A directory whose remote copy is complete is left alone unless `replace`."""
        local = Path(local)
        target = self.curated_uri(key)
        if local.is_file():
            self._put(target, local.read_bytes())
            return [target]
        if not replace and self._exists(f"{target.rstrip('/')}/{SUCCESS}"):
            return []
        files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: (p.name == SUCCESS, str(p)))
        written = []
        for path in files:
            written.append(f"{target.rstrip('/')}/{path.relative_to(local).as_posix()}")
            self._upload(path, written[-1])
        return written

    def fetch(self, key: str, names: list[str], local: Path) -> list[str]:
        """Download the named files under curated/<key> into `local`, all of them or none (a
        directory without its marker is not there yet); returns the names downloaded."""
        bodies = {name: self._get(f"{self.curated_uri(key).rstrip('/')}/{name}") for name in names}
        if any(body is None for body in bodies.values()):
            return []
        local = Path(local)
        local.mkdir(parents=True, exist_ok=True)
        for name, body in bodies.items():
            (local / name).write_bytes(body)
        return list(bodies)

    # -------------------------------------------------------------------------------------------
    # internals

    def _unload(self, sql_text: str, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
        """The query's result as DataFrames: UNLOADed as Parquet to a scratch prefix of the result
        location, read back (whole, or `chunk_rows` at a time), then the scratch files deleted.

        An empty result has no files to read its columns from, so they come from the same query
        with LIMIT 0 (a plain query: its header row)."""
        import awswrangler as wr

        scratch = f"{self.results_uri()}unload/{uuid.uuid4().hex}/"
        text = statement(sql_text)
        try:
            result = wr.athena.read_sql_query(text, database=self.database, workgroup=self.workgroup,
                                              ctas_approach=False, unload_approach=True, s3_output=scratch,
                                              chunksize=chunk_rows, boto3_session=self.session)
            yield from ([result] if isinstance(result, pd.DataFrame) else result)
        except wr.exceptions.EmptyDataFrame:
            yield wr.athena.read_sql_query(f"SELECT * FROM (\n{text.rstrip().rstrip(';')}\n) LIMIT 0",
                                           database=self.database, workgroup=self.workgroup, ctas_approach=False,
                                           boto3_session=self.session)
        finally:
            wr.s3.delete_objects(scratch, boto3_session=self.session)

    def _write_local(self, spec: TableSpec, chunks: Iterable[pd.DataFrame], value: str | None,
                     directory: Path) -> tuple[dict[str, list[Path]], int]:
        """Write the result's rows into local parquet part files per partition value, chunk by
        chunk, with the catalog's column order and types; returns {value: parts} and the row count."""
        import pyarrow as pa

        schema, names = arrow_schema(spec), [c for c, _ in spec.columns]
        parts: dict[str, PartWriter] = {}
        budget = self.config.scoring.max_payload_mb * MIB // 2
        rows = 0
        try:
            for chunk in chunks:
                if value is not None:
                    groups = {value: chunk.drop(columns=[spec.key], errors="ignore")}
                elif spec.key not in chunk.columns:
                    raise LtvError(f"writing {spec.name} without a partition value needs a {spec.key!r} column in "
                                   "the result")
                else:
                    groups = {str(v): g.drop(columns=[spec.key]) for v, g in chunk.groupby(spec.key, sort=True)}
                for v, group in groups.items():
                    _check_columns(spec, group.columns)
                    if v not in parts:
                        parts[v] = PartWriter(directory / str(len(parts)), schema, budget)
                    # to the catalog's types (Athena may answer DECIMAL where the catalog says double)
                    parts[v].write(pa.Table.from_pandas(group[names], preserve_index=False).cast(schema))
                rows += len(chunk)
            if value is not None and value not in parts:  # an empty result is an empty partition
                parts[value] = PartWriter(directory / "empty", schema, budget)
        finally:
            for writer in parts.values():
                writer.close()
        return {v: writer.files for v, writer in parts.items()}, rows

    def _put_partition(self, spec: TableSpec, value: str, parts: list[Path]) -> None:
        """The part objects (replacing any other object of the partition), then the marker."""
        import awswrangler as wr

        prefix = self.partition_uri(spec.name, value)
        data = [prefix + part_name(i) for i in range(len(parts))]
        for local, uri in zip(parts, data):
            self._upload(local, uri)
        keep = {*data, prefix + SUCCESS}
        stale = [p for p in wr.s3.list_objects(prefix, boto3_session=self.session) if p not in keep]
        if stale:
            wr.s3.delete_objects(stale, boto3_session=self.session)
        self._put(prefix + SUCCESS, dt.datetime.now(dt.timezone.utc).isoformat().encode())

    def _data_objects(self, prefix: str) -> list[str]:
        """Objects under a prefix that Athena reads (Hive skips names starting with '_' or '.')."""
        import awswrangler as wr

        return [p for p in wr.s3.list_objects(prefix, boto3_session=self.session)
                if not p.rsplit("/", 1)[1].startswith(("_", "."))]

    def _client(self, service: str) -> Any:
        """One client per service for the engine's life (creating a client costs milliseconds)."""
        if service not in self._clients:
            import boto3

            self._clients[service] = (self.session or boto3).client(service)
        return self._clients[service]

    def _put(self, uri: str, body: bytes) -> None:
        bucket, key = _split(uri)
        self._client("s3").put_object(Bucket=bucket, Key=key, Body=io.BytesIO(body))

    def _upload(self, local: Path, uri: str) -> None:
        """A file of any size to S3 (multipart above 8 MiB: the object appears only when complete)."""
        bucket, key = _split(uri)
        self._client("s3").upload_file(str(local), bucket, key)

    def _get(self, uri: str) -> bytes | None:
        bucket, key = _split(uri)
        s3 = self._client("s3")
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    def _exists(self, uri: str) -> bool:
        import awswrangler as wr

        return bool(wr.s3.does_object_exist(uri, boto3_session=self.session))


def _check_columns(spec: TableSpec, columns: Iterable[str]) -> None:
    """The result's columns must be the catalog's: a mismatch means the stacks and the SQL disagree."""
    unknown, missing = set(columns) - set(spec.types()), set(spec.types()) - set(columns)
    if unknown or missing:
        raise LtvError(f"{spec.name}: the query's columns do not match the catalog schema (not in the catalog: "
                       f"{sorted(unknown)}, missing: {sorted(missing)}); redeploy the data-lake stack")


def part_name(index: int) -> str:
    """The name of a partition's index-th part object (`part-0.parquet` first)."""
    return f"part-{index}.parquet"


class PartWriter:
    """One partition's rows as local parquet parts of at most about `budget` bytes each.

    Rows are written in slices of about `budget / SLICES_PER_PART` bytes (row groups); before a
    slice would take the current part past its budget (its rows, plus the footer the part will
    end with), the part is closed and the next begun. A slice's size is estimated from the bytes
    per row of what was already written (at first, from the rows' size in memory, which is larger
    than in compressed parquet)."""

    def __init__(self, directory: Path, schema: Any, budget: int):
        self.directory, self.schema, self.budget = directory, schema, budget
        self.files: list[Path] = []
        self._writer: Any = None
        self._rows = self._groups = 0
        self._bytes_per_row: float | None = None

    def write(self, table: Any) -> None:
        done = 0
        while done < table.num_rows:
            per_row = self._bytes_per_row or max(table.nbytes / table.num_rows, 1.0)
            n = min(self._slice_rows(per_row), table.num_rows - done)
            if self._writer is None or (self._rows and self._size() + per_row * n + self._footer() > self.budget):
                self._next_part()
            self._writer.write_table(table.slice(done, n))
            done, self._rows, self._groups = done + n, self._rows + n, self._groups + 1
            self._bytes_per_row = max(self._size() / self._rows, 1.0)

    def _footer(self) -> int:
        """The footer's size once one more row group is written."""
        return FOOTER_BYTES + (self._groups + 1) * len(self.schema) * FOOTER_BYTES_PER_CHUNK

    def _slice_rows(self, per_row: float) -> int:
        return max(1, int(self.budget / SLICES_PER_PART / per_row))

    def _size(self) -> int:
        return self.files[-1].stat().st_size

    def _next_part(self) -> None:
        import pyarrow.parquet as pq

        if self._writer is not None:
            self._writer.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.files.append(self.directory / part_name(len(self.files)))
        self._writer = pq.ParquetWriter(self.files[-1], self.schema, compression="snappy")
        self._rows = self._groups = 0

    def close(self) -> None:
        """Finish the last part (a partition without rows still gets one part: the schema)."""
        if not self.files:
            self._next_part()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _numpy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """awswrangler's nullable dtypes -> the numpy dtypes DuckDB's `.df()` gives (ints with NULLs become floats)."""
    out = {}
    for name, col in frame.items():
        masked = isinstance(col.dtype, pd.api.extensions.ExtensionDtype)
        if masked and pd.api.types.is_integer_dtype(col.dtype):
            out[name] = col.astype("float64") if col.isna().any() else col.astype("int64")
        elif masked and pd.api.types.is_bool_dtype(col.dtype):
            out[name] = col.astype(object) if col.isna().any() else col.astype(bool)
        elif isinstance(col.dtype, pd.StringDtype):
            out[name] = col.astype(object).where(col.notna(), None)
        else:
            out[name] = col
    return pd.DataFrame(out, index=frame.index)


__all__ = ["AthenaEngine", "TableSpec", "arrow_schema", "hive_type", "projection_start", "raw_columns",
           "row_count_sql", "statement", "table_specs"]
