"""The cloud as the templates define it, offline: test helpers built from synthesized CloudFormation.

- `Templates`: a synthesized cdk.out (templates + asset manifests) with CloudFormation's
  intrinsics resolved the way AWS would resolve them for the stack's account and region.
- `PolicyEvaluator`: IAM's decision (explicit deny > allow > implicit deny) for an action on a
  resource, from the statements of a template (identity policies, bucket or key policies),
  with the condition operators our templates use.
- `create_from_template`: moto buckets, Glue catalog and Athena workgroup made from the
  DataLake template, not from a hand-written copy.
- `FakeAthena`: runs each query Athena receives the way Athena would for this catalog: the
  Trino text transpiled back to DuckDB (sqlglot) over the S3 objects the Glue tables point at,
  honouring partition projection and the catalog's column types; UNLOAD writes Parquet and a
  manifest. It also records the IAM actions Athena performs as the caller.
- `CallRecorder`: every AWS API call the code makes, as the IAM actions and resources it needs;
  while a template role acts (`acting_as(role(...))`), each call is decided before it is sent
  (identity policy, bucket policy denies, KMS through S3, iam:PassRole) and S3's 403 for a missing
  key the role may not list is answered as S3 answers it.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
SECRET_SUFFIX = "-AbC123"  # the random part of a secret's ARN


# ----------------------------------------------------------------------------------------------
# templates


class Templates:
    """The templates and asset manifests of one cdk.out, with intrinsics resolved."""

    def __init__(self, outdir: Path, account: str, region: str):
        self.outdir, self.account, self.region = Path(outdir), account, region
        self.templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text())
                          for p in self.outdir.glob("*.template.json")}

    # -- resources ---------------------------------------------------------------------------

    def resources(self, stack: str, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[stack]["Resources"].items() if v["Type"] == kind}

    def props(self, stack: str, logical_id: str) -> dict[str, Any]:
        return self.resolve(stack, self.templates[stack]["Resources"][logical_id].get("Properties", {}))

    # -- intrinsics --------------------------------------------------------------------------

    def resolve(self, stack: str, value: Any) -> Any:
        """A property with every intrinsic replaced by the value CloudFormation would give it."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (name, arg), = value.items()
            if name == "Ref":
                return self._ref(stack, arg)
            if name == "Fn::GetAtt":
                return self._get_att(stack, *(arg if isinstance(arg, list) else arg.split(".", 1)))
            if name == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(stack, p)) for p in parts)
            if name == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.resolve(stack, variables[m.group(1)])
                                                            if m.group(1) in variables else self._sub(stack, m.group(1))),
                              text)
            if name == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(index)]
            if name == "Fn::Split":
                sep, text = arg
                return self.resolve(stack, text).split(sep)
            if name == "Fn::GetStackOutput":
                producer = arg["StackName"]
                return self.resolve(producer, self.templates[producer]["Outputs"][arg["OutputName"]]["Value"])
            if name == "Fn::ImportValue":
                export = self.resolve(stack, arg)
                for producer, tpl in self.templates.items():
                    for output in tpl.get("Outputs", {}).values():
                        if output.get("Export", {}).get("Name") == export:
                            return self.resolve(producer, output["Value"])
                raise KeyError(f"no export {export}")
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def _sub(self, stack: str, name: str) -> str:
        if name.startswith("AWS::"):
            return self._ref(stack, name)
        if "." in name:
            return self._get_att(stack, *name.split(".", 1))
        return self._ref(stack, name)

    def _ref(self, stack: str, name: str) -> str:
        pseudo = {"AWS::Partition": PARTITION, "AWS::Region": self.region, "AWS::AccountId": self.account,
                  "AWS::URLSuffix": URL_SUFFIX, "AWS::StackName": stack}
        if name in pseudo:
            return pseudo[name]
        res = self.templates[stack]["Resources"][name]
        props, kind = res.get("Properties", {}), res["Type"]
        named = {"AWS::S3::Bucket": "BucketName", "AWS::IAM::Role": "RoleName", "AWS::Glue::Job": "Name",
                 "AWS::Glue::Workflow": "Name", "AWS::Glue::SecurityConfiguration": "Name",
                 "AWS::Logs::LogGroup": "LogGroupName", "AWS::Athena::WorkGroup": "Name"}
        if kind == "AWS::Glue::Database":
            return self.resolve(stack, props["DatabaseInput"]["Name"])
        if kind == "AWS::SecretsManager::Secret":  # Secrets Manager appends six random characters
            return f"arn:{PARTITION}:secretsmanager:{self.region}:{self.account}:secret:{self.resolve(stack, props['Name'])}{SECRET_SUFFIX}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{self.region}:{self.account}:{self.resolve(stack, props['TopicName'])}"
        if kind in named and named[kind] in props:
            return self.resolve(stack, props[named[kind]])
        return f"{name}-physical-id"  # generated names: unique and stable is all a test needs

    _ARNS = {"AWS::S3::Bucket": "arn:{p}:s3:::{ref}", "AWS::KMS::Key": "arn:{p}:kms:{r}:{a}:key/{id}",
             "AWS::IAM::Role": "arn:{p}:iam::{a}:role/{ref}", "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{ref}:*",
             "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{id}",
             "AWS::Events::Rule": "arn:{p}:events:{r}:{a}:rule/{name}",
             "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{name}"}

    def _get_att(self, stack: str, name: str, attribute: str) -> str:
        """`Fn::GetAtt [X, Arn]`: the ARN AWS gives the resource (key ids are made up, stable)."""
        res = self.templates[stack]["Resources"][name]
        if attribute != "Arn" or res["Type"] not in self._ARNS:
            raise KeyError(f"GetAtt {res['Type']}.{attribute}")
        own_name = res.get("Properties", {}).get("Name") or res.get("Properties", {}).get("QueueName")
        return self._ARNS[res["Type"]].format(p=PARTITION, r=self.region, a=self.account, id=name,
                                              ref=self._ref(stack, name) if "{ref}" in self._ARNS[res["Type"]] else "",
                                              name=self.resolve(stack, own_name) if own_name else "")

    # -- assets ------------------------------------------------------------------------------

    def asset_file(self, stack: str, s3_uri: str) -> Path:
        """The cdk.out file or directory a template's `s3://<asset bucket>/<key>` is published from."""
        bucket, key = s3_uri.removeprefix("s3://").split("/", 1)
        manifest = json.loads((self.outdir / f"{stack}.assets.json").read_text())
        for entry in manifest["files"].values():
            for dest in entry["destinations"].values():
                if dest["objectKey"] == key and self._asset_bucket(dest["bucketName"]) == bucket:
                    return self.outdir / entry["source"]["path"]
        raise KeyError(f"{s3_uri} is no asset of {stack}")

    def _asset_bucket(self, name: str) -> str:
        return name.replace("${AWS::AccountId}", self.account).replace("${AWS::Region}", self.region)

    def policy_statements(self, stack: str, role_logical_id: str) -> list[dict[str, Any]]:
        """Every identity-policy statement attached to a role of the stack, resolved."""
        out = []
        for logical_id, res in self.resources(stack, "AWS::IAM::Policy").items():
            if {"Ref": role_logical_id} in res["Properties"].get("Roles", []):
                out += self.props(stack, logical_id)["PolicyDocument"]["Statement"]
        return out

    def resource_policy(self, stack: str, kind: str, prop: str, match: dict[str, Any]) -> list[dict[str, Any]]:
        """The statements of the resource policy (bucket policy, key policy...) whose properties match."""
        for logical_id, res in self.resources(stack, kind).items():
            props = self.props(stack, logical_id)
            if all(props.get(k) == v for k, v in match.items()):
                return props[prop]["Statement"]
        raise KeyError(f"no {kind} with {match}")


