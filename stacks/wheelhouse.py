"""The Glue jobs' locked dependencies in S3 under their real wheel names.

pip installs a wheel only under a valid wheel file name, and a CDK file asset lands in S3 as
`<hash>.whl`, so the wheelhouse (stacks/packaging.py) is one directory asset that a
`BucketDeployment` unpacks into `s3://<artifacts>/glue/wheelhouse/<lock digest>/<wheel>`. The
prefix changes with the lock, so a deployment never rewrites the wheels a running job installs
from; old prefixes are left to the bucket's lifecycle.

The deployment's Lambda gets its own role with exactly what `aws s3 sync` of one zip into one
prefix needs (CDK's grants would add wildcard actions such as `s3:GetObject*`), and an encrypted
log group with the configured retention.
"""
from __future__ import annotations

from aws_cdk import Acknowledgment, AssetHashType, RemovalPolicy, Size, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as assets
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from stacks.nag import acknowledge_wildcards, by_suffix
from stacks.packaging import COMPLETE, Wheelhouse
from stacks.storage import key_through

PREFIX = "glue/wheelhouse/"


class GlueWheelhouse(Construct):
    """`self.uris`: the S3 URI of every wheel (for `--additional-python-modules`); `self.objects_arn`:
    what a reader needs; `self.deployment`: what the jobs must wait for."""

    def __init__(self, scope: Construct, id_: str, *, wheelhouse: Wheelhouse, bucket: s3.IBucket, bucket_name: str,
                 key: kms.IKey, log_retention_days: int, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.prefix = f"{PREFIX}{wheelhouse.digest}/"
        self.uris = [f"s3://{bucket_name}/{self.prefix}{wheel}" for wheel in wheelhouse.wheels]
        self.objects_arn = f"arn:{stack.partition}:s3:::{bucket_name}/{self.prefix}*"
        # the lock digest identifies the content: no need to hash 100+ MB of wheels on every synth
        files = assets.Asset(self, "Files", path=str(wheelhouse.path), asset_hash=wheelhouse.digest,
                             asset_hash_type=AssetHashType.CUSTOM, exclude=[COMPLETE])
        log_group = logs.LogGroup(self, "DeployLogs", encryption_key=key, removal_policy=removal_policy)
        log_group.node.default_child.retention_in_days = log_retention_days  # the config's, as for every log group
        role = iam.Role(self, "DeployRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Unpacks the Glue jobs' wheelhouse into the artifacts bucket")
        policy = iam.Policy(self, "DeployPolicy", roles=[role], statements=[
            iam.PolicyStatement(sid="ReadWheelhouseAsset", actions=["s3:GetObject"],
                                resources=[files.bucket.arn_for_objects(files.s3_object_key)]),
            iam.PolicyStatement(sid="ListWheelhousePrefix", actions=["s3:ListBucket"],
                                resources=[f"arn:{stack.partition}:s3:::{bucket_name}"],
                                conditions={"StringLike": {"s3:prefix": [f"{self.prefix}*"]}}),
            iam.PolicyStatement(sid="WriteWheelhouse", actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                                resources=[self.objects_arn]),
            key_through("EncryptWithGameKey", key.key_arn, "s3", stack.region),
            iam.PolicyStatement(sid="DeployLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[log_group.log_group_arn]),
        ])
        self.deployment = s3deploy.BucketDeployment(
            self, "Deployment", sources=[s3deploy.Source.bucket(files.bucket, files.s3_object_key)],
            destination_bucket=bucket, destination_key_prefix=self.prefix, prune=False, retain_on_delete=True,
            memory_limit=1024, ephemeral_storage_size=Size.mebibytes(1024), log_group=log_group,
            role=role.without_policy_updates())
        self.deployment.node.add_dependency(policy)
        self.role, self.policy = role, policy
        self._acknowledge(stack, policy)

    def _acknowledge(self, stack: Stack, policy: iam.Policy) -> None:
        acknowledge_wildcards(policy, by_suffix({f"/{self.prefix}*": (
            "The deployment writes one file per wheel of the lock under this lock-versioned prefix of the game's "
            "artifacts bucket; the file names come from the lock, not from the template.")}),
            "the wheelhouse deployment policy")
        for child in stack.node.children:  # the deployment's handler is a singleton at stack level
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                # CDK's Lambda construct adds an explicit DependsOn on the role its Role property refers to
                child.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
                Validations.of(child).acknowledge(Acknowledgment(
                    id="AwsSolutions-L1",
                    reason="CDK's BucketDeployment fixes its handler's runtime (Python 3.13, supported); it only "
                           "runs during deployments, to copy the wheel files, and is updated with aws-cdk-lib."))
