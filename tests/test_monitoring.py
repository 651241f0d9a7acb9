"""Monitoring: each signal on constructed data, policies to alerts, webhook delivery."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest

from conftest import loop_config
from ltv.config import Policy
from ltv.monitoring import (ALARM_STATE, ESCALATED, OPEN, RESOLVED, RETRAIN_PROMOTED, RETRAIN_REJECTED,
                            RETRAIN_REQUESTED, Alert, Incidents, Measurement, Monitor, alert_text, deliver, feature_psi,
                            judge, prediction_drift, read_alerts)
from ltv.scoring import score
from ltv.stats import feature_stats, psi

pytestmark = pytest.mark.slow
DAY = dt.date(2025, 4, 14)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.lognormal(0, 1, 20_000), "revenue": np.where(rng.random(20_000) < 0.9, 0, 5.0),
                        "country": rng.choice(["US", "JP", "BR"], 20_000)})
    stats = feature_stats(ref)
    same = pd.DataFrame({"x": rng.lognormal(0, 1, 20_000), "revenue": np.where(rng.random(20_000) < 0.9, 0, 5.0),
                         "country": rng.choice(["US", "JP", "BR"], 20_000)})
    table = feature_psi(stats, same)
    assert (table.psi < 0.01).all()
    assert psi(stats["features"]["x"], same.x * 2) > 0.25
    assert psi(stats["features"]["revenue"], pd.Series(np.where(rng.random(20_000) < 0.6, 0, 5.0))) > 0.25, \
        "a change in the share of zeros is seen"
    assert psi(stats["features"]["country"], pd.Series(["BR"] * 1000)) > 0.25
    assert psi(stats["features"]["x"], pd.Series([np.nan] * 1000)) > 1, "nulls have their own bin"


def test_prediction_drift_takes_the_worst_score(tiny_model) -> None:
    model, splits, _ = tiny_model
    pred = model.predict(splits["test"])
    ref = model.manifest["prediction_stats"]
    assert prediction_drift(ref, pred).value < 0.25
    shifted = pred.assign(p_churn=np.clip(pred.p_churn + 0.4, 0, 1))
    m = prediction_drift(ref, shifted)
    assert m.value > 0.25 and m.details["worst"] == "p_churn"


def _policies(monitor: Monitor, measurements: list[Measurement]) -> dict[str, Alert]:
    """The alerts a fresh monitor (no open incident) raises for these measurements."""
    policies = monitor.config.monitoring.policies
    transitions = Incidents({}, 2).advance(str(DAY), policies, judge(policies, measurements), [])
    return {a.policy: a for a in monitor._alerts(DAY, transitions)}


POLICIES = [
    {"name": "feature_drift", "signal": "feature_drift", "threshold": 0.2, "min_features": 3, "retrain": True},
    {"name": "prediction_drift", "signal": "prediction_drift", "threshold": 0.25},
    {"name": "label_decay", "signal": "label_decay", "threshold": 0.1, "severity": "critical", "retrain": True},
    {"name": "missed_predictions", "signal": "missed_predictions", "threshold": 0.01, "severity": "critical"},
    {"name": "validation_failure", "signal": "validation_failure", "threshold": 0, "severity": "critical"},
]


def test_policies_turn_measurements_into_alerts(scoring_lake) -> None:
    _, lake, engine, registry = scoring_lake
    config = loop_config(monitoring={"policies": POLICIES})
    monitor = Monitor(config, lake, engine, registry)
    psis = {f"f{i}": 0.5 for i in range(3)} | {"g": 0.01}
    alerts = _policies(monitor, [
        Measurement("feature_drift", 0, {"psi": psis}),
        Measurement("prediction_drift", 0.3, {"worst": "p_payer"}),
        Measurement("label_decay", 0.2, {"cutoff": "2025-03-01", "metric": "normalized_gini", "current": 0.7,
                                         "reference": 0.875}),
        Measurement("missed_predictions", 0.05, {"missed": 5, "active": 100, "date": "2025-04-14"}),
        Measurement("validation_failure", 2, {"checks": ["null_ids", "schema"]}),
    ])
    assert set(alerts) == {p.name for p in config.monitoring.policies}
    assert alerts["feature_drift"].retrain and alerts["feature_drift"].value == 3
    assert "f0 0.50" in alerts["feature_drift"].message
    assert alerts["label_decay"].severity == "critical" and "20.0% worse" in alerts["label_decay"].message
    assert "null_ids, schema" in alerts["validation_failure"].message
    assert [a["policy"] for a in read_alerts(lake)] == [p.name for p in config.monitoring.policies]
    quiet = _policies(monitor, [Measurement("feature_drift", 0, {"psi": {"f0": 0.5, "f1": 0.01}}),
                                Measurement("prediction_drift", 0.05), Measurement("validation_failure", 0),
                                Measurement("missed_predictions", 0.0, {"missed": 0, "active": 10})])
    assert quiet == {}


def test_monitor_measures_missed_predictions_and_delayed_labels(scoring_lake) -> None:
    config, lake, engine, registry = scoring_lake
    result = score(config, lake, engine, registry, DAY)
    # drop 10 % of the scored players from the run, as a partial scoring job would
    path = result.path / "part-0.parquet"
    pred = pd.read_parquet(path)
    pred.iloc[: len(pred) * 9 // 10].to_parquet(path, index=False)
    monitor = Monitor(config, lake, engine, registry)
    report = monitor.run(DAY)
    missed = next(m for m in report.measurements if m.signal == "missed_predictions")
    assert missed.value == pytest.approx(0.1, abs=0.01)
    assert "missed_predictions" in {a.policy for a in report.alerts}
    logged = read_alerts(lake)
    assert monitor.run(DAY).measurements == [], "the same scores are not measured twice"
    assert read_alerts(lake) == logged, "a rerun of the day announces nothing again"
    later = DAY + dt.timedelta(days=14)
    report = Monitor(config, lake, engine, ReportingTestMetrics(registry, {"payer_pr_auc": 0.95})).run(later)
    decay = next(m for m in report.measurements if m.signal == "label_decay")
    assert decay.details["cutoff"] == str(DAY) and decay.details["current"] > 0.5
    # the reference is the version's score on the unseen test split (the registry's metrics), not validation
    assert decay.details["reference"] == 0.95 and decay.details["reference_split"] == "test"
    assert decay.value == pytest.approx((0.95 - decay.details["current"]) / 0.95)
    assert (lake.monitoring / "delayed" / f"cutoff={DAY}.json").exists()


class ReportingTestMetrics:
    """A registry whose versions report these test metrics (the fixture registers validation metrics)."""

    def __init__(self, registry, metrics: dict):
        self._registry, self._metrics = registry, metrics

    def __getattr__(self, name):
        return getattr(self._registry, name)

    def get(self, version: int):
        v = self._registry.get(version)
        return dataclasses.replace(v, metrics=v.metrics | self._metrics)


def test_webhook_receives_the_alert_and_failures_do_not_raise() -> None:
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    alert = Alert("g", "2025-01-01", "label_decay", "label_decay", "critical", 0.2, 0.1, "worse", True)
    assert deliver(alert, f"http://127.0.0.1:{server.server_port}/hook") == "webhook 200"
    assert received[0]["alert"]["policy"] == "label_decay" and "[critical]" in received[0]["text"]
    server.server_close()
    assert deliver(alert, f"http://127.0.0.1:{server.server_port}/hook", timeout=1).startswith("webhook failed")
    assert loop_config().alerts.webhook_url is None


# ----------------------------------------------------------------------------------------------
# the alert life cycle

DECAY = Policy(name="label_decay", signal="label_decay", threshold=0.1, severity="critical", retrain=True)


class Version:
    """A registry version as `Incidents` reads it: number, status, the reason it was registered with."""

    def __init__(self, version: int, status: str, reason: str = "by the rule"):
        self.version, self.status, self.history = version, status, [{"status": status, "reason": reason}]


def _decay(value: float, cohort: str, version: int) -> Measurement:
    return Measurement("label_decay", value, {"cutoff": cohort, "metric": "payer_pr_auc", "current": 0.5,
                                              "reference": 0.6, "model_version": version})


def _day(incidents: Incidents, day: str, measurements: list[Measurement], versions: list[Version]) -> list[tuple[str, str]]:
    """One monitoring day as `Monitor.run` does it: outcomes, the current model's judgements, transitions."""
    out = incidents.outcomes(day, [DECAY], versions)
    out += incidents.advance(day, [DECAY], incidents.current(judge([DECAY], measurements)), versions)
    return [(t.state, t.severity) for t in out]