# ----------------------------------------------------------------------------------------------
# IAM


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's wildcard match (`*` any run of characters, `?` one), no other special characters."""
    return _wildcard(pattern, case).fullmatch(value) is not None


@lru_cache(maxsize=None)
def _wildcard(pattern: str, case: bool) -> re.Pattern:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case else re.IGNORECASE)


@dataclass
class PolicyEvaluator:
    """IAM's decision for one request against a set of statements (one policy or several)."""

    statements: list[dict[str, Any]]

    def decide(self, action: str, resource: str, *, principal: str | None = None,
               context: dict[str, str] | None = None) -> str:
        """"deny" (an explicit Deny matches), "allow" (an Allow matches) or "implicit-deny"."""
        matches = [s for s in self.statements if self._matches(s, action, resource, principal, context or {})]
        if any(s["Effect"] == "Deny" for s in matches):
            return "deny"
        return "allow" if any(s["Effect"] == "Allow" for s in matches) else "implicit-deny"

    def allows(self, action: str, resource: str, **kwargs: Any) -> bool:
        return self.decide(action, resource, **kwargs) == "allow"

    def _matches(self, st: dict[str, Any], action: str, resource: str, principal: str | None,
                 context: dict[str, str]) -> bool:
        if "NotAction" in st:
            if any(_like(a, action, case=False) for a in _as_list(st["NotAction"])):
                return False
        elif not any(_like(a, action, case=False) for a in _as_list(st.get("Action", []))):
            return False
        if "NotResource" in st:
            if any(_like(r, resource) for r in _as_list(st["NotResource"])):
                return False
        elif not any(_like(r, resource) for r in _as_list(st.get("Resource", []))):
            return False
        if "Principal" in st and not self._principal(st["Principal"], principal):
            return False
        return all(self._condition(op, key, values, context)
                   for op, block in st.get("Condition", {}).items() for key, values in block.items())

    @staticmethod
    def _principal(spec: Any, principal: str | None) -> bool:
        """Whether a statement's Principal names the requester. An account (`...:root`) names every
        principal of that account: it delegates to the account's own IAM policies."""
        if principal is None:
            return True
        if spec == "*" or spec == {"AWS": "*"}:
            return True
        for kind, values in spec.items():
            for value in _as_list(values):
                if kind == "AWS":
                    account = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):root", value)
                    if value == principal or (account and f"::{account.group(1)}:" in principal):
                        return True
                elif kind == "Service" and value == principal:
                    return True
        return False

    @staticmethod
    def _condition(op: str, key: str, values: Any, context: dict[str, str]) -> bool:
        """One condition, as IAM evaluates it: a key missing from the request satisfies
        `...IfExists` and the negated operators (`StringNotEquals`...), and fails the others."""
        wanted = [str(v) for v in _as_list(values)]
        if op == "Null":
            return (key not in context) == (wanted[0].lower() == "true")
        if_exists = op.endswith("IfExists")
        op = op.removesuffix("IfExists")
        negated = "Not" in op
        if key not in context:
            return if_exists or negated
        actual = context[key]
        checks = {"StringEquals": lambda: actual in wanted, "ArnEquals": lambda: actual in wanted,
                  "StringLike": lambda: any(_like(w, actual) for w in wanted),
                  "ArnLike": lambda: any(_like(w, actual) for w in wanted),
                  "Bool": lambda: actual.lower() in [w.lower() for w in wanted]}
        base = op.replace("Not", "")
        if base not in checks:
            raise NotImplementedError(f"condition operator {op}")
        return checks[base]() != negated


@dataclass(frozen=True)
class Need:
    """One IAM permission a call needs: an action on a resource (with its request context)."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    why: str = ""


def s3_object(bucket: str, key: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}/{key}"


def s3_bucket(bucket: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}"


@dataclass(frozen=True)
class Role:
    """A principal as the template defines it: its name, ARN and identity-policy statements."""

    name: str
    arn: str
    policy: PolicyEvaluator


class AccessDenied(AssertionError):
    """A call the acting role's policies do not allow: the test fails with the action, resource and role."""


