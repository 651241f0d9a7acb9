"""The daily loop, as the schedulers run it in AWS, replayed locally day by day.

On day D (at the `daily_etl` time) the raw logs of D-1 are validated and aggregated into
player_day; on scoring days (the `scoring` cron, on cutoff days) the population at D is scored
by the champion; monitoring measures what is new and applies the policies; retraining runs on
the `retrain` cron, when a policy asks for it (at most once per cooldown), or as soon as a game
without a champion has enough history. A failing day is recorded and the loop goes on, as the
scheduler would.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ltv import datasets, etl, schedule
from ltv.config import GameConfig, ModelBudget
from ltv.engine import DuckDBEngine
from ltv.errors import DataValidationError, EmptyWindowError, LtvError
from ltv.lake import Lake, write_json_atomic
from ltv.monitoring import Monitor
from ltv.registry import LocalRegistry
from ltv.scoring import score
from ltv.training import TrainingRun, train_evaluate_register
from ltv.validation import ValidationReport, duplicate_free, duplicate_free_days, validate_day

RETRAIN_COOLDOWN_DAYS = 28
FIRST_MODEL = "first model"  # the retrain reason while there is no champion
ETL_HOUR = dt.time(2, 0)


@dataclass
class Event:
    day: str
    kind: str       # validation | scored | alert | trained | error
    text: str


@dataclass
class RunSummary:
    game: str
    start: str
    end: str
    events: list[Event] = field(default_factory=list)
    trainings: list[TrainingRun] = field(default_factory=list)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


class DailyLoop:
    def __init__(self, config: GameConfig, lake: Lake, *, budget: ModelBudget | None = None,
                 say: Callable[[str], None] | None = None):
        self.config, self.lake, self.budget = config, lake, budget
        self.engine = DuckDBEngine(lake, config)
        self.registry = LocalRegistry(lake.registry, config.game.id)
        self.monitor = Monitor(config, lake, self.engine, self.registry)
        self.say = say or (lambda _msg: None)
        self._state = lake.monitoring / "loop.json"
        state = json.loads(self._state.read_text()) if self._state.exists() else {}
        self.last_retrain = dt.date.fromisoformat(state["last_retrain"]) if state.get("last_retrain") else None

    def day(self, day: dt.date, summary: RunSummary) -> None:
        log = lambda kind, text: (summary.events.append(Event(str(day), kind, text)), self.say(f"{day} {text}"))  # noqa: E731
        raw_day = day - dt.timedelta(days=1)
        failures: list[str] = []
        try:
            report = etl_validate(self, raw_day)
            etl.build_player_day(self.engine, self.config, raw_day, duplicate_free=duplicate_free(report))
        except DataValidationError as e:
            failures = sorted({r.name for r in e.results if not r.passed and r.severity == "error"})
            log("validation", f"raw logs of {raw_day} failed validation ({', '.join(failures)}); player_day not built")
        except LtvError as e:
            log("error", f"daily ETL for {raw_day}: {e}")
        if schedule.is_scoring_day(self.config.cutoffs, self.config.schedules.scoring, day):
            if self.registry.champion() is not None:
                try:
                    r = score(self.config, self.lake, self.engine, self.registry, day)
                    log("scored", f"scored {r.rows:,} players with version {r.model_version} (run {r.run_id})")
                except LtvError as e:
                    log("error", f"scoring {day}: {e}")
        report = self.monitor.run(day, failures)
        for alert in report.alerts:
            log("alert", f"[{alert.severity}] {alert.policy}: {alert.message}")
        reason = self._retrain_reason(day, report.retrain)
        if reason:
            self.retrain(day, reason, summary, log)

    def _retrain_reason(self, day: dt.date, policy_fired: bool) -> str | None:
        since = None if self.last_retrain is None else (day - self.last_retrain).days
        if self.registry.champion() is None:
            return FIRST_MODEL if since is None or since >= 7 else None
        if schedule.matches(self.config.schedules.retrain, day):
            return "scheduled retrain"
        cooled = since is None or since >= RETRAIN_COOLDOWN_DAYS
        return "a monitoring policy asked for retraining" if policy_fired and cooled else None

    def retrain(self, day: dt.date, reason: str, summary: RunSummary, log: Callable[[str, str], None]) -> None:
        try:
            spec = datasets.rolling_spec(self.config, day)
            warm = spec.train[0] - dt.timedelta(days=self.config.features.step_days * self.config.features.n_steps)
            first = min(self.engine.partitions(self.config.logs.events.table))
            if str(warm) < first:  # training cutoffs need their full feature history
                raise EmptyWindowError(f"the first training cutoff {spec.train[0]} has less than "
                                       f"{self.config.features.n_steps} history steps since the logs begin ({first})")
            etl.require_player_day(self.engine, self.config, warm, day, f"dataset {spec.name}")
        except LtvError as e:
            if reason != FIRST_MODEL:
                log("error", f"retrain ({reason}) skipped: {e}")
            return
        self.last_retrain = day  # kept across runs, so the cooldown holds when `ltv run` is called daily
        write_json_atomic(self._state, {"last_retrain": str(day)})
        try:
            run = train_evaluate_register(self.config, self.lake, self.engine, self.registry, spec, budget=self.budget,
                                          progress=lambda m: self.say(f"{day}   {m}"))
        except LtvError as e:
            log("error", f"retrain ({reason}) failed: {e}")
            return
        summary.trainings.append(run)
        log("trained", f"{reason}: version {run.version.version} {run.version.status}: {run.decision.reason}")

    def backfill(self, before: dt.date) -> int:
        """Build the missing player_day partitions of every raw day before `before` in one
        range run (history the loop does not replay itself)."""
        raw = [dt.date.fromisoformat(d) for d in self.engine.partitions(self.config.logs.events.table)]
        have = set(self.engine.partitions("player_day"))
        missing = [d for d in raw if d < before - dt.timedelta(days=1) and str(d) not in have]
        if missing:
            etl.build_player_day(self.engine, self.config, missing[0], missing[-1],
                                 duplicate_free=duplicate_free_days(self.lake.validation_reports, self.engine))
        return len(missing)

    def run(self, start: dt.date, end: dt.date, progress: Callable[[int, int], None] | None = None) -> RunSummary:
        """Replay days [start, end] (history before `start` is backfilled first)."""
        summary = RunSummary(self.config.game.id, str(start), str(end))
        if n := self.backfill(start):
            self.say(f"backfilled player_day for {n} day(s) before {start}")
        days = etl.day_range(start, end + dt.timedelta(days=1))
        for i, day in enumerate(days):
            self.day(day, summary)
            if progress:
                progress(i + 1, len(days))
        return summary


def etl_validate(loop: DailyLoop, raw_day: dt.date) -> ValidationReport:
    """Validate a raw day as the scheduled job would, at ETL time on the next day."""
    return validate_day(loop.engine, loop.config, raw_day,
                        now=dt.datetime.combine(raw_day + dt.timedelta(days=1), ETL_HOUR),
                        report_dir=loop.lake.validation_reports)
