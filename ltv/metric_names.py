"""The game's own CloudWatch metrics: one namespace per game, and the names and dimensions of every
metric the code publishes. The publishers (the monitoring job, the scoring Lambdas) and the alarms
the stacks create read them from here, so an alarm always watches what is published.

Standard library only: the Lambdas import it.
"""
from __future__ import annotations

# the monitoring job (ltv.monitoring.metric_data): one value per policy, dimensions Signal and Policy
POLICY_VALUE = "PolicyValue"
MISSED_SCORING_RUNS = "MissedScoringRuns"        # dimension: none
# the Lambdas (Powertools Metrics adds the dimension service=<function's service>)
SCORING_SERVICE = "scoring"                      # lambdas/score.py
PUBLISH_SERVICE = "scoring-publish"              # lambdas/publish.py
NO_APPROVED_PACKAGE = "NoApprovedPackage"
TRANSFORM_JOBS_STARTED = "TransformJobsStarted"
REPEATED_EVENTS = "RepeatedEvents"
IGNORED_OBJECTS = "IgnoredObjects"
MALFORMED_EVENTS = "MalformedEvents"
RUNS_PUBLISHED = "RunsPublished"
TRANSFORM_JOBS_FAILED = "TransformJobsFailed"


def namespace(game: str) -> str:
    """The CloudWatch namespace of a game's metrics."""
    return f"LTV/{game}"
