"""Glue job `ltv-<game>-monitor`: the core's monitoring, on `schedules.monitoring`.

The same `ltv.monitoring.Monitor` as `ltv monitor` (feature drift, prediction drift, delayed
labels, missed predictions), over the game's AWS account: features, player_day and labels
through Athena, the published prediction runs in the curated bucket, the champion's training
statistics from its model package (SageMaker registry). Then:

- every policy's value (`ltv.monitoring.metric_data`) and the number of scoring days without a
  published run (`missed_scoring_runs`) go to CloudWatch, namespace `LTV/<game>`: the alarms of
  the monitoring stack watch them, with the policies' thresholds;
- every alert goes to the game's SNS topic (`--topic_arn`), as JSON with a readable `text`: one
  message per change of an incident's state (open, retrain_requested, retrain_promoted,
  retrain_rejected, escalated, resolved; `ltv.monitoring.Incidents`), never the same alert
  weekly, with the state and the policy alarm's matching CloudWatch state as message attributes;
- the monitoring state and results go to `s3://<curated>/monitoring/` (fetched first, published
  last), as `lake/<game>/monitoring/` locally.

With `--engine duckdb --lake DIR` the same script runs on a local lake (the tests compare both):
the local registry and runs, metrics and alerts only logged.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv import metric_names
from ltv.lake import MONITORING_STATE
from ltv.monitoring import ALARM_STATE, Alert, Monitor, alert_body, alert_text, metric_data, missed_scoring_runs
from ltv.scoring import Predictions

log = logging.getLogger("ltv.glue")
STATE = MONITORING_STATE.rsplit("/", 1)[1]


def run(rt: common.Runtime, args: common.Args, clients: dict[str, Any] | None = None) -> str:
    config, now = rt.config, rt.now()
    day = dt.date.fromisoformat(args["date"]) if "date" in args else now.date()
    aws = "curated_uri" in args and args.get("engine", "athena") == "athena"
    clients = clients or (_clients() if aws else {})
    if aws:
        from ltv.runs import S3Store
        from ltv.sagemaker_registry import SageMakerRegistry

        registry: Any = SageMakerRegistry(config.game.id, sagemaker=clients["sagemaker"], s3=clients["s3"])
        predictions = Predictions(S3Store(clients["s3"], args["curated_uri"].removeprefix("s3://").strip("/")),
                                  config.game.id)
    else:
        from ltv.registry import LocalRegistry

        registry, predictions = LocalRegistry(rt.lake.registry, config.game.id), Predictions.of(rt.lake)
    rt.fetch(rt.lake.monitoring, [STATE])
    monitor = Monitor(config, rt.lake, rt.engine, registry, predictions=predictions,
                      send=lambda alert: _send(clients.get("sns"), args.get("topic_arn"), alert))
    report = monitor.run(day)
    missed = missed_scoring_runs(config, predictions.dates(), now)
    at = now.replace(tzinfo=dt.timezone.utc)  # the jobs' clock is naive UTC, like the logs
    data = metric_data(report, at) + [{"MetricName": metric_names.MISSED_SCORING_RUNS, "Value": float(len(missed)),
                                       "Unit": "Count", "Timestamp": at}]
    if "cloudwatch" in clients:
        clients["cloudwatch"].put_metric_data(Namespace=metric_names.namespace(config.game.id), MetricData=data)
    for datum in data:
        log.info("metric %s %s = %s", datum["MetricName"],
                 ",".join(f"{d['Name']}={d['Value']}" for d in datum.get("Dimensions", [])), datum["Value"])
    if missed:
        log.error("no published predictions for scoring day(s) %s: see docs/operations.md, 'The alarms' (missed-scoring-run)",
                  ", ".join(missed))
    for path in sorted(rt.lake.monitoring.rglob("*.json"), key=lambda p: p.name == STATE):  # the state last
        rt.publish(path)
    return (f"{day}: {len(report.measurements)} measurement(s), {len(report.alerts)} alert(s), "
            f"{len(missed)} missed scoring run(s)")


def _send(sns: Any, topic_arn: str | None, alert: Alert) -> str:
    """An alert to the game's topic (subject: its one-line text), or only logged without one."""
    log.warning("alert: %s", alert_text(alert))
    if sns is None or not topic_arn:
        return "log"
    subject = alert_text(alert).encode("ascii", "replace").decode()[:100]
    attributes = {"state": alert.state, "alarm_state": ALARM_STATE[alert.state]}
    message_id = sns.publish(TopicArn=topic_arn, Subject=subject, Message=alert_body(alert).decode(), MessageAttributes={
        k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()})["MessageId"]
    return f"sns {message_id}"


def _clients() -> dict[str, Any]:
    import boto3

    return {name: boto3.client(name) for name in ("s3", "sagemaker", "sns", "cloudwatch")}


def main(argv: list[str] | None = None, clients: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return common.main("monitor", argv, lambda rt, args: run(rt, args, clients), extra=("topic_arn",), **kwargs)


if __name__ == "__main__":
    main()
