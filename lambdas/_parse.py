"""What the handlers share about events they cannot parse."""
from __future__ import annotations

from aws_lambda_powertools.utilities.parser import ValidationError


def problems(error: Exception) -> list[str]:
    """What is wrong with an event, for the log (its first few validation errors)."""
    if isinstance(error, ValidationError):
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in error.errors()[:5]]
    return [str(error).split(". Please")[0][:300]]
