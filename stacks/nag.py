"""cdk-nag helpers: acknowledge each wildcard finding of a policy individually, with its reason."""
from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam


def acknowledge_wildcards(policy: iam.Policy, reason: Callable[[str], str | None], what: str) -> None:
    """Acknowledge each wildcard finding of `policy` with `reason(finding)`; a finding without a
    reason (None) fails the synthesis: a new wildcard needs its own reason."""
    for finding in wildcard_findings(Stack.of(policy), policy):
        why = reason(finding)
        if why is None:
            raise ValueError(f"unexpected wildcard in {what}: {finding}")
        Validations.of(policy).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=why))


def by_suffix(reasons: dict[str, str]) -> Callable[[str], str | None]:
    """A `reason` for `acknowledge_wildcards`: the reason of the first suffix the finding ends with."""
    return lambda finding: next((why for end, why in reasons.items() if finding.endswith(end)), None)


def wildcard_findings(stack: Stack, policy: iam.Policy) -> list[str]:
    """cdk-nag's finding ids (`Resource::...`) for the wildcard resources of a policy, rendered the
    way cdk-nag renders them, so each one is acknowledged individually with its reason."""
    document = stack.resolve(policy.document.to_json())
    found = []
    for statement in document["Statement"]:
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            text = _render(resource)
            if "*" in text:
                found.append(f"Resource::{text}")
    return sorted(set(found))


def _render(value: object) -> str:
    """An intrinsic as cdk-nag prints it: {"Fn::GetAtt": [X, "Arn"]} -> <X.Arn>, joins concatenated."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_render(p) for p in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::ImportValue" in value:  # another stack's export: its name
        return _render(value["Fn::ImportValue"])
    return str(value)
