"""The ML stack of a game: its image, model package group and retraining pipeline.

- The image (Dockerfile) is a `DockerImageAsset`: `cdk deploy` builds and publishes it; synth
  only stages its build context (the Dockerfile, the hashed lock, the core wheel, pipelines/).
- The pipeline's definition is built here, at synth time, by `pipelines.retrain` (no AWS call,
  no upload); image, role, buckets, the config object and the game key enter it as `Fn::Sub` variables.
- Two roles: the pipeline's (creates the jobs, registers packages, records the experiment) and
  the jobs' (reads the dataset, writes the pipeline's outputs, pulls the image, reads the
  registry to find the champion). Every action is spelled out; the few wildcards left are
  acknowledged one by one with their reason.
- The pipeline starts when the `dataset` Glue job succeeds, i.e. after the rolling dataset of
  `schedules.retrain` exists (an EventBridge rule on the job's state change).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Fn, Stack, Stage
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from ltv.config import GameConfig
from ltv.lake import MONITORING_STATE
from ltv.registry import group_name
from pipelines.retrain import Locations, definition, pipeline_name
from stacks.data_lake import DataLakeStack
from stacks.nag import acknowledge_wildcards
from stacks.names import Names

PROJECT = Path(__file__).resolve().parent.parent
PIPELINE_PREFIX = "pipelines/"   # the pipeline's outputs in the artifacts bucket (pipelines.retrain.Locations)
DATASET_PREFIX = "datasets/"     # dataset versions in the curated bucket (ltv.athena)
# definition bodies above this size would not fit the template (CloudFormation's 1 MB limit)
INLINE_LIMIT = 900_000
# strings the builder receives for what only CloudFormation knows; each becomes ${Name} in Fn::Sub
PLACEHOLDERS = {"ImageUri": "ltv-placeholder.dkr.ecr.local/image:latest",
                "JobsRoleArn": "arn:aws:iam::000000000000:role/ltv-placeholder-jobs-role",
                "CuratedBucket": "ltv-placeholder-curated-bucket",
                "ArtifactsBucket": "ltv-placeholder-artifacts-bucket",
                "ConfigUri": "s3://ltv-placeholder-assets/config.yaml",
                "GameKeyArn": "arn:aws:kms:us-east-1:000000000000:key/ltv-placeholder-key"}
SAGEMAKER_LOG_GROUPS = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs")


def image_context(core_wheel: Path, staging: Path) -> Path:
    """The image's build context: exactly the files the Dockerfile copies (the wheel under wheel/)."""
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "requirements").mkdir(parents=True)
    (staging / "wheel").mkdir()
    (staging / "pipelines").mkdir()
    shutil.copyfile(PROJECT / "Dockerfile", staging / "Dockerfile")
    shutil.copyfile(PROJECT / "requirements" / "image.txt", staging / "requirements" / "image.txt")
    shutil.copyfile(core_wheel, staging / "wheel" / core_wheel.name)
    for source in sorted((PROJECT / "pipelines").glob("*.py")):
        shutil.copyfile(source, staging / "pipelines" / source.name)
    return staging


def _volume_grants(key_arn: str) -> iam.PolicyStatement:
    """The jobs' volumes are encrypted with the game's key: SageMaker creates grants on it for the
    EBS volumes of the jobs it starts (only grants for AWS resources)."""
    return iam.PolicyStatement(sid="GameKeyForVolumes", actions=["kms:CreateGrant", "kms:DescribeKey"],
                               resources=[key_arn], conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}})


def list_prefix(sid: str, bucket_arn: str, *prefixes: str) -> iam.PolicyStatement:
    """s3:ListBucket on a bucket, for listings under `prefixes` only, that also makes S3 answer a
    missing key 404 (NoSuchKey) instead of 403: S3 returns 404 for a missing key only if the caller
    may list the bucket (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html,
    "Permissions"). That implicit check is part of the GetObject/HeadObject request, which carries
    no `s3:prefix`, so a plain `StringLike` on s3:prefix would never grant it; `...IfExists` keeps
    every real listing (its request has the key) to these prefixes. docs/deploy.md, "First run",
    has the operator verify both answers."""
    return iam.PolicyStatement(sid=sid, actions=["s3:ListBucket"], resources=[bucket_arn],
                               conditions={"StringLikeIfExists": {"s3:prefix": list(prefixes)}})


