"""The typed per-game configuration: the only per-game input of the system.

A game is one YAML file, `config/games/<game>.yaml`, loaded into `GameConfig`. Every other
module (SQL templates, simulator, models, registry rules, CDK stacks) reads its settings from
here, so onboarding a game never touches code. Unknown keys are errors, so a typo cannot
silently fall back to a default.
"""
from __future__ import annotations

import copy
import datetime as dt
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ltv.errors import ConfigError

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
# AWS EventBridge / Glue trigger cron: six fields, minutes hours day-of-month month day-of-week year
AWS_CRON = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Column = Annotated[str, Field(pattern=IDENT, description="a column name in the raw log table")]
PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Base: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


GAME_ID = r"^[a-z][a-z0-9-]{1,22}[a-z0-9]$"  # also what a path may carry as a game (no '/', no '..')


class GameInfo(Strict):
    id: str = Field(pattern=GAME_ID,
                    description="lowercase id used in every AWS resource name, e.g. 'galaxy-raiders'")
    name: str = Field(min_length=1, description="display name")

    @property
    def snake(self) -> str:
        """The id as an identifier (Glue databases and Athena tables do not allow '-')."""
        return self.id.replace("-", "_")


IAM_PRINCIPAL = r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$"


class RawWriter(Strict):
    """Who may write raw logs into the game's raw bucket (the log exporter), and under which prefixes.

    Give exactly one of `principal` (an IAM role or user ARN) or `account` (a 12-digit account id,
    whose administrators then delegate with their own IAM policies)."""

    principal: str | None = Field(None, pattern=IAM_PRINCIPAL,
                                  description="IAM role or user ARN, e.g. arn:aws:iam::333333333333:role/log-export")
    account: str | None = Field(None, pattern=r"^\d{12}$", description="an AWS account id (12 digits)")
    prefixes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.=/-]*/$")]] = Field(
        min_length=1, description="key prefixes it may write, each a raw table's folder or below and ending "
                                  "in '/', e.g. events/ (see logs.events.table)")

    @model_validator(mode="after")
    def _one_principal(self) -> RawWriter:
        if (self.principal is None) == (self.account is None):
            raise ValueError("give exactly one of `principal` (an IAM role/user ARN) or `account` (12 digits), "
                             f"got {'both' if self.principal else 'neither'}")
        return self


class AwsSettings(Strict):
    account: str = Field(pattern=r"^\d{12}$", description="the game's AWS account id (12 digits)")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$", description="e.g. eu-west-1")
    raw_writers: list[RawWriter] = Field(
        default_factory=list, description="principals or accounts allowed to write raw logs into the raw bucket "
                                          "(prefix-scoped bucket policy + use of the game's key through S3 only)")
    logs_start: dt.date | None = Field(
        None, description="first UTC day of raw logs in the raw bucket: Athena's partition projection enumerates "
                          "days from here, and the jobs refuse earlier days. Default: datasets.first_start minus "
                          "the feature history (features.n_steps x step_days)")


TimeType = Literal["timestamp", "date"]


class EventColumns(Strict):
    """The raw events' columns. Only player id, event time and revenue are required: a log of
    purchases alone (one row per order, no event type) is a complete mapping."""

    player_id: Column
    event_time: Column = Field(description="event timestamp (UTC)")
    event_type: Column | None = Field(
        None, description="event type column; omit it when every row is a purchase (a purchase-only log)")
    revenue: Column = Field(description="purchase amount; in `revenue.base_currency` unless `currency` is set")
    currency: Column | None = Field(None, description="ISO currency column; amounts are converted with revenue.fx_rates")
    event_id: Column | None = Field(
        None, description="unique event/order id: rows with the same id are one event (see `deduplicate`)")
    level: Column | None = Field(None, description="player level; omit it if the log has none (no level features)")
    session_length: Column | None = Field(
        None, description="session length on session events; omit it if the log has none (no play-time features)")


class EventTypes(Strict):
    """Which raw event types mean what. `purchase` is required when the log has an event type
    column; every other role is optional, and a role left empty generates no features (activity
    is then "any event")."""

    login: list[str] = Field(default_factory=list)
    session: list[str] = Field(default_factory=list, description="events that carry a session length")
    purchase: list[str] = Field(default_factory=list)
    level_up: list[str] = Field(default_factory=list)
    other: list[str] = Field(default_factory=list, description="allowed event types the features ignore")

    @model_validator(mode="after")
    def _disjoint(self) -> EventTypes:
        seen: dict[str, str] = {}
        for role in ("login", "session", "purchase", "level_up", "other"):
            for name in getattr(self, role):
                if name in seen:
                    raise ValueError(f"event type {name!r} is listed under both {seen[name]!r} and {role!r}")
                seen[name] = role
        return self

    def allowed(self) -> list[str]:
        return [*self.login, *self.session, *self.purchase, *self.level_up, *self.other]


