"""Dataset versions: named, immutable sets of (features, labels) rows over series of cutoffs.

Kakao Games' scheme: version i starts `start_shift_weeks * i` after `first_start` and trains on
`train_weeks[i]` weeks of cutoffs; an out-of-time validation period and a test period follow.
Before the validation period and before the test period lies an embargo of one label horizon:
the labels of a cutoff c read [c, c + horizon), so a training cutoff is kept only if its label
window ends by the first validation cutoff, and a validation cutoff only if its window ends by
the first test cutoff. Validation steers early stopping, ensemble weights, the smearing factor,
the payer/churn thresholds and the label-decay reference, so it must not share outcome days
with training; the test period, on which models are compared and promoted, is unseen by both.
The retraining loop uses `rolling_spec`, the newest window whose test labels are complete at a
given date.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ltv import etl, sql
from ltv.config import GameConfig
from ltv.engine import Engine
from ltv.errors import EmptyWindowError, ImmutableVersionError, LtvError
from ltv.lake import Lake, is_complete, write_json_atomic, write_with
from ltv.stats import feature_stats
from ltv.version import code_version

SPLITS = ("train", "validation", "test")
LABELS = ("ltv", "payer", "next_purchase_day", "churned")
KEYS = ("player_id", "cutoff", "split")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    train: tuple[dt.date, ...]
    validation: tuple[dt.date, ...]
    test: tuple[dt.date, ...]

    def splits(self) -> dict[str, tuple[dt.date, ...]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    @property
    def cutoffs(self) -> list[dt.date]:
        return sorted({*self.train, *self.validation, *self.test})

    @property
    def end(self) -> dt.date:
        """The day after which labels of the last test cutoff are complete."""
        return max(self.test)

    def fingerprint(self, config: GameConfig) -> str:
        payload = {"data": config.data_hash(), "sql": sql.sql_hash(config),
                   "splits": {k: [str(d) for d in v] for k, v in self.splits().items()}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cutoffs_in(config: GameConfig, start: dt.date, end: dt.date) -> list[dt.date]:
    """Cutoff days of the game's schedule in [start, end)."""
    return [d for d in etl.day_range(start, end) if config.cutoffs.is_cutoff(d)]


def _after(config: GameConfig, last: dt.date, weeks: int) -> tuple[dt.date, ...]:
    """Cutoffs of a period of `weeks` starting one label horizon after `last` (the embargo: the
    labels of `last` end the day before the period's first possible cutoff)."""
    start = last + dt.timedelta(days=etl.label_horizon(config))
    return tuple(cutoffs_in(config, start, start + dt.timedelta(weeks=weeks)))


def _ending(config: GameConfig, last: dt.date, weeks: int) -> tuple[dt.date, ...]:
    """Cutoffs of a period of `weeks` ending on `last` (inclusive)."""
    end = last + dt.timedelta(days=1)
    return tuple(cutoffs_in(config, end - dt.timedelta(weeks=weeks), end))


def _checked(spec: DatasetSpec) -> DatasetSpec:
    for split, cutoffs in spec.splits().items():
        if not cutoffs:
            raise EmptyWindowError(f"dataset {spec.name!r}: the {split} period contains no cutoff day; "
                                   "lengthen it or check cutoffs.weekday / every_weeks")
    return spec


def version_specs(config: GameConfig) -> list[DatasetSpec]:
    """The dataset versions the config defines (Kakao's scheme)."""
    v = config.datasets
    if v.first_start == "auto":
        raise LtvError("datasets.first_start: auto is placed against the logs: resolve it with ltv.horizon.plan")
    specs = []
    for i in range(v.count):
        start = v.first_start + dt.timedelta(weeks=v.start_shift_weeks * i)
        weeks = v.train_weeks_of(i)
        train = tuple(cutoffs_in(config, start, start + dt.timedelta(weeks=weeks)))
        validation = _after(config, train[-1], v.validation_weeks) if train else ()
        test = _after(config, validation[-1], v.test_weeks) if validation else ()
        specs.append(_checked(DatasetSpec(f"v{i + 1}-{start}-{weeks}w", train, validation, test)))
    return specs


def rolling_spec(config: GameConfig, as_of: dt.date, train_weeks: int | None = None) -> DatasetSpec:
    """The newest dataset whose test labels are complete with the data available on `as_of`
    (days before it): used by the retraining loop."""
    v, h = config.datasets, dt.timedelta(days=etl.label_horizon(config))
    test = _ending(config, as_of - h, v.test_weeks)
    validation = _ending(config, test[0] - h, v.validation_weeks) if test else ()
    train = _ending(config, validation[0] - h, train_weeks or v.rolling_train_weeks) if validation else ()
    return _checked(DatasetSpec(f"rolling-{as_of}", train, validation, test))


