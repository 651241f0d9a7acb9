"""Monitoring's rules on constructed measurements (fast: no model, no engine): when a policy fires,
at exactly its threshold, what an alert says, what the alarms compare, which scoring runs count as
missed, and an unreachable webhook that monitoring carries on past. This is the file `make
mutation` runs against ltv/monitoring.py (tests/test_monitoring.py measures the signals on real data)."""
from __future__ import annotations

import datetime as dt
import json
import socket
import time

import pytest

from conftest import loop_config
from ltv import metric_names
from ltv.lake import Lake
from ltv.monitoring import (ESCALATED, OPEN, RESOLVED, RETRAIN_PROMOTED, RETRAIN_REJECTED, RETRAIN_REQUESTED, Alert,
                            Incidents, Transition, Measurement, Monitor, MonitoringReport, PolicyValue,
                            alarm_threshold, alert_body, alert_text, deliver, judge, metric_data, metric_dimensions,
                            missed_scoring_runs, read_alerts, relative_drop, scoring_days)

DAY = dt.date(2025, 4, 14)
POLICIES = [
    {"name": "feature_drift", "signal": "feature_drift", "threshold": 0.25, "min_features": 2, "retrain": True},
    {"name": "prediction_drift", "signal": "prediction_drift", "threshold": 0.25},
    {"name": "label_decay", "signal": "label_decay", "threshold": 0.125, "severity": "critical", "retrain": True},
    {"name": "missed_predictions", "signal": "missed_predictions", "threshold": 0.0625, "severity": "critical"},
    {"name": "validation_failure", "signal": "validation_failure", "threshold": 0, "severity": "critical"},
]


def policies(**overrides):
    return loop_config(monitoring={"policies": POLICIES}, **overrides).monitoring.policies


def fired(measurements: list[Measurement]) -> dict[str, Measurement]:
    return {p.name: m for p, m, fires in judge(policies(), measurements) if fires}


def test_a_policy_fires_above_its_threshold_not_at_it() -> None:
    """PSI exactly at the threshold is not drift; a value exactly at the threshold does not fire;
    feature drift fires from `min_features` drifting features on (values exact in binary)."""
    at = [Measurement("prediction_drift", 0.25), Measurement("label_decay", 0.125),
          Measurement("missed_predictions", 0.0625), Measurement("validation_failure", 0.0),
          Measurement("feature_drift", 0.0, {"psi": {"a": 0.25, "b": 0.25, "c": 0.1}})]
    assert fired(at) == {}
    above = [Measurement("prediction_drift", 0.2500001), Measurement("label_decay", 0.13),
             Measurement("missed_predictions", 0.07), Measurement("validation_failure", 1.0),
             Measurement("feature_drift", 0.0, {"psi": {"a": 0.26, "b": 0.5, "c": 0.25}})]
    assert set(fired(above)) == {p["name"] for p in POLICIES}
    drift = fired(above)["feature_drift"]
    assert drift.value == 2 and drift.details["top"] == [("b", 0.5), ("a", 0.26)], "largest first, c not counted"
    one = [Measurement("feature_drift", 0.0, {"psi": {"a": 0.9, "b": 0.1}})]
    assert fired(one) == {} and judge(policies(), one)[0][1].value == 1, "one drifting feature of the two needed"


def test_each_measurement_is_judged_by_the_policies_of_its_signal_only() -> None:
    two = loop_config(monitoring={"policies": [
        {"name": "loose", "signal": "feature_drift", "threshold": 0.5, "min_features": 1},
        {"name": "strict", "signal": "feature_drift", "threshold": 0.1, "min_features": 1}]}).monitoring.policies
    judged = judge(two, [Measurement("feature_drift", 0.0, {"psi": {"a": 0.3}}), Measurement("label_decay", 0.9)])
    assert [(p.name, m.value, fires) for p, m, fires in judged] == [("loose", 0.0, False), ("strict", 1.0, True)]


def test_alarms_compare_what_the_policies_compare() -> None:
    by_name = {p.name: p for p in policies()}
    assert alarm_threshold(by_name["feature_drift"]) == 2.0, "feature drift: the number of drifting features"
    assert alarm_threshold(by_name["label_decay"]) == 0.125
    report = MonitoringReport("g", str(DAY), [], [], [PolicyValue("label_decay", "label_decay", 0.2, 0.125, True)])
    at = dt.datetime(2025, 4, 14, 5, tzinfo=dt.timezone.utc)
    assert metric_data(report, at) == [{"MetricName": metric_names.POLICY_VALUE, "Value": 0.2, "Unit": "None",
                                        "Timestamp": at, "Dimensions": [{"Name": "Signal", "Value": "label_decay"},
                                                                        {"Name": "Policy", "Value": "label_decay"}]}]
    assert "Timestamp" not in metric_data(report)[0]
    assert metric_dimensions(by_name["label_decay"]) == metric_dimensions(report.values[0]), "the alarm's own metric"


