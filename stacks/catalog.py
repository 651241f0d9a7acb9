"""The Glue Data Catalog of a game: one database, one table per raw log and derived dataset."""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ltv.athena import TableSpec, projection_start, table_specs
from ltv.config import GameConfig
from ltv.datasets import SPLITS
from stacks.names import Names

PARQUET = {
    "input_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "serde": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
}
# construct ids by role, so logical ids are the same for every game whatever its raw table names
_IDS = {"player_day": "PlayerDayTable", "player_summary": "PlayerSummaryTable", "features": "FeaturesTable",
        "labels": "LabelsTable", "datasets": "DatasetsTable", "predictions": "PredictionsTable",
        "latest_predictions": "LatestPredictionsTable", "targets": "TargetsTable"}


def projection(spec: TableSpec, location: str, start: str) -> dict[str, str]:
    """Partition projection parameters: Athena computes partitions, so no crawler, MSCK or partition
    registration is needed. Date keys run from `start` (the game's first day, see
    `ltv.athena.projection_start`): a `dt < cutoff` query plans one location per projected day.
    Tables whose writer registers each partition (the prediction runs) have no projection."""
    if spec.registered:
        return {}
    params = {"projection.enabled": "true"}
    for key, _ in spec.partition_keys:
        if key in ("dt", "cutoff"):
            params |= {f"projection.{key}.type": "date", f"projection.{key}.format": "yyyy-MM-dd",
                       f"projection.{key}.range": f"{start},NOW", f"projection.{key}.interval": "1",
                       f"projection.{key}.interval.unit": "DAYS"}
        elif key == "split":
            params |= {f"projection.{key}.type": "enum", f"projection.{key}.values": ",".join(SPLITS)}
        else:  # version, run, game: free-form ids, given in the query's WHERE clause
            params[f"projection.{key}.type"] = "injected"
    if spec.location_template:
        params["storage.location.template"] = f"{location}{spec.location_template}/"
    return params


class LakeCatalog(Construct):
    """Database `ltv_<game>` and its tables; schemas come from `ltv.athena.table_specs`, i.e. from the
    config and the SQL, so the catalog always matches what the jobs write."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, names: Names,
                 raw: s3.IBucket, curated: s3.IBucket) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.database_name = names.database
        db = glue.CfnDatabase
        # Lake Formation: the tables are governed by IAM alone (the jobs' role policy), whatever the
        # account's Lake Formation defaults; docs/deploy.md has the pre-check for accounts that use it
        self.database = db(self, "Database", catalog_id=stack.account, database_input=db.DatabaseInputProperty(
            name=names.database, description=f"Player LTV tables of {config.game.name}",
            create_table_default_permissions=[db.PrincipalPrivilegesProperty(
                permissions=["ALL"], principal=db.DataLakePrincipalProperty(
                    data_lake_principal_identifier="IAM_ALLOWED_PRINCIPALS"))]))
        self.specs = table_specs(config)
        self.projection_start = str(projection_start(config))
        raw_ids = dict(zip(config.logs.tables, ("RawEventsTable", "RawPlayersTable")))
        self.tables: dict[str, glue.CfnTable] = {}
        for name, spec in self.specs.items():
            bucket = raw if spec.bucket == "raw" else curated
            self.tables[name] = self._table(raw_ids.get(name) or _IDS[name], spec,
                                            f"s3://{bucket.bucket_name}/{name}/", stack.account)
        self.catalog_arn = stack.format_arn(service="glue", resource="catalog")
        self.database_arn = stack.format_arn(service="glue", resource="database", resource_name=names.database)
        self.table_arns = [stack.format_arn(service="glue", resource="table", resource_name=f"{names.database}/{t}")
                           for t in self.tables]

    def _table(self, id_: str, spec: TableSpec, location: str, account: str) -> glue.CfnTable:
        column = glue.CfnTable.ColumnProperty
        return glue.CfnTable(self, id_, catalog_id=account, database_name=self.database.ref,
                             table_input=glue.CfnTable.TableInputProperty(
            name=spec.name, table_type="EXTERNAL_TABLE",
            description=f"{spec.bucket} table {spec.name}, " + (
                f"partitioned by {', '.join(k for k, _ in spec.partition_keys)}" if spec.partition_keys else "unpartitioned"),
            parameters={"classification": "parquet", "EXTERNAL": "TRUE",
                        **(projection(spec, location, self.projection_start) if spec.partition_keys else {})},
            partition_keys=[column(name=k, type=t) for k, t in spec.partition_keys],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                columns=[column(name=c, type=t) for c, t in spec.columns], location=location,
                input_format=PARQUET["input_format"], output_format=PARQUET["output_format"],
                serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=PARQUET["serde"]))))