class RevenueSettings(Strict):
    base_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    fx_rates: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="units of base currency per unit of each other currency")
    refunds_allowed: bool = Field(False, description="if false, negative amounts fail validation")
    max_amount: float = Field(1000.0, gt=0, description="a single purchase above this fails validation")


Deduplicate = Literal["by_id", "exact_rows", "none"]


class EventsTable(Strict):
    table: str = Field(pattern=IDENT)
    columns: EventColumns
    event_types: EventTypes = Field(default_factory=EventTypes)
    session_length_unit: Literal["seconds", "milliseconds", "minutes"] = "seconds"
    event_time_type: TimeType = Field("timestamp", description=(
        "type of the event time in the export's files. Locally either is read; the Athena catalog declares "
        "this type, and Athena cannot read a DATE column declared as a timestamp or the reverse"))
    revenue: RevenueSettings = Field(default_factory=RevenueSettings)
    deduplicate: Deduplicate | None = Field(None, description=(
        "which rows are one event: by_id = rows sharing columns.event_id; exact_rows = identical rows (every "
        "mapped column equal); none = every row is an event (two identical orders are two orders). Default: "
        "by_id when columns.event_id is set, else exact_rows. Validation reports what each rule would remove."))

    @model_validator(mode="after")
    def _roles(self) -> EventsTable:
        c, t = self.columns, self.event_types
        if c.event_type is None:
            named = [role for role in ("login", "session", "purchase", "level_up", "other") if getattr(t, role)]
            if named:
                raise ValueError(f"event_types.{named[0]} is set but columns.event_type is not: without an event "
                                 "type column every row is a purchase; map the column or remove event_types")
        elif not t.purchase:
            raise ValueError("event_types.purchase is empty: name the event types that are purchases (or omit "
                             "columns.event_type if every row is a purchase)")
        if t.session and c.session_length is None:
            raise ValueError("event_types.session is set but columns.session_length is not: map the column that "
                             "carries the session length, or remove event_types.session")
        if self.deduplicate == "by_id" and c.event_id is None:
            raise ValueError("deduplicate: by_id needs columns.event_id (the column that identifies an event)")
        return self

    @property
    def dedup(self) -> Deduplicate:
        """The deduplication rule in force (the documented default when not set)."""
        return self.deduplicate or ("by_id" if self.columns.event_id else "exact_rows")

    @property
    def purchase_only(self) -> bool:
        """True when every row is a purchase (no event type column)."""
        return self.columns.event_type is None


class PlayerColumns(Strict):
    player_id: Column
    install_time: Column = Field(description="install (or sign-up) time: a TIMESTAMP or a DATE (read as midnight)")


class PlayersTable(Strict):
    table: str = Field(pattern=IDENT)
    columns: PlayerColumns
    install_time_type: TimeType = Field("timestamp", description=(
        "type of the install time in the export's files (DATE is read as midnight). Locally either is read; "
        "the Athena catalog declares this type"))
    partitioned: bool = Field(True, description=(
        "true: daily `dt=` partitions like the events; false: one flat table (files directly in the table's "
        "folder), e.g. a full export of the players"))
    attributes: dict[Annotated[str, Field(pattern=IDENT)], Column] = Field(
        default_factory=dict,
        description="static categorical attributes: feature name -> column (country, platform, channel, ...)")


class LogsConfig(Strict):
    events: EventsTable
    players: PlayersTable | None = Field(
        None, description="optional: without it a player's install time is their first event")
    player_id_type: Literal["string", "integer"] = Field("string", description="type of the player id columns")

    @model_validator(mode="after")
    def _distinct_tables(self) -> LogsConfig:
        if self.players is not None and self.events.table == self.players.table:
            raise ValueError("logs.events.table and logs.players.table must differ")
        return self

    @property
    def tables(self) -> list[str]:
        """The raw tables the config maps (events first)."""
        return [self.events.table] + ([self.players.table] if self.players else [])


class FeatureSettings(Strict):
    step_days: PositiveInt = Field(7, le=31, description="length of one aggregated history step")
    n_steps: PositiveInt = Field(12, le=52, description="number of history steps before the cutoff")
    population_window_days: PositiveInt = Field(
        28, le=365, description="a player is scored at a cutoff if active in this many days before it")


class Horizons(Strict):
    ltv_days: PositiveInt = Field(30, le=365, description="LTV and churn label window after the cutoff")
    purchase_days: PositiveInt = Field(16, le=60, description="next-purchase-day classes 1..N (King used 16)")
    asked_ltv_days: PositiveInt | None = Field(None, le=365, description=(
        "set by ltv.horizon, not in a game's YAML: the horizon the game asked for when the labels measure a "
        "shorter ltv_days (datasets.when_history_short: train_shorter); predictions are extended to it"))

    @property
    def asked(self) -> int:
        """The horizon the business asked for (ltv_days unless training was shortened)."""
        return self.asked_ltv_days or self.ltv_days


