"""The monitoring stack of a game: the monitoring job, the alarms, and what they set in motion.

- The Glue job `ltv-<game>-monitor` (glue_jobs/monitor.py) on `schedules.monitoring`: the core's
  monitoring over Athena and S3, each policy's value as a CloudWatch metric, alerts to the topic.
  A Glue job like the ETL ones rather than a processing job on the game's image: monitoring is
  queries over the lake (the Athena engine, the jobs' wheelhouse, logs, security configuration
  and failure hook are already there), it starts in a minute on Flex capacity, and it needs no
  model code (the champion's statistics are read from its archive, not by loading it).
- Alarms (every one named `ltv-<game>-...`, see docs/operations.md): one per monitoring policy
  the job measures (threshold and comparison from the policy), and the operational ones: Glue
  job failures, pipeline failures, each Lambda's errors, the dead-letter queue, no Approved
  package, transform job failures, a missed scoring run. Alarms whose event already reaches the
  topic with its details (job and pipeline failures, failed transforms, monitoring alerts) only
  record the state; the others notify the topic.
- EventBridge: the alarm of a policy with `retrain: true` going to ALARM starts the dataset
  workflow (whose success starts the retraining pipeline, stacks/ml.py), as the retraining
  schedule does (stacks/etl_workflow.py); model package approvals and rejections, and pipeline
  steps that fail (not the NotPromoted verdict), are sent to the topic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as assets
from constructs import Construct

from ltv import metric_names
from ltv.config import GameConfig, Policy
from ltv.monitoring import alarm_threshold, metric_dimensions
from ltv.registry import group_name
from stacks.alerting import FAILED_EVENTS, AlertsStack
from stacks.data_lake import DataLakeStack
from stacks.etl import EtlStack
from stacks.etl_jobs import GLUE_JOBS_DIR, JobDef, acknowledge_shared_security
from stacks.failure_hook import RULE as GLUE_FAILURE_RULE
from stacks.ml import MlStack, champion_statements
from stacks.names import Names
from stacks.scoring import ScoringStack

# the signals the AWS monitoring job measures (validation failures fail the validate job instead,
# which the Glue job failure alarm and message report)
AWS_SIGNALS = ("feature_drift", "prediction_drift", "label_decay", "missed_predictions")
MONITOR_JOB = JobDef("monitor", "monitor.py", "Monitors drift, delayed labels and missed predictions; publishes "
                     "metrics and alerts", retry=False)  # the next scheduled run measures again; a retry re-alerts
PIPELINE_FAILED, MODEL_APPROVAL, RETRAIN_ON_ALARM = "pipeline-failed", "model-approval", "retrain-on-alarm"
EVENTS_PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: what it watches, when it fires, whether it notifies the topic itself."""

    name: str
    description: str
    metric: cloudwatch.Metric
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    missing: cloudwatch.TreatMissingData
    notify: bool


