"""The Glue ETL jobs of a game, their role, security configuration, logs and code.

Job type: Glue 5.0 with Python 3.11 (`glueetl`, two G.1X workers, Flex execution: these jobs are
not urgent, and Flex runs them on spare capacity at a lower price). Glue Python-shell jobs run
Python 3.9 at most, and the core needs Python >= 3.11 (and pandas 2 / NumPy 2 / DuckDB), so it
cannot run there; see docs/deploy.md. The scripts only use the Spark job type as a Python 3.11
runtime: they do not start Spark and run their SQL on Athena.

What a job run gets, and how (docs/deploy.md, "How the code gets there"):
- its script: a file asset (`ScriptLocation`; Glue runs it whatever its S3 name);
- the core wheel (`ltv`, `glue_jobs`) as a .zip in `--extra-py-files`, i.e. on the Python path;
- the locked libraries as wheels with their real names (`--additional-python-modules`), installed
  with `--no-index`: no package index is needed or used at run time;
- the validated game config (`--config`), a file asset;
- logs in `<prefix>/output` and `<prefix>/error` (Glue 5.0's `--custom-logGroup-prefix`), two log
  groups this construct creates with the game's key and the configured retention.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aws_cdk import Acknowledgment, ArnFormat, Stack, Stage, Validations
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as assets
from constructs import Construct

from ltv.config import GameConfig, StackOptions
from stacks.data_lake import DataLakeStack
from stacks.nag import acknowledge_wildcards, by_suffix
from stacks.names import Names
from stacks.packaging import Wheelhouse, python_path_zip
from stacks.storage import removal_policy
from stacks.wheelhouse import GlueWheelhouse

GLUE_JOBS_DIR = Path(__file__).resolve().parent.parent / "glue_jobs"
GLUE_VERSION = "5.0"
WORKER_TYPE, WORKERS = "G.1X", 2
EXECUTION_CLASS = "FLEX"
TEMP_PREFIX = "glue/temp/"
LOG_STREAMS = ("output", "error")   # the log groups Glue 5.0 writes under --custom-logGroup-prefix


@dataclass(frozen=True)
class JobDef:
    """One ETL job: its name suffix, entry script in glue_jobs/, job-specific default arguments, and
    whether a failed run is retried (not when failing is the job's verdict on the data)."""

    name: str
    script: str
    description: str
    arguments: dict[str, str] = field(default_factory=dict)
    retry: bool = True
    max_concurrent_runs: int | None = None  # default: the config's stack.glue_max_concurrency


JOBS = (
    JobDef("validate", "validate.py", "Validates one day of raw logs with the checks the game config implies",
           retry=False),  # a failed check fails again on the same data: a retry only delays the alert
    JobDef("player-day", "daily.py", "Aggregates one raw day into its player_day partition"),
    JobDef("cutoffs", "cutoffs.py", "Builds the features and labels of the cutoffs the new day completes"),
    JobDef("dataset", "dataset.py", "Builds a dataset version (default: the rolling window for retraining)",
           {"--version": "rolling"}),
)
WORKFLOWS = ("daily-etl", "dataset")


class EtlJobs(Construct):
    """The jobs (`self.jobs[name]`), their least-privilege role and where their logs go.

    The jobs receive the game config as an S3 asset (`--config`): the validated config,
    serialised, so the job sees exactly what was synthesised, and a config change changes the
    asset hash, hence the job definition, hence the deployment.
    """

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, names: Names, lake: DataLakeStack,
                 core_wheel: Path, wheelhouse: Wheelhouse) -> None:
        super().__init__(scope, id_)
        self._stack = Stack.of(self)
        staging = Path(Stage.of(self).outdir) / "ltv-inputs" / config.game.id
        key, policy = lake.storage.key, removal_policy(config)
        code = {
            "config": assets.Asset(self, "Config", path=str(_config_file(config, staging))),
            "core": assets.Asset(self, "CorePackage", path=str(python_path_zip(core_wheel, staging))),
        }
        scripts = {job.name: assets.Asset(self, f"Script-{job.name}", path=str(GLUE_JOBS_DIR / job.script))
                   for job in JOBS}
        self.wheelhouse = GlueWheelhouse(self, "Wheelhouse", wheelhouse=wheelhouse, bucket=lake.storage.artifacts,
                                         bucket_name=names.bucket("artifacts"), key=key,
                                         log_retention_days=config.stack.log_retention_days, removal_policy=policy)
        self.role = iam.Role(self, "Role", role_name=names.resource("etl-jobs"),
                             assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                             description=f"Runs the LTV ETL jobs of {config.game.name}")
        self.security_configuration = _security_configuration(self, names, key.key_arn)
        self.log_group_prefix = names.glue_log_group_prefix
        self.log_groups = {}
        for stream in LOG_STREAMS:
            group = logs.CfnLogGroup(self, f"Logs-{stream}", log_group_name=f"{self.log_group_prefix}/{stream}",
                                     retention_in_days=config.stack.log_retention_days, kms_key_id=key.key_arn)
            group.apply_removal_policy(policy)
            self.log_groups[stream] = group
        common_args = {
            "--game": config.game.id,
            "--config": code["config"].s3_object_url,
            "--database": lake.catalog.database_name,
            "--workgroup": lake.workgroup.name,
            "--raw_uri": f"s3://{lake.storage.raw.bucket_name}",
            "--curated_uri": f"s3://{lake.storage.curated.bucket_name}",
            "--extra-py-files": code["core"].s3_object_url,
            "--additional-python-modules": ",".join(self.wheelhouse.uris),
            "--python-modules-installer-option": "--no-index",
            "--TempDir": f"s3://{lake.storage.artifacts.bucket_name}/{TEMP_PREFIX}",
            "--custom-logGroup-prefix": self.log_group_prefix,
            "--job-language": "python",
        }
        st = config.stack
        self.workflow_arns = [self._stack.format_arn(service="glue", resource="workflow",
                                                     resource_name=names.resource(w)) for w in WORKFLOWS]
        self.code, self.common_args = code, common_args
        self.policy = self._grant(lake, [*code.values(), *scripts.values()])
        self.jobs: dict[str, glue.CfnJob] = {}
        for job in JOBS:
            self.jobs[job.name] = self.job(self, job, names, self.role.role_arn, scripts[job.name].s3_object_url, st)
            # a first run has its permissions, its wheels and its log groups
            self.jobs[job.name].node.add_dependency(self.policy, self.wheelhouse.deployment, *self.log_groups.values())
        self.job_names = [names.resource(job.name) for job in JOBS]

    def job(self, scope: Construct, job: JobDef, names: Names, role_arn: str, script_url: str,
            st: StackOptions) -> glue.CfnJob:
        """One Glue job of the game with the shared settings: Glue 5.0, Flex, the security
        configuration, this construct's arguments (config, code, wheels, logs) and `job.arguments`."""
        return glue.CfnJob(
            scope, f"Job-{job.name}", name=names.resource(job.name), description=job.description, role=role_arn,
            glue_version=GLUE_VERSION, worker_type=WORKER_TYPE, number_of_workers=WORKERS,
            execution_class=EXECUTION_CLASS,
            command=glue.CfnJob.JobCommandProperty(name="glueetl", python_version="3", script_location=script_url),
            default_arguments={**self.common_args, **job.arguments}, timeout=st.glue_timeout_minutes,
            max_retries=st.glue_max_retries if job.retry else 0,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(
                max_concurrent_runs=job.max_concurrent_runs or st.glue_max_concurrency),
            security_configuration=self.security_configuration.ref)

    def _grant(self, lake: DataLakeStack, code: list[assets.Asset]) -> iam.Policy:
        """Exactly what the jobs do: read raw logs, read/write curated data, query through the
        workgroup (Athena reads the catalog and the data, and writes results, as the caller), read
        their own code and wheels, write their two log groups."""
        s = lake.storage
        statements = [
            iam.PolicyStatement(sid="ReadRawLogs", actions=["s3:GetObject"], resources=[s.objects_arn(s.raw)]),
            iam.PolicyStatement(sid="ReadWriteCurated", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                                                 "s3:AbortMultipartUpload"],
                                resources=[s.objects_arn(s.curated)]),
            *self.runtime_statements(lake, code, buckets=(s.raw, s.curated, s.athena_results, s.artifacts)),
            iam.PolicyStatement(sid="WorkflowRunDate", actions=["glue:GetWorkflowRunProperties",
                                                                 "glue:PutWorkflowRunProperties"],
                                resources=self.workflow_arns),
        ]
        policy = iam.Policy(self, "Policy", policy_name="etl-jobs", statements=statements, roles=[self.role])
        self.acknowledge(policy)
        return policy

    def runtime_statements(self, lake: DataLakeStack, code: list[assets.Asset],
                           buckets: tuple[s3.IBucket, ...]) -> list[iam.PolicyStatement]:
        """What any of the game's Glue jobs needs to run at all (this construct's and the monitoring
        job's): Athena through the workgroup and its results, Glue's temp dir, its code and wheels,
        the game's key, reading the catalog, and the two log groups."""
        st, s, cat = self._stack, lake.storage, lake.catalog
        log_groups = [st.format_arn(service="logs", resource="log-group", resource_name=f"{self.log_group_prefix}/{g}",
                                    arn_format=ArnFormat.COLON_RESOURCE_NAME) for g in LOG_STREAMS]
        return [
            iam.PolicyStatement(sid="AthenaResults", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                                              "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                                resources=[s.objects_arn(s.athena_results)]),
            iam.PolicyStatement(sid="GlueTempDir", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                                resources=[s.objects_arn(s.artifacts, TEMP_PREFIX)]),
            iam.PolicyStatement(sid="ListBuckets", actions=["s3:ListBucket", "s3:GetBucketLocation",
                                                             "s3:ListBucketMultipartUploads"],
                                resources=[b.bucket_arn for b in buckets]),
            iam.PolicyStatement(sid="ReadJobCode", actions=["s3:GetObject"],
                                resources=sorted({a.bucket.arn_for_objects(a.s3_object_key) for a in code})),
            iam.PolicyStatement(sid="ReadWheelhouse", actions=["s3:GetObject"], resources=[self.wheelhouse.objects_arn]),
            iam.PolicyStatement(sid="UseGameKey", actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
                                                            "kms:DescribeKey"], resources=[s.key.key_arn]),
            iam.PolicyStatement(sid="QueryThroughWorkgroup",
                                actions=["athena:StartQueryExecution", "athena:GetQueryExecution",
                                         "athena:GetQueryResults", "athena:StopQueryExecution", "athena:GetWorkGroup"],
                                resources=[lake.workgroup.arn]),
            # read-only: with partition projection nothing is registered in the catalog any more
            iam.PolicyStatement(sid="GameCatalog", actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartition",
                                                            "glue:GetPartitions", "glue:BatchGetPartition"],
                                resources=[cat.catalog_arn, cat.database_arn, *cat.table_arns]),
            iam.PolicyStatement(sid="JobLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[f"{g}:log-stream:*" for g in log_groups]),
            iam.PolicyStatement(sid="JobLogGroups", actions=["logs:CreateLogGroup", "logs:AssociateKmsKey"],
                                resources=log_groups),
        ]

    def acknowledge(self, policy: iam.Policy, extra: dict[str, str] | None = None) -> None:
        """The wildcards left are object keys under the game's buckets (data are many objects,
        written daily) and the log streams Glue names per run; every action is spelled out.
        `extra` maps further finding suffixes to their reasons (a job with more to do)."""
        def reason(finding: str) -> str | None:
            if (why := by_suffix(extra or {})(finding)) is not None:
                return why
            if ":logs:" in finding and finding.endswith(":log-stream:*"):
                return ("Glue names a log stream per job run and worker at run time; the streams are those of the "
                        "jobs' own two log groups only.")
            if ":s3:::ltv-" in finding and finding.endswith(f"/{TEMP_PREFIX}*"):
                return "Glue's temporary directory for the jobs: one prefix of the game's own artifacts bucket."
            if ":s3:::ltv-" in finding and "/glue/wheelhouse/" in finding:
                return ("The wheels of the jobs' locked dependencies: one lock-versioned prefix of the game's "
                        "artifacts bucket, read by Glue when it installs them.")
            if ":s3:::ltv-" in finding and finding.endswith("/*"):
                return ("Object-level access to one of the game's own buckets (raw logs, curated partitions, Athena "
                        "results): the jobs read or write many objects under it, so the resource is its objects.")
            return None

        acknowledge_wildcards(policy, reason, "the ETL job policy")


