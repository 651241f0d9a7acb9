"""Batch scoring and monitoring in AWS, offline, run the way the cloud runs them.

- One synthesized app (the tiny game's config, the real core wheel), and every account built in
  moto from its templates: buckets (versioned), catalog, workgroup, topic, queue, model package
  group. Each Lambda runs with the environment its template gives it, on the real event shapes
  (the S3 notification, EventBridge's "SageMaker Transform Job State Change", SNS), with a fake
  Lambda context; every AWS call it makes must be allowed by its role in the template.
- End to end: the ETL writes a features partition in parts (marker last) -> the S3 event -> the
  scoring Lambda starts one transform job with the latest Approved package -> the image's `serve`
  scores each part as SageMaker would -> the completion event publishes the run -> Athena (over
  DuckDB) answers the same SQL as the local lake, with the same predictions as `ltv predict`.
- The monitoring Glue job from its template, over moto and Athena, publishes the same metrics as
  `ltv monitor` on the same data.
- The Lambdas' code asset: imported from cdk.out with only the shipped files (the locked AWS SDK
  included, ahead of an older runtime SDK), its sources the repository's; the publish handler run
  from it in its own interpreter against moto in server mode.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gzip
import io
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest

for _var, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                     "AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "true",
                     "POWERTOOLS_METRICS_NAMESPACE": "LTV/galaxy-raiders"}.items():
    os.environ[_var] = _value
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cloud import Account, PolicyEvaluator, Role, Templates, moto_account, role  # noqa: E402
from conftest import ROOT, loop_config  # noqa: E402

sys.path.append(str(ROOT))  # stacks/ is not an installed package

from botocore.exceptions import ClientError  # noqa: E402

from ltv import etl, metric_names, runs, targets  # noqa: E402
from ltv.athena import AthenaEngine  # noqa: E402
from ltv.errors import RegistryError  # noqa: E402
from ltv.lake import SUCCESS  # noqa: E402
from ltv.monitoring import Monitor, metric_data, missed_scoring_runs  # noqa: E402
from ltv.promotion import APPROVED, PENDING, REJECTED  # noqa: E402
from ltv.sagemaker_registry import CHANGES, METADATA, SageMakerRegistry  # noqa: E402
from ltv.sagemaker_scoring import BatchScoring, Settings, job_name, marker  # noqa: E402
from ltv.scoring import Predictions, connect, score  # noqa: E402
from stacks.game import build_app  # noqa: E402
from stacks.names import Names  # noqa: E402
from stacks.packaging import build_core_wheel  # noqa: E402

pytestmark = pytest.mark.slow
DAY = dt.date(2025, 4, 14)            # a Monday: a cutoff and a scoring day of the tiny game
TODAY = dt.date(2025, 12, 31)         # Athena's partition projection runs to "NOW"
IMAGE = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets-111111111111-eu-west-1:ltv"


# ----------------------------------------------------------------------------------------------
# the synthesized app and the accounts built from it


@pytest.fixture(scope="module")
def synthesized_app(tmp_path_factory) -> dict[str, tuple[Any, Templates]]:
    """The tiny game's stacks and dragon-merge's (its webhook on), with the real core wheel (the
    Lambdas' code asset holds the real core): {game: (config, templates)}."""
    from ltv import config as cfg

    configs = [loop_config(), cfg.load(ROOT / "config" / "games" / "dragon-merge.yaml")]
    out = tmp_path_factory.mktemp("synth")
    wheel = build_core_wheel(ROOT, out / "dist")
    build_app(core_wheel=wheel, configs=configs, outdir=str(out / "cdk.out")).synth()
    return {c.game.id: (c, Templates(out / "cdk.out", c.aws.account, c.aws.region)) for c in configs}


@pytest.fixture(scope="module")
def synthesized(synthesized_app) -> tuple[Any, Templates]:
    return synthesized_app["galaxy-raiders"]


@dataclass
class Game:
    """One game's account in moto and how to reach its parts."""

    config: Any
    tpl: Templates
    account: Account
    names: Names
    hooks: list[tuple[str, Any]]      # botocore's handlers with the account's (recorder, Athena)

    # one client each (the test's own session, unrecorded: a client made later gets no other hooks)
    @functools.cached_property
    def s3(self) -> Any:
        return self.account.session.client("s3")

    @functools.cached_property
    def sm(self) -> Any:
        return self.account.session.client("sagemaker")

    def bucket(self, purpose: str) -> str:
        return self.names.bucket(purpose)

    def stack(self, concern: str) -> str:
        return self.names.stack(concern)

    def function(self, name: str) -> dict[str, Any]:
        """The properties of the Lambda function `ltv-<game>-<name>` in the template, resolved."""
        stack = self.stack("Alerts" if name == "alerts-webhook" else "Scoring")
        for logical_id in self.tpl.resources(stack, "AWS::Lambda::Function"):
            props = self.tpl.props(stack, logical_id)
            if props.get("FunctionName") == self.names.resource(name):
                return props | {"LogicalId": logical_id, "Stack": stack}
        raise KeyError(name)

    def role_policy(self, stack: str, role_logical_id: str) -> PolicyEvaluator:
        return PolicyEvaluator(self.tpl.policy_statements(stack, role_logical_id))

    def function_policy(self, name: str) -> PolicyEvaluator:
        fn = self.function(name)
        role = self.tpl.templates[fn["Stack"]]["Resources"][fn["LogicalId"]]["Properties"]["Role"]["Fn::GetAtt"][0]
        return self.role_policy(fn["Stack"], role)

    def function_role(self, name: str) -> Role:
        """The role of the function `ltv-<game>-<name>`, with exactly its template statements."""
        fn = self.function(name)
        logical_id = self.tpl.templates[fn["Stack"]]["Resources"][fn["LogicalId"]]["Properties"]["Role"]["Fn::GetAtt"][0]
        return role(self.tpl, fn["Stack"], logical_id)

    def role_named(self, stack: str, name: str) -> PolicyEvaluator:
        return self.role_called(stack, name).policy

    def role_called(self, stack: str, name: str) -> Role:
        """The role named `name` in the stack's template, with exactly its statements."""
        logical_id = next(k for k, r in self.tpl.resources(stack, "AWS::IAM::Role").items()
                          if self.tpl.resolve(stack, r["Properties"].get("RoleName")) == name)
        return role(self.tpl, stack, logical_id)

    def registry(self, **kwargs: Any) -> SageMakerRegistry:
        return SageMakerRegistry(self.config.game.id, sagemaker=self.sm, s3=self.s3, **kwargs)


@contextlib.contextmanager
def game_account(synthesized: tuple[Any, Templates], monkeypatch) -> Iterator[Game]:
    config, tpl = synthesized
    names = Names.of(config)
    stacks = [names.stack(c) for c in ("DataLake", "Alerts", "Ml", "Scoring")]
    with moto_account(tpl, stacks, monkeypatch, TODAY) as account:
        import botocore.handlers

        yield Game(config, tpl, account, names, list(botocore.handlers.BUILTIN_HANDLERS))


@pytest.fixture
def game(synthesized, monkeypatch) -> Game:
    with game_account(synthesized, monkeypatch) as game:
        yield game


@dataclass
class Context:
    """The LambdaContext Powertools reads (a fake: its fields as Lambda sets them)."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-1:111111111111:function:{self.function_name}"


class AsRole:
    """A handler module whose `handler` runs with exactly its function's role: every AWS call it
    makes is decided against the template's policies before it is sent (tests/cloud.py)."""

    def __init__(self, module: Any, game: Game, function: str):
        self.module, self.game, self.role = module, game, game.function_role(function)

    def handler(self, event: dict[str, Any], context: Any) -> Any:
        with self.game.account.recorder.acting_as(self.role):
            return self.module.handler(event, context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


@pytest.fixture
def handlers(game, monkeypatch):
    """The handler modules with the environment their templates give them (fresh clients), each
    called as its function's role."""
    import lambdas.publish
    import lambdas.score

    for name in ("score", "scoring-publish"):
        for key, value in game.function(name)["Environment"]["Variables"].items():
            monkeypatch.setenv(key, str(value))
    assert game.function("score")["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == \
        os.environ["POWERTOOLS_METRICS_NAMESPACE"] == metric_names.namespace(game.config.game.id)
    for module in (lambdas.score, lambdas.publish):
        module.scoring.cache_clear()
    yield AsRole(lambdas.score, game, "score"), AsRole(lambdas.publish, game, "scoring-publish")
    for module in (lambdas.score, lambdas.publish):
        module.scoring.cache_clear()


def s3_event(game: Game, key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """The S3 -> Lambda notification of an object as S3 sends it (the key URL-encoded)."""
    bucket = game.bucket("curated")
    head = game.s3.head_object(Bucket=bucket, Key=key) if name.startswith("ObjectCreated") else {}
    obj = {"key": urllib.parse.quote_plus(key, safe="/"), "sequencer": "0062E99A88DC407460"}
    if head:
        obj |= {"size": head["ContentLength"], "eTag": head["ETag"].strip('"'), "versionId": head.get("VersionId")}
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": game.config.aws.region,
        "eventTime": "2025-04-14T03:12:45.123Z", "eventName": name,
        "userIdentity": {"principalId": "AWS:AROAEXAMPLEID:ltv-galaxy-raiders-cutoffs"},
        "requestParameters": {"sourceIPAddress": "10.0.12.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                             "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ltv-features-markers",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": obj}}]}


def transform_event(job: dict[str, Any], status: str, reason: str | None = None) -> dict[str, Any]:
    """EventBridge's "SageMaker Transform Job State Change" for a job (its detail: the job's fields)."""
    detail = {k: job[k] for k in ("TransformJobName", "TransformJobArn", "ModelName", "MaxPayloadInMB",
                                  "BatchStrategy", "TransformInput", "TransformOutput", "TransformResources")}
    detail |= {"TransformJobStatus": status, "CreationTime": "2025-04-14T03:12:50Z", "Tags": {}}
    if reason:
        detail["FailureReason"] = reason
    return {"version": "0", "id": "844e2571-85d4-695f-b930-0153b71dcb42",
            "detail-type": "SageMaker Transform Job State Change", "source": "aws.sagemaker",
            "account": "111111111111", "time": "2025-04-14T03:40:13Z", "region": "eu-west-1",
            "resources": [job["TransformJobArn"]], "detail": detail}


def emitted_metrics(output: str) -> dict[str, float]:
    """The metric values in the EMF documents Powertools printed (what CloudWatch would ingest)."""
    out: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' in line:
            doc = json.loads(line)
            for spec in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                values = doc[spec["Name"]]
                out[spec["Name"]] = out.get(spec["Name"], 0) + sum(map(float, values if isinstance(values, list)
                                                                          else [values]))
    return out


# ----------------------------------------------------------------------------------------------
# the data: a features partition written by the ETL's Athena engine, in parts; registered models


def athena_engine(game: Game) -> AthenaEngine:
    return AthenaEngine(game.config, database=game.names.database, workgroup=game.names.workgroup,
                        raw_uri=f"s3://{game.bucket('raw')}", curated_uri=f"s3://{game.bucket('curated')}")


def upload_tree(game: Game, root: Path, prefix: str, bucket: str = "curated") -> None:
    """The files under `root/prefix` to one of the game's buckets, at their paths relative to `root`
    (one PutObject each: the files are small, and a transfer manager per file costs more than moto)."""
    for path in sorted((root / prefix).resolve().rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to((root / prefix).resolve()).as_posix()}"
            game.s3.put_object(Bucket=game.bucket(bucket), Key=key, Body=path.read_bytes())


def write_features(game: Game, lake: Any, monkeypatch, part_bytes: int = 150_000) -> list[str]:
    """player_day as the ETL left it, then the cutoff's features built by the Athena engine with
    parts of at most `part_bytes` (as for a cutoff far above MaxPayloadInMB): their keys."""
    import ltv.athena

    upload_tree(game, lake.base, "player_day")
    upload_tree(game, lake.raw("events").parent, game.config.logs.players.table, bucket="raw")  # the attributes
    monkeypatch.setattr(ltv.athena, "MIB", part_bytes * 2 // game.config.scoring.max_payload_mb)
    etl.build_features(athena_engine(game), game.config, DAY)
    pages = game.s3.get_paginator("list_objects_v2").paginate(Bucket=game.bucket("curated"),
                                                              Prefix=f"features/cutoff={DAY}/")
    objects = [o for page in pages for o in page["Contents"]]
    assert all(o["Size"] <= part_bytes for o in objects), [o["Size"] for o in objects]
    return sorted(o["Key"] for o in objects if runs.is_data(o["Key"]))


@pytest.fixture(scope="module")
def one_part_features(synthesized, tiny_game) -> dict[str, bytes]:
    """The cutoff's features partition as the ETL's Athena engine writes it in one part, built once
    in an account of its own: {key: body}. The handler tests need the partition, not its making
    (the end-to-end test builds its own, in parts): each puts these objects into its account."""
    with pytest.MonkeyPatch.context() as monkeypatch, game_account(synthesized, monkeypatch) as game:
        parts = write_features(game, tiny_game[1], monkeypatch, part_bytes=10 ** 7)
        assert len(parts) == 1, parts
        listing = game.s3.list_objects_v2(Bucket=game.bucket("curated"), Prefix=f"features/cutoff={DAY}/")["Contents"]
        return {o["Key"]: game.s3.get_object(Bucket=game.bucket("curated"), Key=o["Key"])["Body"].read()
                for o in listing}


def put_features(game: Game, written: dict[str, bytes]) -> None:
    """The partition's objects in the game's curated bucket, its marker last (as the ETL writes them)."""
    for key in sorted(written, key=lambda k: k.endswith(f"/{SUCCESS}")):
        game.s3.put_object(Bucket=game.bucket("curated"), Key=key, Body=written[key])


def register_model(game: Game, model: Any, status: str = APPROVED) -> int:
    """The tiny model as the pipeline registers it: archive under the pipeline's models prefix."""
    registry = game.registry(artifact_uri=f"s3://{game.bucket('artifacts')}/pipelines/ltv-galaxy-raiders-retrain/models",
                             image_uri=IMAGE)
    return registry.register(model.path, metrics=model.manifest["validation_metrics"], status=status,
                             reason="registered by the test").version


def filler_package(game: Game, status: str, metadata: dict[str, str] | None = None) -> int:
    """A model package made straight through the API (no archive needed to resolve the champion)."""
    spec = game.registry(image_uri=IMAGE).inference_specification(
        f"s3://{game.bucket('artifacts')}/pipelines/ltv-galaxy-raiders-retrain/models/x/model.tar.gz")
    arn = game.sm.create_model_package(ModelPackageGroupName="ltv-galaxy-raiders", ModelApprovalStatus=status,
                                       InferenceSpecification=spec,
                                       **({"CustomerMetadataProperties": metadata} if metadata else {}))["ModelPackageArn"]
    return int(arn.rsplit("/", 1)[1])


def jobs(game: Game) -> list[str]:
    return [j["TransformJobName"] for j in game.sm.list_transform_jobs()["TransformJobSummaries"]]


def run_transform(game: Game, job: dict[str, Any], model_dir: Path) -> list[str]:
    """What SageMaker does with the job: each manifest entry is one request to the image's `serve`
    (Parquet in, the `Accept` type out), stored as `<entry>.out` under the output path with the
    job's KMS key; the reads and writes are those the transform role makes."""
    from pipelines.serve import ScoringApp
    from ltv.models import LTVModel

    model = game.sm.describe_model(ModelName=job["ModelName"])
    container, = model["Containers"]
    app = ScoringApp(LTVModel.load(model_dir), int(container["Environment"]["LTV_MODEL_VERSION"]))
    manifest_uri = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, key = manifest_uri.removeprefix("s3://").split("/", 1)
    first, *entries = json.loads(game.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    out_bucket, out_prefix = job["TransformOutput"]["S3OutputPath"].removeprefix("s3://").split("/", 1)
    written = []
    for entry in entries:
        in_bucket, in_key = (first["prefix"] + entry).removeprefix("s3://").split("/", 1)
        body = game.s3.get_object(Bucket=in_bucket, Key=in_key)["Body"].read()
        assert len(body) <= job["MaxPayloadInMB"] * 1024 * 1024, "one request per part, within MaxPayloadInMB"
        status, headers, answer = wsgi(app, body, job["TransformInput"]["ContentType"], job["TransformOutput"]["Accept"])
        assert status.startswith("200"), answer
        written.append(f"{out_prefix}{entry}.out")
        game.s3.put_object(Bucket=out_bucket, Key=written[-1], Body=answer, ServerSideEncryption="aws:kms",
                           SSEKMSKeyId=job["TransformOutput"]["KmsKeyId"])
    return written


def wsgi(app: Any, body: bytes, content_type: str, accept: str) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/invocations", "CONTENT_TYPE": content_type,
               "HTTP_ACCEPT": accept, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    answer = b"".join(app(environ, lambda status, headers: seen.update(status=status, headers=dict(headers))))
    return seen["status"], seen["headers"], answer


def denied(game: Game, evaluator: PolicyEvaluator) -> list[str]:
    return [f"{n.action} on {n.resource} ({n.why})" for n in game.account.recorder.denied(evaluator)]


# ----------------------------------------------------------------------------------------------
# end to end


def test_a_features_partition_is_scored_once_and_queryable_by_the_same_sql_as_locally(
        game, handlers, scoring_lake, tiny_model, monkeypatch, capsys) -> None:
    score_handler, publish_handler = handlers
    config, lake, engine, local_registry = scoring_lake
    local = score(config, lake, engine, local_registry, DAY)           # `ltv predict`, the reference
    parts = write_features(game, lake, monkeypatch)
    assert len(parts) >= 3 and parts[0].endswith("/part-0.parquet"), parts
    version = register_model(game, tiny_model[0])
    marker_key = f"features/cutoff={DAY}/{SUCCESS}"
    event = s3_event(game, marker_key)
    assert "%3D" in event["Records"][0]["s3"]["object"]["key"], "S3 URL-encodes the key"
    game.account.recorder.needs.clear()

    result = score_handler.handler(event, Context("ltv-galaxy-raiders-score"))
    (outcome,) = result["outcomes"]
    assert outcome["status"] == "started", outcome
    job = game.sm.describe_transform_job(TransformJobName=outcome["job"])
    assert job["ModelName"] == f"ltv-galaxy-raiders-v{version}"
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile" and source["S3Uri"].startswith(f"s3://{game.bucket('artifacts')}/")
    assert {k: v for k, v in job["TransformInput"].items() if k != "DataSource"} == {
        "ContentType": "application/x-parquet", "CompressionType": "None", "SplitType": "None"}
    assert job["BatchStrategy"] == "SingleRecord" and job["MaxPayloadInMB"] == config.scoring.max_payload_mb
    output = job["TransformOutput"]
    key_arn = game.tpl.resolve(game.stack("Scoring"), game.function("score")["Environment"]["Variables"][
        "LTV_SCORING_KMS_KEY_ARN"])
    assert output["KmsKeyId"] == key_arn and ":key/" in key_arn
    assert output["Accept"] == "application/x-parquet" and output["AssembleWith"] == "None"
    game_out, day_out, run = runs.parse_run_prefix(output["S3OutputPath"].split("/", 3)[3])
    assert (game_out, day_out) == ("galaxy-raiders", str(DAY)) and f"-v{version}-" in run
    assert job["TransformResources"]["InstanceType"] == config.sagemaker.transform_instance_types[0]
    model = game.sm.describe_model(ModelName=job["ModelName"])
    package = game.registry().get(version).lineage["package"]
    assert model["Containers"] == [{"ModelPackageName": package, "Environment": {"LTV_MODEL_VERSION": str(version)}}]
    manifest_bucket, manifest_key = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"][5:].split("/", 1)
    manifest = json.loads(game.s3.get_object(Bucket=manifest_bucket, Key=manifest_key)["Body"].read())
    assert manifest[0] == {"prefix": f"s3://{game.bucket('curated')}/features/cutoff={DAY}/"}
    assert [f"features/cutoff={DAY}/{e}" for e in manifest[1:]] == parts, "exactly the parts, no marker or JSON"
    assert emitted_metrics(capsys.readouterr().out)[metric_names.TRANSFORM_JOBS_STARTED] == 1
    assert not denied(game, game.function_policy("score")), denied(game, game.function_policy("score"))

    # the same event again (S3 delivers at least once): nothing new
    again = score_handler.handler(event, Context("ltv-galaxy-raiders-score"))
    assert again["outcomes"][0]["status"] == "exists" and jobs(game) == [outcome["job"]]

    # SageMaker runs the job; its role may do what the job does
    game.account.recorder.needs.clear()
    written = run_transform(game, job, tiny_model[0].path)
    assert len(written) == len(parts)
    transform_role = game.role_named(game.stack("Scoring"), "ltv-galaxy-raiders-transform")
    assert not denied(game, transform_role), denied(game, transform_role)
    model_data = game.registry().get(version).path
    assert transform_role.allows("s3:GetObject", f"arn:aws:s3:::{model_data[5:]}"), "the champion's archive"
    assert not transform_role.allows("s3:PutObject", f"arn:aws:s3:::{game.bucket('curated')}/features/x")

    # before completion, Athena sees no predictions at all (the run is not registered yet)
    athena = athena_engine(game)
    assert athena.query(f"SELECT COUNT(*) AS n FROM predictions WHERE dt = '{DAY}'")["n"].iloc[0] == 0
    game.account.recorder.needs.clear()
    published = publish_handler.handler(transform_event(job, "Completed"), Context("ltv-galaxy-raiders-scoring-publish"))
    targets_run = published.pop("targets_job_run")
    assert published == {"status": "published", "job": job["TransformJobName"], "run": run, "first": True}
    assert game.account.session.client("glue").get_job_run(JobName="ltv-galaxy-raiders-targets", RunId=targets_run)[
        "JobRun"]["Arguments"].items() >= {"--date": str(DAY), "--run": run}.items(), "the run's list is asked for"
    assert not denied(game, game.function_policy("scoring-publish")), denied(game, game.function_policy("scoring-publish"))

    # the same SQL, here and there, the same predictions
    sql = (f"SELECT player_id, ltv_pred, ltv_expected, p_payer, p_churn, offer_day, model_group, model_version "
           f"FROM latest_predictions WHERE game = 'galaxy-raiders' AND dt = '{DAY}' ORDER BY player_id")
    mine, theirs = connect(lake.root).execute(sql).df(), athena.query(sql)
    assert len(mine) == local.rows > 20
    pd.testing.assert_frame_equal(theirs, mine, check_dtype=False)
    runs_sql = f"SELECT run, COUNT(*) AS n FROM predictions WHERE dt = '{DAY}' GROUP BY run"
    assert athena.query(runs_sql).to_dict("records") == [{"run": run, "n": local.rows}]
    assert connect(lake.root).execute(runs_sql).df().to_dict("records") == [{"run": local.run_id, "n": local.rows}]

    # the completion event again: published once
    before = {o["Key"]: o["ETag"] for o in game.s3.list_objects_v2(Bucket=game.bucket("curated"),
                                                                    Prefix="predictions/")["Contents"]}
    replay = publish_handler.handler(transform_event(job, "Completed"), Context("ltv-galaxy-raiders-scoring-publish"))
    assert replay["first"] is False
    after = {o["Key"]: o["ETag"] for o in game.s3.list_objects_v2(Bucket=game.bucket("curated"),
                                                                   Prefix="predictions/")["Contents"]}
    assert after == before
    published_metrics = emitted_metrics(capsys.readouterr().out)
    assert published_metrics.get(metric_names.RUNS_PUBLISHED) == 1, "counted once"
    assert published_metrics.get(metric_names.REPEATED_EVENTS) == 2, "the replays of both events are counted"


def test_no_approved_package_starts_nothing_and_says_what_to_do(game, handlers, one_part_features, capsys,
                                                                caplog) -> None:
    score_handler, _ = handlers
    put_features(game, one_part_features)
    filler_package(game, PENDING)
    filler_package(game, REJECTED)
    result = score_handler.handler(s3_event(game, f"features/cutoff={DAY}/{SUCCESS}"), Context("ltv-galaxy-raiders-score"))
    assert result["outcomes"][0]["status"] == "no-champion" and jobs(game) == []
    error, = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "has no Approved package" in error.getMessage() and "ltv registry approve" in error.getMessage()
    assert emitted_metrics(capsys.readouterr().out) == {metric_names.NO_APPROVED_PACKAGE: 1.0}
    assert game.sm.list_models()["Models"] == []


def test_the_latest_approved_package_is_chosen_across_pages(game, handlers, one_part_features, monkeypatch) -> None:
    """More Approved packages than one page holds (100), then later ones that are not Approved."""
    score_handler, _ = handlers
    put_features(game, one_part_features)
    statuses = [APPROVED] * 101 + [REJECTED, PENDING]
    numbers = [filler_package(game, status) for status in statuses]
    calls: list[str] = []
    with_hooks(game, monkeypatch, score_handler,
               ("before-call.sagemaker.ListModelPackages", lambda model, **_: calls.append(model.name)))
    outcome, = score_handler.handler(s3_event(game, f"features/cutoff={DAY}/{SUCCESS}"),
                                     Context("ltv-galaxy-raiders-score"))["outcomes"]
    assert outcome["status"] == "started"
    assert game.sm.describe_transform_job(TransformJobName=outcome["job"])["ModelName"] == \
        f"ltv-galaxy-raiders-v{numbers[100]}"
    assert len(calls) == 2, "two pages of Approved packages"


def test_malformed_and_foreign_events_start_nothing(game, handlers, one_part_features, tiny_model, capsys,
                                                    caplog) -> None:
    score_handler, _ = handlers
    put_features(game, one_part_features)
    register_model(game, tiny_model[0])
    bucket = game.bucket("curated")
    game.s3.put_object(Bucket=bucket, Key=f"labels/cutoff={DAY}/{SUCCESS}", Body=b"x")
    game.s3.put_object(Bucket=bucket, Key=f"features/cutoff={DAY}/", Body=b"")  # a console "folder"
    context = Context("ltv-galaxy-raiders-score")
    for bad in ({"hello": "world"}, {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]}, {}):
        assert score_handler.handler(bad, context)["malformed"] is True
    foreign = [s3_event(game, f"labels/cutoff={DAY}/{SUCCESS}"), s3_event(game, f"features/cutoff={DAY}/part-0.parquet"),
               s3_event(game, f"features/cutoff={DAY}/"),
               s3_event(game, f"features/cutoff={DAY}/{SUCCESS}", name="ObjectRemoved:Delete")]
    for event in foreign:
        assert [o["status"] for o in score_handler.handler(event, context)["outcomes"]] == ["ignored"]
    assert score_handler.handler({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}, context) == \
        {"outcomes": []}
    assert jobs(game) == [] and game.sm.list_models()["Models"] == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("malformed event" in m for m in messages) == 3
    assert emitted_metrics(capsys.readouterr().out) == {metric_names.MALFORMED_EVENTS: 3.0,
                                                        metric_names.IGNORED_OBJECTS: 4.0}
    assert any("is outside features/" in m for m in messages) and any("is a folder" in m for m in messages)
    assert any("part files and other objects are ignored" in m for m in messages)
    assert any("ObjectRemoved:Delete is not an ObjectCreated event" in m for m in messages)


def test_a_marker_deleted_or_rewritten_before_the_handler_runs_starts_nothing(game, handlers, one_part_features,
                                                                                 tiny_model) -> None:
    score_handler, _ = handlers
    put_features(game, one_part_features)
    register_model(game, tiny_model[0])
    key, bucket = f"features/cutoff={DAY}/{SUCCESS}", game.bucket("curated")
    event = s3_event(game, key)
    game.s3.put_object(Bucket=bucket, Key=key, Body=b"rewritten")  # a rebuild wrote a new marker since
    stale, = score_handler.handler(event, Context("ltv-galaxy-raiders-score"))["outcomes"]
    assert stale["status"] == "stale" and "was rewritten since this event" in stale["message"]
    game.s3.delete_object(Bucket=bucket, Key=key)  # no current version any more
    gone, = score_handler.handler(s3_event(game, f"features/cutoff={DAY}/part-0.parquet") | event,
                                  Context("ltv-galaxy-raiders-score"))["outcomes"]
    assert gone["status"] == "gone" and "no longer exists" in gone["message"]
    assert jobs(game) == []


def with_hooks(game: Game, monkeypatch, handlers_module: Any, *hooks: tuple[str, Any]) -> None:
    """`hooks` (and only they, besides the account's) on every client made from now on (a new
    default session picks them up); the handler's clients are made afresh."""
    import boto3
    import botocore.handlers

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [*game.hooks, *hooks])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    handlers_module.scoring.cache_clear()


def throttle(op: str, code: str = "ThrottlingException") -> Any:
    def raise_error(**_: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, op)
    return (f"before-call.sagemaker.{op}", raise_error)


def test_an_api_error_resolving_the_champion_is_raised_for_a_retry_and_starts_nothing(
        game, handlers, one_part_features, tiny_model, monkeypatch, caplog) -> None:
    score_handler, _ = handlers
    put_features(game, one_part_features)
    register_model(game, tiny_model[0])
    with_hooks(game, monkeypatch, score_handler, throttle("ListModelPackages"))
    event = s3_event(game, f"features/cutoff={DAY}/{SUCCESS}")
    with pytest.raises(RegistryError, match="could not list the model packages: ThrottlingException"):
        score_handler.handler(event, Context("ltv-galaxy-raiders-score"))
    assert jobs(game) == [] and game.sm.list_models()["Models"] == []
    assert any("Exception received from handler" in r.getMessage() and "ThrottlingException" in (r.exc_text or "")
               for r in caplog.records), "the error is logged with its traceback, then raised for a retry"
    # the platform's retry, once SageMaker answers again
    with_hooks(game, monkeypatch, score_handler)
    outcome, = score_handler.handler(event, Context("ltv-galaxy-raiders-score"))["outcomes"]
    assert outcome["status"] == "started" and len(jobs(game)) == 1


@pytest.mark.parametrize("resolving", ["score", "monitor"])
def test_a_champion_whose_history_log_is_missing_resolves_as_the_roles_that_resolve_it(game, resolving) -> None:
    """The champion counts a change made through ltv (`ltv:changes`) whose history log never landed
    (the status changed, the append failed). The scoring and monitoring roles may list the models'
    prefix, so S3 answers the log's absence 404 and the champion resolves from SageMaker's record;
    the same role without any listing of the bucket gets S3's 403 and cannot resolve it."""
    import boto3

    # registered Pending, approved since through ltv (one change counted), its log's append lost
    number = filler_package(game, APPROVED, {METADATA["status"]: PENDING, CHANGES: "1"})
    session = boto3.Session(region_name=game.tpl.region)  # made now: its calls are enforced
    resolver = SageMakerRegistry(game.config.game.id, sagemaker=session.client("sagemaker"), s3=session.client("s3"))
    log = f"/pipelines/ltv-galaxy-raiders-retrain/models/x/history-{number}.json"
    acting = game.function_role("score") if resolving == "score" else \
        game.role_called(game.stack("Monitoring"), game.names.resource("monitor"))
    recorder = game.account.recorder
    with recorder.acting_as(acting):
        champion = resolver.champion()
    assert champion is not None and champion.version == number
    assert [h["status"] for h in champion.history] == [PENDING, APPROVED] and \
        champion.history[-1]["by"] == "outside ltv", "the change shows as made outside ltv"
    assert any(n.action == "s3:GetObject" and n.resource.endswith(log) for n in recorder.needs), "the log was read"
    artifacts = f"arn:aws:s3:::{game.bucket('artifacts')}"
    lists = lambda st: PolicyEvaluator([st]).allows("s3:ListBucket", artifacts)  # noqa: E731
    # the champion's grants (stacks.ml.champion_statements) list the models; the monitoring job's
    # runtime grants list its whole artifacts bucket as well
    assert [st.get("Sid") for st in acting.policy.statements if lists(st)] == \
        {"score": ["ListModels"], "monitor": ["ListBuckets", "ListModels"]}[resolving]
    unlisted = Role(acting.name, acting.arn, PolicyEvaluator([st for st in acting.policy.statements if not lists(st)]))
    with recorder.acting_as(unlisted), pytest.raises(RegistryError, match="read the version.s history: AccessDenied"):
        resolver.champion()


def test_a_throttled_or_racing_create_transform_job(game, handlers, one_part_features, tiny_model, monkeypatch) -> None:
    score_handler, _ = handlers
    put_features(game, one_part_features)
    register_model(game, tiny_model[0])
    event = s3_event(game, f"features/cutoff={DAY}/{SUCCESS}")
    for code, expect in (("ThrottlingException", "raise"), ("ResourceInUse", "exists")):
        with_hooks(game, monkeypatch, score_handler, throttle("CreateTransformJob", code))
        if expect == "raise":
            with pytest.raises(ClientError, match="ThrottlingException"):
                score_handler.handler(event, Context("ltv-galaxy-raiders-score"))
        else:
            outcome, = score_handler.handler(event, Context("ltv-galaxy-raiders-score"))["outcomes"]
            assert outcome["status"] == "exists" and "started concurrently" in outcome["message"]
        assert jobs(game) == []
    with_hooks(game, monkeypatch, score_handler)
    first, = score_handler.handler(event, Context("ltv-galaxy-raiders-score"))["outcomes"]
    assert first["status"] == "started" and jobs(game) == [first["job"]]
    models = [m["ModelName"] for m in game.sm.list_models()["Models"]]
    assert models == ["ltv-galaxy-raiders-v1"], "the model created on the throttled try is reused"


def test_only_scoring_days_are_scored(game, handlers, one_part_features, tiny_model, monkeypatch) -> None:
    score_handler, _ = handlers
    put_features(game, one_part_features)
    register_model(game, tiny_model[0])
    monkeypatch.setenv("LTV_SCORING_SCORING_CRON", "cron(0 4 ? * TUE *)")  # a cutoff on Monday is not scored
    score_handler.scoring.cache_clear()
    outcome, = score_handler.handler(s3_event(game, f"features/cutoff={DAY}/{SUCCESS}"),
                                     Context("ltv-galaxy-raiders-score"))["outcomes"]
    assert outcome["status"] == "skipped" and "is not a scoring day" in outcome["message"] and jobs(game) == []


def test_a_failed_transform_alerts_once_and_publishes_nothing(game, handlers, one_part_features, tiny_model,
                                                                capsys) -> None:
    score_handler, publish_handler = handlers
    put_features(game, one_part_features)
    register_model(game, tiny_model[0])
    sqs, sns = game.account.session.client("sqs"), game.account.session.client("sns")
    queue = sqs.create_queue(QueueName="mailbox")["QueueUrl"]
    topic = game.tpl.resolve(game.stack("Scoring"),
                             game.function("scoring-publish")["Environment"]["Variables"]["LTV_ALERT_TOPIC_ARN"])
    sns.subscribe(TopicArn=topic, Protocol="sqs",
                  Endpoint=sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    outcome, = score_handler.handler(s3_event(game, f"features/cutoff={DAY}/{SUCCESS}"),
                                     Context("ltv-galaxy-raiders-score"))["outcomes"]
    job = game.sm.describe_transform_job(TransformJobName=outcome["job"])
    event = transform_event(job, "Failed", "ClientError: See job logs for more details")
    game.account.recorder.needs.clear()
    first = publish_handler.handler(event, Context("ltv-galaxy-raiders-scoring-publish"))
    assert first["status"] == "failed" and first["first"] is True
    assert not denied(game, game.function_policy("scoring-publish"))
    second = publish_handler.handler(event, Context("ltv-galaxy-raiders-scoring-publish"))
    assert second["first"] is False
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body, = [json.loads(m["Body"]) for m in messages]
    assert "Batch scoring of 2025-04-14 failed" in body["Message"] and "See job logs" in body["Message"]
    assert "/aws/sagemaker/TransformJobs" in body["Message"]
    prefix = job["TransformOutput"]["S3OutputPath"].split("/", 3)[3]
    keys = [o["Key"] for o in game.s3.list_objects_v2(Bucket=game.bucket("curated"), Prefix="predictions/")["Contents"]]
    assert keys == [f"{prefix}_FAILED"], "no _SUCCESS, no _LATEST"
    assert emitted_metrics(capsys.readouterr().out).get(metric_names.TRANSFORM_JOBS_FAILED) == 1


def test_an_older_run_finishing_late_never_moves_latest_back(game) -> None:
    """Two runs of one date (the features were rebuilt): the newer is published first."""
    settings = Settings.from_environment({k: str(game.tpl.resolve(game.stack("Scoring"), v)) for k, v in
                                          game.function("scoring-publish")["Environment"]["Variables"].items()})
    scoring = BatchScoring(settings, sagemaker=game.sm, s3=game.s3, glue=game.account.session.client("glue"))
    older = runs.new_run_id(dt.datetime(2025, 4, 14, 3, 0, tzinfo=dt.timezone.utc), 1)
    newer = runs.new_run_id(dt.datetime(2025, 4, 14, 9, 0, tzinfo=dt.timezone.utc), 2)
    for run in (older, newer):
        game.s3.put_object(Bucket=settings.curated_bucket, Key=runs.run_prefix("galaxy-raiders", DAY, run) +
                           "part-0.parquet.out", Body=b"rows")
    path = lambda run: f"s3://{settings.curated_bucket}/{runs.run_prefix('galaxy-raiders', DAY, run)}"  # noqa: E731
    assert scoring.finish("job-new", "Completed", path(newer)).first is True
    late = scoring.finish("job-old", "Completed", path(older))
    assert late.first is False and runs.latest_run(runs.S3Store(game.s3, settings.curated_bucket), "galaxy-raiders",
                                                  DAY) == newer
    glue = game.account.session.client("glue")
    latest = glue.get_partition(DatabaseName=settings.database, TableName="latest_predictions",
                                PartitionValues=["galaxy-raiders", str(DAY)])["Partition"]
    assert latest["StorageDescriptor"]["Location"] == path(newer)
    registered = glue.get_partitions(DatabaseName=settings.database, TableName="predictions")["Partitions"]
    assert sorted(p["Values"][2] for p in registered) == sorted([older, newer]), "every complete run is queryable"
    with pytest.raises(Exception, match="not a prediction run of galaxy-raiders"):
        scoring.finish("job-x", "Completed", "s3://another-bucket/predictions/game=galaxy-raiders/dt=2025-04-14/run=r/")


def test_job_names_are_deterministic_per_object_version_and_valid() -> None:
    mark = marker("ltv-a-curated-1", "features/cutoff=2025-04-14/_SUCCESS", "v1", '"abc"')
    assert job_name("galaxy-raiders", mark) == job_name("galaxy-raiders", mark)
    other = marker("ltv-a-curated-1", "features/cutoff=2025-04-14/_SUCCESS", "v2", '"abc"')
    assert job_name("galaxy-raiders", mark) != job_name("galaxy-raiders", other)
    by_etag = marker("ltv-a-curated-1", "features/cutoff=2025-04-14/_SUCCESS", None, '"abc"')
    assert job_name("galaxy-raiders", by_etag) != job_name("galaxy-raiders",
                                                           marker("ltv-a-curated-1", by_etag.key, None, '"abd"'))
    longest = job_name("a" * 24, mark)
    import re
    assert len(longest) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", longest)
    assert isinstance(marker("b", "features/cutoff=2025-02-30/_SUCCESS", None, None), str), "not a date"


# ----------------------------------------------------------------------------------------------
# monitoring: the Glue job on AWS == `ltv monitor` locally


def monitor_job(game: Game) -> dict[str, Any]:
    stack = game.stack("Monitoring")
    for logical_id in game.tpl.resources(stack, "AWS::Glue::Job"):
        props = game.tpl.props(stack, logical_id)
        if props["Name"] == game.names.resource("monitor"):
            return props
    raise KeyError("monitor")


def test_the_aws_monitoring_job_publishes_the_metrics_of_ltv_monitor(game, scoring_lake, tiny_model) -> None:
    """Same data (player_day, the features and the scored run), same model: the Glue job over
    Athena, S3 and the SageMaker registry publishes the values `ltv monitor` computes locally."""
    from glue_jobs import monitor as monitor_job_script

    config, lake, engine, registry = scoring_lake
    later = DAY + dt.timedelta(days=etl.label_horizon(config))      # the cohort's labels are complete
    now = dt.datetime.combine(later, dt.time(7, 0))
    local_run = score(config, lake, engine, registry, DAY)
    local = Monitor(config, lake, engine, registry).run(later)
    assert {m.signal for m in local.measurements} == {"feature_drift", "prediction_drift", "missed_predictions",
                                                      "label_decay"}
    # the cloud: the ETL's outputs, the model in the registry, the run as the transform wrote it
    upload_tree(game, lake.base, "player_day")
    upload_tree(game, lake.base, f"features/cutoff={DAY}")
    assert register_model(game, tiny_model[0]) == 1
    curated = game.bucket("curated")
    run = runs.new_run_id(dt.datetime(2025, 4, 14, 3, 0, tzinfo=dt.timezone.utc), 1)
    source = Path(lake.root) / runs.run_prefix(config.game.id, DAY, local_run.run_id) / "part-0.parquet"
    game.s3.upload_file(str(source), curated, runs.run_prefix(config.game.id, DAY, run) + "part-0.parquet.out")
    settings = Settings.from_environment({k: str(game.tpl.resolve(game.stack("Scoring"), v)) for k, v in
                                          game.function("scoring-publish")["Environment"]["Variables"].items()})
    BatchScoring(settings, sagemaker=game.sm, s3=game.s3, glue=game.account.session.client("glue")).finish(
        "job", "Completed", f"s3://{curated}/{runs.run_prefix(config.game.id, DAY, run)}")
    props = monitor_job(game)
    args = {**props["DefaultArguments"], "--date": str(later)}
    config_uri = args["--config"]
    bucket, key = config_uri[5:].split("/", 1)
    game.s3.upload_file(str(game.tpl.asset_file(game.stack("Etl"), config_uri)), bucket, key)
    game.account.recorder.needs.clear()
    argv = ["--JOB_NAME", props["Name"], "--JOB_RUN_ID", "jr_monitor", *[x for kv in args.items() for x in kv]]
    summary = monitor_job_script.main(argv, now=lambda: now)
    assert "4 measurement(s)" in summary

    cloudwatch = game.account.session.client("cloudwatch")
    published = {}
    for datum in metric_data(local):
        stats = cloudwatch.get_metric_statistics(
            Namespace=metric_names.namespace(config.game.id), MetricName=datum["MetricName"],
            Dimensions=datum["Dimensions"], StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(hours=1),
            Period=3600, Statistics=["Maximum"])["Datapoints"]
        published[tuple(d["Value"] for d in datum["Dimensions"])] = stats[0]["Maximum"]
    expected = {tuple(d["Value"] for d in datum["Dimensions"]): datum["Value"] for datum in metric_data(local)}
    assert published == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert len(expected) == 4 and any(v > 0 for v in expected.values())
    missed = cloudwatch.get_metric_statistics(
        Namespace=metric_names.namespace(config.game.id), MetricName=metric_names.MISSED_SCORING_RUNS,
        StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(hours=1), Period=3600,
        Statistics=["Maximum"])["Datapoints"]
    expected_missed = missed_scoring_runs(config, [str(DAY)], now)
    assert missed[0]["Maximum"] == len(expected_missed) == 1, "the Monday after the scored one has no run by noon"
    state = json.loads(game.s3.get_object(Bucket=curated, Key="monitoring/state.json")["Body"].read())
    assert state == json.loads((lake.monitoring / "state.json").read_text())
    policy = game.role_named(game.stack("Monitoring"), "ltv-galaxy-raiders-monitor")
    assert not denied(game, policy), denied(game, policy)
    assert not policy.allows("s3:PutObject", f"arn:aws:s3:::{curated}/features/cutoff={DAY}/part-0.parquet")


# ----------------------------------------------------------------------------------------------
# target lists: the targets Glue job after each published run (glue_jobs/targets.py)


def published_run(game: Game, scoring_lake: Any) -> str:
    """A run of DAY as the transform writes it (the local run's part, as `<part>.out`): its id."""
    config, lake, engine, registry = scoring_lake
    local = score(config, lake, engine, registry, DAY)
    run = runs.new_run_id(dt.datetime(2025, 4, 14, 3, 0, tzinfo=dt.timezone.utc), 1)
    source = Path(lake.root) / runs.run_prefix(config.game.id, DAY, local.run_id) / "part-0.parquet"
    game.s3.upload_file(str(source), game.bucket("curated"), runs.run_prefix(config.game.id, DAY, run) + "part-0.parquet.out")
    return run


def completed(game: Game, run: str) -> dict[str, Any]:
    """EventBridge's completion event of the transform job that wrote `run`."""
    name = f"ltv-galaxy-raiders-{DAY:%Y%m%d}-0123456789"
    job = {"TransformJobName": name, "TransformJobArn": f"arn:aws:sagemaker:eu-west-1:111111111111:transform-job/{name}",
           "ModelName": "ltv-galaxy-raiders-v1", "MaxPayloadInMB": 50, "BatchStrategy": "SingleRecord",
           "TransformInput": {}, "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
           "TransformOutput": {"S3OutputPath": f"s3://{game.bucket('curated')}/{runs.run_prefix('galaxy-raiders', DAY, run)}"}}
    return transform_event(job, "Completed")


class EventLog:
    """The events EventBridge accepted (an EventId, no ErrorCode) from the code's PutEvents calls, as
    a rule on the bus would hand them to a consumer (moto delivers to targets only with jsonpath_ng,
    which the locked test environment does not have)."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.hooks = [("before-parameter-build.events.PutEvents", self._stash), ("after-call.events.PutEvents", self._keep)]

    @staticmethod
    def _stash(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["ltv_entries"] = list(params["Entries"])

    def _keep(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        for entry, result in zip(context.get("ltv_entries", []), parsed.get("Entries", [])):
            if result.get("EventId") and not result.get("ErrorCode"):
                self.accepted.append({"id": result["EventId"], "source": entry["Source"],
                                      "detail-type": entry["DetailType"], "bus": entry.get("EventBusName", "default"),
                                      "detail": json.loads(entry["Detail"])})

    def take(self) -> list[dict[str, Any]]:
        out, self.accepted = self.accepted, []
        return out


def hooked(game: Game, monkeypatch, *hooks: tuple[str, Any]) -> None:
    """`hooks` (and the account's) on every client made from now on (the job makes its own)."""
    import boto3
    import botocore.handlers

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [*game.hooks, *hooks])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def run_targets_job(game: Game, job_run: str) -> str:
    """The job run as Glue runs it: the script with the run's arguments (the job's defaults and the
    publish function's), acting as the job's role (every call decided against its policy)."""
    from glue_jobs import targets as targets_script

    glue = game.account.session.client("glue")
    args = glue.get_job_run(JobName="ltv-galaxy-raiders-targets", RunId=job_run)["JobRun"]["Arguments"]
    bucket, key = args["--config"][5:].split("/", 1)
    game.s3.upload_file(str(game.tpl.asset_file(game.stack("Etl"), args["--config"])), bucket, key)
    argv = ["--JOB_NAME", "ltv-galaxy-raiders-targets", "--JOB_RUN_ID", job_run, *[x for kv in args.items() for x in kv]]
    stack = game.stack("Scoring")
    logical_id = next(k for k, r in game.tpl.resources(stack, "AWS::IAM::Role").items()
                      if game.tpl.resolve(stack, r["Properties"].get("RoleName")) == "ltv-galaxy-raiders-targets")
    with game.account.recorder.acting_as(role(game.tpl, stack, logical_id)):
        return targets_script.main(argv)


def objects(game: Game, prefix: str) -> dict[str, str]:
    listing = game.s3.list_objects_v2(Bucket=game.bucket("curated"), Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: o["ETag"] for o in listing}


def test_a_published_run_gets_its_target_list_registered_and_announced_once(game, handlers, scoring_lake,
                                                                           monkeypatch) -> None:
    _, publish_handler = handlers
    config, lake = scoring_lake[0], scoring_lake[1]
    run = published_run(game, scoring_lake)
    log = EventLog()
    hooked(game, monkeypatch, *log.hooks)
    published = publish_handler.handler(completed(game, run), Context("ltv-galaxy-raiders-scoring-publish"))
    assert published["status"] == "published" and published["targets_job_run"], published
    summary = run_targets_job(game, published["targets_job_run"])

    # the list, as `ltv targets` makes it from the same predictions with the game's settings
    prefix = runs.targets_prefix(config.game.id, DAY, run)
    assert sorted(objects(game, prefix)) == [runs.NOTIFIED, SUCCESS, targets.PART], summary
    body = game.s3.get_object(Bucket=game.bucket("curated"), Key=prefix + targets.PART)["Body"].read()
    stored = pd.read_parquet(io.BytesIO(body))
    local, local_run = targets.make(config, Predictions.of(lake), DAY)
    assert local_run != run and len(stored) == len(local) > 0
    pd.testing.assert_frame_equal(stored, pd.read_parquet(io.BytesIO(targets.to_parquet(config, local))))
    assert stored.groupby("offer_date").size().max() <= config.targets.budget
    assert set(stored["policy"]) == {config.targets.policy}
    # Athena reads it through the registered partition
    athena = athena_engine(game)
    count = athena.query(f"SELECT COUNT(*) AS n, MIN(reason) AS why FROM targets WHERE dt = '{DAY}' AND run = '{run}'")
    assert count["n"].iloc[0] == len(stored) and "P(buy that day)" in count["why"].iloc[0]
    # announced once, with the S3 location of the complete list
    (event,) = log.take()
    assert (event["source"], event["detail-type"], event["bus"]) == ("ltv", "LTV Targets Ready", "default")
    location = f"s3://{game.bucket('curated')}/targets/game=galaxy-raiders/dt={DAY}/run={run}/"
    assert event["detail"]["location"] == location and event["detail"]["files"] == [location + "part-0.parquet"]
    assert (event["detail"]["dt"], event["detail"]["run"], event["detail"]["offers"]) == (str(DAY), run, len(stored))
    assert event["detail"]["table"] == f"{game.names.database}.targets"

    # replays: the completion event again starts nothing; the job again (a retry, a manual rerun)
    # writes nothing and sends nothing
    before = objects(game, "targets/")
    again = publish_handler.handler(completed(game, run), Context("ltv-galaxy-raiders-scoring-publish"))
    assert again["targets_job_run"] is None and again["first"] is False
    assert "nothing written, nothing sent" in run_targets_job(game, published["targets_job_run"])
    assert objects(game, "targets/") == before and log.take() == []
    assert game.account.recorder.checked > 0, "the function and the job acted as their roles (each call decided)"


def test_an_older_run_published_late_gets_no_list(game, handlers, scoring_lake) -> None:
    _, publish_handler = handlers
    older = published_run(game, scoring_lake)
    newer = runs.new_run_id(dt.datetime(2025, 4, 14, 5, 0, tzinfo=dt.timezone.utc), 1)
    curated = game.bucket("curated")
    game.s3.copy_object(Bucket=curated, Key=runs.run_prefix("galaxy-raiders", DAY, newer) + "part-0.parquet.out",
                        CopySource={"Bucket": curated, "Key": runs.run_prefix("galaxy-raiders", DAY, older) + "part-0.parquet.out"})
    runs.publish(runs.S3Store(game.s3, curated), "galaxy-raiders", DAY, newer)  # a later run is the date's latest
    late = publish_handler.handler(completed(game, older), Context("ltv-galaxy-raiders-scoring-publish"))
    assert late["status"] == "published" and late["targets_job_run"] is None
    assert game.account.session.client("glue").get_job_runs(JobName="ltv-galaxy-raiders-targets")["JobRuns"] == []


def fail_on(service: str, op: str, when: Any = lambda params: True) -> tuple[str, Any]:
    """A hook that fails `service:op` requests whose parameters satisfy `when` (as a throttled call)."""
    def raise_error(params: dict[str, Any], **_: Any) -> None:
        if when(params):
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, op)
    return (f"provide-client-params.{service}.{op}", raise_error)


def test_a_failed_targets_job_leaves_nothing_half_done_and_its_retry_finishes(game, handlers, scoring_lake,
                                                                              monkeypatch) -> None:
    _, publish_handler = handlers
    run = published_run(game, scoring_lake)
    log = EventLog()
    job_run = publish_handler.handler(completed(game, run), Context("ltv-galaxy-raiders-scoring-publish"))["targets_job_run"]
    prefix = runs.targets_prefix("galaxy-raiders", DAY, run)
    glue = game.account.session.client("glue")

    def partitions() -> list[list[str]]:
        return [p["Values"] for p in glue.get_partitions(DatabaseName=game.names.database,
                                                         TableName="targets")["Partitions"]]

    def failing(*hooks: tuple[str, Any]) -> None:
        hooked(game, monkeypatch, *log.hooks, *hooks)

    # killed between the data file and its marker: incomplete, registered nowhere, announced to no one
    failing(fail_on("s3", "PutObject", lambda p: p["Key"] == prefix + SUCCESS))
    with pytest.raises(ClientError, match="ThrottlingException"):
        run_targets_job(game, job_run)
    assert SUCCESS not in objects(game, prefix) and partitions() == [] and log.take() == []
    assert athena_engine(game).query(f"SELECT COUNT(*) AS n FROM targets WHERE dt = '{DAY}'")["n"].iloc[0] == 0
    # EventBridge refusing: the list is complete and registered, not marked announced
    failing(fail_on("events", "PutEvents"))
    with pytest.raises(ClientError, match="ThrottlingException"):
        run_targets_job(game, job_run)
    assert sorted(objects(game, prefix)) == [SUCCESS, targets.PART] and partitions() == [["galaxy-raiders", str(DAY), run]]
    assert log.take() == []
    # Glue's retry: the event, once, and the marker
    failing()
    assert "was complete already, registered, announced" in run_targets_job(game, job_run)
    assert [e["detail"]["run"] for e in log.take()] == [run]
    assert sorted(objects(game, prefix)) == [runs.NOTIFIED, SUCCESS, targets.PART]


def test_missed_scoring_runs_count_only_due_days_after_the_first_run() -> None:
    config = loop_config(scoring={"deadline_hours": 12})
    monday = dt.datetime(2025, 4, 14)
    assert missed_scoring_runs(config, [], monday + dt.timedelta(days=30)) == [], "no champion yet: no miss"
    assert missed_scoring_runs(config, ["2025-04-14"], monday + dt.timedelta(hours=11)) == []
    assert missed_scoring_runs(config, ["2025-04-07"], monday + dt.timedelta(hours=11)) == []
    assert missed_scoring_runs(config, ["2025-04-07"], monday + dt.timedelta(hours=12)) == ["2025-04-14"]
    assert missed_scoring_runs(config, ["2025-03-03"], monday + dt.timedelta(hours=13)) == \
        ["2025-03-31", "2025-04-07", "2025-04-14"], "the last two weeks only"


# ----------------------------------------------------------------------------------------------
# the webhook subscriber


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self):  # noqa: N802
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def sns_event(subject: str | None, message: str) -> dict[str, Any]:
    return {"Records": [{"EventVersion": "1.0", "EventSubscriptionArn": "arn:aws:sns:eu-west-1:111111111111:"
                         "ltv-galaxy-raiders-alerts:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55", "EventSource": "aws:sns",
                         "Sns": {"SignatureVersion": "1", "Timestamp": "2025-04-14T03:40:13.000Z", "Signature": "EXAMPLE",
                                 "SigningCertUrl": "https://sns.eu-west-1.amazonaws.com/cert.pem",
                                 "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e", "Message": message,
                                 "MessageAttributes": {}, "Type": "Notification",
                                 "UnsubscribeUrl": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
                                 "TopicArn": "arn:aws:sns:eu-west-1:111111111111:ltv-galaxy-raiders-alerts",
                                 "Subject": subject}}]}


