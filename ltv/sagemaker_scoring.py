"""Batch scoring in SageMaker: a features partition, scored by the champion, published as a run.

The AWS twin of `ltv.scoring.score`, in two halves that the Lambdas in `lambdas/` call:

- `BatchScoring.start(marker)`: the ETL wrote the `_SUCCESS` marker of a features partition
  (`features/cutoff=D/`). On a scoring day (`ltv.schedule.is_scoring_day`) the latest Approved
  model package, resolved now with `SageMakerRegistry.champion()`, gets a SageMaker model
  (`ltv-<game>-v<version>`, created once, reused) and a batch transform job scores the
  partition's part files (a manifest lists them, so the markers and JSON files beside them are
  never sent) into `predictions/game=<game>/dt=D/run=<run id>/`, encrypted with the game's key.
  The job name comes from the marker object (key + version id, else ETag): a duplicate or
  replayed S3 event finds its job and starts nothing new.
- `BatchScoring.finish(job)`: when the job ends. Completed: the run is published by the same
  rule as locally (`ltv.runs.publish`: `_SUCCESS`, then `_LATEST` forward only) and registered
  in the Glue catalog (`predictions` gets the run's partition, `latest_predictions` points at the
  date's latest run), so Athena readers never see half a run. Then the run's target list is
  asked for: the Glue job `targets_job` (glue_jobs/targets.py) is started for the date's latest
  run unless that list was already made and announced (its `_NOTIFIED` marker). Failed or
  stopped: a `_FAILED` marker records the reason once, and the caller alerts.

Each request of the transform is one part file of at most `scoring.max_payload_mb` (the ETL
writes parts of at most half of it, see `ltv.athena.PartWriter`; a larger part is refused here
rather than failing the job). The image's `serve` (pipelines/serve.py) answers each with the
predictions table's columns as Parquet; SageMaker stores the answer as `<part>.out`.

An AWS backend of the core, like `ltv.sagemaker_registry`: clients are injected, nothing
heavier than boto3 is imported (the Lambda ships without pandas).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ltv import runs, schedule
from ltv.config import CutoffSchedule
from ltv.errors import LtvError, MissingPartitionError
from ltv.lake import SUCCESS
from ltv.registry import PARQUET, group_name

FEATURES = "features/"
MARKER = re.compile(r"^features/cutoff=(?P<cutoff>\d{4}-\d{2}-\d{2})/_SUCCESS$")
MANIFESTS = "scoring/manifests/"
FAILED = "_FAILED"
MIB = 1024 ** 2
PREDICTIONS_TABLE, LATEST_TABLE = "predictions", "latest_predictions"
ENV_PREFIX = "LTV_SCORING_"


@dataclass(frozen=True)
class Settings:
    """What the scoring Lambdas need to know, set by the stack as environment variables
    (`environment()` writes them, `from_environment` reads them: one place for the names)."""

    game: str
    curated_bucket: str
    artifacts_bucket: str
    database: str
    role_arn: str                 # the transform's execution role (the model's)
    kms_key_arn: str
    instance_type: str
    instance_count: int
    max_payload_mb: int
    invocation_timeout_s: int
    cutoff_weekday: str
    cutoff_every_weeks: int
    scoring_cron: str
    targets_job: str              # the Glue job that makes a published run's target list

    def environment(self) -> dict[str, str]:
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_environment(cls, env: dict[str, str]) -> Settings:
        missing = [ENV_PREFIX + f.name.upper() for f in fields(cls) if ENV_PREFIX + f.name.upper() not in env]
        if missing:
            raise LtvError(f"the scoring function is missing its settings {missing}: redeploy the scoring stack")
        values = {f.name: env[ENV_PREFIX + f.name.upper()] for f in fields(cls)}
        return cls(**{k: int(v) if k in ("instance_count", "max_payload_mb", "invocation_timeout_s",
                                         "cutoff_every_weeks") else v for k, v in values.items()})

    @property
    def cutoffs(self) -> CutoffSchedule:
        return CutoffSchedule(weekday=self.cutoff_weekday, every_weeks=self.cutoff_every_weeks)


@dataclass(frozen=True)
class Marker:
    """The `_SUCCESS` object of a features partition, as an S3 event names it."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    cutoff: dt.date

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[0] + "/"


