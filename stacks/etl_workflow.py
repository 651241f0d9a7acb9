"""The Glue workflows that chain the ETL jobs on the schedules from the game config."""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from constructs import Construct

from ltv.config import GameConfig
from stacks.etl_jobs import EtlJobs
from stacks.names import Names

# the daily chain: each job starts only when the previous one SUCCEEDED, so a failure stops it
DAILY_CHAIN = ("validate", "player-day", "cutoffs")


class EtlWorkflows(Construct):
    """`ltv-<game>-daily-etl`: validate -> player-day -> cutoffs, started on `schedules.daily_etl`;
    `ltv-<game>-dataset`: the rolling dataset build, started by EventBridge events (its start
    trigger is an EVENT trigger): the rule `ltv-<game>-retrain-schedule` on `schedules.retrain`, and
    the monitoring stack's rule on the alarms of policies that ask for retraining. Its success
    starts the retraining pipeline (stacks/ml.py). `start_dataset_role` may deliver those events.

    Jobs of one run process the same day: the first stores it as the run property `date` (see
    glue_jobs/_common.py); a backfill starts the workflow with that property set.
    """

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, names: Names, jobs: EtlJobs) -> None:
        super().__init__(scope, id_)
        concurrency = config.stack.glue_max_concurrency
        self.daily = glue.CfnWorkflow(self, "Daily", name=names.resource("daily-etl"), max_concurrent_runs=concurrency,
                                      description="Daily ETL: validate raw logs, aggregate player_day, "
                                                  "build due features and labels")
        self.dataset = glue.CfnWorkflow(self, "Dataset", name=names.resource("dataset"), max_concurrent_runs=1,
                                        description="Rolling dataset version for the retraining pipeline")
        first, *rest = DAILY_CHAIN
        self.triggers = [self._scheduled("DailyStart", names.resource("daily-start"), self.daily,
                                         config.schedules.daily_etl, jobs.jobs[first])]
        for before, after in zip(DAILY_CHAIN, rest):
            trigger = glue.CfnTrigger(
                self, f"After-{before}", name=names.resource(f"after-{before}"), type="CONDITIONAL",
                workflow_name=self.daily.ref, start_on_creation=True,
                predicate=glue.CfnTrigger.PredicateProperty(logical="AND", conditions=[glue.CfnTrigger.ConditionProperty(
                    job_name=jobs.jobs[before].ref, logical_operator="EQUALS", state="SUCCEEDED")]),
                actions=[glue.CfnTrigger.ActionProperty(job_name=jobs.jobs[after].ref)])
            self.triggers.append(trigger)
        self.dataset_arn = Stack.of(self).format_arn(service="glue", resource="workflow",
                                                     resource_name=names.resource("dataset"))
        self.triggers.append(glue.CfnTrigger(
            self, "DatasetStart", name=names.resource("dataset-start"), type="EVENT", workflow_name=self.dataset.ref,
            event_batching_condition=glue.CfnTrigger.EventBatchingConditionProperty(batch_size=1),
            actions=[glue.CfnTrigger.ActionProperty(job_name=jobs.jobs["dataset"].ref)]))
        self.start_dataset_role = iam.Role(self, "StartDatasetRole", role_name=names.resource("start-dataset"),
                                           assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                                           description="Lets EventBridge start the dataset workflow (retraining)")
        iam.Policy(self, "StartDatasetPolicy", policy_name="start-dataset", roles=[self.start_dataset_role],
                   statements=[iam.PolicyStatement(sid="NotifyDatasetWorkflow", actions=["glue:NotifyEvent"],
                                                   resources=[self.dataset_arn])])
        self.retrain_schedule = events.CfnRule(
            self, "RetrainSchedule", name=names.resource("retrain-schedule"), state="ENABLED",
            description="Builds the rolling dataset (then retrains) on schedules.retrain",
            schedule_expression=config.schedules.retrain, targets=[self.dataset_target("ScheduledRetrain")])

    def dataset_target(self, id_: str) -> events.CfnRule.TargetProperty:
        """An EventBridge target that starts the dataset workflow (through its EVENT trigger)."""
        return events.CfnRule.TargetProperty(id=id_, arn=self.dataset_arn, role_arn=self.start_dataset_role.role_arn)

    def _scheduled(self, id_: str, name: str, workflow: glue.CfnWorkflow, schedule: str,
                   job: glue.CfnJob) -> glue.CfnTrigger:
        return glue.CfnTrigger(self, id_, name=name, type="SCHEDULED", schedule=schedule, start_on_creation=True,
                               workflow_name=workflow.ref, actions=[glue.CfnTrigger.ActionProperty(job_name=job.ref)])