def test_an_incident_opens_once_learns_its_retrain_and_resolves_when_the_fix_recovers() -> None:
    state: dict = {}
    incidents = Incidents(state, escalate_after=2)
    v1 = [Version(1, "Approved")]
    assert _day(incidents, "2025-05-05", [_decay(0.2, "2025-04-07", 1)], v1) == [(OPEN, "critical")]
    assert state["label_decay"]["state"] == RETRAIN_REQUESTED and incidents.awaiting_retrain() == ["label_decay"]
    assert _day(incidents, "2025-05-12", [_decay(0.25, "2025-04-14", 1)], v1) == [], "no repeated critical alert"
    assert state["label_decay"]["cohorts"] == ["2025-04-07", "2025-04-14"], "the cohorts that decayed"
    v2 = v1 + [Version(2, "Approved", "payer_pr_auc gain +0.05")]
    # the fix is learnt first: the replaced model's late cohort (version 1) then judges nothing
    assert _day(incidents, "2025-05-19", [_decay(0.3, "2025-04-21", 1)], v2) == [(RETRAIN_PROMOTED, "info")]
    assert "version 2 Approved - payer_pr_auc gain" in state["label_decay"]["history"][-1]["note"]
    assert incidents.awaiting_retrain() == []
    assert _day(incidents, "2025-06-16", [_decay(0.02, "2025-05-19", 2)], v2) == [(RESOLVED, "info")]
    assert ALARM_STATE[state["label_decay"]["state"]] == "OK"
    assert [h["state"] for h in state["label_decay"]["history"]] == [
        OPEN, RETRAIN_REQUESTED, RETRAIN_PROMOTED, RESOLVED]
    assert _day(incidents, "2025-06-23", [_decay(0.3, "2025-05-26", 2)], v2) == [(OPEN, "critical")], \
        "a new decay after the resolution is a new incident"


