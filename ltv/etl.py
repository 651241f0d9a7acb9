"""Feature and label ETL: raw logs -> player_day -> features / labels per cutoff.

Incremental by design: the daily run turns one raw partition into one `player_day`
partition, and features for a cutoff are computed from `player_day`, never from raw history.
The whole-history features come from `player_summary` (per player, the mergeable aggregates of
every player_day row before a cutoff): the summary at a cutoff is the summary at the previous
one merged with the player_day days in between, so a cutoff reads one summary partition and a
few weeks of player_day instead of the whole history. The same functions run locally (DuckDB
engine) and in the Glue jobs (Athena engine).

Every derived partition records the definition it was computed under (`_definition.json`: the
config settings and SQL templates its rows depend on, and their hash). A partition whose
definition differs from the config's present one is stale: features and labels are rebuilt,
player_day is refused with the command that rebuilds it (it needs the raw logs re-validated).
Rewriting a player_day day also marks the summaries after it stale (they hold its old rows).

Time rules (the leakage tests check them):
- features at cutoff c read `player_day` rows with dt < c only, and the summary at c, which holds
  only rows with dt < c (the summary at an earlier cutoff p plus the rows of [p, c));
- labels at c read [c, c + max(ltv_days, purchase_days)) only;
- a player is in the population at c if active in [c - population_window_days, c) and
  installed before c.
"""
from __future__ import annotations

import ast
import datetime as dt
import hashlib
import inspect
import json
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ltv import sql
from ltv.config import GameConfig
from ltv.engine import Engine, WriteResult
from ltv.errors import EmptyWindowError, MissingPartitionError, StaleDefinitionError
from ltv.stats import feature_stats

DAY = dt.timedelta(days=1)
STATS_FILE = "_stats.json"  # feature statistics beside each features partition (readers skip "_" files)
DEFINITION_FILE = "_definition.json"  # what a partition was computed under (see `definition`)
LINEAGE_FILE = "_lineage.json"  # beside each summary partition: the previous summary it merged, if any
# what the rows of each derived table depend on: config settings (a pydantic `include`) and SQL templates
_DEFINED_BY: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "player_day": ({"game": {"id"}, "logs": True}, ("player_day",)),
    "player_summary": ({"game": {"id"}, "logs": True}, ("player_day", "player_summary")),
    "features": ({"game": {"id"}, "logs": True, "features": True}, ("player_day", "player_summary", "features")),
    "labels": ({"game": {"id"}, "logs": True, "features": {"population_window_days"},
                "horizons": {"ltv_days", "purchase_days"}},
               ("player_day", "labels")),
}


# ... and the Python that turns those settings into the table's SQL: its parameters (the `*_sql`
# functions), the date windows and the templates' rendering. An upgrade that changes any of it
# makes the partitions built by the older code stale; a change to comments or docstrings does not.
_SHAPED_BY = {
    "player_day": ("player_day_sql",),
    "player_summary": ("player_day_sql", "summary_sql"),
    "features": ("player_day_sql", "summary_sql", "features_sql"),
    "labels": ("player_day_sql", "labels_sql"),
}
_SHAPING_ALL = ("Windows", "label_horizon", "_days")


@lru_cache(maxsize=64)
def _code_hash(*objects: Any) -> str:
    """Hash of the code of functions/classes, docstrings and comments left out (their AST)."""
    h = hashlib.sha256()
    for obj in objects:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(ast.dump(tree).encode())
    return h.hexdigest()[:16]


def shaping_code(table: str) -> str:
    """Hash of the Python that shapes `table`'s partitions (see `_SHAPED_BY`), with the SQL module's."""
    here = globals()
    return _code_hash(*(here[name] for name in (*_SHAPING_ALL, *_SHAPED_BY[table])), sql)


def definition(config: GameConfig, table: str) -> dict[str, Any]:
    """The definition of a derived table's partitions: the settings they are computed from (kept
    readable, for whoever wonders why a partition was rebuilt) and a hash of those settings, of
    the SQL templates' source and of the Python that shapes them (`shaping_code`)."""
    include, templates = _DEFINED_BY[table]
    settings = config.model_dump(mode="json", include=include)
    payload = json.dumps({"settings": settings, "sql": sql.template_hash(*templates), "code": shaping_code(table)},
                         sort_keys=True)
    return {"hash": hashlib.sha256(payload.encode()).hexdigest()[:16], "table": table, "settings": settings}


def _record_definition(engine: Engine, config: GameConfig, table: str, values: list[str]) -> None:
    """Write the definition beside freshly written partitions. A crash before this leaves a
    partition without one, which counts as stale and is rebuilt: never trusted by mistake."""
    current = definition(config, table)
    for value in values:
        engine.put_partition_json(table, value, DEFINITION_FILE, current)


