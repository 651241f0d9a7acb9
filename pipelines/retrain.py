"""The retraining pipeline of a game, built offline with the SageMaker Python SDK (2.x).

`get_pipeline` returns the whole DAG; `definition` its JSON, which the ML stack (stacks/ml.py)
puts into a `CfnPipeline` at synth time. Locations (image, role, buckets, the config object)
are plain strings here: the stack passes placeholders that become CloudFormation references,
so building the definition needs no AWS credentials, uploads nothing and calls no AWS API
(step code is the image's own; every output has an explicit S3 destination).

Every step runs the game's image (Dockerfile): `python -m pipelines COMMAND`, see
pipelines/container.py. Per-run settings are pipeline parameters whose defaults come from the
game config (`sagemaker:` and `promotion.approval`); build-time settings are arguments.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ltv.config import GameConfig
from ltv.lake import MONITORING_STATE
from ltv.registry import APPROVED, PENDING
from ltv.registry import group_name
from ltv.registry import CONTENT_TYPES
from ltv.sagemaker_registry import METADATA
from ltv.version import code_version
from pipelines.contract import DATASET_FILE, EVALUATION, metric_definitions

# the SDK's settings while building: no telemetry call; no SDK defaults read from the machine's config files
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
PROCESSING = "/opt/ml/processing"
ENTRYPOINT = ["python", "-m", "pipelines"]
RESOLVE_RUNTIME_S, RESOLVE_VOLUME_GB = 600, 5


@dataclass(frozen=True)
class Locations:
    """Where the pipeline's inputs and outputs live (CloudFormation placeholders in the stack)."""

    image_uri: str          # the game's image in ECR
    role_arn: str           # the role the jobs run with
    curated_bucket: str     # dataset versions under datasets/<version>/, the monitoring state
    artifacts_bucket: str   # the pipeline's outputs under pipelines/<pipeline name>/
    config_uri: str         # s3:// URI of the game config the stack ships
    key_arn: str            # the game's KMS key: the jobs' volumes and outputs are encrypted with it

    @property
    def prefix(self) -> str:
        return f"s3://{self.artifacts_bucket}/pipelines"


def pipeline_name(config: GameConfig) -> str:
    return f"ltv-{config.game.id}-retrain"


