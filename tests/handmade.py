"""Hand-written raw logs in galaxy-raiders' schema, for exact and property tests of the ETL."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ltv.config import GameConfig
from ltv.engine import DuckDBEngine
from ltv.lake import Lake, write_file_atomic, write_with

ROLES = {"login": "login", "session": "session_end", "purchase": "iap_purchase", "level_up": "level_up"}


def event(player: str, when: str, role: str, revenue: float | None = None, level: int = 1,
          seconds: float | None = None) -> dict:
    return {"user_id": player, "event_ts": pd.Timestamp(when), "event_name": ROLES.get(role, role),
            "revenue_usd": revenue, "level": level, "session_seconds": seconds}


def write_lake(root: Path, config: GameConfig, events: Iterable[dict], installs: dict[str, str],
               days: tuple[str, str] | None = None) -> DuckDBEngine:
    """Write events into dt partitions by their UTC day (every day of `days` gets a partition,
    possibly empty) and install records into the players table (by install day, or in one flat
    file when the config's players table is not partitioned); return an engine on it."""
    lake = Lake(root, config.game.id)
    ev = pd.DataFrame(list(events), columns=["user_id", "event_ts", "event_name", "revenue_usd", "level",
                                             "session_seconds"])
    ev = ev.astype({"revenue_usd": "float64", "session_seconds": "float64", "level": "int32", "user_id": "string"})
    ev["event_ts"] = pd.to_datetime(ev["event_ts"]).astype("datetime64[us]")
    ev["user_id"] = ev["user_id"].astype(object)
    first, last = days or (str(ev.event_ts.min().date()), str(ev.event_ts.max().date()))
    for day in pd.date_range(first, last, freq="D"):
        part = ev[ev.event_ts.dt.normalize() == day]
        write_with(lake.raw_partition("events", day.date()), lambda d: part.to_parquet(d / "part-0.parquet", index=False))
    players = pd.DataFrame([{"user_id": p, "install_ts": pd.Timestamp(t), "country": "US", "platform": "ios",
                             "acquisition_channel": "organic"} for p, t in installs.items()])
    players["install_ts"] = players["install_ts"].astype("datetime64[us]")
    if not config.logs.players.partitioned:
        write_file_atomic(lake.raw("players") / "part-0.parquet", lambda f: players.to_parquet(f, index=False))
        return DuckDBEngine(lake, config, threads=1)
    for day, group in players.groupby(players.install_ts.dt.date):
        write_with(lake.raw_partition("players", day), lambda d: group.to_parquet(d / "part-0.parquet", index=False))
    return DuckDBEngine(lake, config, threads=1)


def day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)
