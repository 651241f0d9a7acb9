"""Monitoring (King's policies): signals measured after each day's work, policies turning them
into alerts, and alerts that can ask for retraining.

Signals:
- feature_drift: PSI of each feature of the latest scored population against the champion's
  training statistics; the value is how many features exceed the policy's threshold.
- prediction_drift: the largest PSI of the scores (ltv_expected, p_payer, p_churn) against the
  champion's validation predictions.
- label_decay: delayed-label evaluation: once a scored cohort's horizon has passed, its
  predictions are compared with what happened (the report's metrics); the value is the
  relative drop of the promotion's primary metric from the champion's validation value.
- missed_predictions: share of players active in the population window of the latest scoring
  date who have no prediction.
- validation_failure: error-level data validation checks that failed for the day's raw logs.

Each policy turns its signal's measurement into a value (`PolicyValue`; for feature_drift, the
number of features above the policy's PSI threshold) that fires when it crosses the policy's
threshold. Locally alerts go to `monitoring/alerts.jsonl` (and an optional webhook); in AWS the
monitoring Glue job runs this same `Monitor` over Athena and S3, publishes every `PolicyValue` as
a CloudWatch metric (`metric_data`; the alarms use the same thresholds) and delivers the alerts to
the game's SNS topic.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ltv import etl, metric_names, metrics, schedule, webhook
from ltv.config import LOWER_IS_BETTER, GameConfig, Policy
from ltv.engine import Engine
from ltv.evaluate import clean
from ltv.lake import Lake, write_json_atomic
from ltv.registry import Registry
from ltv.scoring import Predictions
from ltv.stats import psi, psi_table

PREDICTION_DRIFT_COLUMNS = ("ltv_expected", "p_payer", "p_churn")
MISSED_RUNS_LOOKBACK_DAYS = 14


@dataclass
class Measurement:
    signal: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Alert:
    game: str
    date: str
    policy: str
    signal: str
    severity: str
    value: float
    threshold: float
    message: str
    retrain: bool
    details: dict[str, Any] = field(default_factory=dict)
    delivery: str = "log"


@dataclass(frozen=True)
class PolicyValue:
    """A measurement as one policy judges it: the value compared with its threshold."""

    policy: str
    signal: str
    value: float
    threshold: float
    fired: bool


@dataclass
class MonitoringReport:
    game: str
    date: str
    measurements: list[Measurement]
    alerts: list[Alert]
    values: list[PolicyValue] = field(default_factory=list)

    @property
    def retrain(self) -> bool:
        return any(a.retrain for a in self.alerts)


# ----------------------------------------------------------------------------------------------
# signals


def feature_psi(model_stats: dict[str, Any], features: pd.DataFrame) -> pd.DataFrame:
    """PSI of every feature against the model's training statistics, largest first."""
    return psi_table(model_stats, features)


def prediction_drift(reference: dict[str, Any], predictions: pd.DataFrame) -> Measurement:
    values = {c: psi(reference["features"][c], predictions[c]) for c in PREDICTION_DRIFT_COLUMNS
              if c in reference["features"] and c in predictions}
    worst = max(values, key=values.get) if values else None
    return Measurement("prediction_drift", values[worst] if worst else 0.0, {"psi": values, "worst": worst})


def missed_predictions(engine: Engine, config: GameConfig, day: str, predictions: pd.DataFrame) -> Measurement:
    w = etl.Windows.of(config, dt.date.fromisoformat(day))
    active = engine.query(f"SELECT DISTINCT player_id FROM player_day WHERE dt >= '{w.window_start}' AND dt < '{day}'")
    missing = active[~active["player_id"].isin(predictions["player_id"])]
    share = len(missing) / len(active) if len(active) else 0.0
    return Measurement("missed_predictions", share, {"active": int(len(active)), "missed": int(len(missing)),
                                                     "sample": missing["player_id"].head(5).tolist(), "date": day})


def delayed_evaluation(engine: Engine, config: GameConfig, predictions: Predictions, day: str) -> dict[str, Any] | None:
    """Metrics of the predictions made at `day` against the labels that are now known."""
    cutoff = dt.date.fromisoformat(day)
    if not etl.labels_available(engine, config, cutoff):
        return None
    if not etl.is_current(engine, config, "labels", day):
        etl.build_labels(engine, config, cutoff)
    labels = engine.query(f"SELECT * FROM labels WHERE cutoff = '{day}'")
    pred = predictions.read(day)
    frame = labels.merge(pred.drop(columns=["dt", "run"]), on="player_id", how="inner")
    result = clean(metrics.flat_metrics(frame, config.horizons.purchase_days))
    result |= {"cutoff": day, "model_version": int(pred["model_version"].iloc[0]), "scored_players": int(len(pred)),
               "labelled_players": int(len(labels))}
    return result


def relative_drop(metric: str, current: float | None, reference: float | None) -> float:
    """How much worse `current` is than `reference`, relative (0 = as good, 0.1 = 10 % worse)."""
    if current is None or reference in (None, 0):
        return 0.0
    drop = (current - reference) if metric in LOWER_IS_BETTER else (reference - current)
    return float(drop / abs(reference))


