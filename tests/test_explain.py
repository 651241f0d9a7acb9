"""Per-player drivers: exact tree contributions, weighted by the ensemble, attributed in currency."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ltv import explain
from ltv.cli import app
from ltv.scoring import explain_player, predictions, read_predictions, score
from ltv.simulate.truth import tied_to_spend

pytestmark = pytest.mark.slow
DAY = dt.date(2025, 4, 14)
FAMILIES = {"GBM": {"num_boost_round": 30}, "CAT": {"iterations": 30}, "XGB": {"n_estimators": 30}}


@pytest.fixture(scope="module")
def ensemble(tiny_game, tmp_path_factory):
    """A model whose value stages are weighted ensembles of LightGBM, CatBoost and XGBoost."""
    from ltv import datasets
    from ltv.models import train

    config, lake, engine = tiny_game
    spec = datasets.version_specs(config)[0]
    datasets.build_dataset(engine, config, lake, spec)
    splits = datasets.load_dataset(lake, spec.name)
    budget = config.model.model_copy(update={"hyperparameters": FAMILIES, "fit_weighted_ensemble": True})
    return train(config, splits, tmp_path_factory.mktemp("ens") / "m", budget=budget), splits


def _raw(member_model, x):
    """A tree model's own raw output (log-odds / log1p value), from its predict API."""
    kind = type(member_model).__name__
    if kind == "LGBModel":
        return member_model.model.predict(x, raw_score=True)
    if kind == "CatBoostModel":
        return member_model.model.predict(x, prediction_type="RawFormulaVal")
    return member_model.model.predict(x, output_margin=True).astype(float)


@pytest.mark.parametrize("family", ["GBM", "CAT", "XGB"])
def test_each_tree_models_contributions_sum_to_its_prediction(ensemble, family, tmp_path) -> None:
    """Each family fitted alone on both value-stage problems (a weighted ensemble may give one of
    them weight 0, and the deployed artifact then drops it)."""
    from ltv.config import ModelBudget
    from ltv.models import automl

    model, splits = ensemble
    train = model.inputs(splits["train"]).assign(payer=splits["train"]["payer"].to_numpy(),
                                                 value=np.log1p(splits["train"]["ltv"].to_numpy()))
    rows = model.inputs(splits["test"].sample(300, random_state=0))
    budget = ModelBudget(hyperparameters={family: FAMILIES[family]}, fit_weighted_ensemble=False, num_cpus=1,
                         time_limit_s=60)
    for label, problem, metric, data in (("payer", "binary", "log_loss", train.drop(columns="value")),
                                          ("value", "regression", "root_mean_squared_error",
                                           train[train["payer"] == 1].drop(columns="payer"))):
        predictor = automl.fit(data, label, problem, metric, budget, tmp_path / label)
        members = explain.stage_members(predictor, rows, model.features)
        assert len(members) == 1 and members[0].weight == 1.0
        fitted = predictor._trainer.load_model(members[0].name)
        own = _raw(fitted, fitted.preprocess(predictor.transform_features(rows)))
        m = members[0]
        gap = np.abs(m.base + m.phi.sum(axis=1) - own)
        # LightGBM and CatBoost explain in float64; XGBoost predicts and explains in float32
        limit = 1e-6 * np.maximum(1, np.abs(own)) if m.kind == "XGBoostModel" else 1e-6
        assert (gap <= limit).all(), (label, m.name, gap.max())
        assert m.kind == {"GBM": "LGBModel", "CAT": "CatBoostModel", "XGB": "XGBoostModel"}[family]


def test_the_ensemble_weights_its_members(ensemble) -> None:
    model, splits = ensemble
    x = model.inputs(splits["test"].sample(300, random_state=0))
    stages = {stage: explain.stage_members(model.predictors[stage], x, model.features) for stage in explain.STAGES}
    assert all(abs(sum(m.weight for m in members) - 1) < 1e-9 for members in stages.values())
    assert max(len(members) for members in stages.values()) >= 2, "an ensemble of several tree models"
    p = sum(m.weight / (1 + np.exp(-m.raw)) for m in stages["payer"])
    assert np.abs(p - model.predictors["payer"].predict_proba(x, as_multiclass=True)[1].to_numpy()).max() < 1e-6
    f = sum(m.weight * m.raw for m in stages["value"])
    own = model.predictors["value"].predict(x).to_numpy(float)
    assert np.abs(f - own).max() <= 1e-6 * max(1.0, np.abs(own).max())