# S3 answers a request for a missing key with 404 only if the caller may also list the bucket,
# otherwise with 403 AccessDenied ("If you don't have the s3:ListBucket permission, Amazon S3 returns
# an HTTP status code 403"): https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html and
# API_HeadObject.html. AWS does not document which `s3:prefix` that implicit check carries; the
# evaluator takes the strict reading, none (the request is a GetObject, which has no s3:prefix key),
# so a `StringLike` s3:prefix condition never grants it while `StringLikeIfExists` does.
MISSING_KEY_READS = ("GetObject", "HeadObject")


@dataclass
class CallRecorder:
    """Turns the AWS calls a process makes into the IAM permissions they need, and, while a role
    acts (`acting_as`), enforces them: a call the role's policies (and the bucket's policy) do not
    allow raises `AccessDenied` before it is sent; reading a missing key without s3:ListBucket
    answers 403 as S3 does.

    `kms_buckets` maps the buckets encrypted with a customer key to that key's ARN: reading an
    object of such a bucket also needs kms:Decrypt, writing one kms:GenerateDataKey."""

    account: str
    region: str
    kms_buckets: dict[str, str] = field(default_factory=dict)
    kms_topics: dict[str, str] = field(default_factory=dict)
    needs: list[Need] = field(default_factory=list)
    workgroup: str | None = None
    bucket_policies: dict[str, PolicyEvaluator] = field(default_factory=dict)
    exists: Any = None              # (bucket, key) -> bool, answered without the hooks
    role: Role | None = None
    checked: int = 0                # calls decided while a role acted (so a test can see enforcement ran)

    @contextmanager
    def acting_as(self, role: Role) -> Iterator[Role]:
        """Every call made inside runs with exactly `role`'s permissions."""
        previous, self.role = self.role, role
        try:
            yield role
        finally:
            self.role = previous

    def on_call(self, params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
        service, op = model.service_model.service_name, model.name
        needs = self.for_call(service, op, params)
        self.needs += needs
        if self.role is not None:
            self.checked += 1
            forbidden = self.enforce(service, op, params, needs)
            if forbidden and context is not None:
                context["iam_forbidden"] = forbidden

    def enforce(self, service: str, op: str, params: dict[str, Any], needs: list[Need]) -> str | None:
        """Raise `AccessDenied` for the first need the acting role may not have; for a read of a
        missing S3 key the role may not list, the S3 error code to answer with (else None)."""
        assert self.role is not None
        for need in needs:
            if not self.permits(need):
                raise AccessDenied(f"{self.role.name} ({self.role.arn}) may not {need.action} on {need.resource} "
                                   f"[{need.why}]")
        if service == "s3" and op in MISSING_KEY_READS and self.exists is not None \
                and not self.exists(params["Bucket"], params["Key"]):
            listing = Need("s3:ListBucket", s3_bucket(params["Bucket"]), why=f"s3:{op} of a missing key")
            if not self.permits(listing):
                return "403" if op == "HeadObject" else "AccessDenied"
        return None

    def permits(self, need: Need) -> bool:
        """The role's policies allow the need and no resource policy denies it (requests are HTTPS)."""
        assert self.role is not None
        context = {"aws:SecureTransport": "true", **dict(need.context)}
        if not self.role.policy.allows(need.action, need.resource, context=context):
            return False
        bucket = need.resource.split(":::", 1)[1].split("/", 1)[0] if ":s3:::" in need.resource else None
        policy = self.bucket_policies.get(bucket) if bucket else None
        return policy is None or policy.decide(need.action, need.resource, principal=self.role.arn,
                                               context=context) != "deny"

    def answer_forbidden(self, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        """`before-call`: S3's 403 for a missing key the acting role may not list (botocore raises it)."""
        code = context.pop("iam_forbidden", None)
        if code is None:
            return None
        from botocore.awsrequest import AWSResponse

        message = "Forbidden" if code == "403" else "Access Denied"
        return (AWSResponse("https://s3.amazonaws.com", 403, {}, None),
                {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}})

    def for_call(self, service: str, op: str, params: dict[str, Any]) -> list[Need]:
        why = f"{service}:{op}"
        if service == "s3":
            return self._s3(op, params, why)
        if service == "athena":
            if op == "StartQueryExecution" or op == "GetWorkGroup":
                self.workgroup = params.get("WorkGroup") or self.workgroup
            arn = f"arn:{PARTITION}:athena:{self.region}:{self.account}:workgroup/{self.workgroup}"
            return [Need(f"athena:{op}", arn, why=why)]
        if service == "glue":
            base = f"arn:{PARTITION}:glue:{self.region}:{self.account}"
            if op in ("GetWorkflowRunProperties", "PutWorkflowRunProperties", "GetWorkflowRun"):
                return [Need(f"glue:{op}", f"{base}:workflow/{params['Name']}", why=why)]
            if op in ("GetTable", "GetPartitions", "GetPartition", "BatchCreatePartition", "CreatePartition",
                      "UpdatePartition"):
                db, table = params["DatabaseName"], params.get("TableName") or params["Name"]
                return [Need(f"glue:{op}", r, why=why) for r in
                        (f"{base}:catalog", f"{base}:database/{db}", f"{base}:table/{db}/{table}")]
            if op == "StartJobRun":
                return [Need("glue:StartJobRun", f"{base}:job/{params['JobName']}", why=why)]
            if op == "GetDatabase":
                return [Need("glue:GetDatabase", r, why=why) for r in (f"{base}:catalog", f"{base}:database/{params['Name']}")]
        if service == "sagemaker":
            return self._sagemaker(op, params, why)
        if service == "sns" and op == "Publish":
            key = self.kms_topics.get(params["TopicArn"])
            via = (("kms:ViaService", f"sns.{self.region}.amazonaws.com"),)
            return [Need("sns:Publish", params["TopicArn"], why=why),
                    *([Need("kms:GenerateDataKey", key, via, why), Need("kms:Decrypt", key, via, why)] if key else [])]
        if service == "secretsmanager" and op == "GetSecretValue":
            secret = params["SecretId"]
            arn = secret if secret.startswith("arn:") else \
                f"arn:{PARTITION}:secretsmanager:{self.region}:{self.account}:secret:{secret}{SECRET_SUFFIX}"
            return [Need("secretsmanager:GetSecretValue", arn, why=why)]
        if service == "events" and op == "PutEvents":  # each entry, on its bus, with its source and detail type
            buses = [e.get("EventBusName") or "default" for e in params["Entries"]]
            arns = [b if b.startswith("arn:") else f"arn:{PARTITION}:events:{self.region}:{self.account}:event-bus/{b}"
                    for b in buses]
            return [Need("events:PutEvents", arn, (("events:source", e["Source"]), ("events:detail-type", e["DetailType"])),
                         why) for arn, e in zip(arns, params["Entries"])]
        if service == "cloudwatch" and op == "PutMetricData":
            return [Need("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", params["Namespace"]),), why)]
        raise NotImplementedError(f"no IAM mapping for {service}:{op}")

    def _sagemaker(self, op: str, params: dict[str, Any], why: str) -> list[Need]:
        base = f"arn:{PARTITION}:sagemaker:{self.region}:{self.account}"
        tags = [Need("sagemaker:AddTags", "", why=why)] if params.get("Tags") else []
        if op == "ListModelPackages":
            return [Need("sagemaker:ListModelPackages", "*", why=why)]
        if op == "DescribeModelPackageGroup":
            return [Need(f"sagemaker:{op}", f"{base}:model-package-group/{params['ModelPackageGroupName']}", why=why)]
        if op == "DescribeModelPackage":
            name = params["ModelPackageName"]
            return [Need(f"sagemaker:{op}", name if name.startswith("arn:") else f"{base}:model-package/{name}", why=why)]
        if op in ("DescribeModel", "CreateModel"):
            arn = f"{base}:model/{params['ModelName'].lower()}"
            passed = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
            role = [Need("iam:PassRole", params["ExecutionRoleArn"], passed, why)] if op == "CreateModel" else []
            return [Need(f"sagemaker:{op}", arn, why=why), *role, *(Need(t.action, arn, why=why) for t in tags)]
        if op in ("DescribeTransformJob", "CreateTransformJob"):
            arn = f"{base}:transform-job/{params['TransformJobName'].lower()}"
            return [Need(f"sagemaker:{op}", arn, why=why), *(Need(t.action, arn, why=why) for t in tags)]
        if op in ("CreateTrainingJob", "CreateProcessingJob"):
            kind = "training-job" if op == "CreateTrainingJob" else "processing-job"
            arn = f"{base}:{kind}/{params[op.removeprefix('Create') + 'Name'].lower()}"
            passed = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
            return [Need(f"sagemaker:{op}", arn, why=why), Need("iam:PassRole", params["RoleArn"], passed, why),
                    *(Need(t.action, arn, why=why) for t in tags)]
        if op in ("CreateModelPackage", "UpdateModelPackage"):
            group = params.get("ModelPackageGroupName")
            if group:
                return [Need(f"sagemaker:{op}", f"{base}:model-package-group/{group}", why=why),
                        *(Need(t.action, f"{base}:model-package-group/{group}", why=why) for t in tags)]
            name = params["ModelPackageArn"] if op == "UpdateModelPackage" else params["ModelPackageName"]
            return [Need(f"sagemaker:{op}", name if name.startswith("arn:") else f"{base}:model-package/{name}", why=why)]
        raise NotImplementedError(f"no IAM mapping for sagemaker:{op}")

    def _s3(self, op: str, params: dict[str, Any], why: str) -> list[Need]:
        bucket, key = params.get("Bucket"), params.get("Key", "")
        reads = ("GetObject", "HeadObject")
        writes = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
        if op in reads:
            needs = [Need("s3:GetObject", s3_object(bucket, key), why=why)]
            return needs + self._kms(bucket, "kms:Decrypt", why)
        if op in writes:
            headers = {"ServerSideEncryption": "s3:x-amz-server-side-encryption",
                       "SSEKMSKeyId": "s3:x-amz-server-side-encryption-aws-kms-key-id"}
            sent = tuple((k, str(params[p])) for p, k in headers.items() if op != "UploadPart" and p in params)
            needs = [Need("s3:PutObject", s3_object(bucket, key), sent, why=why)]
            return needs + self._kms(bucket, "kms:GenerateDataKey", why)
        if op == "AbortMultipartUpload":
            return [Need("s3:AbortMultipartUpload", s3_object(bucket, key), why=why)]
        if op in ("ListObjectsV2", "ListObjects"):
            return [Need("s3:ListBucket", s3_bucket(bucket), (("s3:prefix", params.get("Prefix", "")),), why)]
        if op == "DeleteObject":
            return [Need("s3:DeleteObject", s3_object(bucket, key), why=why)]
        if op == "DeleteObjects":
            return [Need("s3:DeleteObject", s3_object(bucket, o["Key"]), why=why) for o in params["Delete"]["Objects"]]
        if op == "GetBucketLocation":
            return [Need("s3:GetBucketLocation", s3_bucket(bucket), why=why)]
        raise NotImplementedError(f"no IAM mapping for s3:{op}")

    def _kms(self, bucket: str, action: str, why: str) -> list[Need]:
        """S3 asks KMS as the caller, through S3, with the bucket as encryption context (bucket keys)."""
        key = self.kms_buckets.get(bucket)
        via = (("kms:ViaService", f"s3.{self.region}.amazonaws.com"),
               ("kms:EncryptionContext:aws:s3:arn", s3_bucket(bucket)))
        return [Need(action, key, via, why=f"{why} (SSE-KMS)")] if key else []

    def denied(self, evaluator: PolicyEvaluator) -> list[Need]:
        """The recorded needs the statements do not allow (unique, in call order)."""
        out: list[Need] = []
        for need in self.needs:
            if need not in out and not evaluator.allows(need.action, need.resource, context=dict(need.context)):
                out.append(need)
        return out


