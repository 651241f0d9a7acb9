"""`Monitor.run` on a hand-made lake (fast: no trained model): a published scoring run measured
for feature drift, prediction drift and missed predictions against a registry's statistics, and
its cohort's delayed labels once its horizon has passed; what each signal reports, which policy
fires, and what is written. The registry is a stand-in holding the statistics a trained model
registers (feature_stats.json, manifest.json's prediction_stats) and its test metrics."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pytest

from conftest import loop_config
from handmade import day, event, write_lake
from ltv import etl, metrics
from ltv.evaluate import clean
from ltv.lake import SUCCESS, write_with
from ltv.monitoring import (PREDICTION_DRIFT_COLUMNS, Measurement, Monitor, PolicyValue, missed_predictions,
                            prediction_drift, read_alerts)
from ltv.promotion import Focus
from ltv.stats import feature_stats, psi
from test_experiments import publish_predictions

D = dt.date(2025, 4, 14)            # the scoring day (a Monday): population window [03-31, 04-14)
DUE = D + dt.timedelta(days=14)      # its labels' horizon (14 days) has passed: [04-14, 04-28) known
VERSION = 3
POLICIES = [
    {"name": "feature_drift", "signal": "feature_drift", "threshold": 0.25, "min_features": 2, "retrain": True},
    {"name": "prediction_drift", "signal": "prediction_drift", "threshold": 0.25},
    {"name": "label_decay", "signal": "label_decay", "threshold": 0.125, "severity": "critical", "retrain": True},
    {"name": "missed_predictions", "signal": "missed_predictions", "threshold": 0.0625, "severity": "critical"},
]
# the players of the population window with what happens after the cutoff (their labels)
LABELS = {  # player: (ltv, payer, next_purchase_day, churned)
    "a": (10.0, 1, 2, 0), "b": (50.0, 1, 7, 0), "c": (0.0, 0, 0, 0), "d": (0.0, 0, 0, 1), "e": (5.0, 1, 14, 0)}
MISSED = [f"m{i}" for i in range(6)]  # active in the window, never scored


def events(until: str) -> list[dict]:
    """a..e and m0..m5 active in the window; `old` only the day before it, `late` only on the
    cutoff day (neither is in the population); purchases after the cutoff make the labels."""
    before = {"a": "2025-04-01", "b": "2025-04-02", "c": "2025-04-05", "d": "2025-04-10", "e": "2025-04-13"}
    out = [event(p, f"{d} 10:00", "login") for p, d in before.items()]
    out += [event(m, f"2025-04-{3 + i:02d} 09:00", "login") for i, m in enumerate(MISSED)]
    out += [event("old", "2025-03-30 10:00", "login"), event("late", "2025-04-14 10:00", "login"),
            event("a", "2025-04-15 10:00", "purchase", revenue=10.0), event("b", "2025-04-20 10:00", "purchase", revenue=50.0),
            event("c", "2025-04-16 10:00", "login"), event("e", "2025-04-27 10:00", "purchase", revenue=5.0),
            event("d", "2025-04-28 10:00", "purchase", revenue=99.0),  # after the horizon: not in d's labels
            event("c", "2025-05-01 10:00", "purchase", revenue=1.0)]   # day 18: only a longer purchase horizon sees it
    return [e for e in out if str(e["event_ts"].date()) <= until]


def lake_until(tmp_path, until: str, policies=POLICIES, horizons: dict | None = None, **monitoring):
    """The game's raw logs and player_day from 2025-03-30 to `until`: (config, engine)."""
    config = loop_config(monitoring={"policies": policies, **monitoring}, **({"horizons": horizons} if horizons else {}))
    installs = {p: "2025-03-01 00:00" for p in [*LABELS, *MISSED, "old", "late"]}
    engine = write_lake(tmp_path / "lake", config, events(until), installs, days=("2025-03-30", until))
    etl.build_player_day(engine, config, day("2025-03-30"), day(until))
    return config, engine