@pytest.mark.parametrize("log_target", [True, False])
def test_the_decomposition_is_exact_for_any_ensemble(monkeypatch, log_target) -> None:
    """The attribution's algebra on random members: three payer models averaged in probability,
    two value models in raw space, contributions of both signs, some players clipped at 0."""
    rng = np.random.default_rng(0)
    n, k = 400, 7

    def fake(weights, scale):
        return [explain.Member(f"m{i}", "LGBModel", w, float(rng.normal()), rng.normal(0, scale, (n, k)))
                for i, w in enumerate(weights)]

    stages = {"payer": fake([0.5, 0.3, 0.2], 1.0), "value": fake([0.7, 0.3], 0.6 if log_target else 3.0)}
    monkeypatch.setattr(explain, "stage_members", lambda predictor, x, features: stages[predictor])
    dec = explain.decompose({"payer": "payer", "value": "value"}, pd.DataFrame(index=range(n)), list("abcdefg"),
                            log_target=log_target, smearing=1.3)
    p = sum(m.weight / (1 + np.exp(-m.raw)) for m in stages["payer"])
    f = sum(m.weight * m.raw for m in stages["value"])
    v = np.maximum(1.3 * np.expm1(f), 0) if log_target else np.maximum(f, 0)
    assert (v == 0).any() and (v > 0).any()
    assert np.abs(dec.base + dec.contributions.sum(axis=1) - p * v).max() < 1e-9
    assert explain.gap(dec, p * v) < 1e-12


def test_the_decomposition_reproduces_ltv_expected(ensemble) -> None:
    model, splits = ensemble
    rows = splits["test"].sample(300, random_state=1)
    scored = model.predict(rows)
    dec = model.explain(rows)
    rebuilt = dec.base + dec.contributions.sum(axis=1)
    assert np.abs(rebuilt - dec.ltv_expected).max() <= 1e-9 * max(1.0, dec.ltv_expected.max())  # exact by algebra
    assert np.abs(dec.p_payer - scored["p_payer"]).max() < 1e-6
    assert explain.gap(dec, scored["ltv_expected"].to_numpy()) < 1e-6
    # signs survive the links: a feature that raises both stages' raw outputs raises the value
    payer_phi = sum(m.weight * m.phi for m in dec.payer)
    value_phi = sum(m.weight * m.phi for m in dec.value_members)
    both_up = (payer_phi > 0) & (value_phi > 0)
    assert both_up.any() and (dec.contributions[both_up] > 0).all()


def test_a_broken_reading_is_refused(ensemble) -> None:
    model, splits = ensemble
    rows = splits["test"].head(50)
    dec = model.explain(rows)
    wrong = model.predict(rows)["ltv_expected"].to_numpy() * 1.01 + 0.5
    with pytest.raises(Exception, match="do not add up"):
        explain.check(dec, wrong)


def test_predictions_carry_drivers_that_add_up_row_by_row(ensemble) -> None:
    model, splits = ensemble
    test = splits["test"]
    pred = predictions(model, test, 1)
    assert [c for c, _ in explain.columns()] == [c for c in pred.columns if c.startswith("driver_")]
    spec = model.manifest["explanations"]
    explained = pred["driver_base"].notna()
    top = pred["ltv_expected"] >= spec["top_threshold"]
    assert explained[top].all() and explained.sum() < len(pred), "the subset: the top share plus a sample"
    values = [f"driver_{d}_{k}_value" for d in ("up", "down") for k in (1, 2, 3)]
    e = pred[explained]
    total = e["driver_base"] + e[values].fillna(0).sum(axis=1) + e["driver_rest"]
    assert (np.abs(total - e["ltv_expected"]) <= 1e-6 * np.maximum(1, e["ltv_expected"])).all()
    assert (e["driver_up_1_value"].dropna() > 0).all() and (e["driver_down_1_value"].dropna() < 0).all()
    assert (e["driver_up_1_value"].fillna(0) >= e["driver_up_2_value"].fillna(0)).all()
    assert set(e["driver_up_1"].dropna()) <= set(model.features)
    assert pred.loc[~explained, [c for c, _ in explain.columns()]].isna().all().all()