# ----------------------------------------------------------------------------------------------
# moto resources from the DataLake template


def create_from_template(session: Any, tpl: Templates, stack: str) -> None:
    """The stack's buckets (versioned as the template says), Glue database, tables and jobs, Athena
    workgroup, SNS topics, SQS queues and SageMaker model package groups, created in moto from the
    synthesized template (plus the CDK bootstrap bucket its assets live in)."""
    s3 = session.client("s3")
    location = {"LocationConstraint": tpl.region}
    for logical_id in tpl.resources(stack, "AWS::S3::Bucket"):
        props = tpl.props(stack, logical_id)
        s3.create_bucket(Bucket=props["BucketName"], CreateBucketConfiguration=location)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=props["BucketName"], VersioningConfiguration={"Status": "Enabled"})
    assets = f"cdk-hnb659fds-assets-{tpl.account}-{tpl.region}"
    if assets not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=assets, CreateBucketConfiguration=location)
    for logical_id in tpl.resources(stack, "AWS::SNS::Topic"):
        session.client("sns").create_topic(Name=tpl.props(stack, logical_id)["TopicName"])
    for logical_id in tpl.resources(stack, "AWS::SQS::Queue"):
        session.client("sqs").create_queue(QueueName=tpl.props(stack, logical_id)["QueueName"])
    for logical_id in tpl.resources(stack, "AWS::SageMaker::ModelPackageGroup"):
        props = tpl.props(stack, logical_id)
        session.client("sagemaker").create_model_package_group(
            ModelPackageGroupName=props["ModelPackageGroupName"],
            ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", ""))
    glue = session.client("glue")
    for logical_id in tpl.resources(stack, "AWS::Glue::Database"):
        db = tpl.props(stack, logical_id)["DatabaseInput"]
        glue.create_database(DatabaseInput={k: v for k, v in db.items() if k in ("Name", "Description")})
    for logical_id in tpl.resources(stack, "AWS::Glue::Table"):
        props = tpl.props(stack, logical_id)
        glue.create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])
    for logical_id in tpl.resources(stack, "AWS::Glue::Job"):  # what StartJobRun needs: the job by its name
        props = tpl.props(stack, logical_id)
        glue.create_job(Name=props["Name"], Role=props["Role"], Command=props["Command"],
                        DefaultArguments=props.get("DefaultArguments", {}), GlueVersion=props["GlueVersion"],
                        MaxRetries=props.get("MaxRetries", 0), ExecutionProperty=props.get("ExecutionProperty", {}))
    athena = session.client("athena")
    for logical_id in tpl.resources(stack, "AWS::Athena::WorkGroup"):
        props = tpl.props(stack, logical_id)
        athena.create_work_group(Name=props["Name"], Configuration=props["WorkGroupConfiguration"])


