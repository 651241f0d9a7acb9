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
sibling directory and renamed into place, so readers never see half of it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUCCESS = "_SUCCESS"


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
        return self.base / "monitoring"

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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
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
    old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temp file in the same directory and rename it over `path`."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(text)
    os.replace(tmp, path)


def write_with(target: Path, writer: Callable[[Path], None], *, replace: bool = True) -> Path:
    """Run `writer(tmpdir)` and move the result into place atomically."""
    with atomic_dir(target, replace=replace) as tmp:
        writer(tmp)
    return target