def test_a_promoted_retrain_that_does_not_recover_escalates_once() -> None:
    state: dict = {}
    incidents = Incidents(state, escalate_after=2)
    versions = [Version(1, "Approved")]
    _day(incidents, "2025-05-05", [_decay(0.2, "2025-04-07", 1)], versions)
    versions.append(Version(2, "Approved"))
    assert _day(incidents, "2025-05-12", [], versions) == [(RETRAIN_PROMOTED, "info")]
    assert _day(incidents, "2025-06-09", [_decay(0.2, "2025-05-12", 2)], versions) == [(ESCALATED, "critical")]
    assert "retraining did not recover payer_pr_auc" in state["label_decay"]["history"][-1]["note"]
    assert "the change may need new features" in state["label_decay"]["history"][-1]["note"]
    assert _day(incidents, "2025-06-16", [_decay(0.3, "2025-05-19", 2)], versions) == [], "escalated once"
    assert incidents.awaiting_retrain() == [], "an escalated incident asks for no more retrains"


def test_rejected_retrains_ask_again_then_escalate_with_the_reason() -> None:
    state: dict = {}
    incidents = Incidents(state, escalate_after=2)
    versions = [Version(1, "Approved")]
    _day(incidents, "2025-05-05", [_decay(0.2, "2025-04-07", 1)], versions)
    versions.append(Version(2, "Rejected", "gain CI95 -0.01..+0.02 does not clear min effect 0.0"))
    assert _day(incidents, "2025-05-12", [_decay(0.2, "2025-04-14", 1)], versions) == [
        (RETRAIN_REJECTED, "info"), (RETRAIN_REQUESTED, "info")]
    assert "does not clear min effect" in state["label_decay"]["history"][-2]["note"]
    assert incidents.awaiting_retrain() == ["label_decay"]
    versions.append(Version(3, "Rejected"))
    assert _day(incidents, "2025-06-09", [], versions) == [(RETRAIN_REJECTED, "info"), (ESCALATED, "critical")]
    assert _day(incidents, "2025-06-16", [_decay(0.2, "2025-05-19", 1)], versions) == []


def test_the_alert_text_names_the_incident_state() -> None:
    alert = Alert("g", "2025-01-01", "label_decay", "label_decay", "critical", None, 0.1, "x", False, state=ESCALATED)
    assert alert_text(alert) == "[critical] g label_decay escalated: x"
