"""The game's alert topic, which reaches someone: encrypted SNS with the game's alert emails subscribed.

One topic per game (`ltv-<game>-alerts`, in the `Ltv-<Game>-Alerts` stack) receives everything:
job and pipeline failures (EventBridge rules), CloudWatch alarms, monitoring alerts, failed
batch scoring and model approvals; an optional webhook Lambda forwards it to chat.
"""
from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class AlertTopic(Construct):
    """`self.topic`, encrypted with the game's key, TLS only, every address of `emails` subscribed
    (each confirms once, from the email SNS sends it). Who may publish is granted explicitly:
    `allow_events_rule(rule_arn)` for an EventBridge rule, nothing else by default."""

    def __init__(self, scope: Construct, id_: str, *, topic_name: str, display_name: str, key: kms.IKey,
                 emails: Sequence[str]) -> None:
        super().__init__(scope, id_)
        self._key, self._granted = key, set()
        self.topic = sns.Topic(self, "Topic", topic_name=topic_name, master_key=key, enforce_ssl=True,
                               display_name=display_name)
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def allow_events_rule(self, sid: str, rule_arn: str) -> None:
        """Let one EventBridge rule publish (the topic policy checks its ARN), with the two key
        permissions an encrypted topic needs from EventBridge."""
        self._allow_service(sid, "events.amazonaws.com", {"ArnEquals": {"aws:SourceArn": rule_arn}})

    def allow_alarms(self, sid: str, alarm_arn_pattern: str, account: str) -> None:
        """Let the CloudWatch alarms whose ARN matches the pattern (the game's, `alarm:ltv-<game>-*`)
        publish their state changes."""
        self._allow_service(sid, "cloudwatch.amazonaws.com", {"ArnLike": {"aws:SourceArn": alarm_arn_pattern},
                                                               "StringEquals": {"aws:SourceAccount": account}})

    def _allow_service(self, sid: str, service: str, conditions: dict) -> None:
        principal = iam.ServicePrincipal(service)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid=sid, principals=[principal], actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions=conditions))
        if service not in self._granted:
            self._key.grant(principal, "kms:GenerateDataKey", "kms:Decrypt")
            self._granted.add(service)
