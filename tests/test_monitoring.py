"""Monitoring: each signal on constructed data, policies to alerts, webhook delivery."""
from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest

from conftest import loop_config
from ltv.monitoring import Alert, Measurement, Monitor, deliver, feature_psi, judge, prediction_drift, read_alerts
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
    return {a.policy: a for a in monitor._alerts(DAY, judge(monitor.config.monitoring.policies, measurements))}


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
    assert monitor.run(DAY).measurements == [], "the same scores are not measured twice"
    later = DAY + dt.timedelta(days=14)
    report = monitor.run(later)
    decay = next(m for m in report.measurements if m.signal == "label_decay")
    assert decay.details["cutoff"] == str(DAY) and decay.details["current"] > 0.5
    assert (lake.monitoring / "delayed" / f"cutoff={DAY}.json").exists()


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
