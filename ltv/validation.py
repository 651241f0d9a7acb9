"""Data validation of one day of raw logs, generated from the game config (King's platform).

Every check is defined once here, as SQL conditions over the game's own column names, and runs
on whichever engine holds the data. `validate_day` runs all of them, writes a JSON report and
raises `DataValidationError` when a check whose severity is `error` fails, so nothing
downstream runs on bad data. Severities are configurable per check (`validation.severity`).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ltv import sql
from ltv.config import GameConfig
from ltv.engine import Engine
from ltv.errors import DataValidationError

CHECK_NAMES = (
    "schema", "null_ids", "event_types", "negative_revenue", "revenue_range", "unknown_currency",
    "negative_values", "duplicate_events", "outside_partition_day", "late_events", "future_events",
    "freshness", "volume",
)
DEFAULT_SEVERITY = {name: "error" for name in CHECK_NAMES} | {
    "late_events": "warn", "volume": "warn", "duplicate_events": "warn"}


@dataclass
class CheckResult:
    name: str
    table: str
    partition: str
    severity: str          # error | warn
    passed: bool
    failing_rows: int = 0
    message: str = ""
    hint: str = ""
    sample: list[dict[str, Any]] = field(default_factory=list)

    def line(self, id_column: str | None = None) -> str:
        """The result as a log line. Of the sample rows it names only the players (`id_column`):
        log lines and alert mails carry no player-level data beyond ids; the rows themselves
        are in the report (`validate_day`'s `report_dir`)."""
        mark = "ok  " if self.passed else ("FAIL" if self.severity == "error" else "warn")
        text = f"[{mark}] {self.name} on {self.table} ({self.partition}): {self.message}"
        if not self.passed and self.sample:
            ids = sorted({str(r.get(id_column)) for r in self.sample}) if id_column else []
            text += f"\n         sample players: {', '.join(ids) or '-'} (the sample rows are in the day's validation report)"
        if not self.passed and self.hint:
            text += f"\n         fix: {self.hint}"
        return text


@dataclass
class ValidationReport:
    game: str
    day: str
    results: list[CheckResult]
    events_fingerprint: str | None = None  # the raw events partition as validated (see duplicate_free_days)

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity == "warn"]

    def to_json(self) -> dict[str, Any]:
        return {"game": self.game, "day": self.day, "passed": not self.errors,
                "events_fingerprint": self.events_fingerprint, "results": [asdict(r) for r in self.results]}


@dataclass(frozen=True)
class RowCheck:
    """A check whose offending rows satisfy `condition` (SQL over the raw columns)."""

    name: str
    table: str
    condition: str
    what: str    # "rows with ..." for the message
    hint: str
    show: str | None = None  # a column whose offending values the message names (never player-level data)