# ----------------------------------------------------------------------------------------------
# the daily monitoring run


def _fires(policy: Policy, m: Measurement) -> bool:
    return m.value >= policy.min_features if policy.signal == "feature_drift" else m.value > policy.threshold


def _message(policy: Policy, m: Measurement) -> str:
    d = m.details
    if policy.signal == "feature_drift":
        top = ", ".join(f"{f} {p:.2f}" for f, p in d.get("top", [])[:5])
        return f"{int(m.value)} feature(s) with PSI > {policy.threshold} (need {policy.min_features}): {top}"
    if policy.signal == "prediction_drift":
        return f"score distribution shifted: PSI {m.value:.3f} on {d.get('worst')} (> {policy.threshold})"
    if policy.signal == "label_decay":
        return (f"cohort {d.get('cutoff')}: {d.get('metric')} {d.get('current'):.4f} vs {d.get('reference'):.4f} at "
                f"training, {m.value:.1%} worse (> {policy.threshold:.0%})")
    if policy.signal == "missed_predictions":
        return f"{d.get('missed')} of {d.get('active')} active players ({m.value:.2%}) have no prediction at {d.get('date')}"
    return f"{int(m.value)} data validation check(s) failed: {', '.join(d.get('checks', []))}"


class Monitor:
    """Measures the signals for one game and applies its policies.

    `predictions` is where the published scoring runs are (default: the local lake); `send`
    delivers one alert and says how (default: the config's webhook, if any; in AWS, SNS). Monitoring state and
    results are written under `lake.monitoring`."""

    def __init__(self, config: GameConfig, lake: Lake, engine: Engine, registry: Registry, *,
                 predictions: Predictions | None = None, send: Callable[[Alert], str] | None = None):
        self.config, self.lake, self.engine, self.registry = config, lake, engine, registry
        self.predictions = predictions or Predictions.of(lake)
        self.send = send or (lambda alert: deliver(alert, config.alerts.webhook_url))
        self.dir = lake.monitoring

    def _state(self) -> dict[str, Any]:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"monitored_scores": [], "evaluated": []}

    def run(self, day: dt.date, validation_failures: list[str] | None = None) -> MonitoringReport:
        """Measure what is new by `day` and raise the alerts the policies call for."""
        state = self._state()
        measurements: list[Measurement] = []
        if validation_failures is not None:
            measurements.append(Measurement("validation_failure", float(len(validation_failures)),
                                            {"checks": validation_failures}))
        scored_dates = self.predictions.dates()
        new_scores = [d for d in scored_dates if d <= str(day) and d not in state["monitored_scores"]]
        for scored in new_scores[-1:]:  # the latest new scoring run
            pred = self.predictions.read(scored)
            version = int(pred["model_version"].iloc[0])
            stats = self.registry.artifact_json(version, "feature_stats.json")
            manifest = self.registry.artifact_json(version, "manifest.json")
            features = self.engine.query(f"SELECT * FROM features WHERE cutoff = '{scored}'")
            table = feature_psi(stats, features)
            measurements.append(Measurement("feature_drift", 0.0, {"psi": dict(zip(table.feature, table.psi)),
                                                                   "top": list(zip(table.feature, table.psi))[:10],
                                                                   "date": scored, "model_version": version}))
            measurements.append(prediction_drift(manifest["prediction_stats"], pred))
            measurements.append(missed_predictions(self.engine, self.config, scored, pred))
        state["monitored_scores"] = sorted(set(state["monitored_scores"]) | set(new_scores))
        horizon = dt.timedelta(days=etl.label_horizon(self.config))
        due = [d for d in scored_dates if dt.date.fromisoformat(d) + horizon <= day and d not in state["evaluated"]]
        decay = next((p for p in self.config.monitoring.policies if p.signal == "label_decay"), None)
        primary = (decay.metric if decay else None) or self.config.promotion.primary_metric
        for cohort in due:
            result = delayed_evaluation(self.engine, self.config, self.predictions, cohort)
            if result is None:
                continue
            write_json_atomic(self.dir / "delayed" / f"cutoff={cohort}.json", result)
            state["evaluated"].append(cohort)
            manifest = self.registry.artifact_json(result["model_version"], "manifest.json")
            reference = manifest["validation_metrics"].get(primary)
            drop = relative_drop(primary, result.get(primary), reference)
            measurements.append(Measurement("label_decay", drop, {"cutoff": cohort, "metric": primary,
                                                                  "current": result.get(primary),
                                                                  "reference": reference,
                                                                  "model_version": result["model_version"]}))
        judgements = judge(self.config.monitoring.policies, measurements)
        values = [PolicyValue(p.name, p.signal, float(m.value), alarm_threshold(p), fires) for p, m, fires in judgements]
        alerts = self._alerts(day, judgements)
        report = MonitoringReport(self.config.game.id, str(day), measurements, alerts, values)
        if measurements:
            write_json_atomic(self.dir / f"date={day}.json", {"measurements": [asdict(m) for m in measurements],
                                                               "values": [asdict(v) for v in values],
                                                               "alerts": [asdict(a) for a in alerts]})
        write_json_atomic(self.dir / "state.json", state)
        return report

    def _alerts(self, day: dt.date, judgements: list[tuple[Policy, Measurement, bool]]) -> list[Alert]:
        """Alerts of the (policy, judged measurement) pairs that fired (`judge`): logged, then delivered."""
        alerts = [Alert(self.config.game.id, str(day), policy.name, policy.signal, policy.severity, m.value,
                        policy.threshold, _message(policy, m), policy.retrain,
                        {k: v for k, v in m.details.items() if k != "psi"}) for policy, m, fires in judgements if fires]
        self.dir.mkdir(parents=True, exist_ok=True)
        for alert in alerts:
            alert.delivery = self.send(alert)
            with open(self.dir / "alerts.jsonl", "a") as f:
                f.write(json.dumps(asdict(alert), default=_json_default) + "\n")
        return alerts