def kms_keys(tpl: Templates, stack: str, kind: str) -> dict[str, str]:
    """Name (bucket) or ARN (topic) -> customer key ARN, for the stack's KMS-encrypted buckets or topics."""
    out = {}
    for logical_id in tpl.resources(stack, kind):
        props = tpl.props(stack, logical_id)
        if kind == "AWS::S3::Bucket":
            rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            if rule["SSEAlgorithm"] == "aws:kms":
                out[props["BucketName"]] = rule["KMSMasterKeyID"]
        elif "KmsMasterKeyId" in props:
            out[f"arn:{PARTITION}:sns:{tpl.region}:{tpl.account}:{props['TopicName']}"] = props["KmsMasterKeyId"]
    return out


def bucket_policies(tpl: Templates, stack: str) -> dict[str, PolicyEvaluator]:
    """Bucket name -> its bucket policy, for the stack's buckets that have one."""
    names = {logical_id: tpl.props(stack, logical_id)["BucketName"] for logical_id in tpl.resources(stack, "AWS::S3::Bucket")}
    out = {}
    for logical_id, res in tpl.resources(stack, "AWS::S3::BucketPolicy").items():
        bucket = res["Properties"]["Bucket"]
        name = names.get(bucket["Ref"]) if isinstance(bucket, dict) and "Ref" in bucket else tpl.resolve(stack, bucket)
        out[name] = PolicyEvaluator(tpl.props(stack, logical_id)["PolicyDocument"]["Statement"])
    return out


def role(tpl: Templates, stack: str, logical_id: str) -> Role:
    """A role of the template with exactly its identity-policy statements."""
    arn = tpl.resolve(stack, {"Fn::GetAtt": [logical_id, "Arn"]})
    return Role(arn.rsplit("/", 1)[1], arn, PolicyEvaluator(tpl.policy_statements(stack, logical_id)))


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return False
        raise


@dataclass
class Account:
    """A game's account in moto: `session` (the test's own, its calls unrecorded), `athena` (the
    fake), `recorder` (every permission the code under test needed)."""

    session: Any
    athena: FakeAthena
    recorder: CallRecorder


