"""SQL written once: Jinja templates in DuckDB's dialect, rendered for a game, transpiled for Athena.

Templates take their table and column names, event types and windows from the game config
(`context`), so the same files serve every game. `render(...)` gives the DuckDB text that runs
locally; `to_trino(...)` gives the text the Glue jobs send to Athena (Trino), produced from the
same source by sqlglot. Date arithmetic is done in Python and passed as literals, which keeps
the SQL portable.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
import sqlglot

from ltv.config import GameConfig

TEMPLATES = ("player_day", "features", "labels", "dataset", "check")


def quote(identifier: str) -> str:
    """A double-quoted identifier (config names are validated identifiers already)."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def in_list(values: list[str]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


@lru_cache(maxsize=None)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: resources.files("ltv.sql").joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(q=quote, lit=literal, inlist=in_list)
    return env


def context(config: GameConfig) -> dict[str, Any]:
    """Template variables derived from a game config: names, event types, unit conversions."""
    ev, pl = config.logs.events, config.logs.players
    c = ev.columns
    rev = f"CAST({quote(c.revenue)} AS DOUBLE)"
    if c.currency:
        rates = {ev.revenue.base_currency: 1.0, **ev.revenue.fx_rates}
        cases = " ".join(f"WHEN {literal(k)} THEN {v!r}" for k, v in sorted(rates.items()))
        rev = f"{rev} * CASE {quote(c.currency)} {cases} END"
    seconds = {"seconds": "", "milliseconds": " / 1000.0", "minutes": " * 60.0"}[ev.session_length_unit]
    id_type = "VARCHAR" if config.logs.player_id_type == "string" else "BIGINT"
    return {
        "events": ev.table, "players": pl.table if pl else None, "col": c, "pcol": pl.columns if pl else None,
        "players_partitioned": pl.partitioned if pl else False, "attributes": pl.attributes if pl else {},
        "types": ev.event_types, "revenue_expr": rev, "dedup": ev.dedup,
        "session_seconds_expr": f"CAST({quote(c.session_length)} AS DOUBLE){seconds}" if c.session_length else None,
        "id_type": id_type, "n_steps": config.features.n_steps, "step_days": config.features.step_days,
    }


def render(name: str, config: GameConfig, **params: Any) -> str:
    """The DuckDB text of template `name` for this game with these parameters."""
    params = {k: (str(v) if isinstance(v, dt.date) else v) for k, v in params.items()}
    return _env().get_template(f"{name}.sql").render(**context(config), **params).strip() + "\n"


def to_trino(sql: str) -> str:
    """The same query in Athena's (Trino) dialect."""
    return ";\n".join(sqlglot.transpile(sql, read="duckdb", write="trino", pretty=True)) + "\n"


def sql_hash(config: GameConfig) -> str:
    """Hash of the templates' source: part of a dataset's identity."""
    return template_hash(*TEMPLATES)


def template_hash(*names: str) -> str:
    """Hash of the source of the named templates."""
    h = hashlib.sha256()
    for name in names:
        h.update(resources.files("ltv.sql").joinpath(f"{name}.sql").read_bytes())
    return h.hexdigest()[:16]