def stale_partitions(engine: Engine, config: GameConfig, table: str, values: list[str]) -> list[str]:
    """The partitions among `values` whose recorded definition is missing or differs from the config's."""
    expected = definition(config, table)["hash"]
    return [v for v in values if _recorded_hash(engine, table, v) != expected]


def _recorded_hash(engine: Engine, table: str, value: str) -> str | None:
    """The definition hash recorded beside a partition (None: none recorded, or marked stale)."""
    return (engine.get_partition_json(table, value, DEFINITION_FILE) or {}).get("hash")


def is_current(engine: Engine, config: GameConfig, table: str, value: str) -> bool:
    """True when the partition is complete and was computed under the config's present definition."""
    return value in engine.partitions(table) and not stale_partitions(engine, config, table, [value])


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Days in [start, end)."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


@dataclass(frozen=True)
class Windows:
    """The date windows of one cutoff, derived from the config in one place."""

    cutoff: dt.date
    window_start: dt.date   # population: active in [window_start, cutoff)
    steps_start: dt.date    # first day of the oldest history step
    ltv_end: dt.date
    purchase_end: dt.date
    label_end: dt.date      # labels read [cutoff, label_end)

    @classmethod
    def of(cls, config: GameConfig, cutoff: dt.date) -> Windows:
        f, h = config.features, config.horizons
        ltv_end = cutoff + dt.timedelta(days=h.ltv_days)
        purchase_end = cutoff + dt.timedelta(days=h.purchase_days)
        return cls(cutoff, cutoff - dt.timedelta(days=f.population_window_days),
                   cutoff - dt.timedelta(days=f.step_days * f.n_steps), ltv_end, purchase_end,
                   max(ltv_end, purchase_end))

    @property
    def recent_start(self) -> dt.date:
        """Features read player_day rows from here (the whole history comes from the summary)."""
        return min(self.window_start, self.steps_start)

    def steps(self, config: GameConfig) -> list[dict[str, str]]:
        """History steps, most recent first: w1 = [cutoff - step_days, cutoff)."""
        n = config.features.step_days
        return [{"start": str(self.cutoff - dt.timedelta(days=n * (s + 1))),
                 "end": str(self.cutoff - dt.timedelta(days=n * s))} for s in range(config.features.n_steps)]


def label_horizon(config: GameConfig) -> int:
    """Days after a cutoff that its labels need."""
    return max(config.horizons.ltv_days, config.horizons.purchase_days)


# ----------------------------------------------------------------------------------------------
# player_day


def player_day_sql(config: GameConfig, start: dt.date, end: dt.date,
                   duplicate_free: frozenset[str] = frozenset()) -> str:
    """Daily aggregates of the raw partitions start..end (inclusive); days in `duplicate_free`
    (validated to hold no duplicate events) skip the duplicate removal."""
    days = [str(d) for d in day_range(start, end + DAY)]
    return sql.render("player_day", config, start=start, end=end,
                      plain_days=[d for d in days if d in duplicate_free],
                      dedup_days=[d for d in days if d not in duplicate_free])


def build_player_day(engine: Engine, config: GameConfig, start: dt.date, end: dt.date | None = None, *,
                     duplicate_free: frozenset[str] = frozenset()) -> WriteResult:
    """Aggregate raw partitions [start, end] (one day by default) into player_day partitions.

    A one-day run reads exactly one raw partition; a range run is the full recompute and
    produces identical partitions. Rerunning replaces partitions atomically (idempotent).
    `duplicate_free` names days validation found without duplicate events (see
    `ltv.validation.duplicate_free_days`); the others are deduplicated.
    """
    end = end or start
    raw = set(engine.partitions(config.logs.events.table))
    missing = [str(d) for d in day_range(start, end + DAY) if str(d) not in raw]
    if missing:
        raise MissingPartitionError(
            f"raw table {config.logs.events.table!r} has no partition for {_days(missing)}; "
            "the game's log export for those days has not arrived (check the freshness alert)")
    # before writing: a crash in between leaves summaries rebuilt needlessly, never trusted wrongly
    _stale_summaries_after(engine, start, f"player_day from {start} to {end} was rebuilt after it")
    if start == end:
        result = engine.write_partitions("player_day", player_day_sql(config, start, end, duplicate_free),
                                         value=str(start))
    else:
        result = engine.write_partitions("player_day", player_day_sql(config, start, end, duplicate_free))
        # days without any valid event still get their (empty) partition: it marks the day as done
        empty = [d for d in day_range(start, end + DAY) if str(d) not in result.partitions]
        for d in empty:
            engine.write_partitions("player_day", player_day_sql(config, d, d), value=str(d))
        result = WriteResult("player_day", sorted(result.partitions + [str(d) for d in empty]), result.rows)
    _record_definition(engine, config, "player_day", result.partitions)
    return result


