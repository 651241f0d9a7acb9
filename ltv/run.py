"""The daily loop, as the schedulers run it in AWS, replayed locally day by day.

On day D (at the `daily_etl` time) the raw logs of D-1 are validated and aggregated into
player_day; on scoring days (the `scoring` cron, on cutoff days) the population at D is scored
by the champion; monitoring measures what is new and applies the policies; retraining runs on
the `retrain` cron, when a policy asks for it (at most once per cooldown), or as soon as a game
without a champion has enough history. A failing day is recorded and the loop goes on, as the
scheduler would.

Interrupted and resumed, it ends as an uninterrupted run would (tests/test_crash.py kills it
anywhere). A journal (`monitoring/loop.json`) records each day's steps as they finish and each
decision before it is acted on, so the same command resumes where it stopped: a finished step
is not redone, an interrupted one is redone from its recorded decision (scoring into the same
run id, monitoring from the state it started from, a training only if the registry did not
commit it). ETL or scoring that failed is retried by the next run; a finished step is never
redone (the stage commands redo one on purpose). One loop per lake at a time (a lock), and what a
killed process left (`ltv.lake.sweep`) is cleared first.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ltv import datasets, etl, horizon, runs, schedule
from ltv.config import GameConfig, ModelBudget
from ltv.engine import DuckDBEngine
from ltv.errors import DataValidationError, LoopBusyError, LtvError
from ltv.lake import Lake, sweep, write_json_atomic, write_text_atomic
from ltv.monitoring import Monitor
from ltv.promotion import Focus
from ltv.registry import LocalRegistry
from ltv.scoring import predictions_root, score
from ltv.training import TrainingRun, finish_run, runs_dir, train_evaluate_register
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
        self.journal: dict[str, dict[str, Any]] = state.get("days", {})

    def _mark(self, day: dt.date, **steps: Any) -> dict[str, Any]:
        """Record finished steps or decisions of a day in the journal (atomically, at once)."""
        entry = self.journal.setdefault(str(day), {})
        entry.update(steps)
        write_json_atomic(self._state, {"last_retrain": str(self.last_retrain) if self.last_retrain else None,
                                        "days": self.journal})
        return entry

    def day(self, day: dt.date, summary: RunSummary) -> None:
        """Run the day's steps the journal does not record as done (all of them the first time)."""
        entry = self.journal.get(str(day), {})
        log = lambda kind, text: (summary.events.append(Event(str(day), kind, text)), self.say(f"{day} {text}"))  # noqa: E731
        raw_day = day - dt.timedelta(days=1)
        failures: list[str] = []
        if not entry.get("etl"):
            try:
                report = etl_validate(self, raw_day)
                etl.build_player_day(self.engine, self.config, raw_day, duplicate_free=duplicate_free(report))
                entry = self._mark(day, etl=True)
            except DataValidationError as e:
                failures = sorted({r.name for r in e.results if not r.passed and r.severity == "error"})
                log("validation", f"raw logs of {raw_day} failed validation ({', '.join(failures)}); player_day not built")
            except LtvError as e:
                log("error", f"daily ETL for {raw_day}: {e}")
        if not entry.get("scoring"):
            entry = self._mark(day, scoring=self._score(day, entry, log))
        if not entry.get("monitored"):
            entry = self._monitor(day, entry, failures, log)
        if not entry.get("retrained"):
            self._retrain(day, entry, summary, log)

    def _score(self, day: dt.date, entry: dict[str, Any], log: Callable[[str, str], None]) -> str | None:
        """The day's scoring step: what it did ("scored", "no champion", "not a scoring day"),
        None if it failed (retried by the next run). The run id is recorded before the run is
        written, so a resumed scoring completes that run rather than adding another."""
        if not schedule.is_scoring_day(self.config.cutoffs, self.config.schedules.scoring, day):
            return "not a scoring day"
        champion = self.registry.champion()
        if champion is None:
            return "no champion"
        run_id = entry.get("scoring_run") or self._mark(day, scoring_run=runs.new_run_id())["scoring_run"]
        try:
            r = score(self.config, self.lake, self.engine, self.registry, day, run_id=run_id, champion=champion)
        except LtvError as e:
            log("error", f"scoring {day}: {e}")
            return None
        log("scored", f"scored {r.rows:,} players with version {r.model_version} (run {r.run_id})")
        return "scored"

    def _monitor(self, day: dt.date, entry: dict[str, Any], failures: list[str],
                 log: Callable[[str, str], None]) -> dict[str, Any]:
        """The day's monitoring step. Monitoring keeps its own state and appends alerts, so an
        interrupted attempt is rolled back to the checkpoint recorded before it, then redone."""
        state, alerts = self.monitor.lake.monitoring_state, self.monitor.dir / "alerts.jsonl"
        checkpoint = entry.get("monitor_checkpoint")
        if checkpoint is None:
            checkpoint = {"state": state.read_text() if state.exists() else None,
                          "alerts_bytes": alerts.stat().st_size if alerts.exists() else 0}
            entry = self._mark(day, monitor_checkpoint=checkpoint)
        else:
            if checkpoint["state"] is None:
                state.unlink(missing_ok=True)
            else:
                write_text_atomic(state, checkpoint["state"])
            if alerts.exists():
                os.truncate(alerts, checkpoint["alerts_bytes"])
        report = self.monitor.run(day, failures)
        for alert in report.alerts:
            log("alert", f"[{alert.severity}] {alert.policy} {alert.state}: {alert.message}")
        return self._mark(day, monitored=True, retrain_asked=report.retrain, monitor_checkpoint=None)

    def _retrain_reason(self, day: dt.date, policy_fired: bool) -> str | None:
        since = None if self.last_retrain is None else (day - self.last_retrain).days
        if self.registry.champion() is None:
            return FIRST_MODEL if since is None or since >= 7 else None
        if schedule.matches(self.config.schedules.retrain, day):
            return "scheduled retrain"
        cooled = since is None or since >= RETRAIN_COOLDOWN_DAYS
        return "a monitoring policy asked for retraining" if policy_fired and cooled else None

    def _retrain(self, day: dt.date, entry: dict[str, Any], summary: RunSummary,
                 log: Callable[[str, str], None]) -> None:
        """The day's retraining step. The decision (reason, dataset, the registry's last version)
        is recorded before training; a resumed step keeps it and trains again only if the
        registry did not commit the interrupted training."""
        intent = entry.get("retrain")
        if intent is None:
            reason = self._retrain_reason(day, entry.get("retrain_asked", False))
            if reason is None:
                self._mark(day, retrained="not due")
                return
            try:
                config, spec = self._rolling(day)
                warm = datasets.check_history(self.engine, config, spec)
                etl.require_player_day(self.engine, config, warm, day, f"dataset {spec.name}")
            except LtvError as e:
                if reason != FIRST_MODEL:
                    log("error", f"retrain ({reason}) skipped: {e}")
                self._mark(day, retrained="skipped")
                return
            self.last_retrain = day  # kept across runs, so the cooldown holds when `ltv run` is called daily
            focus = self.monitor.focus()  # a label-decay incident awaiting this retrain: judge what decayed too
            intent = {"reason": reason, "dataset": spec.name, "after": max((v.version for v in self.registry.versions()),
                                                                          default=0),
                      "focus": None if focus is None else {"policy": focus.policy, "metric": focus.metric,
                                                           "cutoffs": list(focus.cutoffs)}}
            self._mark(day, retrain=intent)
        try:
            config, spec = self._rolling(day)
            if not self._committed(spec, intent, log):
                focus = intent.get("focus")
                run = train_evaluate_register(config, self.lake, self.engine, self.registry, spec,
                                              budget=self.budget, progress=lambda m: self.say(f"{day}   {m}"),
                                              focus=Focus(focus["policy"], focus["metric"], tuple(focus["cutoffs"]))
                                              if focus else None)
                summary.trainings.append(run)
                log("trained", f"{intent['reason']}: version {run.version.version} {run.version.status}: "
                               f"{run.decision.reason}")
        except LtvError as e:
            log("error", f"retrain ({intent['reason']}) failed: {e}")
            self._mark(day, retrained="failed")
            return
        self._mark(day, retrained="trained")

    def _rolling(self, day: dt.date) -> tuple[GameConfig, datasets.DatasetSpec]:
        """The day's rolling dataset and the config to build it with: ltv.horizon's rule over
        the logs before `day` (a shorter horizon when datasets.when_history_short says so)."""
        plan = horizon.plan(self.config, horizon.log_span(self.engine, self.config, before=day), f"rolling-{day}")
        return plan.config, plan.specs[0]

    def _committed(self, spec: datasets.DatasetSpec, intent: dict[str, Any],
                   log: Callable[[str, str], None]) -> bool:
        """Recover an interrupted training of `spec`: if the registry committed it, finish its run
        folder and return True; else remove its partial run folders and return False."""
        mine = [v for v in self.registry.versions()
                if v.version > intent["after"] and (v.lineage.get("dataset") or {}).get("name") == spec.name]
        base = runs_dir(self.lake)
        partial = sorted(p for p in base.glob(f"*-{spec.name}-*") if not (p / "model.txt").exists()) \
            if base.exists() else []
        reported = [p for p in partial if (p / "metrics.json").exists()][-1:] if mine else []
        for run in partial:
            if run not in reported:
                shutil.rmtree(run)
        if not mine:
            return False
        for run in reported:
            finish_run(run, mine[0], self.config, spec.name)
        log("trained", f"{intent['reason']}: version {mine[0].version} {mine[0].history[0]['status']} (registered "
                       "before the interruption)")
        return True

    def backfill(self, before: dt.date) -> int:
        """Build the missing (or stale) player_day partitions of every raw day before `before`
        in one range run (history the loop does not replay itself)."""
        raw = [dt.date.fromisoformat(d) for d in self.engine.partitions(self.config.logs.events.table)]
        have = self.engine.partitions("player_day")
        have = set(have) - set(etl.stale_partitions(self.engine, self.config, "player_day", have))
        missing = [d for d in raw if d < before - dt.timedelta(days=1) and str(d) not in have]
        if missing:
            etl.build_player_day(self.engine, self.config, missing[0], missing[-1],
                                 duplicate_free=duplicate_free_days(self.lake.validation_reports, self.engine))
        return len(missing)

    def run(self, start: dt.date, end: dt.date, progress: Callable[[int, int], None] | None = None) -> RunSummary:
        """Replay days [start, end] (history before `start` is backfilled first); days the
        journal records as done are skipped, an interrupted one is resumed."""
        if end < start:
            raise LtvError(f"--to {end} is before --from {start}")
        summary = RunSummary(self.config.game.id, str(start), str(end))
        with self._lock():
            for leftover in sweep(self.lake.base) + sweep(predictions_root(self.lake) / f"game={self.lake.game}"):
                self.say(f"cleared {leftover.name}, left by an interrupted run")
            if n := self.backfill(start):
                self.say(f"backfilled player_day for {n} day(s) before {start}")
            days = etl.day_range(start, end + dt.timedelta(days=1))
            for i, day in enumerate(days):
                self.day(day, summary)
                if progress:
                    progress(i + 1, len(days))
        return summary

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One loop per lake: an exclusive lock the OS releases when the process ends, however it ends."""
        path = self.lake.monitoring / "loop.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                raise LoopBusyError(f"another `ltv run` (pid {f.read().strip() or '?'}) is replaying {self.lake.base}; "
                                    "wait for it to finish (an interrupted one can be resumed by rerunning it)") from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            yield


def etl_validate(loop: DailyLoop, raw_day: dt.date) -> ValidationReport:
    """Validate a raw day as the scheduled job would, at ETL time on the next day."""
    return validate_day(loop.engine, loop.config, raw_day,
                        now=dt.datetime.combine(raw_day + dt.timedelta(days=1), ETL_HOUR),
                        report_dir=loop.lake.validation_reports)
