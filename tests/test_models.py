"""Models: fit/predict on tiny data, the purchase-day distribution, the relocatable artifact,
baselines, evaluation against oracle and baselines, and the HTML report."""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import loop_config
from ltv import report
from ltv.errors import ArtifactError, NoPayersError
from ltv.evaluate import evaluate
from ltv.models import LTVModel, baselines, train

pytestmark = pytest.mark.slow


def test_the_payer_threshold_maximises_f1_on_the_validation_period(tiny_model) -> None:
    """Stage 1's threshold, checked against scikit-learn's F1 at every distinct score: no other
    threshold does better on validation, and the hurdle prediction applies exactly it."""
    from sklearn.metrics import f1_score

    model, splits, _ = tiny_model
    val = model.predict(splits["validation"])
    actual = splits["validation"]["payer"].to_numpy()
    best = max(f1_score(actual, val.p_payer >= c) for c in np.unique(val.p_payer))
    assert f1_score(actual, val.p_payer >= model.manifest["payer_threshold"]) == pytest.approx(best)
    test = model.predict(splits["test"])
    assert (test.ltv_pred[test.p_payer < model.manifest["payer_threshold"]] == 0).all()


def test_stage_two_values_are_calibrated_on_actual_payers_thanks_to_smearing(tiny_model) -> None:
    """Stage 2 learns log1p(value): back-transforming without Duan's smearing factor predicts the
    geometric rather than the arithmetic mean, i.e. too little. On the payers of the held-out
    period, the smeared values must be closer to what they actually spent than the raw ones."""
    model, splits, _ = tiny_model
    test = splits["test"]
    payers = test["ltv"] > 0
    value = model.predict(test[payers]).value_if_payer.to_numpy()
    actual = test.loc[payers, "ltv"].mean()
    smearing = model.manifest["smearing"]
    assert smearing > 1.05, "log-scale residuals have spread: the correction is not negligible"
    assert abs(value.mean() / actual - 1) < abs(value.mean() / smearing / actual - 1)
    assert abs(value.mean() / actual - 1) < 0.35


def test_offer_day_minimises_the_expected_absolute_error_of_the_day_distribution(tiny_model) -> None:
    """King's offer day is the median of the conditional day distribution; checked by brute
    force over every day, not by recomputing the CDF: no other day has a smaller expected
    absolute error under the model's own distribution."""
    model, splits, _ = tiny_model
    pred = model.predict(splits["test"].head(400))
    p = pred[[f"p_day_{d}" for d in range(1, model.purchase_days + 1)]].to_numpy()
    conditional = p / p.sum(axis=1, keepdims=True)
    days = np.arange(1, model.purchase_days + 1)
    expected_error = np.abs(days[None, :, None] - days[None, None, :])  # (1, offer, actual)
    risk = (expected_error * conditional[:, None, :]).sum(axis=2)        # (rows, offer)
    chosen = risk[np.arange(len(pred)), pred.offer_day.to_numpy() - 1]
    assert (chosen <= risk.min(axis=1) + 1e-9).all()


def test_the_purchase_day_distribution_is_calibrated_on_the_holdout(tiny_model) -> None:
    """P(a purchase within N days) against the realised share, and the predicted day histogram
    of buyers against the realised one (held-out period, before the content update)."""
    model, splits, _ = tiny_model
    test = splits["test"]
    pred = model.predict(test)
    bought = test["next_purchase_day"].to_numpy() > 0
    assert abs((1 - pred.p_day_none).mean() - bought.mean()) < 0.02
    p = pred[[f"p_day_{d}" for d in range(1, model.purchase_days + 1)]].to_numpy()[bought]
    predicted = (p / p.sum(axis=1, keepdims=True)).mean(axis=0)
    realised = np.bincount(test["next_purchase_day"].to_numpy()[bought], minlength=model.purchase_days + 1)[1:]
    realised = realised / realised.sum()
    # ~360 buyers over 14 days: sampling noise alone gives an L1 distance of ~0.16
    uniform = np.full(model.purchase_days, 1 / model.purchase_days)
    assert np.abs(predicted - realised).sum() < min(0.35, np.abs(uniform - realised).sum())


