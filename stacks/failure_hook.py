"""The ETL's failure hook: a Glue job that fails, times out or stops publishes to an SNS topic."""
from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.names import Names

FAILED_STATES = ("FAILED", "TIMEOUT", "ERROR", "STOPPED")


class FailureHook(Construct):
    """EventBridge rule on "Glue Job State Change" for the game's jobs -> `self.topic`.

    The monitoring stack (a later issue) subscribes the game's alert targets to `self.topic`.
    Only this rule may publish (the topic policy checks its ARN), and EventBridge gets exactly
    the two key permissions an encrypted topic needs.
    """

    def __init__(self, scope: Construct, id_: str, *, names: Names, job_names: list[str], key: kms.IKey) -> None:
        super().__init__(scope, id_)
        self.topic = sns.Topic(self, "Topic", topic_name=names.resource("etl-failures"), master_key=key,
                               enforce_ssl=True, display_name="LTV ETL failures")
        self.rule = events.CfnRule(
            self, "JobFailed", name=names.resource("etl-job-failed"), state="ENABLED",
            description="An LTV ETL job failed, timed out or was stopped",
            event_pattern={"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
                           "detail": {"jobName": job_names, "state": list(FAILED_STATES)}},
            targets=[events.CfnRule.TargetProperty(id="EtlFailureTopic", arn=self.topic.topic_arn)])
        events_service = iam.ServicePrincipal("events.amazonaws.com")
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="EtlFailureRulePublishes", principals=[events_service], actions=["sns:Publish"],
            resources=[self.topic.topic_arn], conditions={"ArnEquals": {"aws:SourceArn": self.rule.attr_arn}}))
        key.grant(events_service, "kms:GenerateDataKey", "kms:Decrypt")
