"""cdk-nag helpers: acknowledge each wildcard finding of a policy individually, with its reason."""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam


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
