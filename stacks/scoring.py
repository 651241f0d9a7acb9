"""The scoring stack of a game: S3 event -> Lambda -> batch transform -> EventBridge -> published run.

- `ltv-<game>-score` (lambdas/score.py): the curated bucket notifies it of objects created under
  `features/` whose key ends in `_SUCCESS` (the marker the ETL writes last); it starts the
  partition's transform job with the champion resolved at run time (ltv.sagemaker_scoring).
- `ltv-<game>-transform` (role): what the transform jobs (and their model) read and write: the
  features, the manifests, the champion's archive, the image; the predictions prefix, encrypted.
- `ltv-<game>-scoring-publish` (lambdas/publish.py): the rule `ltv-<game>-scoring-finished` on
  "SageMaker Transform Job State Change" of the game's jobs; it publishes completed runs, starts
  their target lists, and alerts on failed ones.
- `ltv-<game>-targets` (Glue job, glue_jobs/targets.py, and its role): the target list of a
  published run, registered in the catalog's `targets` table, announced by the event
  "LTV Targets Ready" on the default bus. A Glue job like the ETL's (their code, wheels, security
  configuration, logs; its failures reach the topic through the ETL stack's failure hook), not a
  Lambda: planning needs pandas and pyarrow, which the Lambda bundle does not ship.
Both functions: reserved concurrency (`scoring.reserved_concurrency`; the publisher one at a
time), failures to the game's dead-letter queue, Powertools logs, metrics and traces.
"""
from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as assets
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from ltv import runs
from ltv import targets as target_lists
from ltv.config import GameConfig
from ltv.registry import group_name
from ltv.sagemaker_scoring import FEATURES, LATEST_TABLE, MANIFESTS, PREDICTIONS_TABLE, Settings
from stacks.alerting import AlertsStack
from stacks.data_lake import DataLakeStack
from stacks.etl import EtlStack
from stacks.etl_jobs import GLUE_JOBS_DIR, JobDef, acknowledge_shared_security
from stacks.lambdas import STAR, GameFunction, bundle_code
from stacks.ml import MlStack, champion_statements, image_job_statements, list_prefix
from stacks.names import Names
from stacks.nag import acknowledge_wildcards, by_suffix
from stacks.storage import key_through, removal_policy

PREDICTIONS = f"{runs.ROOT}/"
TARGETS = f"{runs.TARGETS}/"
# concurrent runs: dates published together and duplicate completion events each get theirs (the job
# is idempotent); StartJobRun beyond that fails the publish function, whose retry starts it later
TARGETS_JOB = JobDef("targets", "targets.py", "Makes the target list of a published scoring run and announces it",
                     max_concurrent_runs=5)
TRANSFORM_LOGS = "/aws/sagemaker/TransformJobs"
FINISHED_STATES = ("Completed", "Failed", "Stopped")


