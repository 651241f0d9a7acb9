"""The scoring trigger: S3 `ObjectCreated` of a features partition's `_SUCCESS` -> a batch transform.

Contract: the S3 -> Lambda notification event (`Records[].s3.bucket.name`, `.object.key`
URL-encoded, `.object.versionId`, `.object.eTag`), delivered asynchronously and at least once:
a failed invocation is retried twice, then kept in the game's dead-letter queue. The bucket's
notification already filters on `features/` and `_SUCCESS`; anything else that arrives is logged
and ignored. Each marker goes to `ltv.sagemaker_scoring.BatchScoring.start`, which resolves the
champion now and starts (or finds) the transform job of that object. AWS errors propagate, so
the platform retries; "no Approved package" is logged with what to do and counted in the
`NoApprovedPackage` metric, which alarms.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.exceptions import InvalidModelTypeError
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._parse import problems
from ltv import metric_names as names
from ltv.sagemaker_registry import SageMakerRegistry
from ltv.sagemaker_scoring import BatchScoring, Settings, marker

logger, metrics, tracer = Logger(service=names.SCORING_SERVICE), Metrics(service=names.SCORING_SERVICE), Tracer()
COUNTED = {"started": names.TRANSFORM_JOBS_STARTED, "exists": names.REPEATED_EVENTS,
           "no-champion": names.NO_APPROVED_PACKAGE}


@lru_cache(maxsize=1)
def scoring() -> BatchScoring:
    """Clients and settings once per execution environment (warm invocations reuse them)."""
    settings = Settings.from_environment(dict(os.environ))
    sagemaker, s3 = boto3.client("sagemaker"), boto3.client("s3")
    registry = SageMakerRegistry(settings.game, sagemaker=sagemaker, s3=s3)
    return BatchScoring(settings, sagemaker=sagemaker, s3=s3, registry=registry)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("Event") == "s3:TestEvent":  # S3 sends one when the notification is configured
        logger.info("S3 test event (the bucket notification was set up): nothing to score")
        return {"outcomes": []}
    try:
        records = parse(event=event, model=S3Model).Records
    except (ValidationError, InvalidModelTypeError) as e:
        logger.error("malformed event: not an S3 ObjectCreated notification, nothing started",
                     extra={"problems": problems(e), "keys": sorted(event)[:10] if isinstance(event, dict) else None})
        metrics.add_metric(name=names.MALFORMED_EVENTS, unit=MetricUnit.Count, value=1)
        return {"outcomes": [], "malformed": True}
    outcomes = []
    for record in records:
        obj = record.s3.object
        found = marker(record.s3.bucket.name, unquote_plus(obj.key), obj.versionId, obj.eTag)
        if not record.eventName.startswith("ObjectCreated") or isinstance(found, str):
            why = found if isinstance(found, str) else f"{record.eventName} is not an ObjectCreated event"
            logger.info(f"ignored: {why}")
            metrics.add_metric(name=names.IGNORED_OBJECTS, unit=MetricUnit.Count, value=1)
            outcomes.append({"status": "ignored", "message": why})
            continue
        outcome = scoring().start(found)
        log = logger.error if outcome.status == "no-champion" else logger.info
        log(outcome.message, extra={"status": outcome.status, "job": outcome.job, "marker": found.uri,
                                    "model_version": outcome.model_version, "run": outcome.run})
        if outcome.status in COUNTED:
            metrics.add_metric(name=COUNTED[outcome.status], unit=MetricUnit.Count, value=1)
        outcomes.append({"status": outcome.status, "job": outcome.job, "message": outcome.message})
    return {"outcomes": outcomes}
