"""The IAM enforcement the cloud tests run under (tests/cloud.py), tested on its own.

Each check fails if the enforcement is switched off: an allowed call passes, a missing grant
fails naming the action, resource and role, S3 answers a missing key 403 unless the role may list
the bucket, reads of an SSE-KMS bucket need the key, passing a role needs iam:PassRole, and a
bucket policy's deny wins over the role's allow.
"""
from __future__ import annotations

import os
from typing import Any

import pytest

for _var, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "eu-west-1"}.items():
    os.environ[_var] = _value

from cloud import AccessDenied, CallRecorder, PolicyEvaluator, Role, _exists  # noqa: E402

REGION, ACCOUNT = "eu-west-1", "123456789012"
BUCKET = "ltv-test-curated"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ltv-test-publish"


def allow(actions: list[str], resources: list[str], **conditions: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **({"Condition": conditions} if conditions else {})}


READ = allow(["s3:GetObject"], [f"arn:aws:s3:::{BUCKET}/predictions/*"])
DECRYPT = allow(["kms:Decrypt"], [KEY_ARN], StringEquals={"kms:ViaService": f"s3.{REGION}.amazonaws.com"})


@pytest.fixture
def s3(monkeypatch):
    """moto with one SSE-KMS bucket holding one object; `s3(statements, bucket_policy=None)` is a
    client whose calls run as a role with exactly those statements."""
    import boto3
    import botocore.handlers
    from moto import mock_aws

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with mock_aws():
        setup = boto3.Session(region_name=REGION).client("s3")
        setup.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        setup.put_object(Bucket=BUCKET, Key="predictions/_LATEST", Body=b"run-1")
        recorder = CallRecorder(ACCOUNT, REGION, {BUCKET: KEY_ARN}, exists=lambda b, k: _exists(setup, b, k))
        monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
            *botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", recorder.on_call),
            ("before-call", recorder.answer_forbidden)])

        def client(statements: list[dict[str, Any]], bucket_policy: list[dict[str, Any]] | None = None) -> Any:
            recorder.bucket_policies = {BUCKET: PolicyEvaluator(bucket_policy)} if bucket_policy else {}
            stack = recorder.acting_as(Role("ltv-test-publish", ROLE_ARN, PolicyEvaluator(statements)))
            stack.__enter__()
            clients.append(stack)
            return boto3.Session(region_name=REGION).client("s3")

        clients: list[Any] = []
        yield client
        for stack in clients:
            stack.__exit__(None, None, None)
        assert recorder.checked, "the enforcement decided the calls"


def test_an_allowed_read_passes_and_a_missing_grant_fails_naming_action_resource_and_role(s3) -> None:
    assert s3([READ, DECRYPT]).get_object(Bucket=BUCKET, Key="predictions/_LATEST")["Body"].read() == b"run-1"
    with pytest.raises(AccessDenied, match=rf"ltv-test-publish \({ROLE_ARN}\) may not s3:PutObject on "
                                           rf"arn:aws:s3:::{BUCKET}/predictions/_LATEST"):
        s3([READ, DECRYPT]).put_object(Bucket=BUCKET, Key="predictions/_LATEST", Body=b"run-2")


def test_reading_an_sse_kms_bucket_needs_the_key_through_s3(s3) -> None:
    with pytest.raises(AccessDenied, match=f"may not kms:Decrypt on {KEY_ARN}"):
        s3([READ]).get_object(Bucket=BUCKET, Key="predictions/_LATEST")
    elsewhere = allow(["kms:Decrypt"], [KEY_ARN], StringEquals={"kms:ViaService": f"sns.{REGION}.amazonaws.com"})
    with pytest.raises(AccessDenied, match="kms:Decrypt"):
        s3([READ, elsewhere]).get_object(Bucket=BUCKET, Key="predictions/_LATEST")