def row_checks(config: GameConfig, now: dt.datetime) -> list[RowCheck]:
    """The row-level checks this game's config implies."""
    ev, pl = config.logs.events, config.logs.players
    c, q = ev.columns, sql.quote
    purchase = f"{q(c.event_type)} IN {sql.in_list(ev.event_types.purchase)}"
    rev = sql.context(config)["revenue_expr"]
    skewed = now + dt.timedelta(minutes=config.validation.max_clock_skew_minutes)
    checks = [
        RowCheck("null_ids", ev.table, _missing_id(config, c.player_id), f"rows with a null or empty {c.player_id}",
                 "the exporter must set the player id on every event"),
        RowCheck("null_ids", pl.table, _missing_id(config, pl.columns.player_id),
                 f"rows with a null or empty {pl.columns.player_id}", "every player row needs its id"),
        RowCheck("event_types", ev.table,
                 f"{q(c.event_type)} IS NULL OR {q(c.event_type)} NOT IN {sql.in_list(ev.event_types.allowed())}",
                 f"rows with an event type not in the config ({', '.join(ev.event_types.allowed())})",
                 "add the new event type to logs.events.event_types (under `other` if features should ignore it)",
                 show=c.event_type),
        RowCheck("revenue_range", ev.table, f"{purchase} AND ({rev} IS NULL OR {rev} > {ev.revenue.max_amount})",
                 f"purchases with a missing amount or above max_amount {ev.revenue.max_amount} {ev.revenue.base_currency}",
                 "check the amount's unit (cents?) or raise logs.events.revenue.max_amount"),
        RowCheck("negative_values", ev.table, f"{q(c.session_length)} < 0 OR {q(c.level)} < 0",
                 f"rows with a negative {c.session_length} or {c.level}", "fix the exporter"),
        RowCheck("outside_partition_day", ev.table, f"CAST({q(c.event_time)} AS DATE) > CAST(dt AS DATE)",
                 "events timestamped after their partition's day", "events must be partitioned by their UTC day"),
        RowCheck("late_events", ev.table, f"CAST({q(c.event_time)} AS DATE) < CAST(dt AS DATE)",
                 "events from an earlier day (late arrivals; they are left out of player_day)",
                 "re-export the earlier day's partition to include them"),
        RowCheck("future_events", ev.table,
                 f"CAST({q(c.event_time)} AS TIMESTAMP) > TIMESTAMP {sql.literal(skewed.strftime('%Y-%m-%d %H:%M:%S'))}",
                 f"events later than the run time {now:%Y-%m-%d %H:%M} + {config.validation.max_clock_skew_minutes} min",
                 "a client clock is wrong or the timestamp is not UTC"),
    ]
    if not ev.revenue.refunds_allowed:
        checks.append(RowCheck("negative_revenue", ev.table, f"{purchase} AND {rev} < 0",
                               "purchases with a negative amount",
                               "set logs.events.revenue.refunds_allowed: true if refunds are logged as purchases"))
    if c.currency:
        known = sorted({ev.revenue.base_currency, *ev.revenue.fx_rates})
        checks.append(RowCheck("unknown_currency", ev.table,
                               f"{purchase} AND ({q(c.currency)} IS NULL OR {q(c.currency)} NOT IN {sql.in_list(known)})",
                               f"purchases in a currency without an fx rate (known: {', '.join(known)})",
                               "add the currency to logs.events.revenue.fx_rates", show=c.currency))
    return checks


def id_columns(config: GameConfig) -> dict[str, str]:
    """Raw table -> its player id column (what a log line may name of a sample row)."""
    return {config.logs.events.table: config.logs.events.columns.player_id,
            config.logs.players.table: config.logs.players.columns.player_id}


def _missing_id(config: GameConfig, column: str) -> str:
    """A player id that identifies nobody: NULL, or a blank string (which would aggregate as a player)."""
    if config.logs.player_id_type == "string":
        return f"{sql.quote(column)} IS NULL OR TRIM({sql.quote(column)}) = ''"
    return f"{sql.quote(column)} IS NULL"


def expected_types(config: GameConfig) -> dict[str, dict[str, set[str]]]:
    """Per table: column -> acceptable type families."""
    ev, pl = config.logs.events, config.logs.players
    ident = {"string"} if config.logs.player_id_type == "string" else {"integer"}
    numeric = {"integer", "float"}
    events = {ev.columns.player_id: ident, ev.columns.event_time: {"timestamp"}, ev.columns.event_type: {"string"},
              ev.columns.revenue: numeric, ev.columns.level: numeric, ev.columns.session_length: numeric}
    if ev.columns.currency:
        events[ev.columns.currency] = {"string"}
    players = {pl.columns.player_id: ident, pl.columns.install_time: {"timestamp"}}
    players |= {col: {"string", "integer", "float", "boolean"} for col in pl.attributes.values()}
    return {ev.table: events, pl.table: players}