# ----------------------------------------------------------------------------------------------
# what the champion registered, and the day's features and predictions

RNG = np.random.default_rng(7)
REFERENCE = pd.DataFrame({f"f{i:02d}": RNG.lognormal(0, 1, 200) for i in range(12)})
FEATURES = REFERENCE.assign(f00=REFERENCE.f00 + 100,                                 # every value above the reference
                            f01=np.where(np.arange(200) < 120, REFERENCE.f01 + 100, REFERENCE.f01),  # 60 % of them
                            f02=np.where(np.arange(200) < 60, REFERENCE.f02 + 100, REFERENCE.f02),   # 30 %
                            f03=np.where(np.arange(200) < 10, REFERENCE.f03 + 100, REFERENCE.f03))   # 5 %: below 0.25


def predictions(ranked: bool) -> pd.DataFrame:
    """a..e and `old` (scored, but not in the labelled population), ranked by their true value or upside down."""
    ltv = [LABELS[p][0] for p in LABELS] + [1.0]
    return pd.DataFrame({"player_id": [*LABELS, "old"], "model_version": VERSION,
                         "ltv_expected": ltv if ranked else [-x for x in ltv],
                         "p_payer": [0.9, 0.8, 0.2, 0.1, 0.7, 0.5], "p_churn": [0.1, 0.2, 0.3, 0.9, 0.2, 0.5],
                         "offer_day": [2, 5, 3, 1, 12, 1]})


@dataclass
class Version:
    version: int
    metrics: dict
    status: str = "Approved"
    history: list = field(default_factory=list)
    lineage: dict = field(default_factory=dict)  # empty: training data unknown


class Registry:
    """The champion as `Monitor` reads it: its artifacts' statistics and its test-split metrics."""

    def __init__(self, metrics: dict, prediction_reference: pd.DataFrame):
        self.artifacts = {"feature_stats.json": feature_stats(REFERENCE),
                          "manifest.json": {"prediction_stats": feature_stats(prediction_reference[list(
                              PREDICTION_DRIFT_COLUMNS)])}}
        self.registered = [Version(VERSION, metrics)]

    def artifact_json(self, version: int, name: str) -> dict:
        assert version == VERSION, f"the run's model is version {VERSION}, not {version}"
        return self.artifacts[name]

    def get(self, version: int) -> Version:
        return next(v for v in self.registered if v.version == version)

    def versions(self) -> list[Version]:
        return self.registered


def scored(engine, cutoff: dt.date = D, *, ranked: bool = True, features: pd.DataFrame = FEATURES) -> None:
    """The day's features and a published scoring run of version 3 at `cutoff`."""
    lake = engine.lake
    frame = features.assign(player_id=[f"p{i}" for i in range(len(features))])
    write_with(lake.partition("features", "cutoff", cutoff), lambda d: frame.to_parquet(d / "part-0.parquet", index=False))
    publish_predictions(lake, cutoff, predictions(ranked))


def monitor(config, engine, metrics_: dict | None = None, prediction_reference: pd.DataFrame | None = None) -> Monitor:
    reference = predictions(True).assign(p_churn=0.05) if prediction_reference is None else prediction_reference
    registry = Registry(metrics_ or {"normalized_gini": 0.8, "payer_pr_auc": 0.5}, reference)
    return Monitor(config, engine.lake, engine, registry)


def by_signal(report) -> dict[str, Measurement]:
    signals = [m.signal for m in report.measurements]
    assert len(signals) == len(set(signals)), signals
    return {m.signal: m for m in report.measurements}


# ----------------------------------------------------------------------------------------------
# a scored run