class CutoffSchedule(Strict):
    weekday: Literal[WEEKDAYS] = "monday"  # type: ignore[valid-type]
    every_weeks: PositiveInt = Field(1, le=8)

    def is_cutoff(self, day: dt.date) -> bool:
        return (day.weekday() == WEEKDAYS.index(self.weekday)
                and ((day.toordinal() - 1) // 7) % self.every_weeks == 0)


class DatasetVersions(Strict):
    """Kakao's scheme: version i starts `start_shift_weeks * i` after `first_start` and trains on
    `train_weeks[i]` weeks of cutoffs, followed by out-of-time validation and test periods."""

    first_start: dt.date | Literal["auto"] = Field(description=(
        "first training cutoff of version 1, or auto: the latest start whose test labels (of every version) end "
        "inside the logs (ltv.horizon.plan; it moves as the logs grow)"))
    count: PositiveInt = 9
    start_shift_weeks: PositiveInt = 4
    train_weeks: list[PositiveInt] = Field(default_factory=lambda: [12, 14, 16, 18, 20, 22, 24, 26, 28])
    validation_weeks: PositiveInt = 2
    test_weeks: PositiveInt = 2
    rolling_train_weeks: PositiveInt = Field(8, description="training length of the retraining loop's datasets")
    when_history_short: Literal["error", "train_shorter"] = Field("error", description=(
        "when the logs cannot hold train + validation + embargoes + test at horizons.ltv_days (ltv.horizon): error, or "
        "train_shorter = train and evaluate at `training_ltv_days` (ranking carries over, absolute values do not)"))
    training_ltv_days: PositiveInt | None = Field(
        None, le=365, description="the shorter label horizon for train_shorter (default: the longest that fits)")

    @model_validator(mode="after")
    def _lengths(self) -> DatasetVersions:
        if len(self.train_weeks) not in (1, self.count):
            raise ValueError(f"train_weeks has {len(self.train_weeks)} entries; give 1 or `count` ({self.count})")
        return self

    def train_weeks_of(self, index: int) -> int:
        return self.train_weeks[0] if len(self.train_weeks) == 1 else self.train_weeks[index]


ModelFamily = Literal["GBM", "CAT", "XGB", "RF", "XT", "KNN", "LR"]


class ModelBudget(Strict):
    presets: str = Field("medium_quality", description="AutoGluon presets")
    time_limit_s: PositiveInt = Field(300, description="per model stage")
    families: list[ModelFamily] = Field(default_factory=lambda: ["GBM", "CAT", "XGB"], min_length=1)
    hyperparameters: dict[str, Any] | None = Field(
        None, description="explicit AutoGluon hyperparameters; overrides `families`")
    fit_weighted_ensemble: bool = True
    log_target: bool = Field(True, description="stage 2 learns log1p(value)")
    max_train_rows: PositiveInt | None = Field(None, description="subsample training rows above this")
    exclude_features: list[str] = Field(
        default_factory=lambda: ["cutoff_weekday", "cutoff_month", "cutoff_day_of_month"],
        description="feature columns kept in the datasets but not given to the models (calendar columns by "
                    "default: an out-of-time test period lies in months the training data never saw)")
    num_cpus: PositiveInt | None = None
    btyd_features: bool = Field(True, description=(
        "give the models BG/NBD + Gamma-Gamma expectations (E[purchases], P(alive), E[spend]) fitted at each "
        "training cutoff on the history before it (ltv.models.btyd)"))


class ExplanationSettings(Strict):
    """Per-player drivers in the predictions table (ltv.models.explain): which players get them.
    Exact contributions cost far more than predictions (TreeSHAP walks every path of every tree),
    so by default only a subset is explained (benchmarks/explain.py measures the ratio). Recorded in
    the model artifact when it is trained, so local scoring and the image's `serve` explain alike."""

    players: Literal["all", "subset"] = Field("subset", description=(
        "all: every scored player; subset: the top_share by predicted value plus a sample_share of the rest"))
    top_share: float = Field(0.03, gt=0, le=1, description=(
        "subset: players whose ltv_expected is at or above this top share of the validation period's predictions"))
    sample_share: float = Field(0.01, ge=0, le=1, description=(
        "subset: plus this share of the other players, picked by a hash of the player id (stable across runs)"))
    report_rows: PositiveInt = Field(2000, description=(
        "rows of the report's segment drivers and permutation importance (a seeded sample of the test and "
        "validation rows): bounds the report's cost"))


MetricName = Literal[
    "normalized_gini", "spearman", "spearman_payers", "minmax", "payer_f1", "payer_roc_auc", "payer_pr_auc",
    "top1_revenue_capture", "top10_revenue_capture", "decile_mape", "purchase_day_mae", "purchase_day_accuracy",
    "purchase_day_f1", "churn_f1", "total_ratio_error"]
# metrics where smaller is better; everything else is larger-is-better
LOWER_IS_BETTER = frozenset({"decile_mape", "purchase_day_mae", "total_ratio_error"})


class Bootstrap(Strict):
    """The paired bootstrap the promotion rule decides on: players resampled with replacement
    (all their rows together), both models scored on each resample."""

    resamples: int = Field(1000, ge=100, le=20000, description="bootstrap resamples")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="two-sided confidence of the intervals")
    seed: int = Field(0, ge=0, description="the resampling seed: a rerun takes the same decision")
    min_rows: PositiveInt = Field(200, description="fewest holdout rows a bootstrap may run on (BootstrapError below)")


class PromotionRule(Strict):
    primary_metric: MetricName = "normalized_gini"
    min_effect: float = Field(0.0, ge=0, description=(
        "the lower confidence bound of the primary metric's gain must exceed this (0: better with confidence)"))
    guard_metrics: dict[MetricName, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"payer_f1": 0.02, "purchase_day_mae": 0.25},
        description="metric -> largest tolerated loss (absolute), compared with the upper confidence bound of the loss")
    primary_tolerance: float = Field(0.01, ge=0, description=(
        "a retrain asked for by a label-decay policy may win on the decayed metric instead: then the primary "
        "metric is a guard with this tolerance"))
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    approval: Literal["auto", "manual"] = Field(
        "auto", description="auto: a winning challenger is Approved; manual: PendingManualApproval")