def test_top_decile_drivers_name_spend_features_more_often_than_chance(ensemble) -> None:
    model, splits = ensemble
    test = splits["test"]
    scored = model.predict(test)
    top = test[scored["ltv_expected"].to_numpy() >= np.quantile(scored["ltv_expected"], 0.9)]
    drivers = explain.drivers(model.explain(top))
    named = drivers[[f"driver_up_{k}" for k in (1, 2, 3)]].stack().dropna()
    share = float(np.mean([tied_to_spend(f) for f in named]))
    chance = float(np.mean([tied_to_spend(f) for f in model.features]))
    assert share > chance + 0.1, (share, chance)


def test_selection_is_stable_and_batch_independent() -> None:
    spec = {"players": "subset", "top_share": 0.1, "sample_share": 0.2, "top_threshold": 5.0}
    ids = pd.Series([f"p{i}" for i in range(2000)])
    value = np.linspace(0, 10, 2000)
    chosen = explain.selected(spec, value, ids)
    assert chosen[value >= 5].all() and 0.1 < chosen[value < 5].mean() < 0.3
    half = explain.selected(spec, value[::2], ids[::2].reset_index(drop=True))
    assert (half == chosen[::2]).all(), "a player's selection does not depend on the other rows"
    assert explain.selected({**spec, "players": "all"}, value, ids).all()
    assert not explain.selected(None, value, ids).any(), "an artifact without settings explains nobody"


def test_a_model_without_exact_contributions_is_unexplainable() -> None:
    class RFModel:
        name = "RandomForest"

    class Trainer:
        def load_model(self, name):
            return RFModel()

    class Predictor:
        _trainer, model_best = Trainer(), "RandomForest"

    with pytest.raises(explain.Unexplainable, match="no exact"):
        explain.members(Predictor())


def test_explain_prints_one_players_story(scoring_lake, tmp_path) -> None:
    config, lake, engine, registry = scoring_lake
    score(config, lake, engine, registry, DAY)
    pred = read_predictions(lake, DAY)
    player = str(pred.sort_values("ltv_expected").iloc[-1]["player_id"])
    story = explain_player(config, lake, engine, registry, DAY, player)
    # AutoGluon returns float32 probabilities and values: the published figure is within 1e-6 relative
    assert story.base + story.contributions["contribution"].sum() == pytest.approx(story.scored["ltv_expected"],
                                                                                   rel=1e-6, abs=1e-6)
    row = pred[pred["player_id"].astype(str) == player].iloc[0]
    assert story.contributions["feature"].iloc[0] in {row["driver_up_1"], row["driver_down_1"]}
    path = tmp_path / "game.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["explain", "--game", str(path), "--lake", str(lake.root), "--player", player,
                                      "--date", str(DAY)])
    assert result.exit_code == 0, result.output
    assert player in result.output and story.contributions["feature"].iloc[0] in result.output


def test_the_catalog_and_the_files_agree_on_the_driver_columns(ensemble, tmp_path) -> None:
    """Athena reads the files with the catalog's types: the driver columns are strings and
    doubles in both, also when no player of a batch is explained (all null)."""
    import pyarrow.parquet as pq

    from ltv.athena import arrow_schema, table_specs
    from conftest import loop_config

    model, splits = ensemble
    spec = table_specs(loop_config())["predictions"]
    assert ("driver_up_1", "string") in spec.columns and ("driver_rest", "double") in spec.columns
    expected = arrow_schema(spec)
    for name, rows in (("some", splits["test"]), ("none", splits["test"].head(20))):
        pred = predictions(model, rows, 1)
        if name == "none":
            pred = pd.concat([pred.drop(columns=[c for c, _ in explain.columns()]), explain.empty(pred.index)], axis=1)
        pred.to_parquet(tmp_path / f"{name}.parquet", index=False)
        schema = pq.read_schema(tmp_path / f"{name}.parquet")
        for column, _ in explain.columns():
            assert schema.field(column).type == expected.field(column).type, (name, column)