def test_the_webhook_posts_each_notification_from_the_url_in_secrets_manager(synthesized_app, monkeypatch,
                                                                             capsys) -> None:
    """dragon-merge turns the webhook on: its function reads the URL from the secret the stack makes,
    which holds a placeholder until someone stores the URL."""
    config, tpl = synthesized_app["dragon-merge"]
    names = Names.of(config)
    stack = names.stack("Alerts")
    assert "hooks.slack" not in json.dumps(tpl.templates[stack]), "the config's local webhook URL is never shipped"
    with moto_account(tpl, [names.stack("DataLake")], monkeypatch, TODAY) as account:
        secret = tpl.props(stack, next(iter(tpl.resources(stack, "AWS::SecretsManager::Secret"))))
        assert secret["Name"] == "ltv/dragon-merge/alerts-webhook"
        secrets = account.session.client("secretsmanager")
        secrets.create_secret(Name=secret["Name"], SecretString=secret["SecretString"])
        fn_id = next(iter(tpl.resources(stack, "AWS::Lambda::Function")))
        fn = tpl.props(stack, fn_id)
        fn_role = tpl.templates[stack]["Resources"][fn_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        assert fn["Handler"] == "lambdas.webhook.handler"
        for key, value in fn["Environment"]["Variables"].items():
            monkeypatch.setenv(key, str(value))
        import lambdas.webhook
        from aws_lambda_powertools.utilities import parameters

        context = Context(names.resource("alerts-webhook"))
        webhook_role = role(tpl, stack, fn_role)

        def webhook(event: dict[str, Any], ctx: Context) -> Any:
            with account.recorder.acting_as(webhook_role):
                return lambdas.webhook.handler(event, ctx)

        alert = json.dumps({"text": "[critical] dragon-merge label_decay: cohort 2025-04-14 is 12% worse", "alert": {}})
        alarm = json.dumps({"AlarmName": "ltv-dragon-merge-failed-events", "NewStateValue": "ALARM",
                            "AlarmDescription": "Events are waiting in the dead-letter queue",
                            "NewStateReason": "Threshold Crossed: 1 datapoint [2.0] >= 1.0"})
        parameters.clear_caches()
        assert webhook(sns_event("LTV", alert), context) == {"posted": 0}
        assert "no webhook URL yet" in capsys.readouterr().out
        server = HTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        Hook.received.clear()
        try:
            secrets.put_secret_value(SecretId=secret["Name"], SecretString=f"http://127.0.0.1:{server.server_port}/h")
            parameters.clear_caches()
            assert webhook(sns_event("LTV", alert), context) == {"posted": 0}, "only https URLs"
            monkeypatch.setattr(lambdas.webhook, "SCHEMES", ("https://", "http://127.0.0.1:"))
            assert webhook(sns_event("LTV", alert), context) == {"posted": 1}
            assert webhook(sns_event("ALARM: ltv-dragon-merge-failed-events", alarm),
                                           context) == {"posted": 1}
            assert [r["text"] for r in Hook.received] == [
                "[critical] dragon-merge label_decay: cohort 2025-04-14 is 12% worse",
                "ALARM: ltv-dragon-merge-failed-events: Events are waiting in the dead-letter queue "
                "(Threshold Crossed: 1 datapoint [2.0] >= 1.0)"]
            Hook.status = 500
            with pytest.raises(Exception, match="posting to the webhook failed"):
                webhook(sns_event("LTV", alert), context)
        finally:
            Hook.status = 200
            server.shutdown()
            server.server_close()


# ----------------------------------------------------------------------------------------------
# the code asset as shipped


def code_asset(game_tpl: Templates, stack: str, props: dict[str, Any]) -> Path:
    code = props["Code"]
    return game_tpl.asset_file(stack, f"s3://{code['S3Bucket']}/{code['S3Key']}")


SDK = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")


def old_runtime_sdk(directory: Path) -> Path:
    """An AWS SDK as an older Lambda runtime provides it: the test environment's boto3 and its
    dependencies, but with botocore's S3 model from before conditional writes (boto3 1.34.x:
    `PutObject` knows neither `IfNoneMatch` nor `IfMatch`, so passing them fails validation)."""
    from importlib.metadata import distribution

    directory.mkdir(parents=True, exist_ok=True)
    for name in SDK:
        dist = distribution(name)
        for file in dist.files or []:
            top = file.parts[0]
            source = Path(dist.locate_file(top))
            if top.endswith((".dist-info", ".pth")) or not source.exists() or (directory / top).exists():
                continue
            if top != "botocore":
                (directory / top).symlink_to(source)
                continue
            model = Path("data", "s3", "2006-03-01", "service-2.json.gz")
            (directory / top).mkdir()
            for entry in sorted(source.rglob("*")):  # a copy of the package tree as links, but the S3 model
                target = directory / top / entry.relative_to(source)
                if entry.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif entry.relative_to(source) != model:
                    target.symlink_to(entry)
            spec = json.loads(gzip.decompress((source / model).read_bytes()))
            for member in ("IfNoneMatch", "IfMatch"):
                spec["shapes"]["PutObjectRequest"]["members"].pop(member, None)
            (directory / top / model).write_bytes(gzip.compress(json.dumps(spec).encode()))
    return directory


def test_the_lambda_code_asset_ships_everything_and_only_the_repositorys_sources(synthesized, tmp_path) -> None:
    config, tpl = synthesized
    names = Names.of(config)
    stack = names.stack("Scoring")
    props = {tpl.props(stack, k)["FunctionName"]: tpl.props(stack, k) for k in tpl.resources(stack, "AWS::Lambda::Function")
             if tpl.props(stack, k).get("FunctionName")}
    assets = {code_asset(tpl, stack, p) for p in props.values()}
    assert len(assets) == 1, "one code asset for every function"
    asset, = assets
    assert asset.is_dir() and (asset / "boto3").is_dir() and (asset / "botocore").is_dir(), "the locked SDK ships"
    for source in sorted((ROOT / "lambdas").glob("*.py")) + sorted((ROOT / "ltv").rglob("*.py")):
        shipped = asset / source.relative_to(ROOT)
        assert shipped.read_bytes() == source.read_bytes(), f"{shipped} is not the repository's {source}"
    # as Lambda runs it: tracing on (X-Ray's SDK from the asset), the handlers called on events that
    # need no AWS answer (a malformed event, a foreign key), the results and every module's origin printed
    code = ("import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "import lambdas.score, lambdas.publish, lambdas.webhook\n"
            "class Context:\n"
            "    function_name, memory_limit_in_mb, aws_request_id = 'ltv-galaxy-raiders-score', 256, 'r-1'\n"
            "    invoked_function_arn = 'arn:aws:lambda:eu-west-1:111111111111:function:ltv-galaxy-raiders-score'\n"
            "foreign = json.loads(sys.argv[3])\n"
            "results = [lambdas.score.handler({'hello': 'world'}, Context()), lambdas.score.handler(foreign, Context()),\n"
            "           lambdas.publish.handler({'detail': {}}, Context())]\n"
            "mods = {m: getattr(sys.modules[m], '__file__', None) or '' for m in list(sys.modules)}\n"
            "print(json.dumps({'results': results, 'modules': mods}))\n")
    foreign = json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1", "eventTime": "2025-04-14T03:12:45.123Z",
        "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AWS:AROAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "10.0.12.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "x", "bucket": {
            "name": "b", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::b"},
            "object": {"key": "labels/cutoff%3D2025-04-14/_SUCCESS", "size": 32, "eTag": "e", "sequencer": "1"}}}]})
    variables = props["ltv-galaxy-raiders-score"]["Environment"]["Variables"]
    env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
           "AWS_LAMBDA_FUNCTION_NAME": "ltv-galaxy-raiders-score", "LAMBDA_TASK_ROOT": str(asset),
           "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
           **{k: v for k, v in variables.items() if isinstance(v, str)}}
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(asset), str(old_runtime_sdk(tmp_path / "runtime")),
                           foreign], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["results"] == [{"outcomes": [], "malformed": True},
                                 {"outcomes": [{"status": "ignored", "message": report["results"][1]["outcomes"][0]["message"]}]},
                                 {"status": "malformed"}]
    assert "outside features/" in report["results"][1]["outcomes"][0]["message"]
    modules = report["modules"]
    third_party = {m.split(".")[0] for m, f in modules.items() if f and not f.startswith(sys.base_prefix)}
    for top in third_party:
        origin = modules[top] if top in modules else next(f for m, f in modules.items() if m.startswith(top + "."))
        assert origin.startswith(str(asset)), f"{top} was imported from {origin}, not from the asset"
    assert {"ltv", "lambdas", "aws_lambda_powertools", "pydantic", "pydantic_core", "yaml", "aws_xray_sdk",
            "boto3", "botocore", "s3transfer"} <= third_party, "the SDK too comes from the asset, not the runtime"
    assert not {"pandas", "numpy", "autogluon", "duckdb", "pyarrow"} & set(modules), "the light half of the core only"