def marker(bucket: str, key: str, version_id: str | None, etag: str | None) -> Marker | str:
    """The features partition marker an object key is, or why the key is not one (to log)."""
    if not key.startswith(FEATURES):
        return f"s3://{bucket}/{key} is outside {FEATURES}: not a features partition"
    if key.endswith("/"):
        return f"s3://{bucket}/{key} is a folder, not a partition's marker"
    m = MARKER.match(key)
    if not m:
        return f"s3://{bucket}/{key} is not a partition's {SUCCESS} marker (part files and other objects are ignored)"
    try:
        cutoff = dt.date.fromisoformat(m.group("cutoff"))
    except ValueError:
        return f"s3://{bucket}/{key}: {m.group('cutoff')} is not a date"
    return Marker(bucket, key, version_id or None, (etag or "").strip('"') or None, cutoff)


def job_name(game: str, mark: Marker) -> str:
    """The transform job of one marker object: the same object (key + version id, or ETag)
    always gives the same name, at most 63 characters (`ltv-<game>-<yyyymmdd>-<10 hex>`)."""
    identity = f"{mark.bucket}/{mark.key}@{mark.version_id or mark.etag or ''}"
    return f"ltv-{game}-{mark.cutoff:%Y%m%d}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def model_name(game: str, version: int) -> str:
    return f"ltv-{game}-v{version}"


@dataclass(frozen=True)
class Outcome:
    """What happened to one marker or job: `status` says which, `message` says it for the log."""

    status: str          # started | exists | skipped | gone | stale | no-champion | published | failed
    message: str
    job: str | None = None
    model_version: int | None = None
    run: str | None = None
    first: bool = True   # finish(): the first time this outcome was recorded (alert only then)
    targets: str | None = None  # finish(): the targets job run started for the run, if any


