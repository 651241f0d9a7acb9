"""Monitoring (King's policies): signals measured after each day's work, policies turning them
into alerts, and alerts that can ask for retraining.

Signals:
- feature_drift: PSI of each feature of the latest scored population against the champion's
  training statistics; the value is how many features exceed the policy's threshold.
- prediction_drift: the largest PSI of the scores (ltv_expected, p_payer, p_churn) against the
  champion's validation predictions.
- label_decay: delayed-label evaluation: once a scored cohort's horizon has passed, its
  predictions are compared with what happened (the report's metrics); the value is the
  relative drop of the policy's metric (default: the promotion's primary) from the version's
  value on the unseen test split its promotion used (not the validation split it was tuned on,
  whose score is inflated by threshold choice and early stopping).
- missed_predictions: share of players active in the population window of the latest scoring
  date who have no prediction.
- validation_failure: error-level data validation checks that failed for the day's raw logs.

Each policy turns its signal's measurement into a value (`PolicyValue`; for feature_drift, the
number of features above the policy's PSI threshold) that fires when it crosses the policy's
threshold. A firing policy opens an incident with a life cycle (`Incidents`): open → retrain
requested → retrain promoted / rejected (read from the registry) → resolved when a measurement of
the current model no longer fires, or escalated once; each change of state is one alert, never
the same alert every week. Locally alerts go to `monitoring/alerts.jsonl` (and an optional
webhook); in AWS the monitoring Glue job runs this same `Monitor` over Athena and S3, publishes
every `PolicyValue` of the current model as a CloudWatch metric (`metric_data`; the alarms use the
same thresholds, so a policy's alarm is in ALARM while its incident is open and OK once resolved,
`ALARM_STATE`) and delivers the alerts to the game's SNS topic.
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
from ltv.promotion import Focus
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
    value: float | None   # None for a transition no measurement caused (a retrain's outcome)
    threshold: float
    message: str
    retrain: bool
    details: dict[str, Any] = field(default_factory=dict)
    delivery: str = "log"
    state: str = "open"   # the incident's state this alert announces (see `Incidents`)


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
    retrain_for: list[str] = field(default_factory=list)  # policies whose incident awaits a retrain

    @property
    def retrain(self) -> bool:
        return bool(self.retrain_for)


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
        return (f"cohort {d.get('cutoff')}: {d.get('metric')} {d.get('current'):.4f} vs {d.get('reference'):.4f} on the "
                f"unseen test split of its promotion, {m.value:.1%} worse (> {policy.threshold:.0%})")
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
        path = self.lake.monitoring_state
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
            # the reference is the version's score on the unseen test split its promotion used, not
            # the validation split it was tuned on (thresholds, early stopping): that would inflate the drop
            reference = self.registry.get(result["model_version"]).metrics.get(primary)
            drop = relative_drop(primary, result.get(primary), reference)
            measurements.append(Measurement("label_decay", drop, {"cutoff": cohort, "metric": primary,
                                                                  "current": result.get(primary),
                                                                  "reference": reference, "reference_split": "test",
                                                                  "model_version": result["model_version"]}))
        judgements = judge(self.config.monitoring.policies, measurements)
        incidents = Incidents(state.setdefault("incidents", {}), self.config.monitoring.escalate_after_rejections,
                              lambda v: trained_until(self.config, v))
        policies = self.config.monitoring.policies
        transitions = incidents.outcomes(str(day), policies, self.registry.versions())
        judgements = incidents.current(judgements)  # a replaced model's late cohorts judge nothing
        transitions += incidents.advance(str(day), policies, judgements, self.registry.versions())
        values = [PolicyValue(p.name, p.signal, float(m.value), alarm_threshold(p), fires) for p, m, fires in judgements]
        alerts = self._alerts(day, transitions)
        report = MonitoringReport(self.config.game.id, str(day), measurements, alerts, values, incidents.awaiting_retrain())
        if measurements or alerts:
            write_json_atomic(self.dir / f"date={day}.json", {"measurements": [asdict(m) for m in measurements],
                                                               "values": [asdict(v) for v in values],
                                                               "alerts": [asdict(a) for a in alerts]})
        write_json_atomic(self.lake.monitoring_state, state)
        return report

    def _alerts(self, day: dt.date, transitions: list[Transition]) -> list[Alert]:
        """Alerts of the day's incident transitions (`Incidents.advance`): logged, then delivered."""
        alerts = [Alert(self.config.game.id, str(day), t.policy.name, t.policy.signal, t.severity,
                        t.measurement.value if t.measurement else None, t.policy.threshold,
                        t.message, t.policy.retrain and t.state in (OPEN, RETRAIN_REQUESTED),
                        {k: v for k, v in (t.measurement.details if t.measurement else {}).items() if k != "psi"},
                        state=t.state) for t in transitions]
        self.dir.mkdir(parents=True, exist_ok=True)
        for alert in alerts:
            alert.delivery = self.send(alert)
            with open(self.dir / "alerts.jsonl", "a") as f:
                f.write(json.dumps(asdict(alert), default=_json_default) + "\n")
        return alerts

    def incidents(self) -> list[dict[str, Any]]:
        """Every incident so far with its life cycle (`Incidents.history`)."""
        return Incidents(self._state().get("incidents", {}), self.config.monitoring.escalate_after_rejections).history()

    def focus(self) -> Focus | None:
        """What a retrain asked for by a label-decay incident must fix: its metric on the cohorts that
        decayed (None when no label-decay incident awaits a retrain)."""
        return retrain_focus(self._state(), self.config.monitoring.policies)


