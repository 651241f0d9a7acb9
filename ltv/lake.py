"""The local data lake: where each dataset of a game lives, and how partitions are written.

Layout (the S3 layout in AWS is the same under the game's buckets):

    <root>/<game>/raw/<table>/dt=YYYY-MM-DD/part-0.parquet     raw logs (the game's own schema)
    <root>/<game>/player_day/dt=YYYY-MM-DD/                    daily aggregates
    <root>/<game>/player_summary/cutoff=YYYY-MM-DD/            whole-history aggregates per player
    <root>/<game>/features/cutoff=YYYY-MM-DD/ , labels/...      per cutoff
    <root>/<game>/datasets/<version>/                           immutable dataset versions
    <root>/<game>/truth/cutoff=YYYY-MM-DD/                      simulator ground truth (simulated games)
    <root>/<game>/registry/                                     model registry
    <root>/<game>/predictions/dt=YYYY-MM-DD/run=<id>/           batch scores, never overwritten
    <root>/<game>/monitoring/                                   alerts log, monitoring results
    <root>/<game>/reports/                                      HTML reports

A partition directory is complete only when it holds `_SUCCESS`; it is written in a temporary
sibling directory and renamed into place, so readers never see half of it. Work in progress
lives in hidden siblings named by `scratch` (`.tmp-`, `.old-`, `.staging-`, `.work-`, with the
writer's pid): readers skip them, and `sweep` clears what a killed process left behind.
A write that fails for lack of space or permission raises `StorageError`.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltv.errors import StorageError

SUCCESS = "_SUCCESS"
MONITORING = "monitoring"
# the monitoring state (checkpoints, incidents), relative to the game's base: the same key in the
# curated bucket, where the monitoring job publishes it and the pipeline's evaluate step reads it
MONITORING_STATE = f"{MONITORING}/state.json"
SCRATCH = re.compile(r"^\.(?P<kind>tmp|old|staging|work)-(?P<name>.*)-[0-9a-f]{8}-p(?P<pid>\d+)$")
# a write that fails with one of these is the disk's or the directory's fault, not the data's
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class Lake:
    root: Path
    game: str

    @property
    def base(self) -> Path:
        return Path(self.root) / self.game

    def raw(self, table: str) -> Path:
        return self.base / "raw" / table

    def table(self, name: str) -> Path:
        """A derived table: player_day, features, labels, truth, predictions."""
        return self.base / name

    def partition(self, table: str, key: str, value: dt.date | str) -> Path:
        return self.table(table) / f"{key}={value}"

    def raw_partition(self, table: str, day: dt.date) -> Path:
        return self.raw(table) / f"dt={day}"

    @property
    def datasets(self) -> Path:
        return self.base / "datasets"

    @property
    def registry(self) -> Path:
        return self.base / "registry"

    @property
    def monitoring(self) -> Path:
        return self.base / MONITORING

    @property
    def monitoring_state(self) -> Path:
        return self.base / MONITORING_STATE

    @property
    def validation_reports(self) -> Path:
        """One data-validation report per raw day, `dt=<day>.json` (the same key in S3)."""
        return self.monitoring / "validation"

    @property
    def reports(self) -> Path:
        return self.base / "reports"


def is_complete(path: Path) -> bool:
    return (path / SUCCESS).exists()


def complete_partitions(table_dir: Path, key: str) -> list[str]:
    """Values of `key=value` sub-directories that carry a success marker, sorted."""
    if not table_dir.exists():
        return []
    prefix = f"{key}="
    return sorted(p.name[len(prefix):] for p in table_dir.iterdir()
                  if p.name.startswith(prefix) and is_complete(p))


@contextmanager
def atomic_dir(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that becomes `target` (with `_SUCCESS`) if the block succeeds.

    On any exception the temporary directory is removed and `target` is untouched. With
    `replace=False` an existing complete target raises FileExistsError (immutability).
    """
    target = Path(target)
    tmp = scratch(target.parent, "tmp", target.name)
    with storage_errors(target):  # the caller's block too: an engine's write into tmp may fill the disk
        tmp.mkdir(parents=True)
        try:
            yield tmp
            (tmp / SUCCESS).write_text(dt.datetime.now(dt.timezone.utc).isoformat())
            _swap_into_place(tmp, target, replace)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_into_place(tmp: Path, target: Path, replace: bool) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    if not replace:
        raise FileExistsError(target)
    old = scratch(target.parent, "old", target.name)
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temp file in the same directory and rename it over `path`."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    write_file_atomic(path, lambda tmp: tmp.write_text(text))


def write_file_atomic(path: Path, writer: Callable[[Path], Any]) -> None:
    """Run `writer(tmp)` on a temp file in the same directory and rename it over `path`."""
    tmp = scratch(path.parent, "tmp", path.name)
    with storage_errors(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_with(target: Path, writer: Callable[[Path], None], *, replace: bool = True) -> Path:
    """Run `writer(tmpdir)` and move the result into place atomically."""
    with atomic_dir(target, replace=replace) as tmp:
        writer(tmp)
    return target


# ----------------------------------------------------------------------------------------------
# work in progress, crashes, and storage failures


def scratch(parent: Path, kind: str, name: str) -> Path:
    """A hidden sibling for work in progress on `name`: `.<kind>-<name>-<random>-p<pid>`.

    Readers skip dot-names (Hive, DuckDB's `key=*` globs, `complete_partitions`); the writer's
    pid lets `sweep` tell what a killed process left from what a live one is writing."""
    return Path(parent) / f".{kind}-{name}-{uuid.uuid4().hex[:8]}-p{os.getpid()}"


def sweep(root: Path) -> list[Path]:
    """Clear the scratch entries that dead processes left under `root` (a crash's leftovers):
    removed, except an `.old-` entry whose target is missing (a kill in the middle of a swap),
    which is renamed back so the previous complete version is visible again. Symlinked
    directories (shared data) are not entered. Returns the entries handled."""
    handled = []
    for parent, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            m = SCRATCH.match(name)
            if m is None or _alive(int(m["pid"])):
                continue
            path = Path(parent) / name
            target = path.parent / m["name"]
            if m["kind"] == "old" and not target.exists():
                os.rename(path, target)
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            handled.append(path)
        dirs[:] = [d for d in dirs if not SCRATCH.match(d)]
    return handled


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_STORAGE_MESSAGES = tuple(os.strerror(n) for n in STORAGE_ERRNOS)


def storage_error(e: BaseException, path: Path) -> StorageError | None:
    """The named error for a write to `path` that failed for lack of space or permission (an
    OSError with such an errno, or an engine's I/O error quoting it), else None."""
    if isinstance(e, StorageError):
        return e
    if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        reason = e.strerror or str(e)
    elif not isinstance(e, OSError) and any(m in str(e) for m in _STORAGE_MESSAGES):
        reason = next(m for m in _STORAGE_MESSAGES if m in str(e))
    else:
        return None
    return StorageError(f"cannot write {path}: {reason}. Nothing was published (the partial output was removed); "
                        "free space or fix the directory's permissions (or point --lake / $LTV_LAKE elsewhere), "
                        "then rerun the same command")


@contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Turn a failed write to `path` for lack of space or permission into `StorageError`."""
    try:
        yield
    except BaseException as e:
        named = storage_error(e, path)
        if named is None or named is e:
            raise
        raise named from e
