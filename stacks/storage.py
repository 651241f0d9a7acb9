"""The game's customer-managed KMS key and its S3 buckets."""
from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ltv.config import GameConfig, RawWriter
from stacks.names import Names

ATHENA_RESULTS_DAYS = 30      # query results are re-creatable; nothing reads them after a job ends
ABORT_UPLOADS_DAYS = 7


def key_through(sid: str, key_arn: str, service: str, region: str,
                actions: tuple[str, ...] = ("kms:GenerateDataKey", "kms:Decrypt")) -> iam.PolicyStatement:
    """Use of the game's key only through `service` (kms:ViaService): the role encrypts and
    decrypts what that service stores for it, never data it could call KMS for directly."""
    return iam.PolicyStatement(sid=sid, actions=list(actions), resources=[key_arn],
                               conditions={"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}})


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
        self._only_the_game_key(self.raw)
        for index, writer in enumerate(config.require_aws().raw_writers):
            self._allow_raw_writer(index, writer)
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
        return self.object_arn(bucket, f"{prefix}*")

    def object_arn(self, bucket: s3.IBucket, key: str) -> str:
        """ARN of one object (or, with a trailing `*`, of a prefix's objects) of one of these buckets."""
        return f"arn:{Stack.of(self).partition}:s3:::{self._literal_names[bucket.node.id]}/{key}"

    def _allow_raw_writer(self, index: int, writer: RawWriter) -> None:
        """`aws.raw_writers[index]` may put objects under its prefixes of the raw bucket (and list
        them, to resume or check an export), and use the game's key for that through S3 only.

        Bucket keys are on, so S3 asks KMS with the bucket's ARN as encryption context: the key
        statement is limited to this bucket as well. Nothing else: no read, no delete, no other
        prefix. An `account` writer's administrators must still allow their own principals (IAM
        policy in that account: s3:PutObject on the prefixes, kms:GenerateDataKey/Decrypt on the key)."""
        stack = Stack.of(self)
        principal = iam.ArnPrincipal(writer.principal) if writer.principal else iam.AccountPrincipal(writer.account)
        bucket_arn = f"arn:{stack.partition}:s3:::{self._literal_names[self.raw.node.id]}"
        self.raw.add_to_resource_policy(iam.PolicyStatement(
            sid=f"RawWriter{index}Puts", principals=[principal],
            actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            resources=[f"{bucket_arn}/{prefix}*" for prefix in writer.prefixes]))
        self.raw.add_to_resource_policy(iam.PolicyStatement(
            sid=f"RawWriter{index}Lists", principals=[principal], actions=["s3:ListBucket", "s3:GetBucketLocation"],
            resources=[bucket_arn], conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in writer.prefixes]}}))
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid=f"RawWriter{index}EncryptsThroughS3", principals=[principal],
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=["*"],  # in a key policy, "*" means this key
            conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com",
                                         "kms:EncryptionContext:aws:s3:arn": bucket_arn}}))

    def _only_the_game_key(self, bucket: s3.Bucket) -> None:
        """Refuse objects a writer asks S3 to encrypt otherwise (another KMS key, or SSE-S3): the
        jobs could not read them. Writers that send no encryption header get the bucket default
        (`Null: false` limits each deny to requests that do send the header: a negated operator
        alone would also match requests without it)."""
        objects = f"arn:{Stack.of(self).partition}:s3:::{self._literal_names[bucket.node.id]}/*"
        for sid, header, allowed in (("DenyOtherEncryption", "s3:x-amz-server-side-encryption", "aws:kms"),
                                     ("DenyOtherKeys", "s3:x-amz-server-side-encryption-aws-kms-key-id",
                                      self.key.key_arn)):
            bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=sid, effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()], actions=["s3:PutObject"],
                resources=[objects], conditions={"Null": {header: "false"}, "StringNotEquals": {header: allowed}}))

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
