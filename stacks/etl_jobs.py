"""The Glue ETL jobs of a game, their role, security configuration, logs and code assets.

Job type: Glue 5.0 with Python 3.11 (`glueetl`, two G.1X workers). Glue Python-shell jobs run
Python 3.9 at most, and the core needs Python >= 3.11 (and pandas 2 / NumPy 2 / DuckDB), so it
cannot run there; see docs/deploy.md. The scripts only use the Spark job type as a Python 3.11
runtime: they do not start Spark and run their SQL on Athena.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aws_cdk import Acknowledgment, ArnFormat, Stack, Stage, Validations
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as assets
from constructs import Construct

from ltv.config import GameConfig
from stacks.data_lake import DataLakeStack
from stacks.names import Names
from stacks.packaging import job_requirements, python_path_zip
from stacks.storage import removal_policy

GLUE_JOBS_DIR = Path(__file__).resolve().parent.parent / "glue_jobs"
GLUE_VERSION = "5.0"
WORKER_TYPE, WORKERS = "G.1X", 2
TEMP_PREFIX = "glue/temp/"


@dataclass(frozen=True)
class JobDef:
    """One ETL job: its name suffix, entry script in glue_jobs/, and job-specific default arguments."""

    name: str
    script: str
    description: str
    arguments: dict[str, str] = field(default_factory=dict)


JOBS = (
    JobDef("validate", "validate.py", "Validates one day of raw logs with the checks the game config implies"),
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
                 core_wheel: Path) -> None:
        super().__init__(scope, id_)
        self._stack = Stack.of(self)
        staging = Path(Stage.of(self).outdir) / "ltv-inputs" / config.game.id
        code = {
            "config": assets.Asset(self, "Config", path=str(_config_file(config, staging))),
            "core": assets.Asset(self, "CorePackage", path=str(python_path_zip(core_wheel, staging))),
            "common": assets.Asset(self, "CommonCode", path=str(GLUE_JOBS_DIR / "_common.py")),
        }
        scripts = {job.name: assets.Asset(self, f"Script-{job.name}", path=str(GLUE_JOBS_DIR / job.script))
                   for job in JOBS}
        self.role = iam.Role(self, "Role", role_name=names.resource("etl-jobs"),
                             assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                             description=f"Runs the LTV ETL jobs of {config.game.name}")
        self.security_configuration = glue.CfnSecurityConfiguration(
            self, "SecurityConfiguration", name=names.resource("etl"),
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=lake.storage.key.key_arn),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=lake.storage.key.key_arn),
                s3_encryptions=[glue.CfnSecurityConfiguration.S3EncryptionProperty(
                    s3_encryption_mode="SSE-KMS", kms_key_arn=lake.storage.key.key_arn)]))
        self.log_group = logs.CfnLogGroup(self, "Logs", log_group_name=names.glue_log_group,
                                          retention_in_days=config.stack.log_retention_days,
                                          kms_key_id=lake.storage.key.key_arn)
        self.log_group.apply_removal_policy(removal_policy(config))
        common_args = {
            "--game": config.game.id,
            "--config": code["config"].s3_object_url,
            "--database": lake.catalog.database_name,
            "--workgroup": lake.workgroup.name,
            "--raw_uri": f"s3://{lake.storage.raw.bucket_name}",
            "--curated_uri": f"s3://{lake.storage.curated.bucket_name}",
            "--extra-py-files": f"{code['common'].s3_object_url},{code['core'].s3_object_url}",
            "--additional-python-modules": ",".join(job_requirements()),
            "--TempDir": f"s3://{lake.storage.artifacts.bucket_name}/{TEMP_PREFIX}",
            "--enable-continuous-cloudwatch-log": "true",
            "--continuous-log-logGroup": names.glue_log_group,
            "--job-language": "python",
        }
        st = config.stack
        self.workflow_arns = [self._stack.format_arn(service="glue", resource="workflow",
                                                     resource_name=names.resource(w)) for w in WORKFLOWS]
        self.policy = self._grant(lake, [*code.values(), *scripts.values()])
        self.jobs: dict[str, glue.CfnJob] = {}
        for job in JOBS:
            self.jobs[job.name] = glue.CfnJob(
                self, f"Job-{job.name}", name=names.resource(job.name), description=job.description,
                role=self.role.role_arn, glue_version=GLUE_VERSION, worker_type=WORKER_TYPE, number_of_workers=WORKERS,
                command=glue.CfnJob.JobCommandProperty(name="glueetl", python_version="3",
                                                       script_location=scripts[job.name].s3_object_url),
                default_arguments={**common_args, **job.arguments}, timeout=st.glue_timeout_minutes,
                max_retries=st.glue_max_retries, execution_property=glue.CfnJob.ExecutionPropertyProperty(
                    max_concurrent_runs=st.glue_max_concurrency),
                security_configuration=self.security_configuration.ref)
            self.jobs[job.name].node.add_dependency(self.policy)  # a first run has its permissions
        self.job_names = [names.resource(job.name) for job in JOBS]

    def _grant(self, lake: DataLakeStack, code: list[assets.Asset]) -> iam.Policy:
        """Exactly what the jobs do: read raw logs, read/write curated data, query through the
        workgroup, read/add partitions of the game's tables, read their own code."""
        st, s, cat = self._stack, lake.storage, lake.catalog
        bucket_read = ["s3:ListBucket", "s3:GetBucketLocation"]
        statements = [
            iam.PolicyStatement(sid="ReadRawLogs", actions=["s3:GetObject"], resources=[s.objects_arn(s.raw)]),
            iam.PolicyStatement(sid="ReadWriteCurated", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                                resources=[s.objects_arn(s.curated)]),
            iam.PolicyStatement(sid="AthenaResults", actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                                                              "s3:ListMultipartUploadParts"],
                                resources=[s.objects_arn(s.athena_results)]),
            iam.PolicyStatement(sid="GlueTempDir", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                                resources=[s.objects_arn(s.artifacts, TEMP_PREFIX)]),
            iam.PolicyStatement(sid="ListBuckets", actions=[*bucket_read, "s3:ListBucketMultipartUploads"],
                                resources=[b.bucket_arn for b in (s.raw, s.curated, s.athena_results, s.artifacts)]),
            iam.PolicyStatement(sid="ReadJobCode", actions=["s3:GetObject"],
                                resources=sorted({a.bucket.arn_for_objects(a.s3_object_key) for a in code})),
            iam.PolicyStatement(sid="UseGameKey", actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
                                                            "kms:DescribeKey"], resources=[s.key.key_arn]),
            iam.PolicyStatement(sid="QueryThroughWorkgroup",
                                actions=["athena:StartQueryExecution", "athena:GetQueryExecution",
                                         "athena:GetQueryResults", "athena:StopQueryExecution", "athena:GetWorkGroup"],
                                resources=[lake.workgroup.arn]),
            iam.PolicyStatement(sid="GameCatalog",
                                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions",
                                         "glue:BatchGetPartition", "glue:BatchCreatePartition"],
                                resources=[cat.catalog_arn, cat.database_arn, *cat.table_arns]),
            iam.PolicyStatement(sid="WorkflowRunDate", actions=["glue:GetWorkflowRunProperties",
                                                                 "glue:PutWorkflowRunProperties"],
                                resources=self.workflow_arns),
            iam.PolicyStatement(sid="JobLogs", actions=["logs:CreateLogGroup", "logs:CreateLogStream",
                                                        "logs:PutLogEvents", "logs:AssociateKmsKey"],
                                resources=[st.format_arn(service="logs", resource="log-group",
                                                         resource_name="/aws-glue/*",
                                                         arn_format=ArnFormat.COLON_RESOURCE_NAME)]),
        ]
        policy = iam.Policy(self, "Policy", policy_name="etl-jobs", statements=statements, roles=[self.role])
        self._acknowledge(policy)
        return policy

    def _acknowledge(self, policy: iam.Policy) -> None:
        """The wildcards left are object keys under the game's buckets (data are many objects,
        written daily) and the log groups/streams Glue names per run; every action is spelled out."""
        for finding in wildcard_findings(self._stack, policy):
            if ":logs:" in finding and finding.endswith(":log-group:/aws-glue/*"):
                why = ("Glue creates the jobs' log groups and per-run log streams under /aws-glue/ with names it "
                       "chooses at run time (continuous logging, security-configuration groups).")
            elif ":s3:::ltv-" in finding and finding.endswith(f"/{TEMP_PREFIX}*"):
                why = "Glue's temporary directory for the jobs: one prefix of the game's own artifacts bucket."
            elif ":s3:::ltv-" in finding and finding.endswith("/*"):
                why = ("Object-level access to one of the game's own buckets (raw logs, curated partitions, Athena "
                       "results): the jobs read or write many objects under it, so the resource is its objects.")
            else:
                raise ValueError(f"unexpected wildcard in the ETL job policy: {finding}")
            Validations.of(policy).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=why))


def wildcard_findings(stack: Stack, policy: iam.Policy) -> list[str]:
    """cdk-nag's finding ids (`Resource::...`) for the wildcard resources of a policy, rendered the
    way cdk-nag renders them, so each one is acknowledged individually with its reason."""
    document = stack.resolve(policy.document.to_json())
    found = []
    for statement in document["Statement"]:
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            text = _render(resource)
            if "*" in text:
                found.append(f"Resource::{text}")
    return sorted(set(found))


def _render(value: object) -> str:
    """An intrinsic as cdk-nag prints it: {"Fn::GetAtt": [X, "Arn"]} -> <X.Arn>, joins concatenated."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_render(p) for p in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::ImportValue" in value:  # another stack's export: its name
        return _render(value["Fn::ImportValue"])
    return str(value)


def _config_file(config: GameConfig, staging: Path) -> Path:
    """The validated config as the YAML file the jobs load (defaults filled in, comments dropped)."""
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{config.game.id}.yaml"
    path.write_text(f"# {config.game.id}: validated game config, generated at synth time\n"
                    + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
    return path
