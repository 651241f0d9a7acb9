"""The game's customer-managed KMS key and its S3 buckets."""
from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ltv.config import GameConfig
from stacks.names import Names

ATHENA_RESULTS_DAYS = 30      # query results are re-creatable; nothing reads them after a job ends
ABORT_UPLOADS_DAYS = 7


def removal_policy(config: GameConfig) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if config.stack.removal_policy == "destroy" else RemovalPolicy.RETAIN


class LakeStorage(Construct):
    """KMS key + buckets: raw logs, curated datasets, artifacts, Athena results, access logs.

    Every data bucket is encrypted with the game's key, blocks public access, refuses non-TLS
    requests, logs access to the access-log bucket and expires what the config says. Buckets
    whose content must not be lost (raw, curated, artifacts) are versioned.
    """

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, names: Names) -> None:
        super().__init__(scope, id_)
        self._config, self._names = config, names
        self._literal_names: dict[str, str] = {}
        policy = removal_policy(config)
        self.key = kms.Key(self, "Key", alias=names.key_alias, enable_key_rotation=True, removal_policy=policy,
                           description=f"Encrypts every data store of {config.game.name} ({config.game.id})")
        self._allow_cloudwatch_logs()
        self.access_logs = s3.Bucket(
            self, "AccessLogs", bucket_name=names.bucket("access-logs"),
            # S3 server access logging can only deliver to a bucket encrypted with S3-managed keys
            encryption=s3.BucketEncryption.S3_MANAGED, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=policy,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs",
                                              expiration=Duration.days(config.stack.log_retention_days))])
        Validations.of(self.access_logs).acknowledge(Acknowledgment(
            id="AwsSolutions-S1",
            reason="This is the server-access-log bucket itself; logging its own access would recurse."))
        st = config.stack
        self.raw = self._bucket("Raw", "raw", versioned=True, expiration_days=st.raw_logs_expiration_days)
        self.curated = self._bucket("Curated", "curated", versioned=True)
        self.artifacts = self._bucket("Artifacts", "artifacts", versioned=True)
        self.athena_results = self._bucket("AthenaResults", "athena-results", versioned=False,
                                           expiration_days=ATHENA_RESULTS_DAYS)

    def _bucket(self, id_: str, purpose: str, *, versioned: bool, expiration_days: int | None = None) -> s3.Bucket:
        rules = [s3.LifecycleRule(id="abort-incomplete-uploads",
                                  abort_incomplete_multipart_upload_after=Duration.days(ABORT_UPLOADS_DAYS))]
        if versioned:
            rules.append(s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(
                self._config.stack.noncurrent_version_expiration_days)))
        if expiration_days:
            rules.append(s3.LifecycleRule(id="expire-objects", expiration=Duration.days(expiration_days)))
        bucket = s3.Bucket(
            self, id_, bucket_name=self._names.bucket(purpose), encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key, bucket_key_enabled=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, minimum_tls_version=1.2, object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned, server_access_logs_bucket=self.access_logs, server_access_logs_prefix=f"{purpose}/",
            lifecycle_rules=rules, removal_policy=removal_policy(self._config))
        self._literal_names[bucket.node.id] = self._names.bucket(purpose)
        return bucket

    def objects_arn(self, bucket: s3.IBucket, prefix: str = "") -> str:
        """ARN of the objects under a prefix of one of these buckets, spelled with the bucket's
        literal name: other stacks can use it in a policy without an export, and every reader of
        the policy (and cdk-nag) sees which bucket it is."""
        return f"arn:{Stack.of(self).partition}:s3:::{self._literal_names[bucket.node.id]}/{prefix}*"

    def _allow_cloudwatch_logs(self) -> None:
        """CloudWatch Logs encrypts the Glue jobs' log groups with this key (Glue security configuration)."""
        stack = Stack.of(self)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                     "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
            resources=["*"],  # in a key policy, "*" means this key
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"}}))
