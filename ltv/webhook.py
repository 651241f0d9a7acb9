"""Posting to a chat webhook (Slack, Teams, ...): JSON with a `text` line, never raising.

Standard library only: the local monitoring and the AWS webhook Lambda (an SNS subscriber) both
post through it.
"""
from __future__ import annotations

import json
import urllib.request
from typing import Any


def payload(text: str, **extra: Any) -> bytes:
    """The body a webhook receives: Slack's `text` (what chat clients show), plus any details."""
    return json.dumps({"text": text, **extra}, default=str).encode()


def post_json(url: str, body: bytes, timeout: float = 5.0) -> str:
    """POST a JSON body; the outcome as text ("webhook 200", "webhook failed: ..."), never raises."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"webhook {response.status}"
    except Exception as e:  # noqa: BLE001 - an unreachable webhook must not stop the caller
        return f"webhook failed: {type(e).__name__}: {e}"


def text_of(subject: str | None, message: str) -> str:
    """One readable line from an SNS notification of the game's topic: a monitoring alert (JSON
    with `text`), a CloudWatch alarm (JSON with `AlarmName`), or plain text (job failures)."""
    try:
        body = json.loads(message)
    except ValueError:
        body = message
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return body["text"]
    if isinstance(body, dict) and "AlarmName" in body:
        return (f"{body.get('NewStateValue', '?')}: {body['AlarmName']}: {body.get('AlarmDescription') or ''} "
                f"({body.get('NewStateReason', '')})").replace("  ", " ")
    text = body if isinstance(body, str) else json.dumps(body)
    return f"{subject}: {text}" if subject and subject not in text else text