def test_the_model_beats_the_baselines_on_the_holdout(tiny_model, tiny_game) -> None:
    model, splits, _ = tiny_model
    ev = evaluate(model, splits, tiny_game[1])
    m, b = ev.metrics["model"], ev.metrics["baselines"]
    assert m["normalized_gini"] > b["recent_revenue"]["normalized_gini"]
    assert m["payer_f1"] > b["payer_mean"]["payer_f1"]
    assert m["purchase_day_mae"] < b["popularity"]["purchase_day_mae"]
    assert ev.metrics["oracle"]["normalized_gini"] >= m["normalized_gini"] - 0.02, "the oracle is (nearly) an upper bound"
    assert set(ev.metrics["ratios"]) == {"model_vs_oracle", "model_vs_popularity", "model_vs_segment_median",
                                         "model_vs_recent_revenue", "model_vs_payer_mean", "model_vs_past_spend",
                                         "model_vs_btyd"}
    # each ratio is the model's metric over that reference's, on the same test rows
    for name, reference in [*b.items(), ("oracle", ev.metrics["oracle"])]:
        assert reference.get("players", m["players"]) == m["players"], name
        ratios = ev.metrics["ratios"][f"model_vs_{name}"]
        for key in ("normalized_gini", "payer_f1", "purchase_day_mae"):
            if reference.get(key) and np.isfinite(reference[key]):
                assert ratios[key] == pytest.approx(m[key] / reference[key]), (name, key)
    assert ev.metrics["ratios"]["model_vs_btyd"]["normalized_gini"] is not None
    json.dumps(ev.metrics)  # the evaluation contract is plain JSON


def test_artifact_is_small_relocatable_and_checksummed(tiny_model, tmp_path: Path) -> None:
    model, splits, _ = tiny_model
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(model.path, moved)
    again = LTVModel.load(moved)
    test = splits["test"].head(500)
    pd.testing.assert_frame_equal(model.predict(test), again.predict(test))
    assert model.manifest["size_bytes"] < 20e6
    assert set(model.manifest["stages"]) == {"payer", "value", "purchase_soon", "purchase_day", "churn"}
    victim = next(p for p in sorted(moved.rglob("*.pkl")))
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(ArtifactError, match="corrupt"):
        LTVModel.load(moved)
    shutil.rmtree(moved / "churn")
    with pytest.raises(ArtifactError, match="missing"):
        LTVModel.load(moved)
    with pytest.raises(ArtifactError, match="not a model artifact"):
        LTVModel.load(tmp_path)


def test_missing_feature_columns_are_a_clear_error(tiny_model) -> None:
    model, splits, _ = tiny_model
    with pytest.raises(ArtifactError, match="revenue_total"):
        model.predict(splits["test"].drop(columns=["revenue_total"]))