def test_the_shipped_asset_publishes_a_run_with_its_own_sdk_against_an_older_runtime(synthesized, tmp_path,
                                                                                    monkeypatch) -> None:
    """The publish handler as Lambda runs it: its own interpreter (`-I -S`), only the code asset and
    an older runtime SDK on the path (the asset first, as Lambda orders /var/task before the
    runtime), the template's environment, talking to moto in server mode. Publishing needs S3's
    conditional writes: with the runtime's SDK (the asset without boto3) it fails validation."""
    from moto.server import ThreadedMotoServer

    import boto3
    from cloud import create_from_template

    config, tpl = synthesized
    names = Names.of(config)
    stack = names.stack("Scoring")
    fn = next(tpl.props(stack, k) for k in tpl.resources(stack, "AWS::Lambda::Function")
              if tpl.props(stack, k).get("FunctionName") == names.resource("scoring-publish"))
    asset = code_asset(tpl, stack, fn)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("MOTO_ACCOUNT_ID", tpl.account)
        session = boto3.Session(region_name=tpl.region)
        for concern in ("DataLake", "Alerts", "Scoring"):  # Scoring: the targets job the publisher starts
            create_from_template(session, tpl, names.stack(concern))
        curated, run = names.bucket("curated"), runs.new_run_id(dt.datetime(2025, 4, 14, 3, 40, tzinfo=dt.timezone.utc), 1)
        output = f"s3://{curated}/{runs.run_prefix(config.game.id, DAY, run)}"
        session.client("s3").put_object(Bucket=curated, Key=f"{runs.run_prefix(config.game.id, DAY, run)}part-0.parquet.out",
                                        Body=b"PAR1")
        event = {"version": "0", "id": "844e2571-85d4-695f-b930-0153b71dcb42",
                 "detail-type": "SageMaker Transform Job State Change", "source": "aws.sagemaker",
                 "account": tpl.account, "time": "2025-04-14T03:40:13Z", "region": tpl.region, "resources": [],
                 "detail": {"TransformJobName": f"{names.prefix}-2025-04-14-abc", "TransformJobStatus": "Completed",
                            "TransformOutput": {"S3OutputPath": output}}}
        code = ("import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
                "import boto3, botocore, lambdas.publish\n"
                "class Context:\n"
                "    function_name, memory_limit_in_mb, aws_request_id = 'publish', 256, 'r-1'\n"
                "    invoked_function_arn = 'arn:aws:lambda:eu-west-1:111111111111:function:publish'\n"
                "result = lambdas.publish.handler(json.loads(sys.argv[3]), Context())\n"
                "print(json.dumps({'result': result, 'sdk': [boto3.__file__, botocore.__file__]}))\n")
        env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": tpl.region, "AWS_REGION": tpl.region,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint,
               "AWS_LAMBDA_FUNCTION_NAME": fn["FunctionName"], "LAMBDA_TASK_ROOT": str(asset),
               "POWERTOOLS_TRACE_DISABLED": "true",
               **{k: str(v) for k, v in fn["Environment"]["Variables"].items()}}
        done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(asset), str(old_runtime_sdk(tmp_path / "rt")),
                               json.dumps(event)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        started = report["result"].pop("targets_job_run")
        assert report["result"] == {"status": "published", "job": event["detail"]["TransformJobName"], "run": run,
                                    "first": True}
        assert session.client("glue").get_job_run(JobName=names.resource("targets"), RunId=started)["JobRun"][
            "Arguments"].items() >= {"--date": str(DAY), "--run": run}.items()
        assert all(path.startswith(str(asset)) for path in report["sdk"]), report["sdk"]
        latest = session.client("s3").get_object(Bucket=curated, Key=runs.date_prefix(config.game.id, DAY) + runs.LATEST)
        assert latest["Body"].read().decode() == run
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------
# SageMaker's answers as SageMaker words them (issue #20, defect 8)


