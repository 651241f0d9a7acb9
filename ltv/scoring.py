"""Batch scoring: every player of the population at a date, scored by the champion.

Output layout (the same under the curated bucket in AWS, as an Athena table; see `ltv.runs`):

    <lake>/predictions/game=<game>/dt=YYYY-MM-DD/run=<run id>/part-0.parquet + _SUCCESS
    <lake>/predictions/game=<game>/dt=YYYY-MM-DD/_LATEST          the run id readers should use

A run is written atomically and never overwritten: a rerun gets a new run id, and `_LATEST`
moves to it only after the run's files are complete (`ltv.runs.publish`, the rule the AWS
completion handler applies to what a batch transform wrote). `Predictions` reads runs from
either place.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from ltv import etl, explain, runs, sql
from ltv.config import GameConfig
from ltv.engine import Engine
from ltv.errors import ArtifactError, MissingPartitionError, RegistryError
from ltv.lake import Lake, atomic_dir, is_complete

if TYPE_CHECKING:  # the registry brings the models; the Athena catalog needs only this module's schema
    from ltv.models import LTVModel
    from ltv.registry import ModelVersion, Registry

LATEST = runs.LATEST


def prediction_columns(config: GameConfig) -> list[tuple[str, str]]:
    """Columns of the predictions table with their (Hive/Athena) types; partition keys excluded."""
    return _columns("string" if config.logs.player_id_type == "string" else "bigint", config.horizons.purchase_days)


def _columns(ident: str, purchase_days: int) -> list[tuple[str, str]]:
    days = [(f"p_day_{d}", "double") for d in range(1, purchase_days + 1)]
    return [("player_id", ident), ("p_payer", "double"), ("value_if_payer", "double"), ("payer_pred", "bigint"),
            ("ltv_pred", "double"), ("ltv_expected", "double"), ("p_churn", "double"), ("churn_pred", "bigint"),
            *days, ("p_day_none", "double"), ("offer_day", "bigint"), ("likely_day", "bigint"),
            *explain.columns(), ("model_group", "string"), ("model_version", "bigint"), ("scored_at", "timestamp"),
            *ASKED_HORIZON_COLUMNS, *BTYD_COLUMNS]


# ltv_expected at the horizon the game asked for: equal to ltv_expected, or, when the logs forced
# training at a shorter horizon, extended per player by BTYD's expectation beyond it (ltv.models.btyd.extend)
ASKED_HORIZON_COLUMNS = (("ltv_expected_asked", "double"),)


# BTYD beside every prediction: BG/NBD + Gamma-Gamma's expected revenue over the asked horizon and
# P(alive), from the model's stored fit (LTVModel.predict); NULL where BTYD does not apply (a player
# who never bought, a model without a BTYD fit). Appended: readers select columns by name.
BTYD_COLUMNS = (("btyd_value", "double"), ("btyd_p_alive", "double"))


def predictions(model: LTVModel, features: pd.DataFrame, version: int | None) -> pd.DataFrame:
    """Feature rows scored as the predictions table holds them: the model's outputs, the drivers
    of the players its explanation settings select (`ltv.explain`; null for the others), its model
    group and version, and the scoring time (what `score` writes and the image's `serve` returns)."""
    from ltv.registry import group_name

    pred = model.predict(features)
    scores = pred.select_dtypes("number").drop(columns=[c for c, _ in BTYD_COLUMNS if c in pred])  # NULL = no BTYD
    finite = np.isfinite(scores.to_numpy(float))
    if not finite.all():  # a NaN or inf score would reach every reader of the table: refuse the batch
        bad = ~finite.all(axis=1)
        ids = pred.loc[bad, "player_id"].head(5).tolist() if "player_id" in pred else []
        raise ArtifactError(f"the model gave {int(bad.sum())} of {len(pred)} rows a NaN or infinite score "
                            f"(columns {sorted(scores.columns[~finite.all(axis=0)])}, players {ids}); nothing was "
                            "written. Check those players' features for infinite values, or roll back to the "
                            "previous version (ltv registry rollback)")
    pred = pd.concat([pred, model.drivers(features, pred)], axis=1)
    pred["model_group"] = group_name(model.manifest["game"])
    pred["model_version"] = version
    pred["scored_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return pred[[c for c, _ in _columns("string", model.purchase_days)]]


# `dt`, not `date`: DATE is a reserved word in Athena's (Hive) DDL
PARTITION_KEYS = (("game", "string"), ("dt", "string"), ("run", "string"))


@dataclass(frozen=True)
class ScoringResult:
    game: str
    date: str
    run_id: str
    rows: int
    model_version: int
    path: Path


def predictions_root(lake: Lake) -> Path:
    return Path(lake.root) / runs.ROOT


def date_dir(lake: Lake, day: dt.date | str) -> Path:
    return Path(lake.root) / runs.date_prefix(lake.game, day)


def score(config: GameConfig, lake: Lake, engine: Engine, registry: Registry, day: dt.date,
          run_id: str | None = None, champion: ModelVersion | None = None) -> ScoringResult:
    """Score the population at `day` (players active in the window before it) with the champion.

    `run_id` names the run (default: a new one). A run of that id that is already complete is
    kept as it is and published (`_LATEST` moves to it unless a newer run is published): the daily
    loop resumes an interrupted scoring so. `champion`: the registry's champion if the caller
    has already resolved it (one registry read per scoring day)."""
    from ltv.registry import group_name

    run_id = run_id or runs.new_run_id()
    target = date_dir(lake, day) / f"run={run_id}"
    if is_complete(target):
        runs.publish(runs.DirStore(lake.root), lake.game, day, run_id)
        pred = pd.read_parquet(target, columns=["model_version"])
        return ScoringResult(config.game.id, str(day), run_id, len(pred), int(pred["model_version"].iloc[0]), target)
    champion = champion or registry.champion()
    if champion is None:
        raise RegistryError(f"{group_name(config.game.id)!r} has no Approved model to score with; train one "
                            f"(ltv run / ltv train) or approve a version (ltv registry approve)")
    model = usable_model(config, registry, champion.version)
    etl.ensure_cutoff(engine, config, day, labels=False)
    features = engine.query(f"SELECT * FROM features WHERE cutoff = '{day}'")
    if features.empty:
        raise MissingPartitionError(f"no features at {day}")
    pred = predictions(model, features, champion.version)
    with atomic_dir(target, replace=False) as tmp:
        pred.to_parquet(tmp / "part-0.parquet", index=False)
    runs.publish(runs.DirStore(lake.root), lake.game, day, run_id)  # readers switch only now
    return ScoringResult(config.game.id, str(day), run_id, len(pred), champion.version, target)


def usable_model(config: GameConfig, registry: Registry, version: int) -> LTVModel:
    """A registered model, refused unless it is this game's and reads the features as the config
    defines them now."""
    from ltv.registry import group_name

    model = registry.load(version)
    if model.manifest["game"] != config.game.id:
        raise ArtifactError(f"version {version} of {group_name(config.game.id)!r} is a model of "
                            f"game {model.manifest['game']!r}; reject it (ltv registry reject) and roll back")
    expected = etl.definition(config, "features")["hash"]
    if model.manifest.get("features_definition", expected) != expected:
        raise ArtifactError(f"version {version} was trained on features defined otherwise than "
                            f"config {config.game.id!r} defines them now (log mapping, history steps or population "
                            "window changed): its scores would be wrong. Retrain (ltv run / ltv train) or restore the "
                            "config")
    return model


@dataclass(frozen=True)
class Story:
    """Why one player's predicted value is what it is (`ltv explain`)."""

    player: str
    date: str
    model_version: int
    scored: pd.Series               # the player's prediction columns
    base: float                     # ltv_expected with every contribution zero
    contributions: pd.DataFrame     # feature, value (the player's), contribution (currency), largest first


def explain_player(config: GameConfig, lake: Lake, engine: Engine, registry: Registry, day: dt.date,
                   player: str) -> Story:
    """One player's drivers at a date, from the model that scored that date's published run (the
    champion if the date has none): every feature's exact contribution to ltv_expected."""
    from ltv.models.ltv_model import with_btyd
    from ltv.registry import group_name

    published = Predictions.of(lake)
    if published.latest_run(day) is not None:
        version = int(published.read(day)["model_version"].iloc[0])
    else:
        champion = registry.champion()
        if champion is None:
            raise RegistryError(f"{group_name(config.game.id)!r} has no Approved model and {day} no predictions")
        version = champion.version
    model = usable_model(config, registry, version)
    etl.ensure_cutoff(engine, config, day, labels=False)
    rows = engine.query(f"SELECT * FROM features WHERE cutoff = '{day}' AND CAST(player_id AS VARCHAR) = "
                        f"{sql.literal(player)}")
    if rows.empty:
        raise MissingPartitionError(f"player {player} has no features at {day}: not in the population (active in "
                                    f"the {config.features.population_window_days} days before it) or unknown")
    scored = model.predict(rows)
    dec = model.explain(rows)
    explain.check(dec, scored["ltv_expected"].to_numpy())
    values = with_btyd(rows, model.manifest).iloc[0] if model.manifest.get("btyd") else rows.iloc[0]
    table = pd.DataFrame({"feature": dec.features, "value": [values[f] for f in dec.features],
                          "contribution": dec.contributions[0]})
    table = table.reindex(table["contribution"].abs().sort_values(ascending=False, kind="stable").index)
    return Story(player, str(day), version, scored.iloc[0], float(dec.base[0]), table.reset_index(drop=True))


@dataclass(frozen=True)
class Predictions:
    """The published prediction runs of one game in a store: the local lake, or the curated
    bucket (`runs.S3Store`), where batch transform writes them."""

    store: runs.Store
    game: str

    @classmethod
    def of(cls, lake: Lake) -> Predictions:
        return cls(runs.DirStore(lake.root), lake.game)

    def dates(self) -> list[str]:
        """Dates with a published run, sorted."""
        return runs.published_dates(self.store, self.game)

    def latest_run(self, day: dt.date | str) -> str | None:
        return runs.latest_run(self.store, self.game, day)

    def read(self, day: dt.date | str, run: str | None = None) -> pd.DataFrame:
        """The predictions of a date (the latest published run unless `run` is given), with its
        `dt` and `run` partition values as columns."""
        run = run or self.latest_run(day)
        if run is None or not runs.is_complete(self.store, self.game, day, run):
            raise MissingPartitionError(f"no complete predictions for {self.game} at {day} (run {run})")
        frames = [pd.read_parquet(io.BytesIO(self.store.get(key).body))
                  for key in runs.data_keys(self.store, self.game, day, run)]
        return pd.concat(frames, ignore_index=True).assign(dt=str(day), run=run)


def latest_run(lake: Lake, day: dt.date | str) -> str | None:
    return Predictions.of(lake).latest_run(day)


def scored_dates(lake: Lake) -> list[str]:
    return Predictions.of(lake).dates()


def read_predictions(lake: Lake, day: dt.date | str, run: str | None = None) -> pd.DataFrame:
    """The predictions of a date in the local lake (the latest complete run unless `run` is given)."""
    return Predictions.of(lake).read(day, run)


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the prediction views (see `add_prediction_views`)."""
    con = duckdb.connect()
    add_prediction_views(con, root)
    return con


def add_prediction_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Views `predictions` (every run) and `latest_predictions` (the `_LATEST` run of each game
    and date): the local twin of the Athena table."""
    base = Path(root) / "predictions"
    latest = [p.parent / f"run={p.read_text().strip()}" / "part-0.parquet" for p in base.glob(f"game=*/dt=*/{LATEST}")]
    latest = [f for f in latest if f.exists()]
    if not latest:
        raise MissingPartitionError(f"no predictions under {base} yet; run: ltv predict --game G --date D")
    options = "hive_partitioning = true, hive_types = {'game': VARCHAR, 'dt': VARCHAR, 'run': VARCHAR}, union_by_name = true"
    con.execute(f"CREATE OR REPLACE VIEW predictions AS SELECT * FROM "
                f"read_parquet('{base}/game=*/dt=*/run=*/*.parquet', {options})")
    listing = ", ".join(f"'{f}'" for f in latest)
    con.execute(f"CREATE OR REPLACE VIEW latest_predictions AS SELECT * FROM read_parquet([{listing}], {options})")