def test_a_game_without_payers_is_a_named_error(tiny_model, tmp_path: Path) -> None:
    _, splits, _ = tiny_model
    no_payers = {k: v.assign(ltv=0.0, payer=0, next_purchase_day=0) for k, v in splits.items()}
    with pytest.raises(NoPayersError, match="0 payer"):
        train(loop_config(), no_payers, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_popularity_baseline_segments_and_modes() -> None:
    config = loop_config()
    train_df = pd.DataFrame({
        "purchase_days_total": [0, 0, 1, 1, 4, 4, 10, 10, 10],
        "days_since_install": [10, 10, 100, 100, 40, 40, 20, 20, 20],
        "next_purchase_day": [0, 5, 9, 9, 3, 3, 1, 1, 2],
        "ltv": [0, 1, 2, 2, 5, 5, 9, 9, 9.0],
        **{f"revenue_w{i}": [0.0] * 9 for i in range(1, 5)},
    })
    params = baselines.fit(train_df, config)
    assert params["popularity"]["modes"] == {"0": 9, "1": 3, "2": 1}
    pred = baselines.predict(params, train_df)["popularity"]
    assert pred.offer_day.tolist() == [9, 9, 9, 9, 3, 3, 1, 1, 1]
    pm = baselines.predict(params, train_df)["payer_mean"]
    assert pm.ltv_pred.iloc[0] == pytest.approx(0.5) and pm.ltv_pred.iloc[-1] == pytest.approx(41 / 7)


def test_recent_revenue_baseline_scales_to_the_horizon() -> None:
    config = loop_config()  # 4 steps of 7 days, 14-day horizon
    frame = pd.DataFrame({"purchase_days_total": [1], "days_since_install": [30], "next_purchase_day": [0],
                          "ltv": [0.0], "revenue_w1": [10.0], "revenue_w2": [0.0], "revenue_w3": [18.0], "revenue_w4": [0.0]})
    params = baselines.fit(frame, config)
    assert baselines.predict(params, frame)["recent_revenue"].ltv_pred.iloc[0] == pytest.approx(28 * 14 / 28)


def test_report_renders_every_section_with_plots(tiny_model, tiny_game) -> None:
    model, splits, _ = tiny_model
    ev = evaluate(model, splits, tiny_game[1])
    drift = pd.DataFrame([{"version": "v1", "stale_normalized_gini": 0.9, "retrained_normalized_gini": None,
                           "oracle_normalized_gini": 0.95, "stale_minmax": 0.9, "stale_payer_f1": 0.6}])
    page = report.render(ev, model.manifest, title="tiny", drift=drift)
    for section in report.SECTIONS:
        assert f"id='{section.replace(' ', '-')}'" in page
    assert page.count("<svg") == 6, "gain, deciles, calibration, CDFs, segment MAE, drift"
    assert not re.search(r"""(src|href)=["']?https?://""", page) and "<script" not in page, \
        "self-contained: nothing loaded from elsewhere"
    assert "model / oracle" in page and "purchase-day MAE" in page
    gini = ev.metrics["model"]["normalized_gini"] / ev.metrics["baselines"]["btyd"]["normalized_gini"]
    assert "Gain over BTYD" in page and f"normalized Gini <span class={'good' if gini >= 1 else 'bad'}>{gini:.3f}" in page


def test_drift_table_shows_the_stale_model_decaying(tiny_game, tiny_model, tmp_path: Path) -> None:
    """Kakao's experiment on the tiny game (a content update on 2025-03-31 converts non-payers
    and changes spending): relative to the oracle, the model trained on v1 loses ranking and
    payer quality on v2's post-update test period; the table carries the retrained model's row."""
    from ltv import datasets
    from ltv.evaluate import drift_table

    config, lake, engine = tiny_game
    stale, _, _ = tiny_model
    specs = datasets.version_specs(config)
    loaded = {}
    for spec in specs:
        datasets.build_dataset(engine, config, lake, spec)
        loaded[spec.name] = datasets.load_dataset(lake, spec.name)
    fresh = train(config, loaded[specs[-1].name], tmp_path / "fresh")
    table = drift_table(stale, fresh, loaded, lake).set_index("version")
    before, after = table.iloc[0], table.iloc[1]
    for key in ("normalized_gini", "payer_f1"):
        assert after[f"stale_{key}"] / after[f"oracle_{key}"] < before[f"stale_{key}"] / before[f"oracle_{key}"] - 0.02
    assert np.isfinite(table.iloc[-1][["retrained_normalized_gini", "retrained_minmax", "retrained_minmax_payers",
                                       "retrained_payer_f1"]].astype(float)).all()
    assert (table["stale_minmax_payers"] < table["stale_minmax"]).all(), "without the non-spenders' 0/0 = 1"
    assert table.iloc[:-1]["retrained_normalized_gini"].isna().all()


def test_drift_experiment_uses_the_complete_versions_and_every_later_report_shows_it(scoring_lake) -> None:
    """Versions whose labels reach past the logs are skipped and named; the table is recorded and
    an evaluation report written afterwards carries it."""
    from ltv import datasets, etl
    from ltv.training import drift_experiment, latest_drift, write_evaluation

    config, lake, engine, registry = scoring_lake
    config = config.model_copy(update={"datasets": config.datasets.model_copy(update={"count": 5})})
    specs = datasets.version_specs(config)
    last_day = dt.date.fromisoformat(max(engine.partitions("player_day")))
    complete = [s.name for s in specs if max(s.test) + dt.timedelta(days=etl.label_horizon(config) - 1) <= last_day]
    assert 2 <= len(complete) < len(specs), "the case needs both complete and incomplete versions"

    result = drift_experiment(config, lake, engine)
    assert list(result.table["version"]) == complete
    assert (result.stale, result.retrained) == (complete[0], complete[-1])
    assert set(result.skipped) == {s.name for s in specs} - set(complete)
    assert all("needs player_day" in why for why in result.skipped.values())
    assert latest_drift(lake)["version"].tolist() == complete

    target, _ = write_evaluation(config, lake, engine, registry.load(registry.champion().version), "champion",
                                 specs[0])
    page = (target / "report.html").read_text()
    assert "No drift table yet" not in page and complete[-1] in page
    assert json.loads((target / "metrics.json").read_text())["model"]["players"] > 0


def test_autogluons_environment_metadata_is_computed_once_and_saved_unchanged() -> None:
    """ltv.models.automl caches what TabularPredictor records of the environment at each save and
    load (the installed packages): the same record as AutoGluon's own, and no caller's change to
    its copy reaches another's."""
    from autogluon.common.utils.utils import get_autogluon_metadata
    from autogluon.tabular.predictor import predictor as module

    from ltv.models import automl

    automl._tabular_predictor()
    first = module.get_autogluon_metadata()
    assert first == get_autogluon_metadata() and first["packages"]
    first["packages"].clear()
    assert module.get_autogluon_metadata() == get_autogluon_metadata()