def trained_until(config: GameConfig, version: Any) -> str | None:
    """The last training cutoff of a registered version: from its lineage's dataset cutoffs (the
    local registry), else from its dataset's name (SageMaker's metadata keeps only the name; a
    rolling or configured version's splits follow from the config); None when neither says."""
    from ltv import datasets
    from ltv.errors import LtvError

    dataset = (version.lineage or {}).get("dataset") or {}
    train = (dataset.get("cutoffs") or {}).get("train")
    if train:
        return max(str(c) for c in train)
    try:
        return str(max(datasets.find_spec(config, dataset["name"]).train)) if dataset.get("name") else None
    except (LtvError, ValueError):
        return None


def retrain_focus(state: dict[str, Any], policies: list[Policy]) -> Focus | None:
    """The focus of a monitoring state (`Monitor.focus`): the first label-decay policy whose
    incident awaits a retrain. The SageMaker pipeline's evaluate step reads it from the state the
    monitoring job published, so the same retrain is judged the same way locally and in AWS."""
    incidents = state.get("incidents", {})
    for policy in policies:
        incident = incidents.get(policy.name)
        if policy.signal == "label_decay" and incident and incident["state"] == RETRAIN_REQUESTED:
            return Focus(policy.name, incident["metric"], tuple(incident["cohorts"]))
    return None


# ----------------------------------------------------------------------------------------------
# incidents: an alert's life cycle

OPEN, RETRAIN_REQUESTED, RETRAIN_PROMOTED, RETRAIN_REJECTED = "open", "retrain_requested", "retrain_promoted", "retrain_rejected"
ESCALATED, RESOLVED = "escalated", "resolved"
CLOSED = "_closed"  # the incidents' key of resolved incidents a new one replaced (policy names start with a letter)
# the CloudWatch alarm state of the policy's alarm in each incident state (the alarm watches the same
# values: `PolicyValue` is published only for measurements of the current model, see `Incidents.current`)
ALARM_STATE = {OPEN: "ALARM", RETRAIN_REQUESTED: "ALARM", RETRAIN_PROMOTED: "ALARM", RETRAIN_REJECTED: "ALARM",
               ESCALATED: "ALARM", RESOLVED: "OK"}


@dataclass(frozen=True)
class Transition:
    policy: Policy
    state: str
    severity: str
    message: str
    measurement: Measurement | None = None