class BatchScoring:
    """Starts and finishes the transform jobs of one game (clients injected: boto3's sagemaker,
    s3 and glue; `registry` resolves the champion)."""

    def __init__(self, settings: Settings, *, sagemaker: Any, s3: Any, glue: Any = None, registry: Any = None):
        self.settings, self.sm, self.s3, self.glue, self.registry = settings, sagemaker, s3, glue, registry
        self.store = runs.S3Store(s3, settings.curated_bucket)

    # -- start -----------------------------------------------------------------------------------

    def start(self, mark: Marker, now: dt.datetime | None = None) -> Outcome:
        """Start the transform job of a features partition's marker, once (see the module doc).
        SageMaker and S3 errors propagate: the invocation fails and the platform retries it."""
        st = self.settings
        name = job_name(st.game, mark)
        if not schedule.is_scoring_day(st.cutoffs, st.scoring_cron, mark.cutoff):
            return Outcome("skipped", f"cutoff {mark.cutoff} is not a scoring day (schedules.scoring "
                                      f"{st.scoring_cron}): {mark.uri} is not scored", name)
        if self._job_exists(name):
            return Outcome("exists", f"transform job {name} for {mark.uri} exists already: a repeated event, "
                                     "nothing new started", name)
        current = self._head(mark.bucket, mark.key)
        if current is None:
            return Outcome("gone", f"{mark.uri} no longer exists (the partition is being rewritten or was "
                                   "deleted): nothing to score; its new marker will start scoring", name)
        if not self._same_object(mark, current):
            return Outcome("stale", f"{mark.uri} was rewritten since this event (version "
                                    f"{current.get('VersionId') or current.get('ETag')}): the newer marker's "
                                    "event scores it", name)
        champion = self.registry.champion()
        if champion is None:
            return Outcome("no-champion", f"model package group {group_name(st.game)!r} has no Approved package, "
                                          f"so {mark.uri} was not scored. Approve a version (ltv registry approve "
                                          f"--game {st.game} N --registry sagemaker) or let the retraining pipeline "
                                          "register one, then score this cutoff again by rewriting its marker (see "
                                          "docs/operations.md, 'Score a date again')", name)
        parts = self._parts(mark)
        model = self._ensure_model(champion.version, champion.lineage["package"])
        run = runs.new_run_id(now, champion.version)
        manifest = self._write_manifest(name, mark, parts)
        output = f"s3://{st.curated_bucket}/{runs.run_prefix(st.game, mark.cutoff, run)}"
        try:
            self.sm.create_transform_job(**self.transform_request(name, model, manifest, output, mark, run,
                                                                  champion.version))
        except self.sm.exceptions.ClientError as e:
            if _code(e) != "ResourceInUse":
                raise  # throttled or refused: the invocation fails and is retried
            return Outcome("exists", f"transform job {name} was started concurrently by a duplicate event", name)
        return Outcome("started", f"transform job {name} scores {len(parts)} part(s) of {mark.prefix} with model "
                                  f"version {champion.version} into {output}", name, champion.version, run)

    def transform_request(self, name: str, model: str, manifest: str, output: str, mark: Marker, run: str,
                          version: int) -> dict[str, Any]:
        """The CreateTransformJob request: one part file per request (SingleRecord, no splitting),
        Parquet in and out, the output encrypted with the game's key."""
        st = self.settings
        tags = {"ltv:game": st.game, "ltv:dt": str(mark.cutoff), "ltv:run": run, "ltv:model-version": str(version),
                "ltv:marker": f"{mark.uri}@{mark.version_id or mark.etag or ''}"[:256]}
        return {
            "TransformJobName": name, "ModelName": model,
            "MaxConcurrentTransforms": 1, "MaxPayloadInMB": st.max_payload_mb, "BatchStrategy": "SingleRecord",
            "ModelClientConfig": {"InvocationsTimeoutInSeconds": st.invocation_timeout_s, "InvocationsMaxRetries": 1},
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": manifest}},
                               "ContentType": PARQUET, "CompressionType": "None", "SplitType": "None"},
            "TransformOutput": {"S3OutputPath": output, "Accept": PARQUET, "AssembleWith": "None",
                                "KmsKeyId": st.kms_key_arn},
            "TransformResources": {"InstanceType": st.instance_type, "InstanceCount": st.instance_count},
            "DataProcessing": {"JoinSource": "None"},
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }

    def _job_exists(self, name: str) -> bool:
        return self._described(self.sm.describe_transform_job, TransformJobName=name) is not None

    def _described(self, describe: Callable[..., dict[str, Any]], **name: str) -> dict[str, Any] | None:
        """A SageMaker resource by its name, None if there is none. SageMaker answers an unknown name
        with ValidationException (its message varies by API and over time: not read); the names
        here are our own, valid ones, so that code can only mean the resource does not exist."""
        try:
            return describe(**name)
        except self.sm.exceptions.ClientError as e:
            if _code(e) == "ValidationException":
                return None
            raise

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return self.s3.head_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    @staticmethod
    def _same_object(mark: Marker, head: dict[str, Any]) -> bool:
        if mark.version_id and head.get("VersionId"):
            return head["VersionId"] == mark.version_id
        return not mark.etag or head.get("ETag", "").strip('"') == mark.etag

    def _parts(self, mark: Marker) -> list[dict[str, Any]]:
        """The partition's data files (what Athena would read), each small enough for one request."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=mark.bucket, Prefix=mark.prefix)
        parts = [o for page in pages for o in page.get("Contents", [])
                 if runs.is_data(o["Key"]) and "/" not in o["Key"][len(mark.prefix):]]
        if not parts:
            raise MissingPartitionError(f"{mark.prefix} has a {SUCCESS} marker but no data files: rebuild the "
                                        f"cutoff's features (aws glue start-job-run --job-name ltv-{self.settings.game}"
                                        f"-cutoffs --arguments '{{\"--cutoff\":\"{mark.cutoff}\"}}')")
        limit = self.settings.max_payload_mb * MIB
        large = [f"{o['Key']} ({o['Size'] / MIB:.1f} MiB)" for o in parts if o["Size"] > limit]
        if large:
            raise LtvError(f"{', '.join(large)} exceed the transform's MaxPayloadInMB ({self.settings.max_payload_mb}): "
                           "the ETL writes parts of at most half of scoring.max_payload_mb; rebuild the cutoff's "
                           "features with the deployed config (the cutoffs job with --cutoff), then its marker "
                           "starts scoring again")
        return sorted(parts, key=lambda o: o["Key"])

    def _ensure_model(self, version: int, package: str) -> str:
        """The SageMaker model of a package version: created once (the image and archive of the
        package, the version number in its environment, no network), then reused."""
        st, name = self.settings, model_name(self.settings.game, version)
        existing = self._described(self.sm.describe_model, ModelName=name)
        if existing is None:
            try:
                self.sm.create_model(ModelName=name, ExecutionRoleArn=st.role_arn, EnableNetworkIsolation=True,
                                     Containers=[{"ModelPackageName": package,
                                                  "Environment": {"LTV_MODEL_VERSION": str(version)}}],
                                     Tags=[{"Key": "ltv:game", "Value": st.game},
                                           {"Key": "ltv:model-version", "Value": str(version)}])
                return name
            except self.sm.exceptions.ClientError as e:
                # refused: if a duplicate event created it meanwhile ("Cannot create already existing
                # model"), the model is there now and is checked below; otherwise the refusal stands
                existing = self._described(self.sm.describe_model, ModelName=name) \
                    if _code(e) == "ValidationException" else None
                if existing is None:
                    raise
        used = [c.get("ModelPackageName") for c in existing.get("Containers") or [existing.get("PrimaryContainer")] if c]
        if used != [package]:
            raise LtvError(f"SageMaker model {name} exists but serves {used}, not {package}: delete the model "
                           f"(aws sagemaker delete-model --model-name {name}) and score again")
        return name

    def _write_manifest(self, name: str, mark: Marker, parts: list[dict[str, Any]]) -> str:
        """A SageMaker manifest of exactly these part files (the first entry is their prefix)."""
        body = json.dumps([{"prefix": f"s3://{mark.bucket}/{mark.prefix}"},
                           *(o["Key"][len(mark.prefix):] for o in parts)])
        key = f"{MANIFESTS}{name}.manifest"
        self.s3.put_object(Bucket=self.settings.artifacts_bucket, Key=key, Body=body.encode(),
                           ContentType="application/json")
        return f"s3://{self.settings.artifacts_bucket}/{key}"

    # -- finish ----------------------------------------------------------------------------------

    def finish(self, job: str, status: str, output_path: str, reason: str | None = None,
               alert: Callable[[str], None] | None = None) -> Outcome:
        """Publish a completed job's run, or alert on a failed one once (replay-safe): a failure is
        recorded (`_FAILED` in the run's folder) only after `alert(message)` returned, so a crash
        in between alerts again rather than never."""
        game, day, run = self.locate(output_path)
        if status == "Completed":
            published = runs.publish(self.store, game, day, run)
            self._register(PREDICTIONS_TABLE, [game, day, run], runs.run_prefix(game, day, run), replace=False)
            self._register(LATEST_TABLE, [game, day], runs.run_prefix(game, day, published.latest), replace=True)
            what = (f"published run {run} of {day}" if published.moved else
                    f"run {run} of {day} was published before; the latest run is {published.latest}")
            started, why = self._start_targets(day, run, published.latest)
            return Outcome("published", f"transform job {job}: {what}; {why}", job, run=run, first=published.moved,
                           targets=started)
        if status in ("Failed", "Stopped"):
            message = failure_message(job, status, reason, day)
            record = runs.run_prefix(game, day, run) + FAILED
            first = self.store.get(record) is None
            if first:
                if alert is not None:
                    alert(message)
                self.store.put(record, json.dumps({"job": job, "status": status, "reason": reason,
                                                   "at": dt.datetime.now(dt.timezone.utc).isoformat()}).encode())
            return Outcome("failed", message, job, run=run, first=first)
        return Outcome("skipped", f"transform job {job} is {status}: nothing to do until it ends", job, run=run)

    def _start_targets(self, day: str, run: str, latest: str) -> tuple[str | None, str]:
        """Start the targets job for a published run (its job run id, or None) and say why.

        Started again on a replayed completion unless the list is announced (`_NOTIFIED`): a replay
        after a crash between publishing and starting must still make the list, and the job itself
        writes nothing twice. An older run published late gets no list: the date's latest has one."""
        st = self.settings
        if run != latest:
            return None, f"no target list for it (the date's latest run {latest} has its own)"
        prefix = runs.targets_prefix(st.game, day, run)
        if self.store.get(prefix + runs.NOTIFIED) is not None:
            return None, f"its target list s3://{st.curated_bucket}/{prefix} was made and announced before"
        started = self.glue.start_job_run(JobName=st.targets_job, Arguments={"--date": day, "--run": run})["JobRunId"]
        return started, f"targets job {st.targets_job} run {started} makes its target list"

    def locate(self, output_path: str) -> tuple[str, str, str]:
        """(game, day, run) of a job's output path, which must be a run of this game's predictions."""
        bucket, _, prefix = output_path.removeprefix("s3://").partition("/")
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        game, day, run = runs.parse_run_prefix(prefix)
        if bucket != self.settings.curated_bucket or game != self.settings.game:
            raise LtvError(f"{output_path} is not a prediction run of {self.settings.game} in "
                           f"s3://{self.settings.curated_bucket}/")
        return game, day, run

    def _register(self, table: str, values: list[str], prefix: str, *, replace: bool) -> None:
        register_partition(self.glue, self.settings.database, table, values,
                           f"s3://{self.settings.curated_bucket}/{prefix}", replace=replace)


def register_partition(glue: Any, database: str, table: str, values: list[str], location: str, *,
                       replace: bool) -> bool:
    """Register a partition of a catalog table at `location` (create, or move it when `replace`), with
    the table's storage descriptor; whether it was new. The tables whose writers register their
    partitions (`TableSpec.registered`) all go through here."""
    found = glue.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"]
    partition = {"Values": values, "StorageDescriptor": {**found, "Location": location}}
    try:
        glue.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition)
        return True
    except glue.exceptions.AlreadyExistsException:
        if replace:
            glue.update_partition(DatabaseName=database, TableName=table, PartitionValueList=values,
                                  PartitionInput=partition)
        return False


def failure_message(job: str, status: str, reason: str | None, day: str) -> str:
    """The alert of a failed or stopped transform job: what failed, why, what to do."""
    return (f"Batch scoring of {day} {status.lower()}: transform job {job}: {reason or 'no reason given'}. "
            f"Its log: CloudWatch /aws/sagemaker/TransformJobs, streams {job}/*. The date keeps its previous "
            "predictions; fix the cause (docs/operations.md, 'The alarms' (transform-failures)), then score "
            "again by rewriting the features marker (docs/operations.md, 'Score a date again').")


def _code(error: Exception) -> str | None:
    return getattr(error, "response", {}).get("Error", {}).get("Code")


__all__ = ["BatchScoring", "Marker", "Outcome", "Settings", "failure_message", "job_name", "marker", "model_name",
           "register_partition"]