def _days(days: list[str]) -> str:
    return ", ".join(days) if len(days) <= 5 else f"{len(days)} days ({days[0]} .. {days[-1]})"


class PlayerDays:
    """player_day as the steps of one run see it: listed once, and each day's definition read
    once however many steps need it (a cutoff's summary, features and labels read overlapping
    days; on Athena each listing is an S3 LIST, each definition an S3 GET). Not to be kept across
    a write of player_day."""

    def __init__(self, engine: Engine, config: GameConfig):
        self.engine, self.config = engine, config
        self._listed: list[str] | None = None
        self._current: set[str] = set()  # days already found present and current

    def listed(self) -> list[str]:
        if self._listed is None:
            self._listed = self.engine.partitions("player_day")
        return self._listed

    def cover(self, start: dt.date, end: dt.date) -> bool:
        """True when player_day holds every day in [start, end)."""
        have = set(self.listed())
        return all(str(d) in have for d in day_range(start, end))

    def require(self, start: dt.date, end: dt.date, why: str) -> None:
        """Raise unless player_day holds every day in [start, end) from the game's first day on,
        each computed under the config's present definition."""
        config, have = self.config, self.listed()
        if not have:
            raise MissingPartitionError(f"player_day is empty; build it first: ltv features daily --game {config.game.id}")
        first, present = dt.date.fromisoformat(have[0]), set(have)
        needed = [str(d) for d in day_range(max(start, first), end)]
        missing = [d for d in needed if d not in present]
        if missing:
            raise MissingPartitionError(f"{why} needs player_day for {_days(missing)}; "
                                        f"run: ltv features daily --game {config.game.id} --date {missing[0]} --to {missing[-1]}")
        stale = stale_partitions(self.engine, config, "player_day", [d for d in needed if d not in self._current])
        if stale:
            raise StaleDefinitionError(
                f"{why} needs player_day for {_days(stale)}, which was built under another log mapping or SQL version "
                f"than config {config.game.id!r} now defines (or before definitions were recorded). Rebuild it: "
                f"ltv features daily --game {config.game.id} --date {stale[0]} --to {stale[-1]}")
        self._current.update(needed)


def require_player_day(engine: Engine, config: GameConfig, start: dt.date, end: dt.date, why: str) -> None:
    """Raise unless player_day holds every day in [start, end) (see `PlayerDays.require`)."""
    PlayerDays(engine, config).require(start, end, why)


# ----------------------------------------------------------------------------------------------
# the running whole-history summary


def summary_sql(config: GameConfig, cutoff: dt.date, previous: dt.date | None = None) -> str:
    """The summary at `cutoff`: the summary at `previous` merged with player_day [previous, cutoff),
    or, without `previous`, from every player_day row before the cutoff (the same rows either way)."""
    if previous is not None and previous >= cutoff:
        raise ValueError(f"a summary at {cutoff} cannot continue from the one at {previous}")
    return sql.render("player_summary", config, cutoff=cutoff, previous=previous)


def previous_summary(engine: Engine, config: GameConfig, cutoff: dt.date) -> dt.date | None:
    """The newest summary before `cutoff` computed under the config's present definition (and not
    made stale since by a rewritten player_day day), or None: then the summary is built from scratch."""
    expected = definition(config, "player_summary")["hash"]
    for value in reversed([v for v in engine.partitions("player_summary") if v < str(cutoff)]):
        if _recorded_hash(engine, "player_summary", value) == expected:
            return dt.date.fromisoformat(value)
    return None


def build_summary(engine: Engine, config: GameConfig, cutoff: dt.date, *, days: PlayerDays | None = None) -> WriteResult:
    """The running summary at `cutoff` (every player's whole-history aggregates of dt < cutoff),
    incrementally from the newest current summary before it, else from scratch; `days`: the
    run's view of player_day (see `PlayerDays`)."""
    previous = previous_summary(engine, config, cutoff)
    # from scratch, every day since the first must be there; incrementally, the days since the previous
    # summary (the earlier ones were checked when it was built, and rewriting one since made it stale)
    (days or PlayerDays(engine, config)).require(previous or dt.date.min, cutoff,
                                                 f"features at {cutoff} (whole-history summary)")
    result = engine.write_partitions("player_summary", summary_sql(config, cutoff, previous), value=str(cutoff))
    engine.put_partition_json("player_summary", str(cutoff), LINEAGE_FILE,
                              {"previous": str(previous) if previous else None,
                               "player_day": {"from": str(previous) if previous else None, "before": str(cutoff)}})
    _record_definition(engine, config, "player_summary", [str(cutoff)])
    return result


