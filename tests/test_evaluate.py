"""ltv.evaluate on constructed rows and a stand-in model (fast: no training, no engine). What the
report and the promotion rule read is checked against the rows themselves: the model's,
each baseline's and the oracle's metrics on the same test rows, the oracle's thresholds chosen
on validation, in-sample test periods refused or labelled, the per-segment day errors, the drift
table and the explanations built from the model's own numbers."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import loop_config
from ltv import evaluate as ev
from ltv import metrics
from ltv.errors import InSampleError
from ltv.explain import Unexplainable
from ltv.lake import SUCCESS, Lake
from ltv.models import baselines
from ltv.simulate import TRUTH_DEFINITION

DAYS = 7  # the stand-in model's purchase-day horizon
TEST_CUTOFFS, VAL_CUTOFFS = ["2025-03-17", "2025-03-10"], ["2025-03-03"]  # test cutoffs out of order on purpose


def rows(cutoffs: list[str], n: int = 30, seed: int = 0) -> pd.DataFrame:
    """Feature and label rows: a `score` that ranks value well but not perfectly, and purchase-day
    labels with a few players in each frequency segment."""
    rng = np.random.default_rng(seed)
    parts = []
    for c in cutoffs:
        score = rng.gamma(1.0, 10.0, n)
        payer = rng.random(n) < np.clip(score / 25, 0.05, 0.95)
        ltv = np.where(payer, score * rng.lognormal(0, 0.5, n), 0.0)
        day = np.where(payer, rng.integers(1, DAYS + 1, n), 0)
        parts.append(pd.DataFrame({
            "player_id": [f"p{i:03d}" for i in range(n)], "cutoff": c, "score": score, "ltv": ltv,
            "payer": payer.astype(int), "next_purchase_day": day, "churned": (rng.random(n) < 0.3).astype(int),
            "purchase_days_total": rng.integers(0, 6, n), "days_since_install": rng.integers(3, 80, n),
            "revenue_total": score * 2, **{f"revenue_w{i}": rng.gamma(1.0, 2.0, n) for i in range(1, 5)}}))
    return pd.concat(parts, ignore_index=True)


def splits() -> dict[str, pd.DataFrame]:
    return {"train": rows(["2025-02-17"], seed=1), "validation": rows(VAL_CUTOFFS, seed=2),
            "test": rows(TEST_CUTOFFS, seed=3)}


class StandIn:
    """A model whose predictions are fixed functions of `score`: p(payer) a logistic of it, the
    value if a payer the score itself, a day distribution peaking at score mod 7."""

    features = ["score", "days_since_install"]

    def __init__(self, seen_until: str | None = "2025-03-10", *, scale: float = 1.0, train: pd.DataFrame | None = None,
                 explainable: bool = True):
        self.scale, self.explainable, self.path = scale, explainable, Path("stand-in")
        config = loop_config(horizons={"ltv_days": 14, "purchase_days": DAYS})
        self.manifest = {"game": "galaxy-raiders", "dataset": {"name": "v1-test"},
                         "horizons": {"ltv_days": 14, "purchase_days": DAYS},
                         "baselines": baselines.fit(splits()["train"] if train is None else train, config)}
        if seen_until:
            self.manifest["trained_on"] = {"seen_until": seen_until}

    @property
    def purchase_days(self) -> int:
        return self.manifest["horizons"]["purchase_days"]

    def inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        return features[self.features].reset_index(drop=True)

    def value_stages(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        score = x["score"].to_numpy(float)
        return 1 / (1 + np.exp(-(score - 10) / 5)), score * self.scale

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        p, value = self.value_stages(self.inputs(features))
        peak = (features["score"].to_numpy() % DAYS).astype(int)
        p_days = np.full((len(features), DAYS), 0.02)
        p_days[np.arange(len(features)), peak] = 0.5
        out = pd.DataFrame({"player_id": features["player_id"].to_numpy(), "cutoff": features["cutoff"].to_numpy(),
                            "p_payer": p, "value_if_payer": value, "payer_pred": (p >= 0.5).astype(int),
                            "ltv_pred": np.where(p >= 0.5, value, 0.0), "ltv_expected": p * value,
                            "p_churn": 1 - p, "churn_pred": (p < 0.5).astype(int),
                            "offer_day": metrics.offer_day(p_days), "likely_day": metrics.likely_day(p_days)})
        return out.iloc[::-1]  # the join must match on (player, cutoff), not on the order

    def explain(self, features: pd.DataFrame) -> SimpleNamespace:
        if not self.explainable:
            raise Unexplainable("the value stage has no exact contributions")
        x = self.inputs(features)
        each = {"score": lambda v: v - 10.0, "days_since_install": lambda v: -0.1 * v}
        contributions = np.column_stack([each[f](x[f].to_numpy(float)) for f in self.features])
        value = 5.0 + contributions.sum(axis=1)
        return SimpleNamespace(features=self.features, contributions=contributions, base=np.full(len(x), 5.0),
                               ltv_expected=value)


def expected_frame(model: StandIn, test: pd.DataFrame) -> pd.DataFrame:
    """The test rows' actuals beside the model's predictions, in the test rows' order."""
    pred = model.predict(test).sort_index()
    return pd.concat([ev.actuals(test), pred.drop(columns=["player_id", "cutoff"]).reset_index(drop=True)], axis=1)