def test_a_scored_run_is_measured_for_drift_and_missed_players_and_the_firing_policies_alert(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(D))
    scored(engine)
    lake = engine.lake
    report = monitor(config, engine).run(D)
    m = by_signal(report)
    assert [x.signal for x in report.measurements] == ["feature_drift", "prediction_drift", "missed_predictions"]
    assert (report.game, report.date) == (config.game.id, str(D))

    # feature drift: every feature's PSI against the champion's training statistics, largest first
    drift = m["feature_drift"]
    stats = feature_stats(REFERENCE)["features"]
    expected = {f: psi(stats[f], FEATURES[f]) for f in REFERENCE}
    assert drift.details["psi"] == pytest.approx(expected) and list(drift.details["psi"])[:4] == ["f00", "f01", "f02", "f03"]
    assert all(expected[f] == 0 for f in REFERENCE.columns[4:]), "the same values drift by nothing"
    assert expected["f00"] > expected["f01"] > expected["f02"] > 0.25 > expected["f03"] > 0
    assert [f for f, _ in drift.details["top"]] == list(drift.details["psi"])[:10], "the ten largest"
    assert drift.value == 0.0 and drift.details["date"] == str(D) and drift.details["model_version"] == VERSION

    # prediction drift: the worst of the scores against the champion's validation predictions
    pred = m["prediction_drift"]
    assert pred.details["worst"] == "p_churn" and set(pred.details["psi"]) == set(PREDICTION_DRIFT_COLUMNS)
    assert pred.details["psi"]["ltv_expected"] == pred.details["psi"]["p_payer"] == 0
    assert pred.value == pred.details["psi"]["p_churn"] > 0.25

    # missed predictions: of the 11 players active in [03-31, 04-14), m0..m5 have no prediction
    missed = m["missed_predictions"]
    assert missed.value == pytest.approx(6 / 11)
    assert (missed.details["active"], missed.details["missed"], missed.details["date"]) == (11, 6, str(D))
    assert len(missed.details["sample"]) == 5 and set(missed.details["sample"]) <= set(MISSED)

    # each policy judges its signal; feature drift counts its drifting features (f00, f01, f02)
    assert report.values == [PolicyValue("feature_drift", "feature_drift", 3.0, 2.0, True),
                             PolicyValue("prediction_drift", "prediction_drift", pred.value, 0.25, True),
                             PolicyValue("missed_predictions", "missed_predictions", 6 / 11, 0.0625, True)]
    alerts = {a.policy: a for a in report.alerts}
    assert list(alerts) == ["feature_drift", "prediction_drift", "missed_predictions"]
    assert alerts["feature_drift"].value == 3 and alerts["feature_drift"].retrain and alerts["feature_drift"].state == "open"
    assert "psi" not in alerts["feature_drift"].details and [f for f, _ in alerts["feature_drift"].details["top"]] == [
        "f00", "f01", "f02"]
    assert alerts["feature_drift"].message.startswith("3 feature(s) with PSI > 0.25 (need 2): f00 ")
    assert not alerts["missed_predictions"].retrain and alerts["missed_predictions"].severity == "critical"
    assert alerts["missed_predictions"].value == 6 / 11 and alerts["missed_predictions"].details["missed"] == 6
    assert all(a.delivery == "log" and a.date == str(D) and a.signal == a.policy for a in report.alerts), \
        "no webhook configured"
    assert report.retrain_for == ["feature_drift"] and report.retrain

    # what is written: the day's measurements, values and alerts; the alert log; the state
    written = json.loads((lake.monitoring / f"date={D}.json").read_text())
    assert written == json.loads(json.dumps({"measurements": [asdict(x) for x in report.measurements],
                                             "values": [asdict(v) for v in report.values],
                                             "alerts": [asdict(a) for a in report.alerts]}))
    assert [a["policy"] for a in read_alerts(lake)] == list(alerts)
    state = json.loads(lake.monitoring_state.read_text())
    assert state["monitored_scores"] == [str(D)] and state["evaluated"] == []
    assert state["incidents"]["feature_drift"]["state"] == "retrain_requested"

    # the same scores are not measured twice; nothing new is announced or written for the day
    (lake.monitoring / f"date={D}.json").unlink()
    again = monitor(config, engine).run(D)
    assert again.measurements == [] and again.alerts == [] and again.values == []
    assert not (lake.monitoring / f"date={D}.json").exists() and len(read_alerts(lake)) == 3
    assert json.loads(lake.monitoring_state.read_text())["monitored_scores"] == [str(D)]


