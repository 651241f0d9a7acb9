"""The ETL stack of a game: Glue jobs over Athena, their workflows, and the failure hook."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from ltv.config import GameConfig
from stacks.alerting import AlertsStack
from stacks.data_lake import DataLakeStack
from stacks.etl_jobs import EtlJobs
from stacks.etl_workflow import EtlWorkflows
from stacks.failure_hook import FailureHook
from stacks.names import Names
from stacks.packaging import Wheelhouse


# Glue jobs of other stacks whose failures the hook reports too (stacks/monitoring.py, stacks/scoring.py)
OTHER_JOBS = ("monitor", "targets")


class EtlStack(Stack):
    """`Ltv-<Game>-Etl`: `jobs`, `workflows` and `failures` (failed Glue jobs -> the game's alert topic)."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, lake: DataLakeStack, core_wheel: Path,
                 wheelhouse: Wheelhouse, alerts: AlertsStack, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        names = Names.of(config)
        self.jobs = EtlJobs(self, "Jobs", config=config, names=names, lake=lake, core_wheel=core_wheel,
                            wheelhouse=wheelhouse)
        self.workflows = EtlWorkflows(self, "Workflows", config=config, names=names, jobs=self.jobs)
        self.failures = FailureHook(self, "Failures", alerts=alerts,
                                    job_names=[*self.jobs.job_names, *(names.resource(j) for j in OTHER_JOBS)])