Signal = Literal["feature_drift", "prediction_drift", "label_decay", "missed_predictions", "validation_failure"]


class Policy(Strict):
    """A monitoring policy: when `signal` exceeds `threshold`, raise an alert (and maybe retrain)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    signal: Signal
    threshold: float = Field(ge=0, description=(
        "feature/prediction drift: PSI; label_decay: relative drop of the primary metric; "
        "missed_predictions: share of active players not scored; validation_failure: failed checks"))
    min_features: PositiveInt = Field(1, description="feature_drift: how many features must drift")
    metric: MetricName | None = Field(None, description="label_decay: the metric to watch (default: the promotion's primary)")
    severity: Literal["info", "warning", "critical"] = "warning"
    retrain: bool = False


def _default_policies() -> list[Policy]:
    return [
        Policy(name="feature_drift", signal="feature_drift", threshold=0.25, min_features=3, retrain=True),
        Policy(name="prediction_drift", signal="prediction_drift", threshold=0.25),
        Policy(name="label_decay", signal="label_decay", threshold=0.10, severity="critical", retrain=True),
        Policy(name="missed_predictions", signal="missed_predictions", threshold=0.01, severity="critical"),
        Policy(name="validation_failure", signal="validation_failure", threshold=0, severity="critical"),
    ]


class MonitoringSettings(Strict):
    policies: list[Policy] = Field(default_factory=_default_policies)
    psi_bins: PositiveInt = Field(10, le=50)
    escalate_after_rejections: PositiveInt = Field(2, description=(
        "an alert whose retrains were rejected this many times is escalated once (and asks for no more retrains); "
        "a rejected retrain trained only on cutoffs before the first decayed cohort is not counted"))

    @field_validator("policies")
    @classmethod
    def _unique(cls, v: list[Policy]) -> list[Policy]:
        names = [p.name for p in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"policy names must be unique; repeated: {sorted(dup)}")
        return v


class AlertTargets(Strict):
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(default_factory=list)
    webhook_url: str | None = Field(None, pattern=r"^https?://", description="JSON POST per alert (e.g. Slack)")


def _cron(v: str) -> str:
    m = AWS_CRON.match(v)
    if not m:
        raise ValueError("must be an AWS cron expression with six fields, e.g. 'cron(0 3 * * ? *)'")
    dom, dow = m.group(3), m.group(5)
    if (dom == "?") == (dow == "?"):
        raise ValueError("exactly one of day-of-month and day-of-week must be '?' (AWS cron rule)")
    return v


AwsCron = Annotated[str, Field(description="AWS cron: six fields, e.g. cron(0 3 * * ? *)")]


class Schedules(Strict):
    daily_etl: AwsCron = "cron(0 2 * * ? *)"
    scoring: AwsCron = "cron(0 4 ? * MON *)"
    monitoring: AwsCron = "cron(0 6 * * ? *)"
    retrain: AwsCron = "cron(0 5 ? * MON#1 *)"

    @field_validator("daily_etl", "scoring", "monitoring", "retrain")
    @classmethod
    def _valid(cls, v: str) -> str:
        return _cron(v)


class StackOptions(Strict):
    removal_policy: Literal["retain", "destroy"] = "retain"
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = 90
    raw_logs_expiration_days: PositiveInt | None = Field(None, description="None keeps raw logs forever")
    noncurrent_version_expiration_days: PositiveInt = 90
    athena_bytes_scanned_cutoff_gb: PositiveInt = 200
    glue_timeout_minutes: PositiveInt = 120
    glue_max_retries: int = Field(1, ge=0, le=10)
    glue_max_concurrency: PositiveInt = Field(1, le=10)
    tags: dict[str, str] = Field(default_factory=dict)


# SageMaker instance types: ml.<family>.<size>, e.g. ml.m5.2xlarge
PROCESSING_MAX_MINUTES = 7 * 24 * 60
InstanceType = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$", description="e.g. ml.m5.xlarge")]


class SageMakerJob(Strict):
    """Resources of one SageMaker job of the retraining pipeline (its defaults become pipeline parameters)."""

    instance_type: InstanceType = "ml.m5.xlarge"
    instance_count: int = Field(1, ge=1, le=1, description=(
        "1: the core trains and evaluates in-process on one instance (AutoGluon tabular); more instances would "
        "only repeat the same work"))
    volume_gb: int = Field(30, ge=1, le=16384, description="EBS volume attached to the instance")
    max_runtime_minutes: int = Field(120, ge=1, le=28 * 24 * 60, description=(
        "the job is stopped after this (training: at most 28 days, processing: 7)"))


class SageMakerSettings(Strict):
    """The game's SageMaker retraining pipeline (stacks/ml.py, pipelines/): instances and limits.

    The approval status a promoted model is registered with comes from `promotion.approval`."""

    training: SageMakerJob = Field(default_factory=lambda: SageMakerJob(instance_type="ml.m5.2xlarge"))
    evaluation: SageMakerJob = Field(default_factory=lambda: SageMakerJob(max_runtime_minutes=60))
    resolve_instance_type: InstanceType = Field(
        "ml.t3.medium", description="the small job that resolves the dataset version before training")
    transform_instance_types: list[InstanceType] = Field(
        default_factory=lambda: ["ml.m5.xlarge"], min_length=1,
        description="instance types a registered model may be batch-scored on (the first is the default)")

    @model_validator(mode="after")
    def _processing_limit(self) -> SageMakerSettings:
        if self.evaluation.max_runtime_minutes > PROCESSING_MAX_MINUTES:
            raise ValueError(f"evaluation.max_runtime_minutes must be at most {PROCESSING_MAX_MINUTES} (7 days, the "
                             "limit of a SageMaker processing job)")
        return self


# ----------------------------------------------------------------------------------------------
# AWS batch scoring and alarms (stacks/scoring.py, stacks/monitoring.py, docs/operations.md)


class ScoringSettings(Strict):
    """AWS batch scoring: the S3-triggered Lambda, the batch transform jobs it starts (on the first of
    `sagemaker.transform_instance_types`), and when a scoring day's predictions are due."""

    instance_count: int = Field(1, ge=1, le=100, description="instances of each transform job")
    max_payload_mb: int = Field(50, ge=1, le=100, description=(
        "MaxPayloadInMB of a transform request (SageMaker allows 100). Each request is one features part file, "
        "so the ETL writes a features partition in parts of at most half this size"))
    invocation_timeout_s: int = Field(900, ge=1, le=3600, description="how long the image may take for one request")
    deadline_hours: int = Field(12, ge=1, le=72, description=(
        "a scoring day's predictions must be published this many hours after the day starts (UTC); later, the "
        "missed-scoring-run alarm fires"))
    reserved_concurrency: Annotated[int, Field(ge=1, le=100)] | None = Field(2, description=(
        "concurrent executions reserved for (and capped at) the scoring Lambda; null reserves none (an account "
        "whose Lambda concurrency quota is 10 cannot reserve any)"))