def check_history(engine: Engine, config: GameConfig, spec: DatasetSpec) -> dt.date:
    """The first day the dataset's features read (its first cutoff minus the feature history),
    after checking that the raw logs reach back to it: a cutoff with less history than
    `n_steps x step_days` would train on players who only look new. `EmptyWindowError` if not."""
    warm = etl.Windows.of(config, spec.cutoffs[0]).steps_start
    raw = engine.partitions(config.logs.events.table)
    if not raw or str(warm) < raw[0]:
        raise EmptyWindowError(f"dataset {spec.name!r}: its first cutoff {spec.cutoffs[0]} needs "
                               f"{config.features.n_steps} history steps of {config.features.step_days} days, from "
                               f"{warm} on, but the logs begin {raw[0] if raw else 'nowhere (no raw partition)'}; "
                               "wait for more history or shorten features.n_steps")
    return warm


def find_spec(config: GameConfig, name: str) -> DatasetSpec:
    if name.startswith("rolling-"):
        return rolling_spec(config, dt.date.fromisoformat(name.removeprefix("rolling-")))
    specs = {s.name: s for s in version_specs(config)}
    if name in specs:
        return specs[name]
    by_index = {f"v{i + 1}": s for i, s in enumerate(specs.values())}
    if name in by_index:
        return by_index[name]
    raise LtvError(f"unknown dataset version {name!r}; configured: {', '.join(specs)} (or v1..v{len(specs)}, "
                   "or rolling-YYYY-MM-DD)")


# ----------------------------------------------------------------------------------------------
# building and reading


def build_dataset(engine: Engine, config: GameConfig, lake: Lake, spec: DatasetSpec,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Materialise a dataset version (idempotent; a version never changes once written)."""
    target = lake.datasets / spec.name
    fingerprint = spec.fingerprint(config)
    if is_complete(target):
        manifest = read_manifest(target)
        if manifest["fingerprint"] != fingerprint:
            raise ImmutableVersionError(
                f"dataset {spec.name!r} already exists with another definition (fingerprint {manifest['fingerprint']} "
                f"vs {fingerprint}: the config, SQL or cutoffs changed). Versions are immutable: give the new one "
                "another name or dataset settings.")
        return manifest
    for i, cutoff in enumerate(spec.cutoffs):
        etl.ensure_cutoff(engine, config, cutoff)
        if progress:
            progress(i + 1, len(spec.cutoffs))
    frames = {}
    for split, cutoffs in spec.splits().items():
        frame = engine.query(sql.render("dataset", config, split=split, cutoffs=[str(c) for c in cutoffs]))
        if frame.empty:
            raise EmptyWindowError(f"dataset {spec.name!r}: the {split} split (cutoffs {cutoffs[0]}..{cutoffs[-1]}) "
                                   "has no rows")
        frames[split] = frame
    features = [c for c in frames["train"].columns if c not in (*LABELS, *KEYS)]
    manifest = {
        "name": spec.name, "game": config.game.id, "fingerprint": fingerprint,
        "config_hash": config.config_hash(), "sql_hash": sql.sql_hash(config), "code_version": code_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cutoffs": {k: [str(d) for d in v] for k, v in spec.splits().items()},
        "rows": {k: int(len(v)) for k, v in frames.items()},
        "horizons": config.horizons.model_dump(),  # what its labels measure (ltv.horizon may have shortened it)
        "payers": {k: int(v["payer"].sum()) for k, v in frames.items()},
        "features": features,
    }

    def write(tmp: Path) -> None:
        for split, frame in frames.items():
            (tmp / f"split={split}").mkdir()
            frame.drop(columns=["split"]).to_parquet(tmp / f"split={split}" / "part-0.parquet", index=False)
        write_json_atomic(tmp / "stats.json", feature_stats(frames["train"], features))
        write_json_atomic(tmp / "manifest.json", manifest)

    try:
        write_with(target, write, replace=False)
    except FileExistsError:  # a concurrent run finished first; its content has the same fingerprint
        return read_manifest(target)
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def load_dataset(lake: Lake, name: str) -> dict[str, pd.DataFrame]:
    """The splits of a built dataset version."""
    path = lake.datasets / name
    if not is_complete(path):
        built = sorted(p.name for p in lake.datasets.glob("*") if is_complete(p)) if lake.datasets.exists() else []
        raise LtvError(f"dataset {name!r} is not built in {lake.datasets}; built: {built or 'none'}. "
                       f"Run: ltv datasets build --game {lake.game} --version {name}")
    return read_splits(path)


def read_splits(path: Path) -> dict[str, pd.DataFrame]:
    """The splits of the complete dataset version folder `path` (in a lake or downloaded from one)."""
    return {s: pd.read_parquet(path / f"split={s}") for s in SPLITS}


def list_datasets(lake: Lake) -> list[dict[str, Any]]:
    if not lake.datasets.exists():
        return []
    return [read_manifest(p) for p in sorted(lake.datasets.iterdir()) if is_complete(p)]