def test_relative_drop_in_each_metrics_direction() -> None:
    assert relative_drop("normalized_gini", 0.6, 0.8) == pytest.approx(0.25)
    assert relative_drop("normalized_gini", 0.9, 0.8) == pytest.approx(-0.125), "better is a negative drop"
    assert relative_drop("purchase_day_mae", 5.0, 4.0) == pytest.approx(0.25), "lower is better: a larger MAE drops"
    assert relative_drop("normalized_gini", -0.5, -0.25) == pytest.approx(1.0), "relative to |reference|"
    for current, reference in ((None, 0.8), (0.5, None), (0.5, 0)):
        assert relative_drop("normalized_gini", current, reference) == 0.0


def test_missed_scoring_runs_are_due_days_without_a_run_after_the_first_one() -> None:
    config = loop_config()  # scored on Mondays at 04:00, deadline_hours after the day starts
    hours = config.scoring.deadline_hours
    monday = dt.date(2025, 4, 14)
    before_deadline = dt.datetime.combine(monday, dt.time()) + dt.timedelta(hours=hours) - dt.timedelta(seconds=1)
    at_deadline = before_deadline + dt.timedelta(seconds=1)
    assert missed_scoring_runs(config, [], at_deadline) == [], "nothing published yet: no run can be missed"
    assert missed_scoring_runs(config, ["2025-04-07"], before_deadline) == []
    assert missed_scoring_runs(config, ["2025-04-07"], at_deadline) == ["2025-04-14"]
    assert missed_scoring_runs(config, ["2025-04-07", "2025-04-14"], at_deadline) == []
    assert missed_scoring_runs(config, ["2025-04-14"], at_deadline) == []
    weeks_later = at_deadline + dt.timedelta(days=28)
    assert missed_scoring_runs(config, ["2025-03-03"], weeks_later) == ["2025-04-28", "2025-05-05", "2025-05-12"], \
        "only the last 14 days are looked at"
    sunday = monday - dt.timedelta(days=1)
    assert scoring_days(config, sunday, sunday) == [] and scoring_days(config, sunday, monday) == [monday], \
        "both ends included, nothing after"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoVersions:
    """A registry with nothing registered yet (the incidents ask it for retrain outcomes)."""

    def versions(self) -> list:
        return []


def test_an_unreachable_webhook_does_not_stop_monitoring(tmp_path) -> None:
    """The alerts are still logged (with the failed delivery), the day's results written and
    the report returned: the webhook is a notification, not part of the run."""
    config = loop_config(monitoring={"policies": POLICIES},
                         alerts={"webhook_url": f"http://127.0.0.1:{closed_port()}/hook"})
    lake = Lake(tmp_path / "lake", config.game.id)
    monitor = Monitor(config, lake, engine=None, registry=NoVersions())
    report = monitor.run(DAY, validation_failures=["null_ids", "schema"])
    assert [a.policy for a in report.alerts] == ["validation_failure"] and report.retrain is False
    assert report.alerts[0].delivery.startswith("webhook failed: URLError")
    logged = read_alerts(lake)
    assert [a["policy"] for a in logged] == ["validation_failure"] and logged[0]["delivery"].startswith("webhook failed")
    assert logged[0]["message"] == "2 data validation check(s) failed: null_ids, schema"
    day = json.loads((lake.monitoring / f"date={DAY}.json").read_text())
    assert day["values"] == [{"policy": "validation_failure", "signal": "validation_failure", "value": 2.0,
                              "threshold": 0.0, "fired": True}]
    state = json.loads((lake.monitoring / "state.json").read_text())
    assert state["monitored_scores"] == [] and state["evaluated"] == []
    assert state["incidents"]["validation_failure"]["state"] == "open"
    again = monitor.run(DAY, validation_failures=[])  # the checks pass again: the incident resolves, once
    assert [(a.policy, a.state) for a in again.alerts] == [("validation_failure", RESOLVED)]
    assert len(read_alerts(lake)) == 2 and again.alerts[0].delivery.startswith("webhook failed")