def same(reported: dict, computed: dict) -> None:
    assert reported.keys() == computed.keys()
    for k, v in computed.items():
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            assert reported[k] is None, k
        else:
            assert reported[k] == pytest.approx(v), k


def test_the_reported_metrics_are_those_of_the_test_rows_for_the_model_and_every_baseline() -> None:
    data, model = splits(), StandIn()
    test = data["test"]
    result = ev.evaluate(model, data).metrics
    assert (result["game"], result["evaluated_on"], result["dataset"]) == ("galaxy-raiders", "test", "v1-test")
    assert result["cutoffs"] == sorted(TEST_CUTOFFS) and result["rows"] == len(test) == 60
    assert result["in_sample"] is None
    frame = expected_frame(model, test)
    same(result["model"], metrics.flat_metrics(frame, DAYS))
    assert result["model"]["purchase_day_mae"] == pytest.approx(
        np.abs(frame["offer_day"] - frame["next_purchase_day"])[frame["next_purchase_day"] > 0].mean())
    predicted = baselines.predict(model.manifest["baselines"], test)
    assert set(result["baselines"]) == set(predicted) >= {"popularity", "segment_median", "payer_mean", "past_spend"}
    for name, pred in predicted.items():
        same(result["baselines"][name], metrics.flat_metrics(pd.concat([ev.actuals(test), pred], axis=1), DAYS))
    for name, block in result["baselines"].items():
        ratios = result["ratios"][f"model_vs_{name}"]
        assert set(ratios) == set(ev.RATIO_METRICS)
        for k in ev.RATIO_METRICS:
            m, b = result["model"].get(k), block.get(k)
            assert ratios[k] == (None if m is None or not b else pytest.approx(m / b)), (name, k)
    assert "model_vs_oracle" not in result["ratios"] and result["oracle"] is None
    assert result["oracle_note"].startswith("no lake given")
    assert result["strongest_baseline"] == ev.strongest_baselines(result["model"], result["baselines"])
    assert result["deciles"] == {"model": metrics.decile_table(frame["ltv"], frame["ltv_expected"]).to_dict("records")}
    json.dumps(result, allow_nan=False)  # the metrics.json payload: no NaN, no numpy values


