"""The game's Athena workgroup: engine v3, enforced encrypted result location, a per-query scan cap."""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ltv.config import GameConfig
from stacks.names import Names

ENGINE_VERSION = "Athena engine version 3"
GB = 1024 ** 3


class QueryWorkgroup(Construct):
    """Workgroup `ltv-<game>`: clients cannot override its result location or encryption."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, names: Names,
                 results: s3.IBucket, key: kms.IKey) -> None:
        super().__init__(scope, id_)
        cfg = athena.CfnWorkGroup
        self.name = names.workgroup
        self.workgroup = cfg(self, "WorkGroup", name=names.workgroup, state="ENABLED",
                             description=f"Queries of the {config.game.name} LTV jobs",
                             recursive_delete_option=config.stack.removal_policy == "destroy",
                             work_group_configuration=cfg.WorkGroupConfigurationProperty(
            enforce_work_group_configuration=True, publish_cloud_watch_metrics_enabled=True,
            bytes_scanned_cutoff_per_query=config.stack.athena_bytes_scanned_cutoff_gb * GB,
            engine_version=cfg.EngineVersionProperty(selected_engine_version=ENGINE_VERSION),
            result_configuration=cfg.ResultConfigurationProperty(
                output_location=f"s3://{results.bucket_name}/", expected_bucket_owner=Stack.of(self).account,
                encryption_configuration=cfg.EncryptionConfigurationProperty(encryption_option="SSE_KMS",
                                                                             kms_key=key.key_arn))))
        self.arn = Stack.of(self).format_arn(service="athena", resource="workgroup", resource_name=names.workgroup)