def test_alert_messages_say_what_crossed_which_threshold(tmp_path) -> None:
    config = loop_config(monitoring={"policies": POLICIES})
    sent = []
    monitor = Monitor(config, Lake(tmp_path / "lake", config.game.id), None, None,
                      send=lambda alert: sent.append(alert.policy) or "sent")
    incidents = Incidents({}, config.monitoring.escalate_after_rejections)
    alerts = {a.policy: a for a in monitor._alerts(DAY, incidents.advance(str(DAY), config.monitoring.policies, judge(
        config.monitoring.policies, [
        Measurement("feature_drift", 0, {"psi": {"a": 0.5, "b": 0.75}}),
        Measurement("prediction_drift", 0.3, {"worst": "p_payer", "psi": {"p_payer": 0.3}}),
        Measurement("label_decay", 0.2, {"cutoff": "2025-03-01", "metric": "normalized_gini", "current": 0.64,
                                         "reference": 0.8}),
        Measurement("missed_predictions", 0.1, {"missed": 10, "active": 100, "date": "2025-04-14"})]), []))}
    assert sent == ["feature_drift", "prediction_drift", "label_decay", "missed_predictions"]
    assert alerts["feature_drift"].message == ("2 feature(s) with PSI > 0.25 (need 2): b 0.75, a 0.50 - retrain "
                                               "requested")
    assert "psi" not in alerts["feature_drift"].details and alerts["feature_drift"].retrain
    assert alerts["prediction_drift"].message == "score distribution shifted: PSI 0.300 on p_payer (> 0.25)"
    assert alerts["label_decay"].message == ("cohort 2025-03-01: normalized_gini 0.6400 vs 0.8000 on the unseen test "
                                             "split of its promotion, 20.0% worse (> 12%) - retrain requested")
    assert alerts["missed_predictions"].message == "10 of 100 active players (10.00%) have no prediction at 2025-04-14"
    assert alerts["label_decay"].severity == "critical" and alerts["label_decay"].threshold == 0.125
    assert all(a.delivery == "sent" and a.date == str(DAY) and a.game == config.game.id and a.state == "open"
               for a in alerts.values())


def test_an_alert_as_text_and_json() -> None:
    alert = Alert("g", "2025-04-14", "label_decay", "label_decay", "critical", 0.2, 0.1, "worse", True,
                  {"model_version": __import__("numpy").int64(3), "cutoff": dt.date(2025, 3, 3)})
    assert alert_text(alert) == "[critical] g label_decay open: worse"
    body = json.loads(alert_body(alert))
    assert body["text"] == alert_text(alert) and body["alert"]["details"] == {"model_version": 3, "cutoff": "2025-03-03"}
    assert body["alert"]["retrain"] is True


def test_a_resolved_incident_stays_in_the_history_when_a_new_one_opens() -> None:
    policy = policies()[-1]  # validation_failure: no retrain
    incidents = Incidents({}, 2)
    for day, failed in (("2025-04-14", 1.0), ("2025-04-15", 0.0), ("2025-04-16", 2.0)):
        incidents.advance(day, [policy], judge([policy], [Measurement("validation_failure", failed, {"checks": []})]), [])
    assert [(i["policy"], i["opened"], i["state"]) for i in incidents.history()] == [
        ("validation_failure", "2025-04-14", RESOLVED), ("validation_failure", "2025-04-16", "open")]


def test_an_alert_asks_for_a_retrain_only_when_its_incident_does(tmp_path) -> None:
    """A retraining policy's alert says `retrain` when its incident opens or asks again, never on
    the retrain's outcome, an escalation or the resolution."""
    config = loop_config(monitoring={"policies": POLICIES})
    decay = next(p for p in config.monitoring.policies if p.signal == "label_decay")
    monitor = Monitor(config, Lake(tmp_path / "lake", config.game.id), None, None, send=lambda alert: "sent")
    states = [OPEN, RETRAIN_REQUESTED, RETRAIN_PROMOTED, RETRAIN_REJECTED, ESCALATED, RESOLVED]
    alerts = monitor._alerts(DAY, [Transition(decay, state, "info", state) for state in states])
    assert [(a.state, a.retrain, a.value, a.details) for a in alerts] == [
        (OPEN, True, None, {}), (RETRAIN_REQUESTED, True, None, {}), *((s, False, None, {}) for s in states[2:])]


def test_a_webhook_that_never_answers_costs_the_timeout_given() -> None:
    alert = Alert("g", "2025-04-14", "label_decay", "label_decay", "critical", 0.2, 0.1, "worse", True)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        outcome = deliver(alert, f"http://127.0.0.1:{silent.getsockname()[1]}/hook", timeout=0.25)
        took = time.monotonic() - started
    assert outcome.startswith("webhook failed") and "timed out" in outcome
    assert took < 2.5, f"{took:.1f} s: the default 5 s, not the 0.25 s given"


def test_a_feature_drift_alert_names_the_five_largest_drifts(tmp_path) -> None:
    config = loop_config(monitoring={"policies": POLICIES})
    drift = [p for p in config.monitoring.policies if p.signal == "feature_drift"]
    monitor = Monitor(config, Lake(tmp_path / "lake", config.game.id), None, None, send=lambda alert: "sent")
    seven = Measurement("feature_drift", 0, {"psi": {f"f{i}": 0.3 + i / 10 for i in range(7)}})
    [alert] = monitor._alerts(DAY, Incidents({}, 2).advance(str(DAY), drift, judge(drift, [seven]), []))
    assert alert.message == ("7 feature(s) with PSI > 0.25 (need 2): f6 0.90, f5 0.80, f4 0.70, f3 0.60, f2 0.50 - "
                             "retrain requested")