def get_pipeline(config: GameConfig, where: Locations, *, version: str | None = None) -> Any:
    """The retraining DAG of `config`'s game (build its JSON with `definition`, which keeps the SDK offline):

        ResolveDataset ─► Train ─► Evaluate ─► PromotionDecision ─┬─ promote == 1 ─► Register
                                                                  └─ otherwise ────► NotPromoted

        ResolveDataset     processing: DatasetVersion -> dataset.json {version, uri} (a PropertyFile)
        Train              training: the image's `train` on that S3 prefix -> model.tar.gz
        Evaluate           processing: the challenger and the champion (the latest Approved package,
                           looked up when the step runs) on the same test rows -> evaluation.json
                           (a PropertyFile) + report.html; a label-decay incident awaiting this
                           retrain in the monitoring state focuses the decision on what decayed
        PromotionDecision  condition: evaluation.json's promotion.promote == 1
        Register           RegisterModel into ltv-<game>: image + archive, ModelApprovalStatus,
                           evaluation.json as model metrics, lineage as customer metadata
        NotPromoted        FailStep whose message is the promotion rule's reason

    Parameters (PascalCase, defaults from the config): DatasetVersion (`rolling` = the newest
    complete rolling version), ModelBudget (`config` | `fast`), Train/Evaluate InstanceType,
    InstanceCount and MaxRuntimeSeconds, ModelApprovalStatus (Approved when
    `promotion.approval` is auto, else PendingManualApproval). Each execution is a run of the
    experiment named after the pipeline, and the training job's validation metrics are
    recorded with it (Studio shows both)."""
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.model import Model
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import ParameterInteger, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_experiment_config import PipelineExperimentConfig
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.steps import ProcessingStep, TrainingStep

    sm, game, name = config.sagemaker, config.game.id, pipeline_name(config)
    version = version or code_version()  # of the wheel built with this definition, i.e. of the image
    p = {
        "dataset": ParameterString("DatasetVersion", default_value="rolling"),
        "budget": ParameterString("ModelBudget", default_value="config"),
        "train_type": ParameterString("TrainInstanceType", default_value=sm.training.instance_type),
        "train_count": ParameterInteger("TrainInstanceCount", default_value=sm.training.instance_count),
        "train_runtime": ParameterInteger("TrainMaxRuntimeSeconds", default_value=sm.training.max_runtime_minutes * 60),
        "eval_type": ParameterString("EvaluateInstanceType", default_value=sm.evaluation.instance_type),
        "eval_count": ParameterInteger("EvaluateInstanceCount", default_value=sm.evaluation.instance_count),
        "eval_runtime": ParameterInteger("EvaluateMaxRuntimeSeconds",
                                         default_value=sm.evaluation.max_runtime_minutes * 60),
        "approval": ParameterString("ModelApprovalStatus", default_value=APPROVED if config.promotion.approval == "auto"
                                    else PENDING),
    }
    session = _offline_session(config.require_aws().region, where.artifacts_bucket)

    def run_uri(*parts: str) -> Any:
        """A URI under this execution's prefix: one flat Join, the shape the SDK itself emits."""
        return Join(on="/", values=[where.prefix, name, ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    common = {"image_uri": where.image_uri, "role": where.role_arn, "sagemaker_session": session,
              "volume_kms_key": where.key_arn, "output_kms_key": where.key_arn}

    dataset_file = PropertyFile(name="Dataset", output_name="dataset", path=DATASET_FILE)
    resolver = Processor(**common, env={"LTV_CODE_VERSION": version}, entrypoint=[*ENTRYPOINT, "resolve-dataset"], instance_count=1,
                         instance_type=sm.resolve_instance_type, volume_size_in_gb=RESOLVE_VOLUME_GB,
                         max_runtime_in_seconds=RESOLVE_RUNTIME_S, base_job_name=f"ltv-{game}-resolve")
    resolve = ProcessingStep(
        name="ResolveDataset", display_name="Resolve-dataset-version",
        description="Picks the dataset version to train on (DatasetVersion, 'rolling' = the newest complete "
                    "rolling version) and checks that it is complete",
        property_files=[dataset_file],
        step_args=resolver.run(arguments=["--curated-uri", f"s3://{where.curated_bucket}", "--version", p["dataset"],
                                          "--output", f"{PROCESSING}/dataset", "--region", config.require_aws().region],
                               outputs=[ProcessingOutput(output_name="dataset", source=f"{PROCESSING}/dataset",
                                                         destination=run_uri("dataset"))]))
    dataset_uri = JsonGet(step_name=resolve.name, property_file=dataset_file, json_path="uri")

    estimator = Estimator(**common,
                          instance_count=p["train_count"], instance_type=p["train_type"],
                          volume_size=sm.training.volume_gb, max_run=p["train_runtime"],
                          output_path=f"{where.prefix}/{name}/models", base_job_name=f"ltv-{game}-train",
                          hyperparameters={"game": game, "budget": p["budget"], "code_version": version},
                          metric_definitions=metric_definitions(),
                          disable_profiler=True, debugger_hook_config=False)
    train = TrainingStep(
        name="Train", display_name="Train-challenger",
        description="Trains the two-stage LTV, purchase-day and churn models on the dataset version (the image's "
                    "`train`, the same function as `ltv train`)",
        step_args=estimator.fit(inputs={"dataset": TrainingInput(s3_data=dataset_uri),
                                        "config": TrainingInput(s3_data=where.config_uri)}))
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts

    evaluation_file = PropertyFile(name="Evaluation", output_name="evaluation", path=EVALUATION)
    evaluator = Processor(**common, env={"LTV_CODE_VERSION": version}, entrypoint=[*ENTRYPOINT, "evaluate"], instance_count=p["eval_count"],
                          instance_type=p["eval_type"], volume_size_in_gb=sm.evaluation.volume_gb,
                          max_runtime_in_seconds=p["eval_runtime"], base_job_name=f"ltv-{game}-evaluate")
    evaluate = ProcessingStep(
        name="Evaluate", display_name="Evaluate-against-champion",
        description="Scores the challenger and the current champion (the latest Approved package, resolved now) "
                    "on the same out-of-time test rows, applies the promotion rule, writes evaluation.json and "
                    "report.html",
        property_files=[evaluation_file],
        step_args=evaluator.run(
            inputs=[ProcessingInput(input_name="model", source=model_data, destination=f"{PROCESSING}/model"),
                    ProcessingInput(input_name="dataset", source=dataset_uri, destination=f"{PROCESSING}/dataset"),
                    ProcessingInput(input_name="config", source=where.config_uri, destination=f"{PROCESSING}/config")],
            outputs=[ProcessingOutput(output_name="evaluation", source=f"{PROCESSING}/evaluation",
                                      destination=run_uri("evaluation"))],
            arguments=["--game", game, "--model", f"{PROCESSING}/model", "--dataset", f"{PROCESSING}/dataset",
                       "--config", f"{PROCESSING}/config", "--output", f"{PROCESSING}/evaluation",
                       "--region", config.require_aws().region,
                       "--monitoring-state", f"s3://{where.curated_bucket}/{MONITORING_STATE}"]))
    decision = lambda path: JsonGet(step_name=evaluate.name, property_file=evaluation_file, json_path=path)  # noqa: E731

    package = Model(image_uri=where.image_uri, model_data=model_data, role=where.role_arn, sagemaker_session=session)
    register = ModelStep(
        name="Register", display_name="Register-promoted-model",
        description=f"Registers the promoted challenger in the model package group {group_name(game)} with "
                    "ModelApprovalStatus, its lineage and evaluation.json as model quality metrics",
        step_args=package.register(
            model_package_group_name=group_name(game), approval_status=p["approval"],
            content_types=list(CONTENT_TYPES), response_types=list(CONTENT_TYPES),
            transform_instances=list(sm.transform_instance_types), inference_instances=list(sm.transform_instance_types),
            description=f"{config.game.name} LTV model promoted by the retraining pipeline {name}",
            model_metrics=ModelMetrics(model_statistics=MetricsSource(
                s3_uri=run_uri("evaluation", EVALUATION), content_type="application/json")),
            customer_metadata_properties={
                **{key: decision(f"registration.{field}") for field, key in METADATA.items() if field != "status"},
                METADATA["status"]: p["approval"]}))
    not_promoted = FailStep(
        name="NotPromoted", display_name="Challenger-not-promoted",
        description="Ends the execution without registering: the promotion rule kept the champion",
        error_message=decision("promotion.reason"))  # e.g. "minmax 0.7120 vs champion 0.7150: gain ..."
    condition = ConditionStep(
        name="PromotionDecision", display_name="Promotion-decision",
        description="Reads promotion.promote from evaluation.json (1 = the promotion rule promotes the challenger)",
        conditions=[ConditionEquals(left=decision("promotion.promote"), right=1)],
        if_steps=[register], else_steps=[not_promoted])
    return Pipeline(name=name, parameters=list(p.values()), steps=[resolve, train, evaluate, condition],
                    sagemaker_session=session,
                    pipeline_experiment_config=PipelineExperimentConfig(ExecutionVariables.PIPELINE_NAME,
                                                                        ExecutionVariables.PIPELINE_EXECUTION_ID))


def definition(config: GameConfig, where: Locations, *, version: str | None = None) -> dict[str, Any]:
    """The pipeline definition JSON (as a dict) of `get_pipeline`, built with the SDK kept offline."""
    with _offline_sdk(config.require_aws().region):
        return json.loads(get_pipeline(config, where, version=version).definition())


def _boto_session(region: str) -> Any:
    """A boto3 session that never looks for credentials: the build sends no request, and the
    lookup itself would be a network call on EC2 (the instance metadata service)."""
    import boto3

    return boto3.Session(region_name=region, aws_access_key_id="offline-build", aws_secret_access_key="unused")


def _offline_session(region: str, bucket: str) -> Any:
    """A PipelineSession: it records job requests instead of starting jobs. Its SDK settings are
    the project's (telemetry off), never files of the machine that synthesizes."""
    from sagemaker.workflow.pipeline_context import PipelineSession

    return PipelineSession(boto_session=_boto_session(region), default_bucket=bucket, sagemaker_config=SDK_CONFIG)


@contextlib.contextmanager
def _offline_sdk(region: str) -> Iterator[None]:
    """The SDK offline, quiet and fast while it builds: boto3's default session (which the SDK
    uses for side objects, e.g. the estimator's TensorBoard app) is an offline one; its INFO logs
    ("not applying SDK defaults", "popping out job names"), warnings and v2 -> v3 notice (v2 is
    deliberate: v3 cannot build a pipeline offline) are silenced; SDK_CONFIG is validated once
    instead of at each of the SDK's ~60 lookups (0.3 s each)."""
    from unittest import mock

    import boto3

    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    for name in ("sagemaker", "sagemaker.config"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from sagemaker import utils
    from sagemaker.config.config import validate_sagemaker_config

    validate_sagemaker_config(SDK_CONFIG)
    with warnings.catch_warnings(), mock.patch.object(utils, "validate_sagemaker_config", lambda *_: None), \
            mock.patch.object(boto3, "DEFAULT_SESSION", _boto_session(region)):
        warnings.simplefilter("ignore")
        yield