def test_only_the_latest_new_run_up_to_the_day_is_measured_and_every_earlier_one_counts_as_seen(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(D))
    week = dt.timedelta(days=7)
    scored(engine, D - week, features=REFERENCE)  # no drift a week earlier
    scored(engine, D)
    scored(engine, D + week, features=REFERENCE)  # after the day: not yet
    report = monitor(config, engine, prediction_reference=predictions(True)).run(D)
    m = by_signal(report)
    assert m["feature_drift"].details["date"] == str(D) and m["missed_predictions"].details["date"] == str(D)
    assert [v.policy for v in report.values if v.fired] == ["feature_drift", "missed_predictions"]
    state = json.loads(engine.lake.monitoring_state.read_text())
    assert state["monitored_scores"] == [str(D - week), str(D)]
    later = monitor(config, engine, prediction_reference=predictions(True)).run(D + week)
    assert by_signal(later)["feature_drift"].details["date"] == str(D + week)
    assert by_signal(later)["feature_drift"].value == 0 and later.values[0] == PolicyValue(
        "feature_drift", "feature_drift", 0.0, 2.0, False)
    assert [(a.policy, a.state) for a in later.alerts] == [("feature_drift", "resolved")]


def test_nothing_measured_writes_no_day_file_but_the_state(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(D))
    mon = monitor(config, engine)
    assert (mon.incidents(), mon.focus(), read_alerts(engine.lake)) == ([], None, []), "before any run"
    report = mon.run(D)
    assert (report.measurements, report.alerts, report.values, report.retrain) == ([], [], [], False)
    assert not (engine.lake.monitoring / f"date={D}.json").exists()
    assert json.loads(engine.lake.monitoring_state.read_text()) == {"monitored_scores": [], "evaluated": [],
                                                                    "incidents": {}}


# ----------------------------------------------------------------------------------------------
# delayed labels


def expected_metrics(ranked: bool) -> dict:
    """The report's metrics of the cohort's scored and labelled players (a..e; `old` has no label)."""
    frame = pd.DataFrame([{"player_id": p, "ltv": v[0], "payer": v[1], "next_purchase_day": v[2], "churned": v[3]}
                          for p, v in LABELS.items()]).merge(predictions(ranked), on="player_id")
    return clean(metrics.flat_metrics(frame, 14))


def test_a_cohort_is_evaluated_once_its_horizon_has_passed_against_its_versions_test_score(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(DUE - dt.timedelta(days=1)))
    scored(engine, ranked=False)
    lake = engine.lake
    mon = monitor(config, engine, prediction_reference=predictions(True))
    mon.run(D)
    report = mon.run(DUE - dt.timedelta(days=1))
    assert report.measurements == [], "a day before the horizon has passed: nothing to evaluate"
    report = mon.run(DUE)
    decay = by_signal(report)["label_decay"]
    written = json.loads((lake.monitoring / "delayed" / f"cutoff={D}.json").read_text())
    expected = expected_metrics(ranked=False)
    assert written == pytest.approx(expected | {"cutoff": str(D), "model_version": VERSION, "scored_players": 6,
                                                "labelled_players": 11})
    assert expected["players"] == 5 and expected["normalized_gini"] < 0, "the upside-down ranking"
    assert expected["purchase_day_n"] == 3 and expected["purchase_day_mae"] == pytest.approx(4 / 3), \
        "a, b, e bought within the 14 days: offer days 2, 5, 12 for 2, 7, 14"
    current = expected["normalized_gini"]
    assert decay.value == pytest.approx((0.8 - current) / 0.8)
    assert decay.details == {"cutoff": str(D), "metric": "normalized_gini", "current": pytest.approx(current),
                             "reference": 0.8, "reference_split": "test", "model_version": VERSION}
    alert = next(a for a in report.alerts if a.policy == "label_decay")
    assert alert.severity == "critical" and alert.retrain and alert.details["cutoff"] == str(D)
    assert PolicyValue("label_decay", "label_decay", decay.value, 0.125, True) in report.values
    assert json.loads(lake.monitoring_state.read_text())["evaluated"] == [str(D)]
    assert mon.focus() == Focus("label_decay", "normalized_gini", (str(D),))
    assert sorted((i["policy"], i["state"]) for i in mon.incidents()) == [
        ("feature_drift", "retrain_requested"), ("label_decay", "retrain_requested"), ("missed_predictions", "open"),
        ("prediction_drift", "open")], \
        "opened at the scoring day (the upside-down ltv_expected drifts), then by the decay"
    assert mon.run(DUE + dt.timedelta(days=7)).measurements == [], "a cohort is evaluated once"