@pytest.mark.parametrize("listing, status", [
    (None, 403),
    (allow(["s3:ListBucket"], [f"arn:aws:s3:::{BUCKET}"], StringLike={"s3:prefix": ["predictions/*"]}), 403),
    (allow(["s3:ListBucket"], [f"arn:aws:s3:::{BUCKET}"], StringLikeIfExists={"s3:prefix": ["predictions/*"]}), 404),
    (allow(["s3:ListBucket"], [f"arn:aws:s3:::{BUCKET}"]), 404),
])
def test_a_missing_key_reads_as_403_unless_the_role_may_list_the_bucket(s3, listing, status) -> None:
    from botocore.exceptions import ClientError

    client = s3([READ, DECRYPT, *([listing] if listing else [])])
    for call in (client.get_object, client.head_object):
        with pytest.raises(ClientError) as raised:
            call(Bucket=BUCKET, Key="predictions/_SUCCESS")
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, (call.__name__, listing)
    if status == 403:
        with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
            client.get_object(Bucket=BUCKET, Key="predictions/_SUCCESS")
    else:
        with pytest.raises(client.exceptions.NoSuchKey):
            client.get_object(Bucket=BUCKET, Key="predictions/_SUCCESS")


def test_an_explicit_listing_is_held_to_its_prefix_condition(s3) -> None:
    listing = allow(["s3:ListBucket"], [f"arn:aws:s3:::{BUCKET}"], StringLikeIfExists={"s3:prefix": ["predictions/*"]})
    client = s3([listing])
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="predictions/")["KeyCount"] == 1
    with pytest.raises(AccessDenied, match="s3:ListBucket"):
        client.list_objects_v2(Bucket=BUCKET, Prefix="features/")


def test_a_bucket_policy_deny_wins_over_the_roles_allow(s3) -> None:
    write = allow(["s3:PutObject"], [f"arn:aws:s3:::{BUCKET}/*"])
    key = allow(["kms:GenerateDataKey"], [KEY_ARN])
    deny = [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/*",
             "Condition": {"Null": {"s3:x-amz-server-side-encryption": "false"},
                           "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": f"arn:aws:s3:::{BUCKET}/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    client = s3([write, key], bucket_policy=deny)
    client.put_object(Bucket=BUCKET, Key="x", Body=b"1")  # HTTPS, the bucket's default encryption
    with pytest.raises(AccessDenied, match="s3:PutObject"):
        client.put_object(Bucket=BUCKET, Key="x", Body=b"1", ServerSideEncryption="AES256")


def test_not_action_and_pass_role() -> None:
    recorder = CallRecorder(ACCOUNT, REGION)
    passed = f"arn:aws:iam::{ACCOUNT}:role/ltv-test-ml-jobs"
    statements = [allow(["sagemaker:CreateTrainingJob"], [f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/pipelines-*"]),
                  {"Effect": "Deny", "NotAction": ["sagemaker:*", "iam:PassRole"], "Resource": "*"},
                  allow(["iam:PassRole"], [passed], StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"}),
                  allow(["s3:*"], ["*"])]
    params = {"TrainingJobName": "pipelines-abc-Train", "RoleArn": passed}
    with recorder.acting_as(Role("pipeline", "arn:aws:iam::1:role/pipeline", PolicyEvaluator(statements))):
        assert recorder.enforce("sagemaker", "CreateTrainingJob", params,
                                recorder.for_call("sagemaker", "CreateTrainingJob", params)) is None
        other = {**params, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/admin"}
        with pytest.raises(AccessDenied, match="may not iam:PassRole on arn:aws:iam::123456789012:role/admin"):
            recorder.enforce("sagemaker", "CreateTrainingJob", other, recorder.for_call("sagemaker", "CreateTrainingJob", other))
        with pytest.raises(AccessDenied, match="s3:ListBucket"):  # denied by the NotAction statement
            recorder.enforce("s3", "ListObjectsV2", {"Bucket": BUCKET}, recorder.for_call("s3", "ListObjectsV2",
                                                                                          {"Bucket": BUCKET}))
