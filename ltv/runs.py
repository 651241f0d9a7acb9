"""Prediction runs: where a scoring run's files live and how a run is published, locally and in S3.

    predictions/game=<game>/dt=YYYY-MM-DD/run=<run id>/<data files> + _SUCCESS
    predictions/game=<game>/dt=YYYY-MM-DD/_LATEST        the run id readers should use

(under the lake's root locally, under the curated bucket in AWS). One rule for both, `publish`:
a run is complete once its data files are all written; then `_SUCCESS` is written in it and
`_LATEST` moves to it, never backwards. Run ids begin with their UTC creation time (to the
microsecond), so a late or replayed publication of an older run leaves the pointer where it is,
and publishing a run twice changes nothing: the AWS completion handler is safe to replay.

Standard library only (no pandas): the scoring Lambda imports it. Stores are given their client,
so this module imports no AWS SDK either.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ltv.errors import LtvError, MissingPartitionError
from ltv.lake import SUCCESS, write_text_atomic

ROOT = "predictions"
TARGETS = "targets"  # each run's target list (ltv.targets), partitioned like the run
NOTIFIED = "_NOTIFIED"  # in a target list's folder: its "targets ready" event was sent
LATEST = "_LATEST"
DATA_MARKERS = ("_", ".")  # Hive (Athena) skips files whose name starts with these: markers, temp files
RUN_PREFIX = re.compile(rf"^{ROOT}/game=(?P<game>[^/]+)/dt=(?P<day>\d{{4}}-\d{{2}}-\d{{2}})/run=(?P<run>[^/]+)/$")
ABSENT = None        # `put(..., expect=ABSENT)`: write only if the object does not exist
_ANY = object()      # `put(..., expect=_ANY)`: write unconditionally
MAX_ATTEMPTS = 8


class Conflict(LtvError):
    """A conditional write lost a race: the object changed since it was read."""


@dataclass(frozen=True)
class Stored:
    body: bytes
    tag: str          # what a conditional write compares with (an ETag in S3)


class Store(Protocol):
    """Keys relative to a root (a directory, or a bucket), and conditional writes."""

    def get(self, key: str) -> Stored | None: ...
    def put(self, key: str, body: bytes, *, expect: Any = _ANY) -> None: ...
    def keys(self, prefix: str) -> list[str]: ...


def date_prefix(game: str, day: dt.date | str) -> str:
    return f"{ROOT}/game={game}/dt={day}/"


def run_prefix(game: str, day: dt.date | str, run: str) -> str:
    return f"{date_prefix(game, day)}run={run}/"


def targets_prefix(game: str, day: dt.date | str, run: str) -> str:
    """The folder of the target list made from a run (the same partition values under `targets/`)."""
    return TARGETS + run_prefix(game, day, run).removeprefix(ROOT)


def parse_run_prefix(prefix: str) -> tuple[str, str, str]:
    """(game, day, run) of a run's prefix; LtvError if it is not one."""
    m = RUN_PREFIX.match(prefix)
    if not m:
        raise LtvError(f"{prefix!r} is not a prediction run's prefix ({ROOT}/game=G/dt=YYYY-MM-DD/run=R/)")
    return m.group("game"), m.group("day"), m.group("run")


def new_run_id(now: dt.datetime | None = None, version: int | None = None) -> str:
    """A run id that sorts by creation time: `20250414T031502.123456-ab12cd` (`-v3-ab12cd` with a
    model version)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    tag = f"-v{version}" if version is not None else ""
    return f"{now:%Y%m%dT%H%M%S.%f}{tag}-{uuid.uuid4().hex[:6]}"


def is_data(key: str) -> bool:
    """A data file of a table (what Athena reads), not a marker, pointer or temporary file."""
    name = key.rstrip("/").rsplit("/", 1)[-1]
    return not key.endswith("/") and not name.startswith(DATA_MARKERS)


def data_keys(store: Store, game: str, day: dt.date | str, run: str) -> list[str]:
    return sorted(k for k in store.keys(run_prefix(game, day, run)) if is_data(k))


def latest_run(store: Store, game: str, day: dt.date | str) -> str | None:
    pointer = store.get(date_prefix(game, day) + LATEST)
    return pointer.body.decode().strip() if pointer else None


def is_complete(store: Store, game: str, day: dt.date | str, run: str) -> bool:
    return store.get(run_prefix(game, day, run) + SUCCESS) is not None


def published_dates(store: Store, game: str) -> list[str]:
    """Dates with a published run (a `_LATEST` pointer), sorted."""
    base = f"{ROOT}/game={game}/"
    found = {key[len(base):].split("/", 1)[0].removeprefix("dt=") for key in store.keys(base)
             if key.endswith(f"/{LATEST}") and key[len(base):].count("/") == 1}
    return sorted(found)


@dataclass(frozen=True)
class Publication:
    run: str
    latest: str          # the run `_LATEST` points to afterwards
    moved: bool          # whether this call moved it


def publish(store: Store, game: str, day: dt.date | str, run: str) -> Publication:
    """Mark a finished run complete and move `_LATEST` to it unless it already points to this run
    or a newer one. Idempotent; safe against concurrent publications (conditional writes)."""
    prefix = run_prefix(game, day, run)
    if not data_keys(store, game, day, run):
        raise MissingPartitionError(f"prediction run {prefix} has no data files; nothing to publish")
    if not is_complete(store, game, day, run):
        try:
            store.put(prefix + SUCCESS, dt.datetime.now(dt.timezone.utc).isoformat().encode(), expect=ABSENT)
        except Conflict:
            pass  # written by a concurrent publication of the same run
    pointer = date_prefix(game, day) + LATEST
    for _ in range(MAX_ATTEMPTS):
        current = store.get(pointer)
        latest = current.body.decode().strip() if current else None
        if latest is not None and latest >= run:
            return Publication(run, latest, moved=False)
        try:
            store.put(pointer, run.encode(), expect=current.tag if current else ABSENT)
            return Publication(run, run, moved=True)
        except Conflict:
            continue
    raise LtvError(f"could not move {pointer} to {run}: it kept changing ({MAX_ATTEMPTS} attempts)")


# ----------------------------------------------------------------------------------------------
# stores


class DirStore:
    """Keys as paths under a local directory (the lake's root). One writer at a time: the
    conditions are checked, then the file is replaced atomically."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def get(self, key: str) -> Stored | None:
        path = self.root / key
        try:
            body = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return Stored(body, hashlib.sha256(body).hexdigest())

    def put(self, key: str, body: bytes, *, expect: Any = _ANY) -> None:
        if expect is not _ANY:
            current = self.get(key)
            if (current.tag if current else ABSENT) != expect:
                raise Conflict(f"{self.root / key} changed since it was read")
        write_text_atomic(self.root / key, body.decode())

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        start = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not start.exists():
            return []
        out = []
        for folder, _dirs, files in os.walk(start):
            for name in files:
                key = (Path(folder) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)


class S3Store:
    """Keys of one bucket, through a boto3 S3 client (conditional writes: If-None-Match / If-Match)."""

    def __init__(self, client: Any, bucket: str):
        self.client, self.bucket = client, bucket

    def get(self, key: str) -> Stored | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        return Stored(obj["Body"].read(), obj["ETag"])

    def put(self, key: str, body: bytes, *, expect: Any = _ANY) -> None:
        condition = {} if expect is _ANY else {"IfNoneMatch": "*"} if expect is ABSENT else {"IfMatch": expect}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)
        except self.client.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise Conflict(f"s3://{self.bucket}/{key} changed since it was read") from None
            raise

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