def test_a_cohort_whose_labels_are_incomplete_waits_for_them(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(DUE - dt.timedelta(days=2)))  # player_day lacks 04-27
    scored(engine)
    mon = monitor(config, engine, prediction_reference=predictions(True))
    mon.run(D)
    assert mon.run(DUE).measurements == []
    assert json.loads(engine.lake.monitoring_state.read_text())["evaluated"] == []
    assert not (engine.lake.monitoring / "delayed").exists()
    # the last day arrives: the cohort is evaluated at the next run
    config, engine = lake_until(tmp_path / "complete", str(DUE - dt.timedelta(days=1)))
    scored(engine)
    etl.build_labels(engine, config, D)
    built = (engine.partition_dir("labels", str(D)) / SUCCESS).read_text()
    decay = by_signal(monitor(config, engine, prediction_reference=predictions(True)).run(DUE))["label_decay"]
    assert (engine.partition_dir("labels", str(D)) / SUCCESS).read_text() == built, \
        "labels built under the present definition are read, not rebuilt"
    assert decay.details["current"] == pytest.approx(1.0) and decay.value == pytest.approx((0.8 - 1.0) / 0.8), \
        "ranked by the true value: better than the reference, a negative drop"
    assert not [a for a in monitor(config, engine).run(DUE).alerts if a.policy == "label_decay"]


def test_a_cohort_without_its_labels_does_not_hold_back_a_later_one(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(DUE - dt.timedelta(days=1)))
    week = dt.timedelta(days=7)
    scored(engine, D - week)
    scored(engine, D)
    shutil.rmtree(engine.partition_dir("player_day", str(D - dt.timedelta(days=3))))  # in D - 7's label window only
    report = monitor(config, engine).run(DUE)
    assert [m.details["cutoff"] for m in report.measurements if m.signal == "label_decay"] == [str(D)]
    assert json.loads(engine.lake.monitoring_state.read_text())["evaluated"] == [str(D)]


def test_a_cohorts_purchase_days_are_read_over_the_games_purchase_horizon(tmp_path) -> None:
    """With 21 purchase days, d's purchase on day 15 and c's on day 18 count as next purchase days
    (not as value: ltv stays 14 days)."""
    due = D + dt.timedelta(days=21)
    config, engine = lake_until(tmp_path, str(due - dt.timedelta(days=1)), horizons={"ltv_days": 14, "purchase_days": 21})
    scored(engine)
    monitor(config, engine).run(due)
    written = json.loads((engine.lake.monitoring / "delayed" / f"cutoff={D}.json").read_text())
    assert written["purchase_day_n"] == 5 and written["actual_total"] == 65.0


REFERENCE_METRICS = {"normalized_gini": 0.8, "payer_pr_auc": 0.5, "purchase_day_mae": 1.0}


@pytest.mark.parametrize("decay_metric,watched,sign", [
    ("payer_pr_auc", "payer_pr_auc", 1), (None, "normalized_gini", 1), ("absent", "normalized_gini", 1),
    ("purchase_day_mae", "purchase_day_mae", -1)])  # lower is better: a larger error is the drop
