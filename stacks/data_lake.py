"""The data stack of a game: KMS key and buckets, Glue catalog, Athena workgroup."""
from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from ltv.config import GameConfig
from stacks.catalog import LakeCatalog
from stacks.names import Names
from stacks.storage import LakeStorage
from stacks.workgroup import QueryWorkgroup


class DataLakeStack(Stack):
    """`Ltv-<Game>-DataLake`: where a game's data lives and how it is queried.

    Attributes other stacks take as typed props: `storage` (key, buckets), `catalog` (database,
    tables, ARNs) and `workgroup` (name, ARN).
    """

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        names = Names.of(config)
        self.storage = LakeStorage(self, "Storage", config=config, names=names)
        self.catalog = LakeCatalog(self, "Catalog", config=config, names=names, raw=self.storage.raw,
                                   curated=self.storage.curated)
        self.workgroup = QueryWorkgroup(self, "Query", config=config, names=names,
                                        results=self.storage.athena_results, key=self.storage.key)