class MonitoringStack(Stack):
    """`Ltv-<Game>-Monitoring`: `job` and `role` (the monitoring job), `alarms` (by name), `rules`."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, lake: DataLakeStack, etl: EtlStack,
                 ml: MlStack, scoring: ScoringStack, alerts: AlertsStack, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config, self.names, self.alerts = config, Names.of(config), alerts
        self.job, self.role = self._monitor_job(lake, etl, ml)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for spec in [*self.policy_alarms(), *self.operational_alarms(scoring, alerts)]:
            self._alarm(spec)
        self.rules = {RETRAIN_ON_ALARM: self._retrain_on_alarm(etl)} if self._retrain_alarms() else {}
        self.rules[MODEL_APPROVAL] = self._to_topic(MODEL_APPROVAL, "Model package approvals and rejections", {
            "source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": [group_name(config.game.id)],
                       "ModelApprovalStatus": ["Approved", "Rejected"]}},
            {"group": "$.detail.ModelPackageGroupName", "version": "$.detail.ModelPackageVersion",
             "status": "$.detail.ModelApprovalStatus", "time": "$.time"},
            f"Model <group> version <version> is now <status> (<time>). Batch scoring uses the latest Approved "
            f"version. Details: ltv registry show --game {config.game.id} <version> --registry sagemaker")
        pipeline_arn = self.format_arn(service="sagemaker", resource="pipeline", resource_name=ml.pipeline_name)
        self.rules[PIPELINE_FAILED] = self._to_topic(PIPELINE_FAILED, "Failed steps of the retraining pipeline", {
            "source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Building Pipeline Execution Step Status Change"],
            "detail": {"pipelineArn": [pipeline_arn], "currentStepStatus": ["Failed"],
                       "stepName": [{"anything-but": ["NotPromoted"]}]}},
            {"step": "$.detail.stepName", "reason": "$.detail.failureReason", "execution": "$.detail.pipelineExecutionArn",
             "time": "$.time"},
            f"Retraining pipeline {ml.pipeline_name}: step <step> failed at <time>: <reason> Execution: <execution> "
            "(docs/deploy.md, 'What each failure means')")

    # -- the monitoring job

    def _monitor_job(self, lake: DataLakeStack, etl: EtlStack, ml: MlStack) -> tuple[glue.CfnJob, iam.Role]:
        names, s, jobs = self.names, lake.storage, etl.jobs
        role = iam.Role(self, "MonitorRole", role_name=names.resource("monitor"),
                        assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                        description=f"Runs the monitoring job of {self.config.game.name}")
        script = assets.Asset(self, "Script-monitor", path=str(GLUE_JOBS_DIR / MONITOR_JOB.script))
        group = group_name(self.config.game.id)
        statements = [
            iam.PolicyStatement(sid="ReadCurated", actions=["s3:GetObject"], resources=[s.objects_arn(s.curated)]),
            # the delayed-label evaluation builds a cohort's labels if they are missing; results and state
            iam.PolicyStatement(sid="WriteLabelsAndResults", actions=["s3:PutObject", "s3:DeleteObject",
                                                                      "s3:AbortMultipartUpload"],
                                resources=[s.objects_arn(s.curated, "labels/"), s.objects_arn(s.curated, "monitoring/")]),
            *jobs.runtime_statements(lake, [*jobs.code.values(), script],
                                     buckets=(s.curated, s.athena_results, s.artifacts)),
            *champion_statements(self, group, s.artifacts.bucket_arn, ml.models_prefix),
            iam.PolicyStatement(sid="ReadModelArchives", actions=["s3:GetObject"],
                                resources=[s.objects_arn(s.artifacts, ml.models_prefix)]),
            iam.PolicyStatement(sid="Metrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                                conditions={"StringEquals": {"cloudwatch:namespace": metric_names.namespace(
                                    self.config.game.id)}}),
            iam.PolicyStatement(sid="Alerts", actions=["sns:Publish"], resources=[self.alerts.topic.topic_arn]),
        ]
        policy = iam.Policy(self, "MonitorPolicy", policy_name="monitor", statements=statements, roles=[role])
        jobs.acknowledge(policy, extra={
            "Resource::*": "sagemaker:ListModelPackages has no resource-level permissions (the call names the game's "
                           "group); cloudwatch:PutMetricData is limited by a condition to the game's namespace.",
            f"/{ml.models_prefix}*": "The retraining pipeline writes each model archive under its execution's folder of this "
                           "prefix; the champion's is known at run time.",
            f":model-package/{group}/*": "Model packages are versions of the game's own group, numbered by "
                                         "SageMaker as they are registered.",
        })
        job_def = JobDef(MONITOR_JOB.name, MONITOR_JOB.script, MONITOR_JOB.description,
                         {"--topic_arn": self.alerts.topic.topic_arn}, MONITOR_JOB.retry)
        job = jobs.job(self, job_def, names, role.role_arn, script.s3_object_url, self.config.stack)
        job.node.add_dependency(policy)
        acknowledge_shared_security(job)
        glue.CfnTrigger(self, "MonitorStart", name=names.resource("monitor-start"), type="SCHEDULED",
                        schedule=self.config.schedules.monitoring, start_on_creation=True,
                        actions=[glue.CfnTrigger.ActionProperty(job_name=job.ref)])
        return job, role

    # -- the alarms

    def policy_alarms(self) -> list[AlarmSpec]:
        """One alarm per monitoring policy the AWS job measures: the policy's value (the metric the
        job publishes) against the policy's threshold, compared as the policy compares it."""
        out = []
        for policy in self.config.monitoring.policies:
            if policy.signal not in AWS_SIGNALS:
                continue
            comparison = (cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                          if policy.signal == "feature_drift" else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD)
            out.append(AlarmSpec(
                self.policy_alarm_name(policy),
                f"Monitoring policy {policy.name} ({policy.signal}, {policy.severity}"
                + (", retrains" if policy.retrain else "") + "): the monitoring job alerted with the details",
                self._metric(metric_names.POLICY_VALUE, {d["Name"]: d["Value"] for d in metric_dimensions(policy)},
                             "Maximum", Duration.days(1)),
                alarm_threshold(policy), comparison, cloudwatch.TreatMissingData.IGNORE, notify=False))
        return out

    def policy_alarm_name(self, policy: Policy) -> str:
        return self.names.resource(f"policy-{policy.name.replace('_', '-')}")

    def operational_alarms(self, scoring: ScoringStack, alerts: AlertsStack) -> list[AlarmSpec]:
        names, at_least_one = self.names, cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        quiet = cloudwatch.TreatMissingData.NOT_BREACHING
        rule_fired = lambda rule: cloudwatch.Metric(  # noqa: E731
            namespace="AWS/Events", metric_name="TriggeredRules", dimensions_map={"RuleName": names.resource(rule)},
            statistic="Sum", period=EVENTS_PERIOD)
        functions = [scoring.score, scoring.publish, *([alerts.webhook] if alerts.webhook else [])]
        specs = [
            AlarmSpec(names.resource("glue-job-failures"), "A Glue job of the game failed, timed out or stopped "
                      "(the topic has the job's error message)", rule_fired(GLUE_FAILURE_RULE), 1, at_least_one, quiet,
                      notify=False),
            AlarmSpec(names.resource("pipeline-failures"), "A step of the retraining pipeline failed (the topic has "
                      "its reason)", rule_fired(PIPELINE_FAILED), 1, at_least_one, quiet, notify=False),
            *(AlarmSpec(f"{fn.name}-errors", f"The Lambda {fn.name} failed on an event (it is retried, then kept "
                        "in the dead-letter queue)", cloudwatch.Metric(namespace="AWS/Lambda", metric_name="Errors",
                                                                       dimensions_map={"FunctionName": fn.name},
                                                     statistic="Sum", period=EVENTS_PERIOD),
                        1, at_least_one, quiet, notify=True) for fn in functions),
            AlarmSpec(names.resource(FAILED_EVENTS), "Events the Lambdas could not process are waiting in the "
                      "dead-letter queue", cloudwatch.Metric(
                          namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
                          dimensions_map={"QueueName": names.resource(FAILED_EVENTS)}, statistic="Maximum",
                          period=EVENTS_PERIOD), 1, at_least_one, quiet, notify=True),
            AlarmSpec(names.resource("no-approved-package"), "A features partition was not scored: the model package "
                      "group has no Approved package", self._metric(
                          metric_names.NO_APPROVED_PACKAGE, {"service": metric_names.SCORING_SERVICE}, "Sum",
                          EVENTS_PERIOD), 1, at_least_one, quiet, notify=True),
            AlarmSpec(names.resource("transform-failures"), "A batch transform job failed or was stopped (the topic "
                      "has its reason)", self._metric(metric_names.TRANSFORM_JOBS_FAILED,
                                                      {"service": metric_names.PUBLISH_SERVICE}, "Sum", EVENTS_PERIOD),
                      1, at_least_one, quiet, notify=False),
            AlarmSpec(names.resource("missed-scoring-run"), f"A scoring day has no published predictions "
                      f"{self.config.scoring.deadline_hours} h after it began", self._metric(
                          metric_names.MISSED_SCORING_RUNS, {}, "Maximum", Duration.days(1)), 1, at_least_one, quiet,
                      notify=True),
        ]
        return specs

    def _metric(self, name: str, dimensions: dict[str, str], statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=metric_names.namespace(self.config.game.id), metric_name=name,
                                 dimensions_map=dimensions, statistic=statistic, period=period)

    def _alarm(self, spec: AlarmSpec) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(self, f"Alarm-{spec.name}", alarm_name=spec.name, alarm_description=spec.description,
                                 metric=spec.metric, threshold=spec.threshold, evaluation_periods=1,
                                 datapoints_to_alarm=1, comparison_operator=spec.comparison,
                                 treat_missing_data=spec.missing, actions_enabled=True)
        if spec.notify:
            alarm.add_alarm_action(actions.SnsAction(self.alerts.topic))
        self.alarms[spec.name] = alarm
        return alarm

    # -- the rules

    def _retrain_alarms(self) -> list[cloudwatch.Alarm]:
        return [self.alarms[self.policy_alarm_name(p)] for p in self.config.monitoring.policies
                if p.retrain and p.signal in AWS_SIGNALS]

    def _retrain_on_alarm(self, etl: EtlStack) -> events.CfnRule:
        """A retraining policy's alarm entering ALARM starts the dataset workflow (then the pipeline).
        The alarm stays in ALARM while the drift lasts (missing data keeps its state), so one drift
        episode retrains once."""
        return events.CfnRule(
            self, "RetrainOnAlarm", name=self.names.resource(RETRAIN_ON_ALARM), state="ENABLED",
            description="A monitoring policy that asks for retraining alarmed: build the rolling dataset, then retrain",
            event_pattern={"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
                           "resources": [a.alarm_arn for a in self._retrain_alarms()],
                           "detail": {"state": {"value": ["ALARM"]}}},
            targets=[etl.workflows.dataset_target("DriftRetrain")])

    def _to_topic(self, rule: str, description: str, pattern: dict[str, Any], paths: dict[str, str],
                  template: str) -> events.CfnRule:
        """A rule whose events reach the topic as one readable line."""
        return self.alerts.forward(self, "".join(p.capitalize() for p in rule.split("-")), rule=rule,
                                   description=description, pattern=pattern, paths=paths, template=template)