# offers to the players the purchase-day model times (ltv/targets.py, `ltv targets`)
TargetPolicy = Literal["model", "random-day", "none"]


class TargetSettings(Strict):
    """The daily target lists: `ltv targets` (its defaults) and, in AWS, the list made after each
    published scoring run (stacks/scoring.py)."""

    policy: TargetPolicy = Field("model", description=(
        "model: the largest expected value at stake; random-day: the same budget on random days (the "
        "comparison); none: no offers"))
    budget: int = Field(1000, ge=0, description="offers per day at most")
    cooldown_days: PositiveInt = Field(7, le=60, description="days between two offers to one player")


class AlarmSettings(Strict):
    """Where alarms and alerts go besides `alerts.emails`, and how long failed events are kept."""

    webhook: bool = Field(False, description=(
        "also post every alert to a webhook (Slack, Teams...) through a Lambda; its URL is stored in the Secrets "
        "Manager secret ltv/<game>/alerts-webhook after deployment, never in code or config"))
    failed_events_retention_days: int = Field(14, ge=1, le=14, description=(
        "how long the dead-letter queue keeps events the Lambdas could not process (SQS allows 14 days)"))


Severity = Literal["error", "warn", "off"]
# the data checks ltv.validation runs (it defines what each does); named here so a config can be
# checked without importing them
CHECK_NAMES = (
    "schema", "null_ids", "event_types", "negative_revenue", "revenue_range", "unknown_currency",
    "negative_values", "duplicate_events", "outside_partition_day", "late_events", "future_events",
    "freshness", "volume",
)