class Incidents:
    """One incident per policy, from the first alert to its resolution, kept in the monitoring state:

    open (the policy fired; a retraining policy asks for a retrain at once: retrain_requested)
    → retrain_promoted / retrain_rejected (the next registered version, as the registry says)
    → resolved, when a measurement of the current model no longer fires,
    or escalated once: a promoted retrain that still fires on its own cohorts, or
    `escalate_after` rejected retrains that had their chance: a rejected retrain whose training
    cutoffs (`trained_until`) end before the first decayed cohort held none of the changed labels,
    so its rejection says nothing about whether retraining can recover the metric and is not
    counted (a version whose training data is unknown is counted). While an incident is open
    nothing is repeated: each transition is announced once, and a rerun of a day finds nothing
    new to announce."""

    def __init__(self, state: dict[str, Any], escalate_after: int,
                 trained_until: Callable[[Any], str | None] = lambda _version: None):
        self.state, self.escalate_after, self.trained_until = state, escalate_after, trained_until

    def current(self, judgements: list[tuple[Policy, Measurement, bool]]) -> list[tuple[Policy, Measurement, bool]]:
        """The judgements that speak about the current model: after a promoted fix, the replaced
        model's cohorts (labelled weeks later) say nothing about the fix."""
        def fix(policy: Policy) -> int:
            return (self.state.get(policy.name) or {}).get("fix_version") or 0
        return [(p, m, f) for p, m, f in judgements if int(m.details.get("model_version") or fix(p)) >= fix(p)]

    def awaiting_retrain(self) -> list[str]:
        return sorted(name for name, i in self.state.items() if name != CLOSED and i["state"] == RETRAIN_REQUESTED)

    def history(self) -> list[dict[str, Any]]:
        """Every incident, closed ones first, each with its policy and its states in order."""
        return [*self.state.get(CLOSED, []), *({"policy": k} | v for k, v in self.state.items() if k != CLOSED)]

    def advance(self, day: str, policies: list[Policy], judgements: list[tuple[Policy, Measurement, bool]],
                versions: list[Any]) -> list[Transition]:
        """Move every policy's incident by the day's judgements and the registry's versions."""
        out: list[Transition] = []
        latest = max((v.version for v in versions), default=0)
        for policy in policies:
            mine = [(m, f) for p, m, f in judgements if p.name == policy.name]
            incident = self.state.get(policy.name)
            fired = [m for m, f in mine if f]
            if incident is None or incident["state"] == RESOLVED:
                if fired:
                    out += self._open(day, policy, fired[-1], latest)
                continue
            if fired:
                incident["cohorts"] = sorted(set(incident["cohorts"]) | {str(m.details["cutoff"]) for m in fired
                                                                          if "cutoff" in m.details})
                if incident["state"] == RETRAIN_PROMOTED:
                    out.append(self._move(day, policy, incident, ESCALATED, policy.severity, fired[-1],
                                          f"retraining did not recover {_watched(policy, fired[-1])}: version "
                                          f"{incident['fix_version']} still fires - the change may need new features"))
                elif incident["state"] == RETRAIN_REJECTED and policy.retrain:
                    incident["after_version"] = latest
                    out.append(self._move(day, policy, incident, RETRAIN_REQUESTED, "info", fired[-1],
                                          "still firing after a rejected retrain - retrain requested again"))
            elif mine:
                m = mine[-1][0]
                out.append(self._move(day, policy, incident, RESOLVED, "info", m,
                                      f"resolved: {_watched(policy, m)} back within the threshold - value "
                                      f"{m.value:.4g} vs {policy.threshold}"))
        return out

    def outcomes(self, day: str, policies: list[Policy], versions: list[Any]) -> list[Transition]:
        """Incidents awaiting a retrain learn its outcome from the registry: the first version
        registered after the request (first, so the day's judgements see the fix)."""
        out: list[Transition] = []
        for policy in policies:
            incident = self.state.get(policy.name)
            if incident and incident["state"] == RETRAIN_REQUESTED:
                out += self._outcome(day, policy, incident, [v for v in versions if v.version > incident["after_version"]])
        return out

    def _open(self, day: str, policy: Policy, m: Measurement, latest: int) -> list[Transition]:
        if policy.name in self.state:  # a resolved incident is kept, a new one opens
            self.state.setdefault(CLOSED, []).append({"policy": policy.name} | self.state[policy.name])
        incident = {"state": OPEN, "opened": day, "after_version": latest, "fix_version": None, "rejections": 0,
                    "metric": m.details.get("metric"), "cohorts": [str(m.details["cutoff"])] if "cutoff" in m.details
                    else [], "history": []}
        self.state[policy.name] = incident
        out = [self._move(day, policy, incident, OPEN, policy.severity, m, _message(policy, m))]
        if policy.retrain:
            incident["state"] = RETRAIN_REQUESTED
            incident["history"].append({"date": day, "state": RETRAIN_REQUESTED, "note": "retrain requested"})
            out[0] = Transition(policy, OPEN, policy.severity, _message(policy, m) + " - retrain requested", m)
        return out

    def _outcome(self, day: str, policy: Policy, incident: dict[str, Any], newer: list[Any]) -> list[Transition]:
        """The first version registered after the request decides the retrain's outcome."""
        if not newer:
            return []
        v = min(newer, key=lambda x: x.version)
        why = v.history[0].get("reason", "") if v.history else ""
        if v.status != "Rejected":
            incident["fix_version"] = v.version
            return [self._move(day, policy, incident, RETRAIN_PROMOTED, "info", None,
                               f"retrain promoted: version {v.version} {v.status} - {why}")]
        incident["after_version"] = v.version
        until, first = self.trained_until(v), min(incident["cohorts"], default=None)
        if until is not None and first is not None and until < first:
            return [self._move(day, policy, incident, RETRAIN_REJECTED, "info", None,
                               f"retrain rejected: version {v.version} - {why}; not counted toward escalation: "
                               f"trained on cutoffs up to {until}, before the first decayed cohort {first}")]
        incident["rejections"] += 1
        out = [self._move(day, policy, incident, RETRAIN_REJECTED, "info", None,
                          f"retrain rejected: version {v.version} - {why}")]
        if incident["rejections"] >= self.escalate_after:
            out.append(self._move(day, policy, incident, ESCALATED, policy.severity, None,
                                  f"{incident['rejections']} retrains rejected: retraining did not recover "
                                  f"{incident['metric'] or policy.signal} - the change may need new features"))
        return out

    def _move(self, day: str, policy: Policy, incident: dict[str, Any], state: str, severity: str,
              m: Measurement | None, message: str) -> Transition:
        incident["state"] = state
        incident["history"].append({"date": day, "state": state, "note": message})
        return Transition(policy, state, severity, message, m)


def _watched(policy: Policy, m: Measurement) -> str:
    return str(m.details.get("metric") or policy.signal)


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
    return f"[{alert.severity}] {alert.game} {alert.policy} {alert.state}: {alert.message}"


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