def type_family(sql_type: str) -> str:
    t = sql_type.upper()
    if t.startswith(("VARCHAR", "STRING", "CHAR", "TEXT")):
        return "string"
    if t.startswith(("TIMESTAMP", "DATETIME")):
        return "timestamp"
    if t.startswith(("BIGINT", "INT", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT")):
        return "integer"
    if t.startswith(("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")):
        return "float"
    if t.startswith("BOOL"):
        return "boolean"
    return t.lower()


class Validator:
    """Runs the game's checks for one day against an engine."""

    def __init__(self, engine: Any, config: GameConfig, now: dt.datetime | None = None):
        self.engine, self.config = engine, config
        self.now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.severity = DEFAULT_SEVERITY | dict(config.validation.severity)

    def _result(self, name: str, table: str, day: str, passed: bool, **kw: Any) -> CheckResult:
        return CheckResult(name, table, f"dt={day}", self.severity[name], passed, **kw)

    def run(self, day: dt.date) -> ValidationReport:
        d = str(day)
        # taken before the checks: a partition rewritten while they run no longer matches
        events_fingerprint = self.engine.raw_partition_fingerprint(self.config.logs.events.table, d)
        results: list[CheckResult] = []
        present = []
        for table, types in expected_types(self.config).items():
            stats = self.engine.raw_partition_stats(table, d)
            if stats is None or stats[0] == 0:
                result = self._result("freshness", table, d, False, message="partition is missing or empty",
                                      hint="the day's export has not arrived; rerun once it has")
                if table == self.config.logs.players.table:  # a day may have no installs: only a warning
                    result.severity = "warn" if result.severity == "error" else result.severity
                results.append(result)
                continue
            results.append(self._result("freshness", table, d, True, message=f"{stats[0]:,} rows"))
            schema = self._schema(table, d, types)
            results.append(schema)
            if schema.passed:
                present.append(table)
        results += self._row_checks(d, present)
        if self.config.logs.events.table in present:
            results.append(self._duplicates(d))
            results.append(self._volume(d))
        return ValidationReport(self.config.game.id, d, [r for r in results if self.severity[r.name] != "off"],
                                events_fingerprint)

    def _schema(self, table: str, day: str, types: dict[str, set[str]]) -> CheckResult:
        actual = {name.lower(): type_family(t) for name, t in self.engine.raw_partition_columns(table, day).items()}
        problems = []
        for column, allowed in types.items():
            got = actual.get(column.lower())
            if got is None:
                problems.append(f"missing column {column!r}")
            elif got not in allowed:
                problems.append(f"{column!r} is {got}, expected {' or '.join(sorted(allowed))}")
        return self._result("schema", table, day, not problems,
                            message="; ".join(problems) or "all configured columns present with expected types",
                            hint="fix logs.*.columns in the game config, or the exporter's schema")

    def _row_checks(self, day: str, tables: list[str]) -> list[CheckResult]:
        checks = [c for c in row_checks(self.config, self.now) if c.table in tables and self.severity[c.name] != "off"]
        results = []
        for table in tables:
            mine = [c for c in checks if c.table == table]
            if not mine:
                continue
            counts = self.engine.query(
                "SELECT " + ", ".join(f"SUM(CASE WHEN {c.condition} THEN 1 ELSE 0 END) AS c{i}" for i, c in enumerate(mine))
                + f" FROM {table} WHERE dt = {sql.literal(day)}").iloc[0]
            for i, c in enumerate(mine):
                n = int(counts[f"c{i}"] or 0)
                sample = []
                if n:
                    rows = self.engine.query(sql.render("check", self.config, check=c.name, table=table, day=day,
                                                        condition=c.condition) + f" LIMIT {self.config.validation.sample_rows}")
                    sample = rows.drop(columns=["dt"], errors="ignore").to_dict("records")
                seen = sorted({str(r.get(c.show)) for r in sample}) if c.show else []
                message = f"{n:,} {c.what}" + (f"; found: {', '.join(seen)}" if seen else "") if n else "none"
                results.append(self._result(c.name, table, day, n == 0, failing_rows=n, message=message, hint=c.hint,
                                            sample=sample))
        return results

    def _duplicates(self, day: str) -> CheckResult:
        c, table = self.config.logs.events.columns, self.config.logs.events.table
        keys = ", ".join(sql.quote(x) for x in (c.player_id, c.event_time, c.event_type))
        dup = self.engine.query(f"SELECT {keys}, COUNT(*) AS copies FROM {table} WHERE dt = {sql.literal(day)} "
                                f"GROUP BY {keys} HAVING COUNT(*) > 1 ORDER BY copies DESC")
        n = int((dup["copies"] - 1).sum()) if len(dup) else 0
        return self._result("duplicate_events", table, day, n == 0, failing_rows=n,
                            message=f"{n:,} duplicate events (same player, time and type); player_day counts each once"
                            if n else "none", hint="deduplicate in the exporter",
                            sample=dup.head(self.config.validation.sample_rows).to_dict("records"))

    def _volume(self, day: str) -> CheckResult:
        table = self.config.logs.events.table
        v = self.config.validation
        today = self.engine.raw_partition_stats(table, day)[0]
        previous = [p for p in self.engine.partitions(table) if p < day][-v.volume_trailing_days:]
        counts = list(self._row_counts(table, previous).values())
        if len(counts) < 3:
            return self._result("volume", table, day, True, message=f"{today:,} rows (too little history to compare)")
        mean = sum(counts) / len(counts)
        change = today / mean - 1
        ok = abs(change) <= v.volume_tolerance
        return self._result("volume", table, day, ok,
                            message=f"{today:,} rows vs trailing {len(counts)}-day mean {mean:,.0f} ({change:+.0%}, "
                                    f"tolerance ±{v.volume_tolerance:.0%})",
                            hint="a partial export or an outage; check the source before rerunning")

    def _row_counts(self, table: str, days: list[str]) -> dict[str, int]:
        """Rows per raw partition of `days` in one `GROUP BY dt` query (one Athena query, not one per day)."""
        if not days:
            return {}
        counts = self.engine.query(f"SELECT dt, COUNT(*) AS n FROM {sql.quote(table)} WHERE dt IN {sql.in_list(days)} "
                                   "GROUP BY dt")
        found = {str(d): int(n) for d, n in zip(counts["dt"], counts["n"])}
        return {d: found.get(d, 0) for d in days}


def validate_day(engine: Any, config: GameConfig, day: dt.date, now: dt.datetime | None = None,
                 report_dir: Any = None) -> ValidationReport:
    """Validate one day; write the report (if report_dir) and raise on error-severity failures."""
    from ltv.lake import write_json_atomic

    report = Validator(engine, config, now).run(day)
    if report_dir is not None:
        write_json_atomic(report_dir / f"dt={day}.json", report.to_json())
    if report.errors:
        ids = id_columns(config)
        raise DataValidationError(
            f"data validation failed for game {config.game.id!r}, day {day}: "
            f"{len(report.errors)} check(s) failed\n"
            + "\n".join(r.line(ids.get(r.table)) for r in report.errors + report.warnings), results=report.results)
    return report


def duplicate_free(report: ValidationReport) -> frozenset[str]:
    """The report's day if its duplicate check ran and found no duplicate events, else nothing:
    what `etl.build_player_day(duplicate_free=...)` takes for a just-validated day."""
    return frozenset({report.day}) if _no_duplicates((r.name, r.passed) for r in report.results) else frozenset()


def _no_duplicates(results: Iterable[tuple[str, bool]]) -> bool:
    return any(name == "duplicate_events" and passed for name, passed in results)


def duplicate_free_days(report_dir: Any, engine: Engine, days: Iterable[str] | None = None) -> frozenset[str]:
    """Days (of `days`, default all) whose stored validation report found no duplicate events
    in the raw events partition that is there now: a partition rewritten since it was validated
    (its fingerprint changed) must be deduplicated again, or its duplicates would be counted."""
    table = engine.config.logs.events.table
    paths = (Path(report_dir).glob("dt=*.json") if days is None
             else (Path(report_dir) / f"dt={d}.json" for d in days))
    clean = set()
    for path in paths:
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        day = path.stem.removeprefix("dt=")
        if (_no_duplicates((r["name"], r["passed"]) for r in report.get("results", []))
                and report.get("events_fingerprint") is not None
                and report["events_fingerprint"] == engine.raw_partition_fingerprint(table, day)):
            clean.add(day)
    return frozenset(clean)