def acknowledge_shared_security(job: glue.CfnJob) -> None:
    """A job of another stack (monitoring, targets) runs with the ETL jobs' security configuration:
    cdk-nag does not follow that cross-stack reference, so its findings are acknowledged here."""
    for rule, what in (("AwsSolutions-GL1", "CloudWatch Logs"), ("AwsSolutions-GL3", "job bookmark")):
        Validations.of(job).acknowledge(Acknowledgment(id=rule, reason=(
            f"The job uses the ETL jobs' security configuration (ltv-<game>-etl-<hash>, {what} encryption with "
            "the game's key), a reference to the ETL stack that cdk-nag does not follow.")))


def _security_configuration(scope: Construct, names: Names, key_arn: str) -> glue.CfnSecurityConfiguration:
    """The jobs' encryption settings (S3, CloudWatch Logs, bookmarks: the game's key). A security
    configuration cannot be updated, only replaced, and a replacement needs a new name: the name
    ends with a hash of the settings, so changing them deploys as create-new-then-delete-old."""
    prop = glue.CfnSecurityConfiguration
    settings = prop.EncryptionConfigurationProperty(
        cloud_watch_encryption=prop.CloudWatchEncryptionProperty(cloud_watch_encryption_mode="SSE-KMS",
                                                                 kms_key_arn=key_arn),
        job_bookmarks_encryption=prop.JobBookmarksEncryptionProperty(job_bookmarks_encryption_mode="CSE-KMS",
                                                                     kms_key_arn=key_arn),
        s3_encryptions=[prop.S3EncryptionProperty(s3_encryption_mode="SSE-KMS", kms_key_arn=key_arn)])
    resolved = json.dumps(Stack.of(scope).resolve(settings), sort_keys=True)
    version = hashlib.sha256(resolved.encode()).hexdigest()[:8]
    return prop(scope, "SecurityConfiguration", name=names.resource(f"etl-{version}"), encryption_configuration=settings)


SECRETS = {"alerts": {"webhook_url"}}  # config fields that never leave the machine that synthesizes


def _config_file(config: GameConfig, staging: Path) -> Path:
    """The validated config as the YAML file the jobs load (defaults filled in, comments dropped),
    without `alerts.webhook_url`: a webhook URL is a secret (it lets anyone post), the jobs never
    call it, and an asset is readable by whoever reads the CDK assets bucket."""
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{config.game.id}.yaml"
    path.write_text(f"# {config.game.id}: validated game config, generated at synth time\n"
                    + yaml.safe_dump(config.model_dump(mode="json", exclude=SECRETS), sort_keys=True))
    return path
