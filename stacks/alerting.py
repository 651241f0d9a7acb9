"""The alerts stack of a game: its one SNS topic, and the webhook that forwards it to chat.

Every other stack publishes here: the ETL's job-failure rule, the monitoring job, the scoring
Lambdas, the alarms and the SageMaker rules (stacks/monitoring.py). Who may publish is explicit:
rules by name (`allow_rule`), the game's alarms by name prefix, roles by their own policies.

With `alarms.webhook`, a Lambda subscribed to the topic posts each notification to a chat
webhook. Its URL is the value of the secret `ltv/<game>/alerts-webhook`, which the stack creates
empty (a placeholder) and an operator fills once (docs/operations.md); it never appears in code,
config or templates.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, SecretValue, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from ltv.config import GameConfig
from stacks.alerts import AlertTopic
from stacks.data_lake import DataLakeStack
from stacks.lambdas import DeadLetters, GameFunction, bundle_code
from stacks.names import Names
from stacks.storage import key_through, removal_policy

PLACEHOLDER = "not-set: put the webhook URL here (aws secretsmanager put-secret-value)"
FAILED_EVENTS = "failed-events"   # the dead-letter queue ltv-<game>-failed-events


class AlertsStack(Stack):
    """`Ltv-<Game>-Alerts`: `alerts` (the topic), `dead_letters` (the Lambdas' failed events),
    `lambda_bundle` (the Lambdas' code directory; each stack makes its own asset of it) and, with
    `alarms.webhook`, `webhook` and `secret`."""

    def __init__(self, scope: Construct, id_: str, *, config: GameConfig, lake: DataLakeStack, lambda_bundle: Path,
                 **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        names, key, policy = Names.of(config), lake.storage.key, removal_policy(config)
        self.names = names
        self.alerts = AlertTopic(self, "Alerts", topic_name=names.resource("alerts"),
                                 display_name=f"LTV {config.game.name}", key=key, emails=config.alerts.emails)
        self.topic = self.alerts.topic
        self.alerts.allow_alarms("GameAlarmsPublish", self.format_arn(
            service="cloudwatch", resource="alarm", resource_name=f"{names.prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME), self.account)
        self.dead_letters = DeadLetters(self, "FailedEvents", queue_name=names.resource(FAILED_EVENTS), key=key,
                                        retention_days=config.alarms.failed_events_retention_days,
                                        removal_policy=policy).queue
        self.lambda_bundle = lambda_bundle
        self.secret = self.webhook = None
        if config.alarms.webhook:
            self._webhook(config, names, lake, policy)

    def forward(self, scope: Construct, id_: str, *, rule: str, description: str, pattern: dict[str, Any],
                paths: dict[str, str], template: str, target_id: str = "AlertTopic") -> events.CfnRule:
        """An EventBridge rule `ltv-<game>-<rule>` in `scope` whose events reach the topic as one
        readable line: `template` with each <name> filled from the event path `paths[name]`."""
        created = events.CfnRule(
            scope, id_, name=self.names.resource(rule), state="ENABLED", description=description,
            event_pattern=pattern, targets=[events.CfnRule.TargetProperty(
                id=target_id, arn=self.topic.topic_arn, input_transformer=events.CfnRule.InputTransformerProperty(
                    input_paths_map=paths, input_template=f'"{template}"'))])
        self.allow_rule(self.names.resource(rule))
        return created

    def allow_rule(self, rule_name: str) -> None:
        """Let the game's EventBridge rule of that name publish (its ARN spelled from the name, so
        the rule's stack needs no reference back to this one)."""
        sid = "".join(part.capitalize() for part in rule_name.removeprefix(self.names.prefix + "-").split("-"))
        self.alerts.allow_events_rule(f"{sid}RulePublishes", self.format_arn(
            service="events", resource="rule", resource_name=rule_name))

    def _webhook(self, config: GameConfig, names: Names, lake: DataLakeStack, policy: RemovalPolicy) -> None:
        key, secret_name = lake.storage.key, f"ltv/{config.game.id}/alerts-webhook"
        self.secret = secretsmanager.Secret(
            self, "WebhookUrl", secret_name=secret_name,
            description=f"The chat webhook URL that {config.game.name}'s alerts are posted to (set it after deploying)",
            secret_string_value=SecretValue.unsafe_plain_text(PLACEHOLDER), removal_policy=policy)
        # the game's key, set on the resource: `encryption_key=` would also add a key-policy statement
        # with wildcard actions (kms:GenerateDataKey*, kms:ReEncrypt*) for the whole account via
        # Secrets Manager; the key policy already delegates to IAM, and the one reader (the webhook
        # Lambda) gets kms:Decrypt through Secrets Manager below
        self.secret.node.default_child.kms_key_id = key.key_arn
        Validations.of(self.secret).acknowledge(Acknowledgment(
            id="AwsSolutions-SMG4", reason="A chat webhook URL is issued by the chat service and cannot be rotated "
                                           "by a Lambda; it is replaced by hand when the chat service reissues it."))
        self.webhook = GameFunction(
            self, "Webhook", function_name=names.resource("alerts-webhook"), handler="lambdas.webhook.handler",
            description=f"Posts {config.game.name}'s alerts to the chat webhook in the secret {secret_name}",
            code=bundle_code(self.lambda_bundle), service="alerts-webhook", game=config.game.id, key=key, dead_letters=self.dead_letters,
            environment={"LTV_WEBHOOK_SECRET": secret_name}, timeout=Duration.seconds(30),
            log_retention_days=config.stack.log_retention_days, removal_policy=policy, statements=[
                iam.PolicyStatement(sid="ReadWebhookUrl", actions=["secretsmanager:GetSecretValue"],
                                    resources=[self.secret.secret_arn]),
                key_through("DecryptWebhookUrl", key.key_arn, "secretsmanager", self.region, actions=("kms:Decrypt",)),
            ])
        self.topic.add_subscription(subscriptions.LambdaSubscription(self.webhook.function))
