"""The scoring's completion: EventBridge "SageMaker Transform Job State Change" -> the run published.

Contract: the EventBridge event of one of the game's transform jobs (the rule matches its name
prefix and the terminal states); `detail` holds the job's `TransformJobName`,
`TransformJobStatus`, `FailureReason` and `TransformOutput.S3OutputPath`. The job goes to
`ltv.sagemaker_scoring.BatchScoring.finish`: a completed job's run is published once (the local
`_LATEST` rule, then the Glue catalog's partitions) and its target list asked of the targets Glue
job (glue_jobs/targets.py), a failed or stopped one is alerted on the game's topic once. Replays
change nothing; AWS errors propagate so the platform retries.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, ValidationError, parse
from aws_lambda_powertools.utilities.parser.exceptions import InvalidModelTypeError
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._parse import problems
from ltv import metric_names as names
from ltv.sagemaker_scoring import BatchScoring, Settings

logger, metrics, tracer = Logger(service=names.PUBLISH_SERVICE), Metrics(service=names.PUBLISH_SERVICE), Tracer()
TOPIC = "LTV_ALERT_TOPIC_ARN"


class TransformOutput(BaseModel):
    S3OutputPath: str


class TransformJob(BaseModel):
    TransformJobName: str
    TransformJobStatus: str
    FailureReason: str | None = None
    TransformOutput: TransformOutput


class TransformJobEvent(EventBridgeModel):
    detail: TransformJob


@lru_cache(maxsize=1)
def scoring() -> BatchScoring:
    settings = Settings.from_environment(dict(os.environ))
    return BatchScoring(settings, sagemaker=boto3.client("sagemaker"), s3=boto3.client("s3"),
                        glue=boto3.client("glue"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        job = parse(event=event, model=TransformJobEvent).detail
    except (ValidationError, InvalidModelTypeError) as e:
        logger.error("malformed event: not a SageMaker Transform Job State Change, nothing published",
                     extra={"problems": problems(e)})
        metrics.add_metric(name=names.MALFORMED_EVENTS, unit=MetricUnit.Count, value=1)
        return {"status": "malformed"}
    def alert(message: str) -> None:
        subject = f"LTV {scoring().settings.game}: batch scoring {job.TransformJobStatus.lower()}"
        boto3.client("sns").publish(TopicArn=os.environ[TOPIC], Subject=subject[:100], Message=message)
        metrics.add_metric(name=names.TRANSFORM_JOBS_FAILED, unit=MetricUnit.Count, value=1)

    outcome = scoring().finish(job.TransformJobName, job.TransformJobStatus, job.TransformOutput.S3OutputPath,
                               job.FailureReason, alert=alert)
    if outcome.status == "failed":
        logger.error(outcome.message, extra={"job": outcome.job, "run": outcome.run, "alerted": outcome.first})
    else:
        logger.info(outcome.message, extra={"status": outcome.status, "job": outcome.job, "run": outcome.run,
                                            "targets_job_run": outcome.targets})
        if outcome.status == "published":
            metrics.add_metric(name=names.RUNS_PUBLISHED if outcome.first else names.REPEATED_EVENTS,
                               unit=MetricUnit.Count, value=1)
    return {"status": outcome.status, "job": outcome.job, "run": outcome.run, "first": outcome.first,
            "targets_job_run": outcome.targets}
