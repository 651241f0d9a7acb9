"""The webhook subscriber of the game's alert topic: each SNS notification -> one chat message.

Contract: the SNS -> Lambda event (`Records[].Sns.Subject`, `.Message`), delivered
asynchronously (retried twice, then kept in the dead-letter queue). The webhook's URL is the
value of a Secrets Manager secret (its name in $LTV_WEBHOOK_SECRET), read through Powertools'
parameters (cached for five minutes), never from code or config. Until someone stores a URL
there, notifications are logged and dropped with a warning saying so. A webhook that does not
answer 2xx fails the invocation, so the platform retries it.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.exceptions import InvalidModelTypeError
from aws_lambda_powertools.utilities.parser.models import SnsModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from ltv import webhook
from ltv.errors import LtvError

logger, tracer = Logger(service="alerts-webhook"), Tracer()
SECRET = "LTV_WEBHOOK_SECRET"
CACHE_SECONDS = 300
SCHEMES = ("https://",)  # a webhook URL carries its credential: never sent in clear text


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        records = parse(event=event, model=SnsModel).Records
    except (ValidationError, InvalidModelTypeError):
        logger.error("malformed event: not an SNS notification, nothing posted", extra={"keys": sorted(event)[:10]})
        return {"posted": 0, "malformed": True}
    url = parameters.get_secret(os.environ[SECRET], max_age=CACHE_SECONDS).strip()
    if not url.startswith(SCHEMES):
        logger.warning(f"no webhook URL yet (or not an https URL): store it with aws secretsmanager "
                       f"put-secret-value --secret-id {os.environ[SECRET]} --secret-string https://hooks.example.com/...; "
                       f"{len(records)} notification(s) not posted")
        return {"posted": 0}
    for record in records:
        text = webhook.text_of(record.Sns.Subject, record.Sns.Message)
        result = webhook.post_json(url, webhook.payload(text))
        if not result.startswith("webhook 2"):
            raise LtvError(f"posting to the webhook failed ({result}); the notification is retried")
        logger.info("posted", extra={"result": result, "message_id": record.Sns.MessageId})
    return {"posted": len(records)}