class ScoringStack(Stack):
    """`Ltv-<Game>-Scoring`: `score` and `publish` (GameFunction), `transform_role`, `settings`
    (what the functions are told), `finished` (the completion rule), `targets_job` and
    `targets_role` (the target lists)."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, lake: DataLakeStack, ml: MlStack,
                 etl: EtlStack, alerts: AlertsStack, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        names, key, st = Names.of(config), lake.storage.key, lake.storage
        self.names, self.config, self.storage = names, config, st
        self.models_prefix = ml.models_prefix
        self.transform_role = self._transform_role(ml)
        self.settings = Settings(
            game=config.game.id, curated_bucket=names.bucket("curated"), artifacts_bucket=names.bucket("artifacts"),
            database=names.database, role_arn=self.transform_role.role_arn, kms_key_arn=key.key_arn,
            instance_type=config.sagemaker.transform_instance_types[0], instance_count=config.scoring.instance_count,
            max_payload_mb=config.scoring.max_payload_mb, invocation_timeout_s=config.scoring.invocation_timeout_s,
            cutoff_weekday=config.cutoffs.weekday, cutoff_every_weeks=config.cutoffs.every_weeks,
            scoring_cron=config.schedules.scoring, targets_job=names.resource(TARGETS_JOB.name))
        self.targets_job, self.targets_role = self._targets_job(lake, etl)
        common = {"code": bundle_code(alerts.lambda_bundle), "game": config.game.id, "key": key, "dead_letters": alerts.dead_letters,
                  "log_retention_days": config.stack.log_retention_days, "removal_policy": removal_policy(config)}
        self.score = GameFunction(
            self, "Score", function_name=names.resource("score"), handler="lambdas.score.handler",
            description=f"Starts the batch transform of each new features partition of {config.game.name}",
            service="scoring", environment=self.settings.environment(), statements=self._score_statements(),
            reserved_concurrency=config.scoring.reserved_concurrency, timeout=Duration.minutes(2),
            wildcard_reasons={**self._reasons(), STAR: "sagemaker:ListModelPackages neither (the call names the "
                                                        "game's group)"}, **common)
        self.publish = GameFunction(
            self, "Publish", function_name=names.resource("scoring-publish"), handler="lambdas.publish.handler",
            description=f"Publishes the prediction run of each finished transform job of {config.game.name}",
            service="scoring-publish", statements=self._publish_statements(lake, alerts),
            environment={**self.settings.environment(), "LTV_ALERT_TOPIC_ARN": alerts.topic.topic_arn},
            reserved_concurrency=1 if config.scoring.reserved_concurrency else None,
            wildcard_reasons=self._reasons(), **common)
        self._notify()
        self.finished = events.Rule(
            self, "Finished", rule_name=names.resource("scoring-finished"),
            description=f"Transform jobs of {config.game.name} that ended -> publish or alert",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Transform Job State Change"],
                detail={"TransformJobName": [{"prefix": f"{names.prefix}-"}],
                        "TransformJobStatus": list(FINISHED_STATES)}),
            targets=[targets.LambdaFunction(self.publish.function, retry_attempts=4, max_event_age=Duration.hours(6))])

    # -- the trigger

    def _notify(self) -> None:
        """The curated bucket (imported by name: the bucket's stack keeps no reference to this one)
        notifies the scoring function of features markers only."""
        role = iam.Role(self, "NotificationsRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Sets the curated bucket's notification of the scoring function (deployments)")
        handler_logs = self._arn("logs", "log-group", f"/aws/lambda/{self.stack_name}-BucketNotificationsHandler*",
                                 ArnFormat.COLON_RESOURCE_NAME)
        policy = iam.Policy(self, "NotificationsPolicy", roles=[role], statements=[
            iam.PolicyStatement(sid="BucketNotification", actions=["s3:GetBucketNotification",
                                                                   "s3:PutBucketNotification"],
                                resources=[self.storage.curated.bucket_arn]),
            iam.PolicyStatement(sid="HandlerLogs", actions=["logs:CreateLogGroup", "logs:CreateLogStream",
                                                            "logs:PutLogEvents"], resources=[handler_logs])])
        acknowledge_wildcards(policy, lambda _: (
            "CDK's bucket-notifications handler is a deployment-time function whose name CloudFormation generates "
            "from this stack's name; these are its own log group and streams."), "the notifications policy")
        curated = s3.Bucket.from_bucket_attributes(self, "Curated", bucket_name=self.settings.curated_bucket,
                                                   encryption_key=self.storage.key,
                                                   notifications_handler_role=role.without_policy_updates())
        curated.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.score.function),
                                       s3.NotificationKeyFilter(prefix=FEATURES, suffix="_SUCCESS"))
        for child in self.node.children:  # CDK's notifications handler, a singleton at stack level
            if child.node.id.startswith("BucketNotificationsHandler"):
                child.node.add_dependency(policy)
                child.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})

    # -- the permissions

    def _arn(self, service: str, resource: str, name: str, fmt: ArnFormat = ArnFormat.SLASH_RESOURCE_NAME) -> str:
        return self.format_arn(service=service, resource=resource, resource_name=name, arn_format=fmt)

    def _key_through(self, service: str, sid: str) -> iam.PolicyStatement:
        return key_through(sid, self.storage.key.key_arn, service, self.region)

    def _score_statements(self) -> list[iam.PolicyStatement]:
        """The scoring function: read the features markers and parts, write manifests, read the
        game's model packages, create its models and transform jobs, pass the transform role."""
        st, group, game = self.storage, group_name(self.config.game.id), self.names.prefix
        return [
            iam.PolicyStatement(sid="ReadFeatures", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.curated, FEATURES)]),
            list_prefix("ListFeatures", st.curated.bucket_arn, f"{FEATURES}*"),
            iam.PolicyStatement(sid="WriteManifests", actions=["s3:PutObject"],
                                resources=[st.objects_arn(st.artifacts, MANIFESTS)]),
            iam.PolicyStatement(sid="ReadPackageMetrics", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.artifacts, self.models_prefix)]),
            self._key_through("s3", "UseGameKeyThroughS3"),
            *champion_statements(self, group, st.artifacts.bucket_arn, self.models_prefix),
            iam.PolicyStatement(sid="Models", actions=["sagemaker:CreateModel", "sagemaker:DescribeModel",
                                                       "sagemaker:AddTags"],
                                resources=[self._arn("sagemaker", "model", f"{game}-v*")]),
            iam.PolicyStatement(sid="TransformJobs", actions=["sagemaker:CreateTransformJob",
                                                              "sagemaker:DescribeTransformJob", "sagemaker:AddTags"],
                                resources=[self._arn("sagemaker", "transform-job", f"{game}-*")]),
            iam.PolicyStatement(sid="PassTransformRole", actions=["iam:PassRole"],
                                resources=[self.transform_role.role_arn],
                                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
        ]

    def _publish_statements(self, lake: DataLakeStack, alerts: AlertsStack) -> list[iam.PolicyStatement]:
        """The completion function: read and write the run files (`_SUCCESS`, `_LATEST`,
        `_FAILED`), register the catalog partitions, alert."""
        st, cat = self.storage, lake.catalog
        tables = [self._arn("glue", "table", f"{cat.database_name}/{t}") for t in (PREDICTIONS_TABLE, LATEST_TABLE)]
        return [
            iam.PolicyStatement(sid="RunFiles", actions=["s3:GetObject", "s3:PutObject"],
                                resources=[st.objects_arn(st.curated, PREDICTIONS)]),
            # whether a run's target list was announced already (its `_NOTIFIED` marker)
            iam.PolicyStatement(sid="TargetMarkers", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.curated, TARGETS)]),
            list_prefix("ListRuns", st.curated.bucket_arn, f"{PREDICTIONS}*", f"{TARGETS}*"),
            iam.PolicyStatement(sid="StartTargets", actions=["glue:StartJobRun"],
                                resources=[self._arn("glue", "job", self.settings.targets_job)]),
            self._key_through("s3", "UseGameKeyThroughS3"),
            iam.PolicyStatement(sid="RegisterRuns", actions=["glue:GetTable", "glue:GetPartition",
                                                             "glue:CreatePartition", "glue:UpdatePartition"],
                                resources=[cat.catalog_arn, cat.database_arn, *tables]),
            iam.PolicyStatement(sid="Alert", actions=["sns:Publish"], resources=[alerts.topic.topic_arn]),
            self._key_through("sns", "UseGameKeyThroughSns"),
        ]

    def _targets_job(self, lake: DataLakeStack, etl: EtlStack) -> tuple[glue.CfnJob, iam.Role]:
        """The targets job and its role: read the published runs, write the target lists (objects
        under targets/, no delete), register their partitions, put the one event, with the Glue
        jobs' runtime (code, wheels, key, logs)."""
        st, cat, jobs = self.storage, lake.catalog, etl.jobs
        role = iam.Role(self, "TargetsRole", role_name=self.names.resource(TARGETS_JOB.name),
                        assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                        description=f"Runs the targets job of {self.config.game.name}")
        script = assets.Asset(self, "Script-targets", path=str(GLUE_JOBS_DIR / TARGETS_JOB.script))
        default_bus = self._arn("events", "event-bus", "default")
        policy = iam.Policy(self, "TargetsPolicy", policy_name=TARGETS_JOB.name, roles=[role], statements=[
            iam.PolicyStatement(sid="ReadRuns", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.curated, PREDICTIONS)]),
            iam.PolicyStatement(sid="WriteTargets", actions=["s3:GetObject", "s3:PutObject",
                                                             "s3:AbortMultipartUpload"],
                                resources=[st.objects_arn(st.curated, TARGETS)]),
            *jobs.runtime_statements(lake, [*jobs.code.values(), script], buckets=(st.curated, st.artifacts)),
            iam.PolicyStatement(sid="RegisterTargets", actions=["glue:GetTable", "glue:CreatePartition"],
                                resources=[cat.catalog_arn, cat.database_arn,
                                           self._arn("glue", "table", f"{cat.database_name}/{target_lists.ROOT}")]),
            iam.PolicyStatement(sid="TargetsReady", actions=["events:PutEvents"], resources=[default_bus],
                                conditions={"StringEquals": {"events:source": target_lists.EVENT_SOURCE,
                                                             "events:detail-type": target_lists.EVENT_DETAIL_TYPE}}),
        ])
        jobs.acknowledge(policy, extra={f"/{PREDICTIONS}*": self._reasons()[f"/{PREDICTIONS}*"],
                                        f"/{TARGETS}*": "Target lists are folders named at run time (game, date, "
                                                        "predictions run) under the targets/ prefix of the game's "
                                                        "curated bucket."})
        job = jobs.job(self, TARGETS_JOB, self.names, role.role_arn, script.s3_object_url, self.config.stack)
        job.node.add_dependency(policy)
        acknowledge_shared_security(job)
        return job, role

    def _transform_role(self, ml: MlStack) -> iam.Role:
        """The transform jobs' (and models') role: read the partition's parts through the manifest
        and the champion's archive, pull the image, write the predictions prefix, log."""
        st = self.storage
        role = iam.Role(self, "TransformRole", role_name=self.names.resource("transform"),
                        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description=f"Runs the batch transform jobs of {self.config.game.name}")
        logs = self._arn("logs", "log-group", f"{TRANSFORM_LOGS}:*", ArnFormat.COLON_RESOURCE_NAME)
        policy = iam.Policy(self, "TransformPolicy", policy_name="transform", roles=[role], statements=[
            iam.PolicyStatement(sid="ReadFeatures", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.curated, FEATURES)]),
            iam.PolicyStatement(sid="ReadManifests", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.artifacts, MANIFESTS)]),
            iam.PolicyStatement(sid="ReadModels", actions=["s3:GetObject"],
                                resources=[st.objects_arn(st.artifacts, self.models_prefix)]),
            iam.PolicyStatement(sid="WritePredictions", actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                                resources=[st.objects_arn(st.curated, PREDICTIONS)]),
            iam.PolicyStatement(sid="UseGameKey", actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                resources=[st.key.key_arn]),
            *image_job_statements(ml.image.repository.repository_arn, [logs], TRANSFORM_LOGS,
                                  logs_sid="TransformLogs", metrics_sid="TransformMetrics"),
        ])
        star = ("ecr:GetAuthorizationToken has no resource-level permissions; cloudwatch:PutMetricData is "
                "limited by a condition to SageMaker's transform-job namespace.")
        acknowledge_wildcards(policy, lambda f: star if f == "Resource::*" else by_suffix(self._reasons())(f),
                              "the transform role's policy")
        return role

    def _reasons(self) -> dict[str, str]:
        """Why each wildcard of the scoring policies is needed, by the end of the finding."""
        return {
            f"/{FEATURES}*": "The features partitions are many objects (one folder per cutoff, parts and markers "
                             "written daily) under the features/ prefix of the game's curated bucket.",
            f"/{MANIFESTS}*": "One manifest per transform job, named after the job, under this prefix of the "
                              "game's artifacts bucket.",
            f"/{self.models_prefix}*": "The retraining pipeline writes each model archive and evaluation under its "
                                       "execution's folder of this prefix; the champion's is known at run time.",
            f"/{PREDICTIONS}*": "Prediction runs are folders named at run time (game, date, run id) under the "
                                "predictions/ prefix of the game's curated bucket.",
            f"/{TARGETS}*": "Target lists are folders named at run time (game, date, predictions run) under the "
                            "targets/ prefix of the game's curated bucket; the function reads their markers.",
            f":model-package/{group_name(self.config.game.id)}/*": "Model packages are versions of the game's own "
                                                                   "group, numbered by SageMaker as they are registered.",
            f":model/{self.names.prefix}-v*": "One SageMaker model per version of the game's model package group, "
                                              "named ltv-<game>-v<version> when that version is first scored.",
            f":transform-job/{self.names.prefix}-*": "Transform jobs are named at run time after the features "
                                                     "marker they score (ltv-<game>-<date>-<hash>).",
            f":log-group:{TRANSFORM_LOGS}:*": "SageMaker writes one log stream per transform job and instance in "
                                              "its fixed log group; the streams are only known at run time.",
        }