def test_the_day_error_per_segment_counts_only_the_buyers_of_each_segment() -> None:
    data, model = splits(), StandIn()
    test = data["test"]
    evaluation = ev.evaluate(model, data)
    params = model.manifest["baselines"]["popularity"]
    seg = baselines.segments(test, params["cuts"])
    frame = expected_frame(model, test)
    predicted = baselines.predict(model.manifest["baselines"], test)
    expected = []
    for s, label in enumerate(("low / none", "medium", "high")):
        m = (seg == s) & (test["next_purchase_day"].to_numpy() > 0)
        if not m.any():
            continue
        error = lambda offer: float(np.abs(np.asarray(offer)[m] - test["next_purchase_day"].to_numpy()[m]).mean())  # noqa: E731
        expected.append({"segment": label, "players": int(m.sum()), "model_mae": error(frame["offer_day"]),
                         "popularity_mae": error(predicted["popularity"]["offer_day"]),
                         "segment_median_mae": error(predicted["segment_median"]["offer_day"])})
    assert len(expected) == 3, "every segment has buyers here"
    assert evaluation.metrics["purchase_day_by_segment"] == [pytest.approx(row) for row in expected]
    assert list(evaluation.baselines) == list(predicted)
    no_high_buyers = test.assign(next_purchase_day=np.where(seg == 2, 0, test["next_purchase_day"]))
    rows_left = ev._day_mae_by_segment(no_high_buyers, frame.assign(next_purchase_day=no_high_buyers["next_purchase_day"]),
                                       evaluation.baselines, model)
    assert [r["segment"] for r in rows_left] == ["low / none", "medium"], "a segment without buyers has no row"
    medium_buyers = (seg == 1) & (test["next_purchase_day"].to_numpy() > 0)
    one = test.assign(next_purchase_day=np.where(medium_buyers & (np.cumsum(medium_buyers) > 1), 0,
                                                 test["next_purchase_day"]))
    rows_one = ev._day_mae_by_segment(one, frame.assign(next_purchase_day=one["next_purchase_day"]), evaluation.baselines,
                                      model)
    assert [r["players"] for r in rows_one if r["segment"] == "medium"] == [1]
    assert evaluation.frame["ltv_expected"].tolist() == pytest.approx(frame["ltv_expected"].tolist())


def test_in_sample_test_cutoffs_are_refused_or_labelled_when_asked_for() -> None:
    data = splits()
    assert ev.evaluate(StandIn("2025-03-10"), data).metrics["in_sample"] is None, "a test cutoff on seen_until is unseen"
    with pytest.raises(InSampleError) as refused:
        ev.evaluate(StandIn("2025-03-11"), data)
    message = str(refused.value)
    assert "galaxy-raiders/v1-test was trained on data up to 2025-03-10" in message
    assert "test cutoffs 2025-03-10..2025-03-10 lie in that period" in message
    assert "starts on or after 2025-03-11" in message and "--allow-in-sample" in message
    labelled = ev.evaluate(StandIn("2025-03-18"), data, allow_in_sample=True).metrics
    assert labelled["in_sample"] == {"cutoffs": ["2025-03-10", "2025-03-17"], "seen_until": "2025-03-18"}
    with pytest.raises(InSampleError, match="an unknown period .an artifact without lineage.*its training period"):
        ev.evaluate(StandIn(None), data)
    assert ev.require_out_of_sample(StandIn(None), ["2025-03-10"], allow_in_sample=True) == ["2025-03-10"]


def test_every_test_row_needs_its_prediction_and_duplicates_count_once() -> None:
    test = splits()["test"]
    predictions = StandIn().predict(test)
    joined = ev._join(test, pd.concat([predictions, predictions.iloc[:5]]))
    assert len(joined) == len(test) and joined["player_id"].tolist() == test["player_id"].tolist()
    with pytest.raises(ValueError, match="^2 rows have no prediction$"):
        ev._join(test, predictions.iloc[2:])


def test_a_tie_with_the_strongest_baseline_is_not_a_win() -> None:
    baseline = {"b": {"normalized_gini": 0.5, "purchase_day_mae": 2.0}}
    tie = ev.strongest_baselines({"normalized_gini": 0.5, "purchase_day_mae": 2.0}, baseline)
    assert tie["normalized_gini"]["model_wins"] is False and tie["purchase_day_mae"]["model_wins"] is False


def test_ratios_and_clean_values_are_none_where_a_number_would_mislead() -> None:
    assert ev._ratio(1.0, 4.0) == 0.25
    for a, b in ((None, 1.0), (1.0, None), (1.0, 0), (np.nan, 1.0), (1.0, np.inf), (np.inf, 2.0)):
        assert ev._ratio(a, b) is None, (a, b)
    assert ev.clean({"a": np.nan, "b": np.inf, "c": 1.5, "d": 3, "e": None}) == {"a": None, "b": None, "c": 1.5,
                                                                              "d": 3, "e": None}


