"""`ltv` commands run in the test's process, ended as `ltv.cli.main` ends them
(tests/test_faults.py runs the real executable)."""
from __future__ import annotations

from typer.testing import CliRunner

from ltv.cli import app
from ltv.errors import LtvError


def ltv(*args: str) -> tuple[int, str]:
    """(exit code, everything the command said): a named error ends in its message and exit code
    (2), as `ltv.cli.main` prints it; any other exception is raised, failing the test."""
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, LtvError):
        return result.exception.exit_code, result.output + str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output
