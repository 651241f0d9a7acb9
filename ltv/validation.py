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
from ltv.config import CHECK_NAMES, GameConfig
from ltv.engine import Engine
from ltv.errors import DataValidationError

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
    purchase = purchase_condition(config)
    rev = sql.context(config)["revenue_expr"]
    skewed = now + dt.timedelta(minutes=config.validation.max_clock_skew_minutes)
    checks = [
        RowCheck("null_ids", ev.table, _missing_id(config, c.player_id), f"rows with a null or empty {c.player_id}",
                 "the exporter must set the player id on every event"),
        RowCheck("revenue_range", ev.table, f"{purchase} AND ({rev} IS NULL OR {rev} > {ev.revenue.max_amount})",
                 f"purchases with a missing amount or above max_amount {ev.revenue.max_amount} {ev.revenue.base_currency}",
                 "check the amount's unit (cents?) or raise logs.events.revenue.max_amount"),
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
    if pl is not None and pl.partitioned:  # a flat players table has no daily partition to check
        checks.append(RowCheck("null_ids", pl.table, _missing_id(config, pl.columns.player_id),
                               f"rows with a null or empty {pl.columns.player_id}", "every player row needs its id"))
    if c.event_type:
        checks.append(RowCheck(
            "event_types", ev.table,
            f"{q(c.event_type)} IS NULL OR {q(c.event_type)} NOT IN {sql.in_list(ev.event_types.allowed())}",
            f"rows with an event type not in the config ({', '.join(ev.event_types.allowed())})",
            "add the new event type to logs.events.event_types (under `other` if features should ignore it)",
            show=c.event_type))
    counted = [col for col in (c.session_length, c.level) if col]
    if counted:
        checks.append(RowCheck("negative_values", ev.table, " OR ".join(f"{q(col)} < 0" for col in counted),
                               f"rows with a negative {' or '.join(counted)}", "fix the exporter"))
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
    ev, pl = config.logs.events, config.logs.players
    return {ev.table: ev.columns.player_id} | ({pl.table: pl.columns.player_id} if pl is not None else {})


def _missing_id(config: GameConfig, column: str) -> str:
    """A player id that identifies nobody: NULL, or a blank string (which would aggregate as a player)."""
    if config.logs.player_id_type == "string":
        # cast: an integer id column is accepted where the config says string (the SQL casts it)
        return f"{sql.quote(column)} IS NULL OR TRIM(CAST({sql.quote(column)} AS VARCHAR)) = ''"
    return f"{sql.quote(column)} IS NULL"


def purchase_condition(config: GameConfig) -> str:
    """SQL over the raw columns: the row is a purchase (every row, in a purchase-only log)."""
    ev = config.logs.events
    if ev.purchase_only:
        return "TRUE"
    return f"{sql.quote(ev.columns.event_type)} IN {sql.in_list(ev.event_types.purchase)}"


def expected_types(config: GameConfig, strict: bool = False) -> dict[str, dict[str, set[str]]]:
    """Per table: column -> acceptable type families (those the SQL casts to what it needs: an
    integer id where the config says string, a DATE install time read as midnight). With
    `strict` (an engine that reads files with declared types: Athena) the id and time columns
    must have exactly the types the config declares, which the catalog is built from."""
    ev, pl = config.logs.events, config.logs.players
    c = ev.columns
    numeric, times = {"integer", "float"}, {"timestamp", "date"}
    # the id and time columns: exactly the declared type on a strict engine, else any the SQL casts
    # (player_day / features CAST the id to player_id_type, a DATE to midnight)
    declared = lambda kind, castable: {kind} if strict else castable  # noqa: E731
    ident = declared(config.logs.player_id_type, {"string", "integer"})
    event_time = declared(ev.event_time_type, times)
    install_time = declared(pl.install_time_type, times) if pl is not None else times
    events = {c.player_id: ident, c.event_time: event_time, c.revenue: numeric}
    events |= {col: kinds for col, kinds in ((c.event_type, {"string"}), (c.level, numeric),
                                             (c.session_length, numeric), (c.currency, {"string"}),
                                             (c.event_id, {"string", "integer"})) if col}
    out = {ev.table: events}
    if pl is not None and pl.partitioned:  # a flat players table is read whole, not by day
        players = {pl.columns.player_id: ident, pl.columns.install_time: install_time}
        players |= {col: {"string", "integer", "float", "boolean"} for col in pl.attributes.values()}
        out[pl.table] = players
    return out


def type_family(sql_type: str) -> str:
    t = sql_type.upper()
    if t.startswith(("VARCHAR", "STRING", "CHAR", "TEXT")):
        return "string"
    if t.startswith(("TIMESTAMP", "DATETIME")):
        return "timestamp"
    if t == "DATE":
        return "date"
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
        for table, types in expected_types(self.config, getattr(self.engine, "strict_types", False)).items():
            stats = self.engine.raw_partition_stats(table, d)
            if stats is None or stats[0] == 0:
                result = self._result("freshness", table, d, False, message="partition is missing or empty",
                                      hint="the day's export has not arrived; rerun once it has")
                if table != self.config.logs.events.table:  # a day may have no installs: only a warning
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
        strict = getattr(self.engine, "strict_types", False)
        hint = "fix logs.*.columns in the game config, or the exporter's schema"
        if strict:
            hint += ("; Athena reads the files with the catalog's types, declared by logs.player_id_type, "
                     "logs.events.event_time_type and logs.players.install_time_type: set them to what the export holds")
        return self._result("schema", table, day, not problems,
                            message="; ".join(problems) or "all configured columns present with expected types",
                            hint=hint)

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
        """What each deduplication rule removes from the day (rows and revenue); the check fails on
        what the configured rule removes, so nothing is dropped without being reported."""
        removed = duplicate_counts(self.engine, self.config, day)
        rule = self.config.logs.events.dedup
        n = removed[rule]["rows"] if rule != "none" else 0
        ccy = self.config.logs.events.revenue.base_currency
        parts = [f"{name}{' (in force)' if name == rule else ''} removes {r['rows']:,} rows / {r['revenue']:,.2f} {ccy}"
                 for name, r in removed.items()]
        if rule == "none":
            parts.append("none (in force) removes nothing")
        sample = self._duplicate_sample(day, rule) if n else []
        return self._result("duplicate_events", self.config.logs.events.table, day, n == 0, failing_rows=n,
                            message="; ".join(parts),
                            hint="deduplicate in the exporter, or choose logs.events.deduplicate (by_id needs "
                                 "columns.event_id; none keeps identical rows as separate orders)", sample=sample)

    def _duplicate_sample(self, day: str, rule: str) -> list[dict[str, Any]]:
        c, table = self.config.logs.events.columns, self.config.logs.events.table
        keys = [c.player_id, c.event_id] if rule == "by_id" else mapped_columns(self.config)
        cols = ", ".join(sql.quote(x) for x in keys)
        dup = self.engine.query(f"SELECT {cols}, COUNT(*) AS copies FROM {table} WHERE dt = {sql.literal(day)} "
                                f"GROUP BY {cols} HAVING COUNT(*) > 1 ORDER BY copies DESC "
                                f"LIMIT {self.config.validation.sample_rows}")
        return dup.to_dict("records")

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


def mapped_columns(config: GameConfig) -> list[str]:
    """The raw event columns the config maps (what "identical rows" compares)."""
    c = config.logs.events.columns
    return [col for col in (c.player_id, c.event_time, c.event_type, c.revenue, c.currency, c.event_id, c.level,
                            c.session_length) if col]


def duplicate_counts(engine: Any, config: GameConfig, day: str) -> dict[str, dict[str, float]]:
    """Rows and purchase revenue each rule would remove from one raw day: `exact_rows` (identical
    mapped columns) and, when an event id is mapped, `by_id` (rows sharing player and id)."""
    ev = config.logs.events
    c, table, q = ev.columns, ev.table, sql.quote
    rev = f"CASE WHEN {purchase_condition(config)} THEN COALESCE({sql.context(config)['revenue_expr']}, 0) ELSE 0 END"
    where = f"dt = {sql.literal(day)} AND {q(c.player_id)} IS NOT NULL"
    cols = ", ".join(q(x) for x in mapped_columns(config))
    queries = {"exact_rows": f"SELECT COUNT(*) - COUNT(DISTINCT ({cols})) AS n, SUM({rev}) AS r FROM {table} WHERE {where}"}
    kept = {"exact_rows": f"SELECT SUM({rev}) AS r FROM (SELECT DISTINCT {cols} FROM {table} WHERE {where}) d"}
    if c.event_id:
        ids = f"{q(c.player_id)}, {q(c.event_id)}"
        queries["by_id"] = f"SELECT COUNT(*) - COUNT(DISTINCT ({ids})) AS n, SUM({rev}) AS r FROM {table} WHERE {where}"
        kept["by_id"] = f"SELECT SUM(r) AS r FROM (SELECT MAX({rev}) AS r FROM {table} WHERE {where} GROUP BY {ids}) d"
    out = {}
    for rule, text in queries.items():
        total = engine.query(text).iloc[0]
        rows = int(total["n"] or 0)
        revenue = float(total["r"] or 0) - float(engine.query(kept[rule]).iloc[0]["r"] or 0) if rows else 0.0
        out[rule] = {"rows": rows, "revenue": round(revenue, 2)}
    return out


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


def warning_summary(reports: Iterable[ValidationReport]) -> list[str]:
    """One line per (check, table) that warned in `reports`: on how many days (first .. last),
    how many rows, and the first warning's message. A range run prints this instead of every
    day's warnings, which stay in the days' validation reports."""
    groups: dict[tuple[str, str], list[CheckResult]] = {}
    for report in reports:
        for w in report.warnings:
            groups.setdefault((w.name, w.table), []).append(w)
    lines = []
    for (name, table), found in groups.items():
        days = sorted(w.partition for w in found)
        span = days[0] if len(days) == 1 else f"{days[0]} .. {days[-1]}"
        lines.append(f"{name} on {table}: {len(found)} day(s) ({span}), {sum(w.failing_rows for w in found):,} row(s); "
                     f"first: {found[0].message}")
    return lines


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