@contextmanager
def moto_account(tpl: Templates, stacks: Sequence[str], monkeypatch: Any, today: dt.date) -> Iterator[Account]:
    """moto in the templates' account and region, with the resources of `stacks` created from their
    templates, FakeAthena, and the call recorder hooked into every boto3 client created from now on
    (boto3's default session included: the code under test uses it)."""
    import boto3
    import botocore.handlers
    from moto import mock_aws
    from moto.moto_api import state_manager

    monkeypatch.setenv("MOTO_ACCOUNT_ID", tpl.account)
    monkeypatch.setenv("AWS_DEFAULT_REGION", tpl.region)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    state_manager.set_transition(model_name="athena::execution", transition={"progression": "immediate"})
    try:
        with mock_aws():
            session = boto3.Session(region_name=tpl.region)
            for stack in stacks:
                create_from_template(session, tpl, stack)
            buckets = {k: v for stack in stacks for k, v in kms_keys(tpl, stack, "AWS::S3::Bucket").items()}
            topics = {k: v for stack in stacks for k, v in kms_keys(tpl, stack, "AWS::SNS::Topic").items()}
            policies = {k: v for stack in stacks for k, v in bucket_policies(tpl, stack).items()}
            s3 = session.client("s3")
            recorder = CallRecorder(tpl.account, tpl.region, buckets, kms_topics=topics, bucket_policies=policies,
                                    exists=lambda bucket, key: _exists(s3, bucket, key))
            athena = FakeAthena(session, tpl.account, recorder, today=today)
            hooks = [("before-parameter-build", recorder.on_call), ("before-call", recorder.answer_forbidden),
                     *athena.handlers()]
            monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, *hooks])
            yield Account(session, athena, recorder)
    finally:
        state_manager.unset_transition(model_name="athena::execution")


# ----------------------------------------------------------------------------------------------
# Athena over DuckDB

_DUCK_TYPES = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT", "double": "DOUBLE",
               "float": "FLOAT", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP", "date": "DATE"}
_ATHENA_TYPES = {"VARCHAR": "varchar", "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint",
                 "DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean", "TIMESTAMP": "timestamp", "DATE": "date"}
# parquet physical/logical types a catalog type can read (Athena fails on anything else)
_READABLE = {"bigint": {"BIGINT", "INTEGER", "SMALLINT", "TINYINT"}, "int": {"INTEGER", "SMALLINT", "TINYINT"},
             "smallint": {"SMALLINT", "TINYINT"}, "double": {"DOUBLE", "FLOAT"}, "float": {"FLOAT"},
             "string": {"VARCHAR"}, "boolean": {"BOOLEAN"}, "date": {"DATE"},
             "timestamp": {"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP WITH TIME ZONE"}}
@dataclass
class Result:
    """A query's rows (pyarrow) and the Athena type of each column."""

    table: Any
    types: dict[str, str]


UNLOAD = re.compile(r"^\s*UNLOAD\s*\((.*)\)\s*TO\s*'([^']+)'\s*WITH\s*\((.*)\)\s*$", re.DOTALL | re.IGNORECASE)


class AthenaQueryError(Exception):
    pass


