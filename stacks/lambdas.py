"""The game's Lambda functions, built one way: the code bundle, an explicit role, an encrypted log
group, tracing, and failures kept in the game's dead-letter queue.

- Code: one directory asset built at synth from the locks (`stacks.packaging.lambda_bundle`: no
  docker), shared by every function; each names its handler module.
- Runtime: Python 3.11, the core's Python, so the shipped files are the ones the tests import and
  run (pydantic's compiled core is built for it); x86_64, like the bundled wheels.
- Role: no managed policy; `statements` spell out what the function does, plus its own log
  streams, X-Ray and the dead-letter queue. CDK adds nothing to it (`without_policy_updates`).
- Failures: asynchronous invocations (S3, EventBridge, SNS) are retried twice, then the event goes
  to the dead-letter queue (its retention from `alarms.failed_events_retention_days`), which alarms.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ltv import metric_names
from stacks.nag import acknowledge_wildcards, by_suffix
from stacks.storage import key_through

RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = Duration.hours(6)


class DeadLetters(Construct):
    """`self.queue`: where the game's functions put the events they failed to process."""

    def __init__(self, scope: Construct, id_: str, *, queue_name: str, key: kms.IKey, retention_days: int,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, id_)
        self.queue = sqs.Queue(self, "Queue", queue_name=queue_name, encryption=sqs.QueueEncryption.KMS,
                               encryption_master_key=key, enforce_ssl=True, removal_policy=removal_policy,
                               retention_period=Duration.days(retention_days),
                               visibility_timeout=Duration.minutes(5))
        Validations.of(self.queue).acknowledge(Acknowledgment(
            id="AwsSolutions-SQS3", reason="This queue is the dead-letter destination of the game's Lambdas and "
                                           "EventBridge targets; a dead-letter queue has no dead-letter queue of its own."))


STAR = "Resource::*"  # the finding of actions granted on every resource
TRACING_REASON = "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions"


class GameFunction(Construct):
    """One function of the game (`self.function`, `self.role`, `self.policy`, `self.log_group`)."""

    def __init__(self, scope: Construct, id_: str, *, function_name: str, description: str, handler: str,
                 code: lambda_.Code, service: str, game: str, key: kms.IKey, dead_letters: sqs.IQueue,
                 statements: Sequence[iam.PolicyStatement], environment: dict[str, str], log_retention_days: int,
                 removal_policy: RemovalPolicy, timeout: Duration = Duration.minutes(1), memory_mb: int = 256,
                 reserved_concurrency: int | None = None, wildcard_reasons: dict[str, str] | None = None) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.name = function_name
        self.log_group = logs.LogGroup(self, "Logs", log_group_name=f"/aws/lambda/{function_name}",
                                       encryption_key=key, removal_policy=removal_policy)
        self.log_group.node.default_child.retention_in_days = log_retention_days  # the config's, as for every group
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=description)
        self.policy = iam.Policy(self, "Policy", roles=[self.role], statements=[
            *statements,
            iam.PolicyStatement(sid="OwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[f"{self.log_group.log_group_arn}"]),
            iam.PolicyStatement(sid="Tracing", actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                                resources=["*"]),
            iam.PolicyStatement(sid="DeadLetters", actions=["sqs:SendMessage"], resources=[dead_letters.queue_arn]),
            key_through("DeadLettersKey", key.key_arn, "sqs", stack.region),
        ])
        self.function = lambda_.Function(
            self, "Function", function_name=function_name, description=description, handler=handler, code=code,
            runtime=lambda_.Runtime.PYTHON_3_11, architecture=lambda_.Architecture.X86_64,
            role=self.role.without_policy_updates(), log_group=self.log_group, tracing=lambda_.Tracing.ACTIVE,
            timeout=timeout, memory_size=memory_mb, reserved_concurrent_executions=reserved_concurrency,
            environment={**environment, "POWERTOOLS_SERVICE_NAME": service,
                         "POWERTOOLS_METRICS_NAMESPACE": metric_names.namespace(game)},
            on_failure=destinations.SqsDestination(dead_letters), retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE)
        self.function.node.add_dependency(self.policy)
        # CDK's Function adds an explicit DependsOn on the role its Role property already refers to
        self.function.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        self._acknowledge(wildcard_reasons or {})

    def _acknowledge(self, reasons: dict[str, str]) -> None:
        Validations.of(self.function).acknowledge(Acknowledgment(
            id="AwsSolutions-L1", reason="Python 3.11 is the core's Python: the bundle's compiled wheels (pydantic) "
                                         "and the tests that import and run the shipped files are for it; the runtime "
                                         "is supported and moves with the core."))
        # the function's own statements may add to the tracing's reason for Resource::*
        star = "; ".join(filter(None, [TRACING_REASON, reasons.get(STAR)])) + "."
        acknowledge_wildcards(self.policy, lambda f: star if f == STAR else by_suffix(reasons)(f),
                              f"the policy of {self.node.path}")


def bundle_code(bundle: Path) -> lambda_.Code:
    """The functions' shared code asset (one upload per content, whatever the number of functions)."""
    return lambda_.Code.from_asset(str(bundle))