def write_truth(lake: Lake, frame: pd.DataFrame, horizons: dict[str, int], complete: bool = True) -> None:
    for c, part in frame.groupby("cutoff"):
        where = lake.partition("truth", "cutoff", c)
        where.mkdir(parents=True)
        part.drop(columns=["cutoff"]).to_parquet(where / "part-0.parquet", index=False)
        (where / TRUTH_DEFINITION).write_text(json.dumps(horizons))
        if complete:
            (where / SUCCESS).touch()


def truth_of(rows_: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The simulator's truth for these rows: noisy around the actuals, with zero-probability players."""
    rng = np.random.default_rng(seed)
    n = len(rows_)
    p = np.clip(rows_["payer"] * 0.6 + rng.random(n) * 0.4, 0, 1)
    p[:3] = 0.0
    p_days = rng.dirichlet(np.ones(DAYS), n) * 0.8
    return pd.DataFrame({"player_id": rows_["player_id"], "cutoff": rows_["cutoff"], "p_payer": p,
                         "expected_ltv": p * (rows_["ltv"] + 5), "p_active": rng.integers(0, 16, n) / 16,  # ties
                         **{f"p_day_{d}": p_days[:, d - 1] for d in range(1, DAYS + 1)}})


def test_the_oracle_scores_the_same_rows_with_thresholds_chosen_on_validation(tmp_path: Path) -> None:
    data, model = splits(), StandIn()
    lake = Lake(tmp_path / "lake", "galaxy-raiders")
    horizons = {"ltv_days": 14, "purchase_days": DAYS}
    val_truth, test_truth = truth_of(data["validation"], 4), truth_of(data["test"], 5).iloc[::-1]
    write_truth(lake, pd.concat([val_truth, test_truth]), horizons)
    evaluation = ev.evaluate(model, data, lake)
    oracle = evaluation.oracle
    assert oracle is not None and evaluation.metrics["oracle_note"] is None
    assert oracle[["player_id", "cutoff"]].equals(data["test"][["player_id", "cutoff"]].reset_index(drop=True))
    truth = test_truth.sort_values(["cutoff", "player_id"]).set_index(["cutoff", "player_id"]).loc[
        list(zip(data["test"]["cutoff"], data["test"]["player_id"]))].reset_index()
    payer_t = metrics.best_f1_threshold(data["validation"]["payer"], val_truth["p_payer"])
    churn_t = metrics.best_f1_threshold(data["validation"]["churned"], 1 - val_truth["p_active"])
    p = truth["p_payer"].to_numpy()
    value = np.where(p > 0, truth["expected_ltv"] / np.where(p > 0, p, 1), 0.0)
    assert oracle["value_if_payer"].tolist() == pytest.approx(value.tolist())
    assert (oracle["payer_pred"] == (p >= payer_t)).all() and 0 < oracle["payer_pred"].sum() < len(oracle)
    assert oracle["ltv_pred"].tolist() == pytest.approx(np.where(p >= payer_t, value, 0.0).tolist())
    assert oracle["ltv_expected"].tolist() == pytest.approx(truth["expected_ltv"].tolist())
    assert oracle["p_churn"].tolist() == pytest.approx((1 - truth["p_active"]).tolist())
    assert (oracle["churn_pred"] == (1 - truth["p_active"] >= churn_t)).all()
    assert (1 - truth["p_active"] == churn_t).any(), "a player exactly at the threshold is predicted to churn"
    p_days = truth[[f"p_day_{d}" for d in range(1, DAYS + 1)]].to_numpy()
    assert (oracle["offer_day"] == metrics.offer_day(p_days)).all()
    assert (oracle["likely_day"] == metrics.likely_day(p_days)).all()
    assert oracle[f"p_day_{DAYS}"].tolist() == pytest.approx(p_days[:, -1].tolist())
    result = evaluation.metrics
    same(result["oracle"], metrics.flat_metrics(oracle, DAYS))
    assert result["ratios"]["model_vs_oracle"]["normalized_gini"] == pytest.approx(
        result["model"]["normalized_gini"] / result["oracle"]["normalized_gini"])
    assert result["deciles"]["oracle"] == metrics.decile_table(oracle["ltv"], oracle["ltv_expected"]).to_dict("records")


def test_no_oracle_without_complete_truth_for_the_models_horizons(tmp_path: Path) -> None:
    data, model = splits(), StandIn()
    truth = pd.concat([truth_of(data["validation"], 4), truth_of(data["test"], 5)])
    other = Lake(tmp_path / "other", "galaxy-raiders")
    write_truth(other, truth, {"ltv_days": 28, "purchase_days": DAYS})
    note = ev.evaluate(model, data, other).metrics["oracle_note"]
    assert note == ("the ground truth at 2025-03-10 is for horizons {'ltv_days': 28, 'purchase_days': 7}, the model "
                    "predicts {'ltv_days': 14, 'purchase_days': 7}: re-simulate the game with the current config to "
                    "get its oracle")
    for name, frame in (("test-only", truth[truth["cutoff"] != "2025-03-03"]), ("validation-only", truth[truth["cutoff"] == "2025-03-03"])):
        lake = Lake(tmp_path / name, "galaxy-raiders")
        write_truth(lake, frame, {"ltv_days": 14, "purchase_days": DAYS})
        result = ev.evaluate(model, data, lake).metrics
        assert result["oracle"] is None and result["oracle_note"].startswith("no ground truth at these cutoffs"), name
    unfinished = Lake(tmp_path / "unfinished", "galaxy-raiders")
    write_truth(unfinished, truth, {"ltv_days": 14, "purchase_days": DAYS}, complete=False)
    assert ev.read_truth(unfinished, ["2025-03-03"], {"ltv_days": 14, "purchase_days": DAYS})[0] is None
    unrecorded = Lake(tmp_path / "unrecorded", "galaxy-raiders")
    write_truth(unrecorded, truth, {"ltv_days": 14, "purchase_days": DAYS})
    (unrecorded.partition("truth", "cutoff", "2025-03-10") / TRUTH_DEFINITION).unlink()
    assert "horizons unrecorded" in ev.read_truth(unrecorded, ["2025-03-03", "2025-03-10"], {
        "ltv_days": 14, "purchase_days": DAYS, "asked_ltv_days": 90})[1]


def test_the_drift_table_scores_the_stale_model_on_every_version_and_the_retrained_on_the_last() -> None:
    first, later = splits(), {**splits(), "test": rows(["2025-04-07"], seed=9)}
    stale, retrained = StandIn("2025-03-10"), StandIn("2025-04-07", scale=2.0)
    table = ev.drift_table(stale, retrained, {"v1": first, "v2": later})
    assert table["version"].tolist() == ["v1", "v2"]
    assert table["test_cutoffs"].tolist() == ["2025-03-10..2025-03-17", "2025-04-07..2025-04-07"]
    assert table["in_sample"].tolist() == [False, False]
    for i, version in enumerate((first, later)):
        scored = ev.evaluate(stale, version).metrics["model"]
        for k in ev.DRIFT_METRICS:
            assert table.loc[i, f"stale_{k}"] == pytest.approx(scored[k]), k
            assert table.loc[i, f"oracle_{k}"] is None, "no lake: no oracle"
    fresh = ev.evaluate(retrained, later).metrics["model"]
    assert table.loc[1, "retrained_minmax"] == pytest.approx(fresh["minmax"]) != table.loc[1, "stale_minmax"]
    assert table[[f"retrained_{k}" for k in ev.DRIFT_METRICS]].iloc[0].isna().all()
    overlapping = ev.drift_table(StandIn("2025-03-15"), None, {"v1": first})
    assert overlapping["in_sample"].tolist() == [True] and overlapping["retrained_minmax"].isna().all()


def test_drift_cells_read_stale_to_retrained_with_the_oracle_in_brackets() -> None:
    drift = pd.DataFrame([
        {"version": "v1", "test_cutoffs": "a..b", "in_sample": False, "stale_minmax": 0.5, "retrained_minmax": None,
         "oracle_minmax": 0.9, "stale_payer_f1": None, "retrained_payer_f1": None, "oracle_payer_f1": None},
        {"version": "v2", "test_cutoffs": "c..d", "in_sample": True, "stale_minmax": 0.51234, "retrained_minmax": 0.6,
         "oracle_minmax": 0.95, "stale_payer_f1": 0.25, "retrained_payer_f1": 0.3, "oracle_payer_f1": None}])
    cells = ev.drift_cells(drift, ("minmax", "payer_f1"))
    assert cells.to_dict("records") == [
        {"version": "v1", "test cutoffs": "a..b", "minmax": "0.500 (0.900)", "payer F1": "–"},
        {"version": "v2 (stale model in-sample)", "test cutoffs": "c..d", "minmax": "0.512 → 0.600 (0.950)",
         "payer F1": "0.250 → 0.300"}]
    assert ev.drift_cells(drift, ("minmax",), oracle=False)["minmax"].tolist() == ["0.500", "0.512 → 0.600"]
    assert ev.drift_cells(drift.drop(columns=["test_cutoffs"]), ("minmax",))["test cutoffs"].tolist() == ["", ""]
    assert list(ev.drift_cells(drift.assign(stale_normalized_gini=0.1, stale_purchase_day_mae=1.0))) == [
        "version", "test cutoffs", "Gini", "minmax", "minmax (payers)", "payer F1", "day MAE"]


def test_the_terminal_drift_table_fits_80_columns_with_the_payers_minmax() -> None:
    """`ltv drift` and the demo print the table on an 80-column terminal (or a log file, which rich
    also renders at 80): every cell whole, the payers' minmax beside the all-rows one."""
    from types import SimpleNamespace

    from rich.console import Console

    from ltv.cli import _drift_table

    keys = ("normalized_gini", "minmax", "minmax_payers", "payer_f1")
    rows = [{"version": f"v{i}-2025-03-03-12w", "test_cutoffs": "2025-07-21..2025-07-28",
             **{f"{who}_{k}": (0.931 if who == "retrained" and i == 4 else 0.912) for k in keys
                for who in ("stale", "oracle", "retrained")}} for i in (1, 4)]
    console = Console(width=80, record=True)
    console.print(_drift_table(SimpleNamespace(table=pd.DataFrame(rows), stale="v1-x", retrained="v4-x", skipped={})))
    text = console.export_text()
    assert "…" not in text and "payers" in text and text.count("0.912 → 0.931") == len(keys)


def test_explanations_summarise_the_models_contributions_per_segment_and_permutation() -> None:
    data, model = splits(), StandIn()
    evaluation = ev.evaluate(model, data)
    ev.explain_evaluation(model, data, evaluation, rows=40)
    block = evaluation.metrics["explanations"]
    assert block["rows"] == 40 and block["base"] == 5.0
    sample = ev.in_order(data["test"]).sample(40, random_state=0)
    dec = model.explain(sample)
    contributions = pd.DataFrame(dec.contributions, columns=dec.features, index=sample.index)
    value = pd.Series(dec.ltv_expected, index=sample.index)
    by_segment = {(s["kind"], s["segment"]): s for s in block["segments"]}
    top = value.rank(method="first", ascending=False) <= 4
    highest = by_segment[("predicted value decile", "decile 1 (highest)")]
    assert highest["players"] == 4 and highest["mean_ltv_expected"] == pytest.approx(value[top].mean())
    assert [s["segment"] for s in block["segments"] if s["kind"] == "predicted value decile"] == [
        "decile 1 (highest)", *[f"decile {d}" for d in range(2, 11)]]
    assert highest["up"] == [["score", pytest.approx(contributions.loc[top, "score"].mean())]]
    assert highest["down"] == [["days_since_install", pytest.approx(contributions.loc[top, "days_since_install"].mean())]]
    lowest = by_segment[("predicted value decile", "decile 10")]
    assert lowest["up"] == [] and [f for f, _ in lowest["down"]] == ["score", "days_since_install"], "most negative first"
    payers = sample["ltv"] > 0
    assert by_segment[("actual payer in the horizon", "payers")]["players"] == int(payers.sum())
    assert by_segment[("actual payer in the horizon", "non-payers")]["players"] == int((~payers).sum())
    new = sample["days_since_install"] < ev.NEW_PLAYER_DAYS
    assert 0 < new.sum() < len(sample)
    assert by_segment[("player age", "new (< 28 days)")]["players"] == int(new.sum())
    assert by_segment[("player age", "veteran")]["mean_ltv_expected"] == pytest.approx(value[~new].mean())
    assert block["permutation"] == ev.permutation_importance(model, data["validation"], 40)
    assert block["permutation"]["rows"] == 30, "all the validation rows there are"
    again = {}
    for seed in (1, 2):  # seeded by itself: the process's global random state does not change the sample
        np.random.seed(seed)
        ev.explain_evaluation(model, data, evaluation, rows=40)
        again[seed] = evaluation.metrics["explanations"]
    assert again[1] == again[2] == block

    ev.explain_evaluation(StandIn(explainable=False), data, evaluation, rows=40)
    assert evaluation.metrics["explanations"] == {"unavailable": "the value stage has no exact contributions"}
    ev.explain_evaluation(model, {**data, "test": data["test"].iloc[:0]}, evaluation, rows=40)
    assert evaluation.metrics["explanations"] == {"unavailable": "no test rows to explain"}
    no_age = {**data, "test": data["test"].drop(columns=["days_since_install"])}
    model_without_age = StandIn()
    model_without_age.features = ["score"]
    ev.explain_evaluation(model_without_age, no_age, evaluation, rows=10)
    assert {s["kind"] for s in evaluation.metrics["explanations"]["segments"]} == {
        "predicted value decile", "actual payer in the horizon"}


def test_permutation_importance_is_the_gini_lost_by_shuffling_each_feature() -> None:
    validation = rows(["2025-03-03", "2025-03-10"], n=200, seed=6)
    model = StandIn()
    result = ev.permutation_importance(model, validation, 150, seed=3)
    sample = ev.in_order(validation).sample(150, random_state=3).reset_index(drop=True)
    p, v = model.value_stages(model.inputs(sample))
    assert result["rows"] == 150 and result["gini"] == pytest.approx(metrics.normalized_gini(sample["ltv"], p * v))
    assert list(result["drop"]) == ["score", "days_since_install"], "largest drop first"
    assert result["drop"]["days_since_install"] == 0.0, "the stand-in ignores it"
    shuffled = sample["score"].to_numpy()[np.random.default_rng(3).permutation(150)]
    p, v = model.value_stages(pd.DataFrame({"score": shuffled}))
    assert result["drop"]["score"] == pytest.approx(result["gini"] - metrics.normalized_gini(sample["ltv"], p * v))
    assert result["drop"]["score"] > 0.2
    assert ev.permutation_importance(model, validation.assign(ltv=0.0), 50) == {"rows": 50, "gini": None, "drop": {}}
    assert ev.permutation_importance(model, validation, 500)["rows"] == 400


def test_a_seeded_sample_does_not_depend_on_the_order_rows_came_in() -> None:
    validation = rows(["2025-03-10", "2025-03-03"], n=50, seed=7)
    shuffled = validation.sample(frac=1.0, random_state=1)
    ordered = ev.in_order(shuffled)
    assert ordered.index.tolist() == list(range(100))
    assert ordered[["cutoff", "player_id"]].values.tolist() == sorted(validation[["cutoff", "player_id"]].values.tolist())
    assert ev.permutation_importance(StandIn(), shuffled, 30) == ev.permutation_importance(StandIn(), validation, 30)
    assert ev.in_order(pd.DataFrame({"x": [3, 1]}))["x"].tolist() == [3, 1], "nothing to order by: as given"
    assert ev.in_order(pd.DataFrame({"cutoff": ["b", "a", "a"], "x": [1, 2, 3]}))["x"].tolist() == [2, 3, 1]
    assert dt.date.fromisoformat(ordered["cutoff"].iloc[0]) == dt.date(2025, 3, 3)