def _stubbed_scoring() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    sm = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    settings = Settings(game="galaxy-raiders", curated_bucket="c", artifacts_bucket="a", database="d",
                        role_arn="arn:aws:iam::111111111111:role/ltv-transform", kms_key_arn="k",
                        instance_type="ml.m5.xlarge", instance_count=1, max_payload_mb=6, invocation_timeout_s=600,
                        cutoff_weekday="MON", cutoff_every_weeks=1, scoring_cron="cron(0 6 ? * MON *)",
                        targets_job="ltv-galaxy-raiders-targets")
    return BatchScoring(settings, sagemaker=sm, s3=sm), Stubber(sm)


def test_an_unknown_job_is_absent_whatever_sagemakers_message_says() -> None:
    scoring, stub = _stubbed_scoring()
    for message in ("Could not find requested job with name ltv-x", "Requested resource not found."):
        stub.add_client_error("describe_transform_job", "ValidationException", message)
    stub.add_client_error("describe_transform_job", "ThrottlingException", "Rate exceeded")
    with stub:
        assert scoring._job_exists("ltv-x") is False and scoring._job_exists("ltv-x") is False
        with pytest.raises(ClientError, match="ThrottlingException"):
            scoring._job_exists("ltv-x")


def test_a_model_created_concurrently_by_a_duplicate_event_is_used() -> None:
    """SageMaker's answer to a second CreateModel: 'Cannot create already existing model'."""
    package = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/ltv-galaxy-raiders/3"
    scoring, stub = _stubbed_scoring()
    absent = ("describe_model", "ValidationException", "Could not find model \"ltv-galaxy-raiders-v3\".")
    stub.add_client_error(*absent)
    stub.add_client_error("create_model", "ValidationException",
                          "Cannot create already existing model \"arn:aws:sagemaker:eu-west-1:111111111111:model/"
                          "ltv-galaxy-raiders-v3\".")
    stub.add_response("describe_model", {"ModelName": "ltv-galaxy-raiders-v3", "ModelArn": "arn:aws:sagemaker:eu-west-1:111111111111:model/ltv-galaxy-raiders-v3",
                                         "CreationTime": dt.datetime(2025, 1, 1),
                                         "Containers": [{"ModelPackageName": package}]})
    # a refusal for another reason (the model still does not exist) is raised
    stub.add_client_error(*absent)
    stub.add_client_error("create_model", "ValidationException", "Could not access model data")
    stub.add_client_error(*absent)
    with stub:
        assert scoring._ensure_model(3, package) == "ltv-galaxy-raiders-v3"
        with pytest.raises(ClientError, match="Could not access model data"):
            scoring._ensure_model(3, package)
    stub.assert_no_pending_responses()


def test_doc_sections_named_by_messages_exist() -> None:
    """Every "docs/X.md, 'Section'" a message or log line names is a heading of that document."""
    named = []
    for folder in ("ltv", "glue_jobs", "lambdas", "pipelines", "stacks"):
        for path in (ROOT / folder).rglob("*.py"):
            named += [(path.name, doc, section) for doc, section in
                      re.findall(r"docs/(\w+\.md), [\"']([^\"']+)[\"']", path.read_text())]
    assert len(named) >= 4
    for source, doc, section in named:
        text = (ROOT / "docs" / doc).read_text()
        assert re.search(rf"^#+ {re.escape(section)}$|\*\*{re.escape(section)}\*\*|^{re.escape(section)}:",
                         text, re.MULTILINE), f"{source} points at {doc}, '{section}', which {doc} does not have"