def judged(policy: Policy, m: Measurement) -> Measurement:
    """The measurement as `policy` sees it: feature drift counts the features above the policy's
    own PSI threshold; every other signal is compared as measured."""
    if policy.signal != "feature_drift":
        return m
    over = [(f, p) for f, p in m.details["psi"].items() if p > policy.threshold]
    return Measurement(m.signal, float(len(over)), m.details | {"top": sorted(over, key=lambda x: -x[1])})


def judge(policies: list[Policy], measurements: list[Measurement]) -> list[tuple[Policy, Measurement, bool]]:
    """Every (policy, measurement of its signal) pair, the measurement as the policy sees it and
    whether it fires: the alerts and the values alarms compare (`PolicyValue`) both come from here."""
    return [(policy, j, _fires(policy, j)) for policy in policies for m in measurements
            if m.signal == policy.signal for j in [judged(policy, m)]]


def alarm_threshold(policy: Policy) -> float:
    """The threshold a CloudWatch alarm compares the policy's value with, as `_fires` does:
    `value >= min_features` for feature drift, `value > threshold` otherwise."""
    return float(policy.min_features) if policy.signal == "feature_drift" else float(policy.threshold)


def metric_dimensions(policy: Policy | PolicyValue) -> list[dict[str, str]]:
    name = policy.name if isinstance(policy, Policy) else policy.policy
    return [{"Name": "Signal", "Value": policy.signal}, {"Name": "Policy", "Value": name}]


def metric_data(report: MonitoringReport, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The report's policy values as CloudWatch `MetricData` (what the AWS monitoring job publishes)."""
    stamp = {"Timestamp": at} if at else {}
    return [{"MetricName": metric_names.POLICY_VALUE, "Dimensions": metric_dimensions(v), "Value": v.value,
             "Unit": "None", **stamp} for v in report.values]


def scoring_days(config: GameConfig, start: dt.date, end: dt.date) -> list[dt.date]:
    """The days in [start, end] on which the game is scored (cutoff days the scoring schedule matches)."""
    return [d for d in etl.day_range(start, end + dt.timedelta(days=1))
            if schedule.is_scoring_day(config.cutoffs, config.schedules.scoring, d)]


def missed_scoring_runs(config: GameConfig, published: list[str], now: dt.datetime) -> list[str]:
    """Scoring days of the last `MISSED_RUNS_LOOKBACK_DAYS` whose deadline (`scoring.deadline_hours`
    after the day starts, UTC) has passed without a published run. Days before the first published
    run do not count: until a first champion exists, the "no Approved package" alarm speaks."""
    if not published:
        return []
    deadline = dt.timedelta(hours=config.scoring.deadline_hours)
    start = max(dt.date.fromisoformat(published[0]), (now - dt.timedelta(days=MISSED_RUNS_LOOKBACK_DAYS)).date())
    done = set(published)
    return [str(d) for d in scoring_days(config, start, now.date())
            if dt.datetime.combine(d, dt.time()) + deadline <= now and str(d) not in done]


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return str(x)


def alert_text(alert: Alert) -> str:
    """The one-line form of an alert (the webhook's text, the SNS subject)."""
    return f"[{alert.severity}] {alert.game} {alert.policy}: {alert.message}"


def alert_body(alert: Alert) -> bytes:
    """The alert as JSON: a webhook's `text` and the alert's fields (also the SNS message)."""
    return webhook.payload(alert_text(alert), alert=json.loads(json.dumps(asdict(alert), default=_json_default)))


def deliver(alert: Alert, webhook_url: str | None, timeout: float = 5.0) -> str:
    """POST the alert as JSON to the webhook, if one is configured; never raises."""
    if not webhook_url:
        return "log"
    return webhook.post_json(webhook_url, alert_body(alert), timeout)


def read_alerts(lake: Lake) -> list[dict[str, Any]]:
    path = lake.monitoring / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