class FakeAthena:
    """Athena for one database, answering from (moto) S3 and the (moto) Glue catalog.

    Install its botocore handlers with `handlers()` (e.g. appended to botocore's builtin handlers,
    so every client gets them). Queries that fail in DuckDB, or read files whose types the
    catalog cannot read, end FAILED with the reason, as in Athena."""

    def __init__(self, session: Any, account: str, recorder: CallRecorder | None = None,
                 today: dt.date | None = None):
        self.session, self.account, self.recorder = session, account, recorder
        self.today = today or dt.date.today()
        self.sent: list[str] = []
        self._pending: dict[str, dict[str, Any]] = {}
        self._by_id: dict[str, dict[str, Any]] = {}
        self._cache = Path(tempfile.mkdtemp(prefix="fake-athena-"))
        weakref.finalize(self, shutil.rmtree, self._cache, True)  # no temp directory outlives the fake
        self._etags: dict[str, str] = {}
        self._clients: dict[str, Any] = {}
        self._views: dict[tuple, str] = {}
        self._registered: tuple[str, str] | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def handlers(self) -> list[tuple[str, Any]]:
        return [("before-parameter-build.athena.StartQueryExecution", self._on_start),
                ("after-call.athena.StartQueryExecution", self._after_start),
                ("after-call.athena.GetQueryExecution", self._after_get)]

    # -- botocore hooks ------------------------------------------------------------------------

    def _on_start(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        text, database = params["QueryString"], params.get("QueryExecutionContext", {}).get("Database")
        self.sent.append(text)
        outcome: dict[str, Any] = {}
        wg = self.client("athena").get_work_group(WorkGroup=params["WorkGroup"])["WorkGroup"]
        output = wg["Configuration"]["ResultConfiguration"]["OutputLocation"].rstrip("/") + "/"
        unload = UNLOAD.match(text)
        try:
            result = self.execute(unload.group(1) if unload else text, database)
        except (AthenaQueryError, duckdb.Error, sqlglot.errors.SqlglotError) as e:
            outcome["failed"] = str(e)
            _queue_results(self.session, self.account, None)
        else:
            if unload:
                outcome["manifest"] = self._unload(result, unload.group(2), output)
                _queue_results(self.session, self.account, None)
                self._need("s3:PutObject", _object_arn(unload.group(2) + "*"), "UNLOAD target")
            else:
                _queue_results(self.session, self.account, result)
            self._need("s3:PutObject", _object_arn(output + "*"), "query results")
        context["fake_athena"] = outcome

    def _after_start(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self._by_id[parsed["QueryExecutionId"]] = context.pop("fake_athena", {})

    def _after_get(self, parsed: dict[str, Any], **_: Any) -> None:
        execution = parsed["QueryExecution"]
        outcome = self._by_id.get(execution["QueryExecutionId"], {})
        if "failed" in outcome:
            execution["Status"] = {**execution["Status"], "State": "FAILED", "StateChangeReason": outcome["failed"]}
        if "manifest" in outcome:
            execution["Statistics"]["DataManifestLocation"] = outcome["manifest"]

    # -- execution -----------------------------------------------------------------------------

    def execute(self, trino_text: str, database: str) -> Result:
        """The query's result: its Trino text in DuckDB's dialect over views of the catalog's tables."""
        duck_text = ";\n".join(sqlglot.transpile(trino_text, read="trino", write="duckdb"))
        con = duckdb.connect()
        con.execute("SET threads = 1")
        tables = {t.name for t in sqlglot.parse_one(trino_text, read="trino").find_all(exp.Table)}
        glue = self.client("glue")
        for name in sorted(tables):
            try:
                table = glue.get_table(DatabaseName=database, Name=name)["Table"]
            except glue.exceptions.EntityNotFoundException:
                continue  # a CTE
            self._catalog_needs(database, name)
            con.execute(f'CREATE VIEW "{name}" AS {self._table_sql(table)}')
        described = con.execute(f"DESCRIBE {duck_text}").fetchall()
        wide = [name for name, kind, *_ in described if kind.upper() in ("HUGEINT", "UBIGINT")]
        if wide:  # DuckDB widens SUM/COUNT results where Trino keeps BIGINT
            casts = ", ".join(f'CAST("{c}" AS BIGINT) AS "{c}"' for c in wide)
            duck_text = f"SELECT * REPLACE ({casts}) FROM ({duck_text})"
        return Result(con.sql(duck_text).to_arrow_table(), {name: _trino_type(kind) for name, kind, *_ in described})

    def _table_sql(self, table: dict[str, Any]) -> str:
        """A table as Athena sees it: the catalog's columns and types over the data files of the
        partitions projection enumerates (key=value folders, or the table's location template)."""
        sd, params = table["StorageDescriptor"], table.get("Parameters", {})
        columns = [(c["Name"], c["Type"]) for c in sd["Columns"]]
        keys = [k["Name"] for k in table.get("PartitionKeys", [])]
        self._registered = (table["DatabaseName"], table["Name"]) if keys else None
        partitions = list(self._partitions(sd["Location"], keys, params))
        if self._registered is not None and params.get("projection.enabled") != "true":
            params = {**params, "storage.location.template": "registered"}  # constants from the catalog, not paths
        signature = (sd["Location"], json.dumps(columns), tuple((str(f), self._etags[str(f)])
                                                               for _, files in partitions for f in files))
        if signature not in self._views:  # the same files as last time: the same view
            self._views[signature] = self._view_sql(partitions, columns, keys, params)
        return self._views[signature]

    def _view_sql(self, partitions: list[tuple[list[str], list[Path]]], columns: list[tuple[str, str]],
                  keys: list[str], params: dict[str, str]) -> str:
        if not partitions:
            typed = [f'CAST(NULL AS {_duck_type(t)}) AS "{c}"' for c, t in columns]
            typed += [f'CAST(NULL AS VARCHAR) AS "{k}"' for k in keys]
            return f"SELECT {', '.join(typed)} WHERE false"
        if "storage.location.template" not in params:  # key=value folders: DuckDB reads the keys from the paths
            files = [f for _, fs in partitions for f in fs]
            return self._files_sql(files, columns, keys, {})
        return "\nUNION ALL BY NAME\n".join(self._files_sql(files, columns, [], dict(zip(keys, values)))
                                              for values, files in partitions)

    def _files_sql(self, files: list[Path], columns: list[tuple[str, str]], hive_keys: list[str],
                   constants: dict[str, str]) -> str:
        hive = ("hive_partitioning = true, hive_types = {" + ", ".join(f"'{k}': VARCHAR" for k in hive_keys) + "}"
                if hive_keys else "hive_partitioning = false")
        source = f"read_parquet([{', '.join(repr(str(f)) for f in files)}], {hive}, union_by_name = true)"
        present = {r[0].lower(): r[1] for r in duckdb.connect().execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        exprs = []
        for name, kind in columns:
            found = present.get(name.lower())
            if found is None:  # Athena reads a column missing from the files as NULL
                exprs.append(f'CAST(NULL AS {_duck_type(kind)}) AS "{name}"')
                continue
            if kind in _READABLE and found.upper() not in _READABLE[kind]:
                raise AthenaQueryError(f"HIVE_BAD_DATA: column {name} is declared {kind} but the files hold {found}")
            exprs.append(f'CAST("{name}" AS {_duck_type(kind)}) AS "{name}"')
        exprs += [f'"{k}"' for k in hive_keys] + [f"'{v}' AS \"{k}\"" for k, v in constants.items()]
        return f"SELECT {', '.join(exprs)} FROM {source}"

    def _partitions(self, location: str, keys: list[str], params: dict[str, str]) -> Iterator[tuple[list[str], list[Path]]]:
        """(partition values, local copies of its data files) of every partition projection lets Athena see."""
        if params.get("projection.enabled") != "true" and self._registered is not None:
            yield from self._registered_partitions(keys)
            return
        bucket, prefix = location.removeprefix("s3://").split("/", 1)
        template = params.get("storage.location.template")
        if template:
            pattern = re.escape(template.removeprefix(f"s3://{bucket}/"))
            for key in keys:
                pattern = pattern.replace(re.escape(f"${{{key}}}"), f"(?P<{key}>[^/]+)")
        else:
            pattern = re.escape(prefix) + "".join(f"{k}=(?P<{k}>[^/]+)/" for k in keys)
        compiled = re.compile(pattern + r"(?P<file>[^/]+)$")
        s3 = self.client("s3")
        self._need("s3:ListBucket", s3_bucket(bucket), "table data", (("s3:prefix", prefix),))
        found: dict[tuple[str, ...], list[Path]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                m = compiled.match(obj["Key"])
                if not m or m.group("file").startswith(("_", ".")) or not obj["Size"]:
                    continue  # Hive skips _ and . files (markers, JSON beside the partition)
                values = tuple(m.group(k) for k in keys)
                if all(self._projected(k, v, params) for k, v in zip(keys, values)):
                    found.setdefault(values, []).append(self._download(bucket, obj))
        yield from ((list(v), files) for v, files in sorted(found.items()))

    def _registered_partitions(self, keys: list[str]) -> Iterator[tuple[list[str], list[Path]]]:
        """A table without projection: the partitions registered in the catalog, at their locations
        (Athena reads nothing else; `_table_sql` sets `_registered` to the table being viewed)."""
        database, name = self._registered
        pages = self.client("glue").get_paginator("get_partitions").paginate(DatabaseName=database, TableName=name)
        s3 = self.client("s3")
        for page in pages:
            for partition in page["Partitions"]:
                bucket, prefix = partition["StorageDescriptor"]["Location"].removeprefix("s3://").split("/", 1)
                objects = [o for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                           for o in p.get("Contents", []) if "/" not in o["Key"][len(prefix):]
                           and not o["Key"][len(prefix):].startswith(("_", ".")) and o["Size"]]
                self._need("s3:ListBucket", s3_bucket(bucket), "table data", (("s3:prefix", prefix),))
                if objects:
                    yield list(partition["Values"]), [self._download(bucket, o) for o in objects]

    def _projected(self, key: str, value: str, params: dict[str, str]) -> bool:
        if params.get("projection.enabled") != "true":
            return True
        kind = params.get(f"projection.{key}.type")
        if kind == "date":
            start, end = params[f"projection.{key}.range"].split(",")
            end = str(self.today) if end == "NOW" else end
            return start <= value <= end
        if kind == "enum":
            return value in params[f"projection.{key}.values"].split(",")
        return True  # injected: any value the query names

    def _download(self, bucket: str, obj: dict[str, Any]) -> Path:
        """A local copy of an object at the same key (so key=value folders stay readable), refreshed
        when its ETag changes."""
        local = self._cache / bucket / obj["Key"]
        if self._etags.get(str(local)) != obj["ETag"]:
            local.parent.mkdir(parents=True, exist_ok=True)
            self.client("s3").download_file(bucket, obj["Key"], str(local))
            self._etags[str(local)] = obj["ETag"]
        self._need("s3:GetObject", s3_object(bucket, obj["Key"]), "table data")
        return local

    def _unload(self, result: Result, target: str, output: str) -> str:
        """Athena's UNLOAD: Parquet files under the (empty) target, and a manifest listing them."""
        bucket, prefix = target.removeprefix("s3://").split("/", 1)
        s3 = self.client("s3")
        if s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0):
            raise AthenaQueryError(f"HIVE_PATH_ALREADY_EXISTS: UNLOAD target {target} is not empty")
        files = []
        if result.table.num_rows:
            buffer = io.BytesIO()
            pq.write_table(result.table, buffer)
            files.append(f"s3://{bucket}/{prefix}{uuid.uuid4().hex}_0.parquet")
            s3.put_object(Bucket=bucket, Key=files[-1].split("/", 3)[3], Body=buffer.getvalue())
        out_bucket, out_prefix = output.removeprefix("s3://").split("/", 1)
        manifest_key = f"{out_prefix}{uuid.uuid4().hex}-manifest.csv"
        s3.put_object(Bucket=out_bucket, Key=manifest_key, Body="".join(f + "\n" for f in files).encode())
        return f"s3://{out_bucket}/{manifest_key}"

    # -- what Athena does as the caller -------------------------------------------------------

    def _catalog_needs(self, database: str, table: str) -> None:
        if self.recorder is not None:
            for op in ("GetDatabase", "GetTable"):
                params = {"Name": database} if op == "GetDatabase" else {"DatabaseName": database, "Name": table}
                for need in self.recorder.for_call("glue", op, params):
                    self.recorder.needs.append(Need(need.action, need.resource, why=f"Athena reads {table}"))

    def _need(self, action: str, resource: str, why: str, context: tuple[tuple[str, str], ...] = ()) -> None:
        if self.recorder is not None:
            self.recorder.needs.append(Need(action, resource, context, why=f"Athena: {why}"))
            bucket = resource.split(":::", 1)[1].split("/", 1)[0] if ":s3:::" in resource else None
            if bucket and action in ("s3:GetObject", "s3:PutObject"):
                kms = "kms:Decrypt" if action == "s3:GetObject" else "kms:GenerateDataKey"
                self.recorder.needs += self.recorder._kms(bucket, kms, f"Athena: {why}")


def _object_arn(uri: str) -> str:
    return f"arn:{PARTITION}:s3:::{uri.removeprefix('s3://')}"


def _duck_type(hive: str) -> str:
    return hive.upper() if hive.startswith("decimal") else _DUCK_TYPES[hive]


def _trino_type(duck: str) -> str:
    t = duck.upper()
    if t.startswith("DECIMAL"):
        return t.lower()
    return {"HUGEINT": "bigint", "UBIGINT": "bigint", "TINYINT": "tinyint"}.get(t, _ATHENA_TYPES.get(t, "varchar"))


def _queue_results(session: Any, account: str, result: Result | None) -> None:
    """Make moto's Athena answer the query being started with `result` (the header row first, as
    Athena does); an empty queue entry for UNLOAD and failed queries."""
    import requests

    if result is None:
        entry = {"rows": [], "column_info": []}
    else:
        names = result.table.column_names
        rows = [{"Data": [{"VarCharValue": c} for c in names]}]
        rows += [{"Data": [{} if row[c] is None else {"VarCharValue": str(row[c])} for c in names]}
                 for row in result.table.to_pylist()]
        info = [{"Name": c, "Label": c, "Type": result.types[c]} for c in names]
        entry = {"rows": rows, "column_info": info}
    response = requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results",
                             json={"account_id": account, "region": session.region_name, "results": [entry]})
    assert response.status_code == 201


__all__ = ["AccessDenied", "Account", "AthenaQueryError", "CallRecorder", "FakeAthena", "Need", "PolicyEvaluator", "Result",
           "Role", "Templates", "bucket_policies", "create_from_template", "kms_keys", "moto_account", "role", "s3_bucket",
           "s3_object"]