class ValidationSettings(Strict):
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="per-check override, e.g. {duplicate_events: warn}")
    volume_tolerance: Fraction = Field(0.5, description="allowed relative deviation from the trailing average")
    volume_trailing_days: PositiveInt = 7
    max_clock_skew_minutes: int = Field(10, ge=0, description="events later than run time + skew are 'future'")
    sample_rows: PositiveInt = 5


PlayerType = Literal["nonpayer", "minnow", "dolphin", "whale"]


class Campaign(Strict):
    start: dt.date
    days: PositiveInt
    install_multiplier: float = Field(3.0, ge=1)
    payer_multiplier: float = Field(0.5, gt=0, description="campaign players are less likely to pay")


class Drift(Strict):
    """A content update: from `day` on, spending changes per player type."""

    day: dt.date
    description: str = "content update"
    purchase_rate_multiplier: dict[PlayerType, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    price_shift: dict[PlayerType, int] = Field(
        default_factory=dict, description="shift along the price-point ladder (+1 = one point dearer)")
    period_multiplier: dict[PlayerType, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    engagement_multiplier: float = Field(1.0, gt=0)
    nonpayer_conversion: Fraction = Field(
        0.0, description="share of non-payers (weighted by engagement) who start paying at the update")
    conversion_type: PlayerType = Field("minnow", description="how converted non-payers spend")
    payer_dropout: Fraction = Field(0.0, description=(
        "share of payers (weighted by disengagement: the less active more often) who stop paying at the update, "
        "as when an economy change removes what they bought"))
    dropout_hazard: Fraction = Field(0.0, description=(
        "from the update on, the daily probability that a payer of typical engagement for their type stops paying "
        "for good (divided by engagement ** engagement_elasticity): what history before the update cannot show"))
    conversion_hazard: Fraction = Field(0.0, description=(
        "from the update on, the daily probability that a non-payer of typical engagement starts paying as "
        "conversion_type (times engagement ** engagement_elasticity)"))
    engagement_elasticity: float = Field(1.0, ge=0, description=(
        "how strongly engagement (a player's activity / their type's typical activity) sets the daily hazards"))
    spend_elasticity: float = Field(0.0, ge=0, description=(
        "from the update on, each purchase's amount is multiplied by engagement ** spend_elasticity (engagement: "
        "a player's activity / the typical activity of their type at install), so engaged payers spend more per "
        "purchase and disengaged ones less; before the update engagement sets how often a player buys, not how "
        "much. 0: no change"))


class Sales(Strict):
    every_days: PositiveInt = 28
    duration_days: PositiveInt = 3
    purchase_boost: float = Field(1.8, ge=1)
    first_day: dt.date | None = None


class DirtyData(Strict):
    """Knobs for reliability tests: rates of defects injected into the raw logs."""

    duplicate_rate: Fraction = 0.0
    late_rate: Fraction = Field(0.0, description="events written into the next day's partition")
    out_of_order_rate: Fraction = 0.0
    null_id_rate: Fraction = 0.0
    future_rate: Fraction = 0.0


class BtydProcess(Strict):
    """A shop-like, purchase-only business generated by the BG/NBD + Gamma-Gamma process
    (`simulation.profile: btyd`): each customer arrives with a first purchase, then buys at
    Poisson rate λ·season(day) with λ ~ Gamma(r, alpha) per day, drops out after each repeat
    purchase with probability p ~ Beta(a, b), and spends Gamma(spend_p, ν) per order with
    ν ~ Gamma(spend_q, spend_gamma). Daily arrivals are `daily_installs`."""

    r: float = Field(0.9, gt=0, description="shape of the purchase rate distribution")
    alpha: float = Field(45.0, gt=0, description="rate (days) of the purchase rate distribution: mean λ = r/alpha")
    a: float = Field(0.9, gt=0)
    b: float = Field(5.0, gt=0)
    spend_p: float = Field(6.0, gt=0)
    spend_q: float = Field(4.0, gt=1)
    spend_gamma: float = Field(15.0, gt=0)
    season_peak_day: int = Field(335, ge=1, le=366, description="day of the year of the seasonal peak (335: 1 Dec)")
    season_amplitude: float = Field(1.5, ge=0, description="extra purchase rate at the peak (1.5: 2.5x)")
    season_width_days: PositiveInt = Field(12, description="standard deviation of the peak, days")


class RetailProcess(Strict):
    """A harder shop (`simulation.profile: retail`, ltv.simulate.retail): one-time, occasional,
    regular and heavy buyers with their own rhythms, regular (Erlang-k) gaps between orders,
    time-based churn, spend growing with tenure, the `btyd` settings' seasonality. Shares and
    shapes by published retail figures (benchmarks/README.md, ltv/simulate/retail.py)."""

    one_time_share: float = Field(0.6, ge=0, lt=1, description="first-time buyers who never order again")
    regular_share: float = Field(0.10, ge=0, lt=1, description="regular buyers (an order every ~30 days)")
    heavy_share: float = Field(0.03, ge=0, lt=1, description="heavy buyers (every ~10 days, the long spend tail)")
    tenure_spend_growth: float = Field(0.5, ge=0, description="spend per order grows by this share over the first year")
    occasional_shape: PositiveInt = Field(2, le=12, description=(
        "Erlang shape k of an occasional buyer's gaps between orders (1: Poisson, memoryless; higher: more regular; "
        "the gap's mean stays the segment's, its coefficient of variation is 1/sqrt(k))"))
    regular_shape: PositiveInt = Field(4, le=12, description="Erlang shape k of a regular buyer's gaps (as occasional_shape)")
    heavy_shape: PositiveInt = Field(4, le=12, description="Erlang shape k of a heavy buyer's gaps (as occasional_shape)")

    @model_validator(mode="after")
    def _shares(self) -> RetailProcess:
        if self.one_time_share + self.regular_share + self.heavy_share >= 1:
            raise ValueError("one_time_share + regular_share + heavy_share must be < 1 (the rest are occasional buyers)")
        return self


class SimulationSettings(Strict):
    profile: Literal["game", "btyd", "retail"] = Field(
        "game", description="game: the free-to-play game simulator; btyd: a purchase-only shop (see `btyd`); retail: "
                            "a harder purchase-only shop BTYD does not generate (see `retail`; seasonality from `btyd`)")
    btyd: BtydProcess = Field(default_factory=BtydProcess)
    retail: RetailProcess = Field(default_factory=RetailProcess)
    start: dt.date
    days: PositiveInt = Field(le=3650)
    daily_installs: PositiveInt = 500
    seed: int = 0
    player_mix: dict[PlayerType, Fraction] = Field(
        default_factory=lambda: {"minnow": 0.07, "dolphin": 0.03, "whale": 0.015})
    campaign: Campaign | None = None
    drift: Drift | None = None
    sales: Sales | None = Field(default_factory=Sales)
    dirty: DirtyData = Field(default_factory=DirtyData)
    truth_every_days: PositiveInt = Field(7, description="ground truth snapshots on cutoff days")

    @field_validator("player_mix")
    @classmethod
    def _mix(cls, v: dict[str, float]) -> dict[str, float]:
        if "nonpayer" in v:
            raise ValueError("give payer types only; nonpayer is the remainder")
        if sum(v.values()) >= 1:
            raise ValueError(f"payer shares sum to {sum(v.values()):.3f}; must be < 1")
        return v

    @property
    def end(self) -> dt.date:
        """First day after the simulation."""
        return self.start + dt.timedelta(days=self.days)


class GameConfig(Strict):
    game: GameInfo
    aws: AwsSettings | None = Field(None, description="required by `cdk synth/deploy` only; local use needs none")
    logs: LogsConfig
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    horizons: Horizons = Field(default_factory=Horizons)
    cutoffs: CutoffSchedule = Field(default_factory=CutoffSchedule)
    datasets: DatasetVersions
    model: ModelBudget = Field(default_factory=ModelBudget)
    explanations: ExplanationSettings = Field(default_factory=ExplanationSettings)
    promotion: PromotionRule = Field(default_factory=PromotionRule)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    alerts: AlertTargets = Field(default_factory=AlertTargets)
    schedules: Schedules = Field(default_factory=Schedules)
    stack: StackOptions = Field(default_factory=StackOptions)
    sagemaker: SageMakerSettings = Field(default_factory=SageMakerSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    targets: TargetSettings = Field(default_factory=TargetSettings)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    simulation: SimulationSettings | None = Field(None, description="only for simulated (demo/test) games")

    @model_validator(mode="after")
    def _cross_field(self) -> GameConfig:
        cur = self.logs.events.columns.currency
        if cur is None and self.logs.events.revenue.fx_rates:
            raise ValueError("logs.events.revenue.fx_rates is set but logs.events.columns.currency is not")
        unknown = set(self.validation.severity) - set(CHECK_NAMES)
        if unknown:
            raise ValueError(f"validation.severity names unknown checks {sorted(unknown)}; known: {list(CHECK_NAMES)}")
        if self.aws is not None and self.aws.logs_start is None and self.datasets.first_start == "auto":
            raise ValueError("aws.logs_start is needed with datasets.first_start: auto (Athena's partition "
                             "projection starts at the game's first logged day, which `auto` does not name)")
        tables = tuple(self.logs.tables)
        for writer in (self.aws.raw_writers if self.aws is not None else []):
            outside = [p for p in writer.prefixes if p.split("/", 1)[0] not in tables]
            if outside:
                raise ValueError(f"aws.raw_writers: prefixes {outside} are not under a raw table's folder; "
                                 f"start each with one of {[t + '/' for t in tables]}")
        return self

    def require_aws(self) -> AwsSettings:
        """The `aws` section, or a clear error for the commands that deploy to AWS."""
        if self.aws is None:
            raise ConfigError(f"game {self.game.id!r} has no `aws:` section (account, region): it is needed to "
                              "synthesize or deploy the game's AWS stacks; add e.g. `aws: {account: \"123456789012\", "
                              "region: eu-west-1}` to its config. Local commands work without it.")
        return self.aws

    def config_hash(self) -> str:
        """Stable hash of everything that defines the game's data and models."""
        skip = {k: True for k in ("alerts", "schedules", "stack", "sagemaker", "scoring", "alarms")}
        payload = self.model_dump(mode="json", exclude=skip | {"horizons": {"asked_ltv_days"}})  # ltv.horizon's, not the game's
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def data_hash(self) -> str:
        """Stable hash of what defines features and labels (log mapping, steps, horizons, cutoff
        schedule): part of a dataset's identity. Model budget, promotion, monitoring or the
        simulator's settings do not change what a dataset contains, so editing them does not
        make existing dataset versions "another definition"."""
        payload = self.model_dump(mode="json", include={"game": {"id"}, "logs": True, "features": True,
                                                        "horizons": {"ltv_days", "purchase_days"}, "cutoffs": True})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Loading


def config_dir() -> Path:
    """Where `--game NAME` looks: $LTV_CONFIG_DIR, else ./config/games."""
    return Path(os.environ.get("LTV_CONFIG_DIR", "config/games"))


def resolve(game_or_path: str | Path) -> Path:
    """A game id, or a path to a YAML file, to the file's path."""
    p = Path(game_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    return config_dir() / f"{game_or_path}.yaml"


def load(game_or_path: str | Path, overrides: dict[str, Any] | None = None) -> GameConfig:
    """Load and validate a game config, with `overrides` deep-merged into the file's content
    first (validated like the file); any problem raises `ConfigError` with a readable message."""
    path = resolve(game_or_path)
    if not path.exists():
        known = sorted(x.stem for x in config_dir().glob("*.yaml"))
        raise ConfigError(f"{path}: no such game config. Known games in {config_dir()}: {known or 'none'}. "
                          "Create the YAML file (see `ltv config schema`) or pass its path.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse(merge(raw, overrides or {}), source=str(path) + (" with overrides" if overrides else ""))


def load_all(paths: list[Path]) -> list[GameConfig]:
    """Load several game configs, each game at most once (see `one_file_per_game`)."""
    return one_file_per_game([(path, load(path)) for path in paths])


def one_file_per_game(loaded: list[tuple[Path, GameConfig]]) -> list[GameConfig]:
    """The loaded configs, each game at most once: two files with the same `game.id` would deploy
    into the same resource names and write the same lake, so they are a `ConfigError`."""
    seen: dict[str, Path] = {}
    for path, config in loaded:
        if config.game.id in seen:
            raise ConfigError(f"{seen[config.game.id]} and {path} both define game id {config.game.id!r}; a game is "
                              "one file: delete the copy or give it its own game.id")
        seen[config.game.id] = path
    return [config for _, config in loaded]


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overrides into a copy of base (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse(raw: dict[str, Any], source: str = "<config>") -> GameConfig:
    try:
        return GameConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {e.error_count()} problem(s)\n" + "\n".join(
            _explain(err) for err in e.errors())) from None


def _explain(err: dict[str, Any]) -> str:
    """One pydantic error as 'field path: bad value: what is allowed'."""
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent, key = err["loc"][:-1], str(err["loc"][-1])
        allowed = _allowed_keys(parent)
        hint = difflib.get_close_matches(key, allowed, n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        return f"  - {loc}: unknown key {key!r}{did} Allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"  - {loc}: required field is missing"
    value = err.get("input")
    shown = json.dumps(value, default=str)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    msg = err["msg"].removeprefix("Value error, ")
    field = _field_at(err["loc"])
    if field is not None and field.description and err["type"] in ("string_pattern_mismatch", "literal_error"):
        msg += f" ({field.description})"
    return f"  - {loc}: got {shown}: {msg}"


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo at a location, or None (best effort, for messages only)."""
    model: Any = GameConfig
    field = None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = _model_of(field.annotation)
    return field


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at a location."""
    field = _field_at(loc)
    model = GameConfig if not loc else (_model_of(field.annotation) if field is not None else None)
    return sorted(getattr(model, "model_fields", {}).keys())


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def json_schema() -> dict[str, Any]:
    """JSON Schema of a game config, for editors (yaml-language-server) and reviewers."""
    schema = GameConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Player LTV game config"
    return schema


def all_games() -> list[Path]:
    return sorted(config_dir().glob("*.yaml"))