def package_statements(stack: Stack, group: str) -> list[iam.PolicyStatement]:
    """The registry's side of resolving the champion (`SageMakerRegistry.champion`): the game's
    package group and its packages, and ListModelPackages (which has no resource-level permission)."""
    arn = lambda resource, name: stack.format_arn(service="sagemaker", resource=resource, resource_name=name)  # noqa: E731
    return [
        iam.PolicyStatement(sid="FindChampion", actions=["sagemaker:DescribeModelPackageGroup"],
                            resources=[arn("model-package-group", group)]),
        iam.PolicyStatement(sid="ReadPackages", actions=["sagemaker:DescribeModelPackage"],
                            resources=[arn("model-package", f"{group}/*")]),
        iam.PolicyStatement(sid="ListPackages", actions=["sagemaker:ListModelPackages"], resources=["*"]),
    ]


def champion_statements(stack: Stack, group: str, artifacts_bucket_arn: str,
                        models_prefix: str) -> list[iam.PolicyStatement]:
    """What a role outside the pipeline needs to resolve the champion, besides reading (and
    decrypting) the objects under `models_prefix`: the packages, and listing that prefix, because
    a champion's history log may be absent (its status changed, the append did not land) and
    absent must read as absent (404), not as a 403 that fails the resolution."""
    return [*package_statements(stack, group),
            list_prefix("ListModels", artifacts_bucket_arn, f"{models_prefix}*")]


def image_job_statements(repository_arn: str, log_groups: list[str], metrics_namespace: str, *, logs_sid: str,
                         metrics_sid: str) -> list[iam.PolicyStatement]:
    """What a SageMaker job running the game's image needs from the platform (training, processing,
    batch transform): pull the image, write its log streams, publish SageMaker's job metrics."""
    return [
        iam.PolicyStatement(sid="PullImage", actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                                       "ecr:BatchCheckLayerAvailability"], resources=[repository_arn]),
        iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(sid=logs_sid, actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                                                   "logs:DescribeLogStreams"], resources=log_groups),
        iam.PolicyStatement(sid=metrics_sid, actions=["cloudwatch:PutMetricData"], resources=["*"],
                            conditions={"StringEquals": {"cloudwatch:namespace": metrics_namespace}}),
    ]