def test_label_decay_watches_its_policys_metric_else_the_promotions_primary(tmp_path, decay_metric, watched, sign) -> None:
    policies = [p for p in POLICIES if p["signal"] != "label_decay" or decay_metric != "absent"]
    if decay_metric not in (None, "absent"):
        policies = [p | {"metric": decay_metric} if p["signal"] == "label_decay" else p for p in policies]
    config, engine = lake_until(tmp_path, str(DUE - dt.timedelta(days=1)), policies)
    assert config.promotion.primary_metric == "normalized_gini"
    scored(engine)
    report = monitor(config, engine, REFERENCE_METRICS).run(DUE)
    decay = by_signal(report)["label_decay"]
    current, reference = expected_metrics(ranked=True)[watched], REFERENCE_METRICS[watched]
    assert (decay.details["metric"], decay.details["reference"]) == (watched, reference)
    assert decay.details["current"] == pytest.approx(current)
    assert decay.value == pytest.approx(sign * (reference - current) / reference)
    assert [v.policy for v in report.values if v.signal == "label_decay"] == ([] if decay_metric == "absent" else ["label_decay"])


DECAY_ONLY = [p for p in POLICIES if p["signal"] == "label_decay"]


@pytest.mark.parametrize("escalate_after,fix,expected", [
    (2, Version(4, {}, "Rejected", [{"status": "Rejected", "reason": "gain too small"}]),
     [("retrain_rejected", "info", "retrain rejected: version 4 - gain too small")]),
    (1, Version(4, {}, "Rejected", [{"status": "Rejected"}]),
     [("retrain_rejected", "info", "retrain rejected: version 4 - "),
      ("escalated", "critical", "1 retrains rejected: retraining did not recover normalized_gini - the change may "
                                "need new features")]),
    (2, Version(4, {}, "Approved"), [("retrain_promoted", "info", "retrain promoted: version 4 Approved - ")]),
])
def test_a_requested_retrain_is_learnt_from_the_first_version_registered_after_it(tmp_path, escalate_after, fix,
                                                                                  expected) -> None:
    config, engine = lake_until(tmp_path, str(DUE - dt.timedelta(days=1)), DECAY_ONLY,
                                escalate_after_rejections=escalate_after)
    scored(engine, ranked=False)
    mon = monitor(config, engine)
    [opened] = mon.run(DUE).alerts
    assert (opened.policy, opened.state, opened.retrain) == ("label_decay", "open", True)
    [incident] = mon.incidents()
    assert set(incident) == {"policy", "state", "opened", "after_version", "fix_version", "rejections", "metric",
                             "cohorts", "history"}
    assert incident["history"] == [
        {"date": str(DUE), "state": "open", "note": opened.message.removesuffix(" - retrain requested")},
        {"date": str(DUE), "state": "retrain_requested", "note": "retrain requested"}]
    later = "Approved" if fix.status == "Rejected" else "Rejected"
    mon.registry.registered += [Version(5, {}, later, [{"status": later, "reason": "later"}]), fix]  # in any order
    next_day = DUE + dt.timedelta(days=1)
    report = mon.run(next_day)
    assert [(a.state, a.severity, a.message) for a in report.alerts] == expected
    assert all((a.policy, a.value, a.retrain, a.details, a.date) == ("label_decay", None, False, {}, str(next_day))
               for a in report.alerts)
    incident = mon.incidents()[-1]
    assert [h for h in incident["history"] if h["date"] == str(next_day)] == [
        {"date": str(next_day), "state": state, "note": note} for state, _, note in expected]
    assert (incident["state"], incident["rejections"], incident["fix_version"]) == (
        expected[-1][0], int(fix.status == "Rejected"), None if fix.status == "Rejected" else 4)
    assert incident["after_version"] == (4 if fix.status == "Rejected" else VERSION), "a retrain counts after it"
    day_file = json.loads((engine.lake.monitoring / f"date={next_day}.json").read_text())
    assert day_file["measurements"] == [] and len(day_file["alerts"]) == len(expected), "a day of alerts only"
    assert mon.run(next_day + dt.timedelta(days=1)).alerts == [], "an outcome is learnt once"


