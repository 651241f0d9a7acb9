"""The jobs' failure hook: a Glue job that fails, times out or stops is mailed to the game's alerts."""
from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from constructs import Construct

from stacks.alerting import AlertsStack

FAILED_STATES = ("FAILED", "TIMEOUT", "ERROR", "STOPPED")
RULE = "etl-job-failed"


class FailureHook(Construct):
    """EventBridge rule on "Glue Job State Change" for the game's jobs -> the game's alert topic
    (`alerts.topic`, to which the config's `alerts.emails` are subscribed). The message is one
    readable line: the job, its state, Glue's error message (the job's exception: what is wrong
    and how to fix it) and a console link.
    """

    def __init__(self, scope: Construct, id_: str, *, job_names: Sequence[str], alerts: AlertsStack) -> None:
        super().__init__(scope, id_)
        region = Stack.of(self).region
        self.topic = alerts.topic
        console = (f"https://{region}.console.aws.amazon.com/gluestudio/home?region={region}"
                   "#/job/<job>/run/<run>")
        self.rule = alerts.forward(
            self, "JobFailed", rule=RULE, description="An LTV Glue job failed, timed out or was stopped",
            pattern={"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
                     "detail": {"jobName": list(job_names), "state": list(FAILED_STATES)}},
            paths={"job": "$.detail.jobName", "state": "$.detail.state", "run": "$.detail.jobRunId",
                   "message": "$.detail.message", "time": "$.time"},
            template=f"Glue job <job> <state> at <time>: <message> Run: {console}", target_id="EtlFailureTopic")