def sub_body(body: dict[str, Any], values: dict[str, str]) -> str:
    """The definition as an `Fn::Sub` body: each placeholder becomes ${Name}, any literal "${" is
    escaped, and `values` (CloudFormation references) fill the names in at deploy time."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True).replace("${", "${!")
    for name, placeholder in PLACEHOLDERS.items():
        if placeholder not in text:
            raise ValueError(f"the pipeline definition does not use {name}; PLACEHOLDERS is out of date")
        text = text.replace(placeholder, "${" + name + "}")
    if len(text) > INLINE_LIMIT:
        raise ValueError(f"the pipeline definition has {len(text):,} characters, more than fit in a template "
                         f"({INLINE_LIMIT:,}); ship it through PipelineDefinitionS3Location instead")
    return Fn.sub(text, values)


class MlStack(Stack):
    """`Ltv-<Game>-Ml`: `image`, `group` (model package group), `pipeline`, `jobs_role`,
    `pipeline_role` and `trigger` (starts the pipeline after the dataset job); `config_asset` is
    the ETL jobs' config object, which the pipeline's jobs read too."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, lake: DataLakeStack, core_wheel: Path,
                 config_asset: assets.Asset, dataset_job: str, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        names, self.config = Names.of(config), config
        self.names, self.storage = names, lake.storage
        staging = Path(Stage.of(self).outdir) / "ltv-inputs" / config.game.id
        self.image = ecr_assets.DockerImageAsset(
            self, "Image", directory=str(image_context(core_wheel, staging / "image")),
            build_args={"CORE_WHEEL": f"wheel/{core_wheel.name}"}, platform=ecr_assets.Platform.LINUX_AMD64,
            display_name=f"ltv-{config.game.id} image")
        self.config_asset = config_asset  # the ETL jobs' (one asset per game; the Etl stack publishes it)
        self.group = sagemaker.CfnModelPackageGroup(
            self, "ModelGroup", model_package_group_name=group_name(config.game.id),
            model_package_group_description=f"{config.game.name}: LTV models (champion = latest Approved)")
        self.pipeline_name = pipeline_name(config)
        self.models_prefix = f"{PIPELINE_PREFIX}{self.pipeline_name}/"  # its executions' model archives and metrics
        self.jobs_role = iam.Role(self, "JobsRole", role_name=names.resource("ml-jobs"),
                                  assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                  description=f"Runs the training and processing jobs of {config.game.name}'s pipeline")
        self.pipeline_role = iam.Role(self, "PipelineRole", role_name=names.resource("pipeline"),
                                      assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                      description=f"Runs {config.game.name}'s retraining pipeline")
        policies = [self._grant_jobs(), self._grant_pipeline()]
        body = definition(config, Locations(**{field: PLACEHOLDERS[name] for field, name in (
            ("image_uri", "ImageUri"), ("role_arn", "JobsRoleArn"), ("curated_bucket", "CuratedBucket"),
            ("artifacts_bucket", "ArtifactsBucket"), ("config_uri", "ConfigUri"), ("key_arn", "GameKeyArn"))}))
        self.definition = body
        self.pipeline = sagemaker.CfnPipeline(
            self, "Pipeline", pipeline_name=self.pipeline_name, pipeline_display_name=self.pipeline_name,
            pipeline_description=f"{config.game.name}: train, evaluate against the champion, register if promoted",
            role_arn=self.pipeline_role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": sub_body(body, {
                "ImageUri": self.image.image_uri, "JobsRoleArn": self.jobs_role.role_arn,
                "CuratedBucket": lake.storage.curated.bucket_name, "ArtifactsBucket": lake.storage.artifacts.bucket_name,
                "ConfigUri": self.config_asset.s3_object_url, "GameKeyArn": lake.storage.key.key_arn})})
        for dependency in (*policies, self.group):
            self.pipeline.node.add_dependency(dependency)
        self.trigger = self._trigger(dataset_job)

    # -- the roles

    def _arn(self, resource: str, name: str) -> str:
        return self.format_arn(service="sagemaker", resource=resource, resource_name=name)

    def _grant_jobs(self) -> iam.Policy:
        """What the jobs do: read the dataset versions, the config and the monitoring state, write and
        read the pipeline's outputs (champion archives included), pull the image, log, find the champion."""
        s, group = self.storage, group_name(self.config.game.id)
        config_object = self.config_asset.bucket.arn_for_objects(self.config_asset.s3_object_key)
        log_groups = [self.format_arn(service="logs", resource="log-group", resource_name=f"{g}:*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME) for g in SAGEMAKER_LOG_GROUPS]
        statements = [
            iam.PolicyStatement(sid="ReadDatasets", actions=["s3:GetObject"],
                                resources=[s.objects_arn(s.curated, DATASET_PREFIX)]),
            list_prefix("ListDatasets", s.curated.bucket_arn, f"{DATASET_PREFIX}*"),
            # the evaluate step: is a label-decay retrain awaited? (ListDatasets also makes a state not
            # yet published read 404, not 403: see list_prefix)
            iam.PolicyStatement(sid="ReadMonitoringState", actions=["s3:GetObject"],
                                resources=[s.object_arn(s.curated, MONITORING_STATE)]),
            iam.PolicyStatement(sid="PipelineOutputs", actions=["s3:GetObject", "s3:PutObject",
                                                                 "s3:AbortMultipartUpload"],
                                resources=[s.objects_arn(s.artifacts, PIPELINE_PREFIX)]),
            list_prefix("ListPipelineOutputs", s.artifacts.bucket_arn, f"{PIPELINE_PREFIX}*"),
            iam.PolicyStatement(sid="ReadConfig", actions=["s3:GetObject"], resources=[config_object]),
            iam.PolicyStatement(sid="ListConfig", actions=["s3:ListBucket"], resources=[self.config_asset.bucket.bucket_arn],
                                conditions={"StringEquals": {"s3:prefix": [self.config_asset.s3_object_key]}}),
            iam.PolicyStatement(sid="UseGameKey", actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
                                                            "kms:DescribeKey"], resources=[s.key.key_arn]),
            _volume_grants(s.key.key_arn),
            *image_job_statements(self.image.repository.repository_arn, log_groups, "/aws/sagemaker/TrainingJobs",
                                  logs_sid="JobLogs", metrics_sid="TrainingMetrics"),
            *package_statements(self, group),  # ListPipelineOutputs covers the models' prefix (history logs)
        ]
        return self._policy("JobsPolicy", "ml-jobs", self.jobs_role, statements)

    def _grant_pipeline(self) -> iam.Policy:
        """What SageMaker Pipelines does for this pipeline: start and watch its jobs (named
        pipelines-*), pass them the jobs' role, read the property files its steps write under its
        own outputs (`PropertyFile`/`JsonGet`: dataset.json, evaluation.json, decrypted with the
        game key through S3), register packages in the game's group, and record each execution as
        a trial of the experiment named after the pipeline."""
        group, s = group_name(self.config.game.id), self.storage
        jobs = [self._arn("training-job", "pipelines-*"), self._arn("processing-job", "pipelines-*")]
        experiment = [self._arn("experiment", self.pipeline_name), self._arn("experiment-trial", "*"),
                      self._arn("experiment-trial-component", "*")]
        statements = [
            iam.PolicyStatement(sid="RunJobs", actions=[
                "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                "sagemaker:AddTags"], resources=jobs),
            iam.PolicyStatement(sid="PassJobsRole", actions=["iam:PassRole"], resources=[self.jobs_role.role_arn],
                                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
            iam.PolicyStatement(sid="ReadPropertyFiles", actions=["s3:GetObject"],
                                resources=[s.objects_arn(s.artifacts, self.models_prefix)]),
            iam.PolicyStatement(sid="DecryptPropertyFiles", actions=["kms:Decrypt"], resources=[s.key.key_arn],
                                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}}),
            iam.PolicyStatement(sid="RegisterModels", actions=["sagemaker:CreateModelPackage"],
                                resources=[self._arn("model-package-group", group), self._arn("model-package", f"{group}/*")]),
            iam.PolicyStatement(sid="DescribeModels", actions=["sagemaker:DescribeModelPackage", "sagemaker:AddTags"],
                                resources=[self._arn("model-package", f"{group}/*")]),
            iam.PolicyStatement(sid="CheckImage", actions=["ecr:BatchGetImage", "ecr:DescribeImages"],
                                resources=[self.image.repository.repository_arn]),
            _volume_grants(self.storage.key.key_arn),
            iam.PolicyStatement(sid="RecordExperiment", actions=[
                "sagemaker:CreateExperiment", "sagemaker:DescribeExperiment", "sagemaker:CreateTrial",
                "sagemaker:DescribeTrial", "sagemaker:CreateTrialComponent", "sagemaker:DescribeTrialComponent",
                "sagemaker:AssociateTrialComponent", "sagemaker:AddTags"], resources=experiment),
        ]
        return self._policy("PipelinePolicy", "pipeline", self.pipeline_role, statements)

    def _policy(self, id_: str, name: str, role: iam.Role, statements: list[iam.PolicyStatement]) -> iam.Policy:
        policy = iam.Policy(self, id_, policy_name=name, statements=statements, roles=[role])
        acknowledge_wildcards(policy, _why_wildcard, f"the {name} policy")
        return policy

    # -- the trigger

    def _trigger(self, dataset_job: str) -> events.CfnRule:
        """Start the pipeline (DatasetVersion `rolling`) when the dataset Glue job succeeds."""
        pipeline_arn = self._arn("pipeline", self.pipeline_name)
        role = iam.Role(self, "TriggerRole", role_name=self.names.resource("retrain-trigger"),
                        assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                        description="Lets EventBridge start the retraining pipeline")
        policy = iam.Policy(self, "TriggerPolicy", policy_name="start-pipeline", roles=[role], statements=[
            iam.PolicyStatement(sid="StartPipeline", actions=["sagemaker:StartPipelineExecution"],
                                resources=[pipeline_arn])])
        rule = events.CfnRule(
            self, "AfterDataset", name=self.names.resource("retrain-after-dataset"), state="ENABLED",
            description=f"Starts {self.pipeline_name} when {dataset_job} built the rolling dataset",
            event_pattern={"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
                           "detail": {"jobName": [dataset_job], "state": ["SUCCEEDED"]}},
            targets=[events.CfnRule.TargetProperty(
                id="RetrainingPipeline", arn=pipeline_arn, role_arn=role.role_arn,
                retry_policy=events.CfnRule.RetryPolicyProperty(maximum_retry_attempts=3,
                                                                maximum_event_age_in_seconds=3600),
                sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[events.CfnRule.SageMakerPipelineParameterProperty(
                        name="DatasetVersion", value="rolling")]))])
        rule.node.add_dependency(policy, self.pipeline)
        return rule


def _why_wildcard(finding: str) -> str:
    """The reason for each wildcard the ML roles keep (any other wildcard fails the synthesis)."""
    reasons = {
        f"/{DATASET_PREFIX}*": "The jobs read the dataset versions, many objects under the datasets/ prefix of the "
                               "game's curated bucket, and nothing else of it.",
        f"/{PIPELINE_PREFIX}*": "The pipeline's outputs (model archives, dataset.json, evaluation.json, reports) are "
                                "many objects, one folder per execution, under the pipelines/ prefix of the game's "
                                "artifacts bucket.",
        ":log-group:/aws/sagemaker/TrainingJobs:*": "SageMaker names one log stream per training job in its fixed log "
                                                    "group; the streams are only known at run time.",
        ":log-group:/aws/sagemaker/ProcessingJobs:*": "SageMaker names one log stream per processing job in its fixed "
                                                      "log group; the streams are only known at run time.",
        ":training-job/pipelines-*": "SageMaker Pipelines names each execution's training job pipelines-<execution>-<step>; "
                                     "the names exist only at run time.",
        ":processing-job/pipelines-*": "SageMaker Pipelines names each execution's processing jobs "
                                       "pipelines-<execution>-<step>; the names exist only at run time.",
        "/*": "Model packages are versions of the game's own model package group, numbered by SageMaker as they are "
              "registered.",
        ":experiment-trial/*": "Each pipeline execution is recorded as a trial named after its execution id, which "
                               "exists only at run time.",
        ":experiment-trial-component/*": "The trial components of the pipeline's jobs are named by SageMaker at run "
                                         "time.",
    }
    if finding == "Resource::*":
        return ("Actions without resource-level permissions: ecr:GetAuthorizationToken (registry login), "
                "sagemaker:ListModelPackages (filtered to the game's group in the call), and cloudwatch:PutMetricData "
                "(restricted by a condition to SageMaker's training-metric namespace).")
    if re.search(rf":s3:::[^/]+/{PIPELINE_PREFIX}[^/*]+/\*$", finding):
        return ("The pipeline reads the property files (dataset.json, evaluation.json) its steps write under each "
                "execution's folder of its own outputs prefix; the folders are named at run time.")
    for suffix, reason in reasons.items():
        if finding.endswith(suffix) and (suffix != "/*" or ":model-package/ltv-" in finding):
            return reason
    raise ValueError(f"unexpected wildcard in an ML stack policy: {finding}")