def ensure_summary(engine: Engine, config: GameConfig, cutoff: dt.date, *,
                   days: PlayerDays | None = None) -> WriteResult | None:
    """Build the summary at `cutoff` unless it is complete and current; None when it was."""
    if is_current(engine, config, "player_summary", str(cutoff)):
        return None
    return build_summary(engine, config, cutoff, days=days)


def _stale_summaries_after(engine: Engine, day: dt.date, why: str) -> None:
    """Mark the summaries that hold `day` (cutoffs after it) stale: they hold its old rows. The
    next summary then continues from an earlier one, or starts from scratch."""
    for value in engine.partitions("player_summary"):
        if value > str(day):
            engine.put_partition_json("player_summary", value, DEFINITION_FILE,
                                      {"hash": None, "table": "player_summary", "stale": why})


# ----------------------------------------------------------------------------------------------
# features and labels


def features_sql(config: GameConfig, cutoff: dt.date) -> str:
    w = Windows.of(config, cutoff)
    return sql.render("features", config, cutoff=cutoff, cutoff_ts=f"{cutoff} 00:00:00",
                      window_start=w.window_start, recent_start=w.recent_start, steps=w.steps(config),
                      calendar={"weekday": cutoff.isoweekday(), "month": cutoff.month, "day": cutoff.day})


def labels_sql(config: GameConfig, cutoff: dt.date) -> str:
    w = Windows.of(config, cutoff)
    return sql.render("labels", config, cutoff=cutoff, window_start=w.window_start, ltv_end=w.ltv_end,
                      purchase_end=w.purchase_end, label_end=w.label_end,
                      purchase_days=config.horizons.purchase_days)


def build_features(engine: Engine, config: GameConfig, cutoff: dt.date, *, summary_ensured: bool = False,
                   days: PlayerDays | None = None) -> WriteResult:
    """Features of the population at `cutoff` (reads player_day before the cutoff only): the
    whole-history summary at the cutoff first (built unless current; `summary_ensured`: the
    caller has just run `ensure_summary`, so it is not checked again), then the features.
    player_day's days are checked once for both (`days`: the caller's run, see `PlayerDays`)."""
    w, days = Windows.of(config, cutoff), days or PlayerDays(engine, config)
    if not summary_ensured:
        ensure_summary(engine, config, cutoff, days=days)
    days.require(w.recent_start, cutoff, f"features at {cutoff}")
    result = engine.write_partitions("features", features_sql(config, cutoff), value=str(cutoff))
    if result.rows == 0:
        raise EmptyWindowError(f"no player was active in [{w.window_start}, {cutoff}): the cutoff is before the "
                               "game's first players or player_day is missing those days")
    features = engine.query(f"SELECT * FROM features WHERE cutoff = '{cutoff}'").drop(columns=["player_id", "cutoff"])
    engine.put_partition_json("features", str(cutoff), STATS_FILE, feature_stats(features))
    _record_definition(engine, config, "features", [str(cutoff)])
    return result


def build_labels(engine: Engine, config: GameConfig, cutoff: dt.date, *, days: PlayerDays | None = None) -> WriteResult:
    """Labels at `cutoff` (reads [cutoff, cutoff + horizon) only; needs those days complete)."""
    w = Windows.of(config, cutoff)
    (days or PlayerDays(engine, config)).require(cutoff, w.label_end, f"labels at {cutoff}")
    result = engine.write_partitions("labels", labels_sql(config, cutoff), value=str(cutoff))
    _record_definition(engine, config, "labels", [str(cutoff)])
    return result


def labels_available(engine: Engine, config: GameConfig, cutoff: dt.date, *, days: PlayerDays | None = None) -> bool:
    """True when player_day covers the whole label window of `cutoff`."""
    return (days or PlayerDays(engine, config)).cover(cutoff, Windows.of(config, cutoff).label_end)


def ensure_cutoff(engine: Engine, config: GameConfig, cutoff: dt.date, *, labels: bool = True) -> None:
    """Build the features (and labels) of a cutoff unless they are complete and current: a
    partition computed under another definition (e.g. before the horizon or the history steps
    changed in the config) is rebuilt, never served as if it matched."""
    days = PlayerDays(engine, config)
    if not is_current(engine, config, "features", str(cutoff)):
        build_features(engine, config, cutoff, days=days)
    if labels and not is_current(engine, config, "labels", str(cutoff)):
        build_labels(engine, config, cutoff, days=days)