@pytest.mark.parametrize("trained_until,counted", [(str(D - dt.timedelta(days=7)), False), (str(D), True)])
def test_only_a_rejected_retrain_trained_on_the_decayed_cohorts_counts_toward_escalation(
        tmp_path, trained_until, counted) -> None:
    """A retrain right after a change is trained on cutoffs before it: its rejection says nothing
    about whether retraining can recover the metric, so it does not escalate; one whose training
    cutoffs reach the first decayed cohort (D) does."""
    config, engine = lake_until(tmp_path, str(DUE - dt.timedelta(days=1)), DECAY_ONLY, escalate_after_rejections=1)
    scored(engine, ranked=False)
    mon = monitor(config, engine)
    mon.run(DUE)
    train = [str(D - dt.timedelta(days=28)), trained_until]
    mon.registry.registered.append(Version(4, {}, "Rejected", [{"status": "Rejected", "reason": "gain too small"}],
                                           {"dataset": {"name": "rolling-x", "cutoffs": {"train": train}}}))
    report = mon.run(DUE + dt.timedelta(days=1))
    expected = [("retrain_rejected", "retrain rejected: version 4 - gain too small")] + (
        [("escalated", "1 retrains rejected: retraining did not recover normalized_gini - the change may need new "
                       "features")] if counted else [])
    if not counted:
        expected[0] = (expected[0][0], expected[0][1] + f"; not counted toward escalation: trained on cutoffs up to "
                                                        f"{trained_until}, before the first decayed cohort {D}")
    assert [(a.state, a.message) for a in report.alerts] == expected
    assert mon.incidents()[-1]["rejections"] == int(counted)


def test_trained_until_reads_the_lineage_else_the_dataset_name() -> None:
    """The local registry's lineage lists the training cutoffs; SageMaker's metadata keeps only the
    dataset's name, whose splits follow from the config."""
    from ltv import datasets
    from ltv.monitoring import trained_until

    config = loop_config()
    listed = Version(4, {}, lineage={"dataset": {"name": "rolling-2025-06-02", "cutoffs": {"train": ["2025-03-03"]}}})
    assert trained_until(config, listed) == "2025-03-03"
    named = Version(4, {}, lineage={"dataset": {"name": "rolling-2025-06-02"}})
    assert trained_until(config, named) == str(max(datasets.rolling_spec(config, dt.date(2025, 6, 2)).train))
    assert trained_until(config, Version(4, {})) is None
    assert trained_until(config, Version(4, {}, lineage={"dataset": {"name": "no-such-version"}})) is None


# ----------------------------------------------------------------------------------------------
# the signals on their own


def test_no_active_player_means_none_missed(tmp_path) -> None:
    config, engine = lake_until(tmp_path, str(D))
    m = missed_predictions(engine, config, "2025-03-30", predictions(True))  # player_day starts that day
    assert (m.signal, m.value, m.details) == ("missed_predictions", 0.0, {"active": 0, "missed": 0, "sample": [],
                                                                          "date": "2025-03-30"})


def test_prediction_drift_compares_the_scores_both_sides_have() -> None:
    pred = predictions(True)
    reference = feature_stats(pred[["ltv_expected", "p_churn"]].assign(p_churn=0.05))
    m = prediction_drift(reference, pred.drop(columns=["ltv_expected"]))
    assert m.signal == "prediction_drift" and list(m.details["psi"]) == ["p_churn"] and m.details["worst"] == "p_churn"
    assert m.value == psi(reference["features"]["p_churn"], pred.p_churn) > 0.25
    none = prediction_drift(reference, pred[["player_id", "p_payer"]])
    assert (none.value, none.details) == (0.0, {"psi": {}, "worst": None})
