"""The suite-wide AWS API-constraint hook (tests/aws_constraints.py, installed by conftest): every
botocore request, stubbed or moto-backed, from a client made anywhere, is refused as AWS would
refuse it, naming the member path and the broken rule. Each refusal test fails without the hook
(the stubbed or moto call would succeed)."""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

import aws_constraints
from aws_constraints import ApiConstraintError, java_regex, refused

REGION = "eu-west-1"
SPEC = {"Containers": [{"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ltv:1",
                        "ModelDataUrl": "s3://bucket/model.tar.gz"}],
        "SupportedContentTypes": ["application/x-parquet"], "SupportedResponseMIMETypes": ["application/x-parquet"],
        "SupportedTransformInstanceTypes": ["ml.m5.xlarge"]}


def _refusal(**request) -> str:
    """The refusal message of a CreateModelPackage request sent through a stubbed client that would
    otherwise answer it."""
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stub, refused() as recorded:
        stub.add_response("create_model_package", {"ModelPackageArn": "arn"}, None)
        with pytest.raises(ApiConstraintError) as e:
            client.create_model_package(**{"ModelPackageGroupName": "ltv-game", "InferenceSpecification": SPEC,
                                           **request})
    assert recorded == [str(e.value)], "a refusal is recorded, so a caller that swallows it still fails its test"
    return str(e.value)


@pytest.mark.parametrize("request_, path, rule", [
    ({"CustomerMetadataProperties": {"ltv:reason": "gain (required 0.01); guards ok"}},
     "CreateModelPackage.CustomerMetadataProperties['ltv:reason']", "does not match the pattern"),
    ({"CustomerMetadataProperties": {"ltv:x": "a" * 257}},
     "CreateModelPackage.CustomerMetadataProperties['ltv:x']", "257 characters, more than the maximum 256"),
    ({"CustomerMetadataProperties": {"ltv:x": ""}},
     "CreateModelPackage.CustomerMetadataProperties['ltv:x']", "0 characters, fewer than the minimum 1"),
    ({"CustomerMetadataProperties": {"ltv;x": "1"}},
     "CreateModelPackage.CustomerMetadataProperties key 'ltv;x'", "does not match the pattern"),
    ({"CustomerMetadataProperties": {f"k{i}": "v" for i in range(51)}},
     "CreateModelPackage.CustomerMetadataProperties", "51 entries, more than the maximum 50"),
    ({"ModelApprovalStatus": "Accepted"}, "CreateModelPackage.ModelApprovalStatus", "is not one of the enum"),
    ({"InferenceSpecification": SPEC | {"SupportedTransformInstanceTypes": []}},
     "CreateModelPackage.InferenceSpecification.SupportedTransformInstanceTypes", "0 items, fewer than the minimum 1"),
    ({"InferenceSpecification": SPEC | {"Containers": SPEC["Containers"] * 16}},
     "CreateModelPackage.InferenceSpecification.Containers", "16 items, more than the maximum 15"),
    ({"InferenceSpecification": SPEC | {"Containers": [SPEC["Containers"][0] | {"ModelDataUrl": "/local/model"}]}},
     "CreateModelPackage.InferenceSpecification.Containers[0].ModelDataUrl", "does not match the pattern"),
    ({"ModelPackageDescription": "line one\nline two"}, "CreateModelPackage.ModelPackageDescription",
     "does not match the pattern"),
], ids=["pattern", "max-length", "min-length", "key-pattern", "map-count", "enum", "list-min", "list-max",
        "nested-pattern", "control-character"])
def test_a_request_breaking_a_rule_is_refused_naming_the_member_and_the_rule(request_, path, rule) -> None:
    message = _refusal(**request_)
    assert f"{path}: " in message and rule in message, message


def test_numbers_are_held_to_their_range_on_a_moto_backed_client_made_by_the_code() -> None:
    from moto import mock_aws

    def code_under_test(page_size: int) -> list:  # makes its own client, as the registry does
        return boto3.client("sagemaker", region_name=REGION).list_model_packages(MaxResults=page_size)[
            "ModelPackageSummaryList"]

    with mock_aws(), refused():
        assert code_under_test(100) == []
        with pytest.raises(ApiConstraintError, match=r"ListModelPackages.MaxResults: 101 is above the maximum 100"):
            code_under_test(101)
        with pytest.raises(ApiConstraintError, match=r"ListModelPackages.MaxResults: 0 is below the minimum 1"):
            code_under_test(0)
    assert ("sagemaker", "ListModelPackages") in aws_constraints.CHECKED


def test_a_legal_request_passes_and_is_counted() -> None:
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stub:
        stub.add_response("create_model_package", {"ModelPackageArn": "arn"}, None)
        client.create_model_package(ModelPackageGroupName="ltv-game", InferenceSpecification=SPEC,
                                    ModelPackageDescription="gain (required 0.01); guards: ok",
                                    CustomerMetadataProperties={"ltv:reason": "gain +0.02 required 0.01 - ok é"})
    assert ("sagemaker", "CreateModelPackage") in aws_constraints.CHECKED


@pytest.mark.parametrize("pattern, accepted, refused_", [
    (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}", ["Grün 12 a:b/c=d+e-f@g_h.i", ""], ["a(b)", "a;b", "a…", "{}"]),
    (r"[\w-_]*", ["a-_b"], ["é"]),                                  # Java's \w is ASCII; '-' after \w is literal
    (r".*", ["any text"], ["a\nb", "a\rb", "a\u2028b"]),               # Java's '.' stops at every line terminator
    (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", ["ok 😀\t"], ["\x01"]),  # surrogate pairs
    (r"arn:[\p{Alnum}\-]+:lambda", ["arn:aws-cn:lambda"], ["arn:aws_x:lambda"]),
    (r"\A\S[\p{Print}]*\z", ["a b"], [" a", "a\n"]),
])
def test_java_patterns_mean_what_java_means(pattern, accepted, refused_) -> None:
    regex = java_regex(pattern)
    assert all(regex.fullmatch(v) for v in accepted) and not any(regex.fullmatch(v) for v in refused_)
