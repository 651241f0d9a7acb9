"""Batch scoring: atomic, never overwritten, a `_LATEST` pointer that moves only after success."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from ltv.errors import RegistryError
from ltv.registry import LocalRegistry
from ltv.scoring import LATEST, connect, date_dir, latest_run, read_predictions, score

pytestmark = pytest.mark.slow
DAY = dt.date(2025, 4, 14)


def test_scores_the_population_with_the_champion(scoring_lake) -> None:
    config, lake, engine, registry = scoring_lake
    result = score(config, lake, engine, registry, DAY)
    features = engine.query(f"SELECT player_id FROM features WHERE cutoff = '{DAY}'")
    pred = read_predictions(lake, DAY)
    assert result.rows == len(features) == len(pred) and set(pred.player_id) == set(features.player_id)
    assert (pred.model_version == 1).all() and pred.model_group.eq("ltv-galaxy-raiders").all()
    assert {"p_payer", "ltv_pred", "ltv_expected", "p_churn", "offer_day", "p_day_1", "p_day_none"} <= set(pred)


def test_a_rerun_is_a_new_run_and_latest_moves_only_after_success(scoring_lake, monkeypatch) -> None:
    config, lake, engine, registry = scoring_lake
    first = score(config, lake, engine, registry, DAY)
    second = score(config, lake, engine, registry, DAY)
    assert first.run_id != second.run_id and first.path.exists() and second.path.exists()
    assert latest_run(lake, DAY) == second.run_id

    def crash(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(OSError, match="disk full"):
        score(config, lake, engine, registry, DAY)
    runs = sorted(p.name for p in date_dir(lake, DAY).iterdir())
    assert runs == sorted([LATEST, f"run={first.run_id}", f"run={second.run_id}"]), "no partial run is visible"
    assert latest_run(lake, DAY) == second.run_id


def test_predictions_are_queryable_as_duckdb_views(scoring_lake) -> None:
    config, lake, engine, registry = scoring_lake
    score(config, lake, engine, registry, DAY)
    last = score(config, lake, engine, registry, DAY)
    con = connect(lake.root)
    assert con.execute("SELECT COUNT(DISTINCT run) FROM predictions").fetchone()[0] == 2
    latest = con.execute("SELECT run, COUNT(*) FROM latest_predictions GROUP BY run").fetchall()
    assert latest == [(last.run_id, last.rows)]


def test_scoring_without_a_champion_is_a_named_error(scoring_lake, tmp_path) -> None:
    config, lake, engine, _ = scoring_lake
    empty = LocalRegistry(tmp_path / "empty", config.game.id)
    with pytest.raises(RegistryError, match="no Approved model"):
        score(config, lake, engine, empty, DAY)


def test_cli_sql_queries_the_latest_predictions(scoring_lake) -> None:
    from typer.testing import CliRunner

    from ltv.cli import app

    config, lake, engine, registry = scoring_lake
    result = score(config, lake, engine, registry, DAY)
    out = CliRunner().invoke(app, ["sql", "--game", "galaxy-raiders", "--lake", str(lake.root),
                                   "SELECT COUNT(*) AS n, MIN(run) AS run FROM latest_predictions"])
    assert out.exit_code == 0, out.output
    assert str(result.rows) in out.output and result.run_id in out.output


def test_the_loop_resolves_the_champion_once_on_a_scoring_day(scoring_lake, monkeypatch) -> None:
    from ltv.run import DailyLoop

    config, lake, _, _ = scoring_lake
    loop = DailyLoop(config, lake)
    resolved = []
    real = loop.registry.champion
    monkeypatch.setattr(loop.registry, "champion", lambda: resolved.append(1) or real())
    assert loop._score(DAY, {}, lambda kind, text: None) == "scored"
    assert len(resolved) == 1, "the scoring step passes the champion it checked on to score()"


def test_btyd_sits_beside_every_prediction_at_the_asked_horizon(scoring_lake, tiny_model) -> None:
    import numpy as np

    from ltv.models import btyd
    from ltv.scoring import BTYD_COLUMNS, predictions, prediction_columns

    config, lake, engine, registry = scoring_lake
    assert prediction_columns(config)[-2:] == list(BTYD_COLUMNS), "appended after the existing columns"
    score(config, lake, engine, registry, DAY)
    pred = read_predictions(lake, DAY)
    features = engine.query(f"SELECT * FROM features WHERE cutoff = '{DAY}'")
    model = tiny_model[0]
    fitted = btyd.Btyd.from_json(model.manifest["btyd"]["model"])
    direct = btyd.predict(fitted, features, config.horizons.ltv_days).add_prefix("ref_")
    both = pred.merge(direct.assign(player_id=features["player_id"]), on="player_id")
    bought = both["ref_btyd_expected_value"].notna()
    assert bought.any() and (~bought).any(), "buyers and players who never bought"
    np.testing.assert_allclose(both.loc[bought, "btyd_value"], both.loc[bought, "ref_btyd_expected_value"], rtol=1e-9)
    np.testing.assert_allclose(both.loc[bought, "btyd_p_alive"], both.loc[bought, "ref_btyd_p_alive"], rtol=1e-9)
    assert both.loc[~bought, ["btyd_value", "btyd_p_alive"]].isna().all().all(), "NULL, not 0, for who never bought"
    # a model trained at a shorter horizon puts BTYD at the horizon the game asked for
    longer = dict(model.manifest, horizons=dict(model.manifest["horizons"], asked_ltv_days=4 * config.horizons.ltv_days))
    asked = predictions(type(model)(model.path, longer, model.predictors), features, 1)
    at_asked = btyd.predict(fitted, features, 4 * config.horizons.ltv_days)["btyd_expected_value"]
    np.testing.assert_allclose(asked["btyd_value"].dropna(), at_asked.dropna(), rtol=1e-9)
    assert asked["btyd_value"].sum() > 1.5 * direct["ref_btyd_expected_value"].sum(), "four times the horizon"
