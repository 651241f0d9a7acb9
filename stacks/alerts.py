"""An alert topic that reaches someone: encrypted SNS with the game's alert emails subscribed."""
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
        self._key, self._events_granted = key, False
        self.topic = sns.Topic(self, "Topic", topic_name=topic_name, master_key=key, enforce_ssl=True,
                               display_name=display_name)
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def allow_events_rule(self, sid: str, rule_arn: str) -> None:
        """Let one EventBridge rule publish (the topic policy checks its ARN), with the two key
        permissions an encrypted topic needs from EventBridge."""
        events_service = iam.ServicePrincipal("events.amazonaws.com")
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid=sid, principals=[events_service], actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"ArnEquals": {"aws:SourceArn": rule_arn}}))
        if not self._events_granted:
            self._key.grant(events_service, "kms:GenerateDataKey", "kms:Decrypt")
            self._events_granted = True
