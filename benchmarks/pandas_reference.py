"""A plain pandas implementation of `ltv/sql/player_day.sql` and `ltv/sql/features.sql`.

Written the way a data scientist would write it first: read the raw parquet with pandas,
filter, `drop_duplicates`, `groupby().agg()`. It is the independent reference the tests
compare the SQL against (tests/test_etl_reference.py) and the baseline of the ETL benchmark
(benchmarks/etl.py). It follows the SQL's documented semantics exactly:

player_day (one row per player per active day, raw partitions [start, end]):
- rows without a player id are dropped; events whose timestamp is not on their partition's
  day are dropped; exact duplicate rows (after the column mapping) count once;
- revenue is converted to the base currency with `revenue.fx_rates` (unknown or missing
  currency -> no revenue); session lengths are converted to seconds.

features at a cutoff c (from player_day rows with dt < c only):
- population: active in [c - population_window_days, c) and installed before c (or with no
  install record in the players partitions before c);
- lifetime totals over the whole history, `n_steps` steps of `step_days` (w1 = most recent),
  inter-purchase-day gaps (mean, sample std, min, max, last, exact median) and the days left
  until each "usual gap" since the last purchase, recency, calendar of c;
- attributes and install time: the minimum over a player's install records, each on its own.

Vectorised throughout: no Python loop over players (only over the configured history steps
in column naming). No dependency on the SQL code, only on the config and the lake layout.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ltv.config import GameConfig
from ltv.lake import Lake

PLAYER_DAY_COLUMNS = ["player_id", "logins", "sessions", "play_seconds", "level_ups", "max_level",
                      "purchases", "revenue", "events", "dt"]
STEP_MEASURES = ["active_days", "logins", "play_minutes", "level_ups", "purchases", "revenue"]
SESSION_TO_SECONDS = {"seconds": 1.0, "milliseconds": 1 / 1000.0, "minutes": 60.0}


# ----------------------------------------------------------------------------------------------
# reading the raw logs


def read_raw(lake: Lake, table: str, columns: list[str], start: str | None = None,
             end: str | None = None, before: str | None = None) -> pd.DataFrame:
    """Raw partitions of `table` with dt in [start, end] (or dt < before) and a `dt` column.

    `dt` comes back as pandas reads a Hive partition key: a categorical of the day strings."""
    filters = []
    if start is not None:
        filters.append(("dt", ">=", start))
    if end is not None:
        filters.append(("dt", "<=", end))
    if before is not None:
        filters.append(("dt", "<", before))
    return pd.read_parquet(lake.raw(table), columns=[*columns, "dt"], filters=filters or None)


def _player_ids(ids: pd.Series, config: GameConfig) -> pd.Series:
    """Player ids as the configured type (string or integer), missing ids as NA."""
    if config.logs.player_id_type == "integer":
        return ids.astype("Int64")
    if pd.api.types.is_string_dtype(ids) or ids.dtype == object:
        return ids
    return ids.astype("Int64").astype("string").astype(object)


def _revenue(raw: pd.DataFrame, config: GameConfig) -> pd.Series:
    """Revenue in the base currency (NaN when the currency is missing or has no rate)."""
    ev = config.logs.events
    amount = raw[ev.columns.revenue].astype(float)
    if not ev.columns.currency:
        return amount
    rates = {ev.revenue.base_currency: 1.0, **ev.revenue.fx_rates}
    return amount * raw[ev.columns.currency].map(rates).astype(float)


# ----------------------------------------------------------------------------------------------
# player_day


def events(config: GameConfig, raw: pd.DataFrame) -> pd.DataFrame:
    """Raw events in canonical columns, cleaned: ids present, on their partition's day, distinct."""
    c = config.logs.events.columns
    unit = SESSION_TO_SECONDS[config.logs.events.session_length_unit]
    ev = pd.DataFrame({
        "player_id": _player_ids(raw[c.player_id], config),
        "event_time": pd.to_datetime(raw[c.event_time]),
        "event_type": raw[c.event_type],
        "revenue": _revenue(raw, config),
        "level": raw[c.level].astype("Int64"),
        "session_seconds": raw[c.session_length].astype(float) * unit,
        "dt": raw["dt"],
    })
    partition_day = pd.to_datetime(ev["dt"]).astype("datetime64[ns]")  # (a categorical stays one otherwise)
    on_its_day = ev["event_time"].dt.normalize() == partition_day
    ev = ev[ev["player_id"].notna() & on_its_day]
    return ev.drop_duplicates()


def player_day(config: GameConfig, raw: pd.DataFrame) -> pd.DataFrame:
    """Daily aggregates per player (columns and types of player_day.sql), sorted by dt, player."""
    types = config.logs.events.event_types
    ev = events(config, raw)
    is_session = ev["event_type"].isin(types.session)
    is_purchase = ev["event_type"].isin(types.purchase)
    ev = ev.assign(
        logins=ev["event_type"].isin(types.login).astype("int64"),
        sessions=is_session.astype("int64"),
        play_seconds=ev["session_seconds"].where(is_session),
        level_ups=ev["event_type"].isin(types.level_up).astype("int64"),
        purchases=is_purchase.astype("int64"),
        revenue=ev["revenue"].where(is_purchase),
    )
    daily = ev.groupby(["player_id", "dt"], sort=False, observed=True).agg(
        logins=("logins", "sum"), sessions=("sessions", "sum"), play_seconds=("play_seconds", "sum"),
        level_ups=("level_ups", "sum"), max_level=("level", "max"), purchases=("purchases", "sum"),
        revenue=("revenue", "sum"), events=("dt", "size"),
    ).reset_index()
    daily["dt"] = daily["dt"].astype(str)
    return daily[PLAYER_DAY_COLUMNS].sort_values(["dt", "player_id"], ignore_index=True)


def player_day_from_lake(config: GameConfig, lake: Lake, start: dt.date, end: dt.date) -> pd.DataFrame:
    """player_day of the raw partitions [start, end] (inclusive), read from the lake."""
    c = config.logs.events.columns
    columns = [c.player_id, c.event_time, c.event_type, c.revenue, c.level, c.session_length]
    if c.currency:
        columns.append(c.currency)
    raw = read_raw(lake, config.logs.events.table, columns, start=str(start), end=str(end))
    return player_day(config, raw)


# ----------------------------------------------------------------------------------------------
# features


def installs(config: GameConfig, players: pd.DataFrame) -> pd.DataFrame:
    """One row per player id: earliest install time and the smallest value of each attribute."""
    pl = config.logs.players
    frame = pd.DataFrame({"player_id": _player_ids(players[pl.columns.player_id], config),
                          "install_time": pd.to_datetime(players[pl.columns.install_time])})
    frame = frame[frame["player_id"].notna()]
    out = frame.groupby("player_id", sort=False)[["install_time"]].min()
    for name, column in pl.attributes.items():
        # groupby().min() of strings runs a Python loop per group; the first non-null value
        # after sorting is the same minimum, vectorised
        values = pd.DataFrame({"player_id": frame["player_id"], "value": players.loc[frame.index, column]})
        out[f"attr_{name}"] = values.sort_values("value").groupby("player_id", sort=False)["value"].first()
    return out.reset_index()


def _lifetime(history: pd.DataFrame, window_start: str) -> pd.DataFrame:
    """Totals over the whole history before the cutoff."""
    h = history.assign(
        in_window=(history["dt"] >= window_start).astype("int64"),
        purchase_day=(history["purchases"] > 0).astype("int64"),
        purchase_date=history["date"].where(history["purchases"] > 0),
        purchase_day_revenue=history["revenue"].where(history["purchases"] > 0),
    )
    return h.groupby("player_id", sort=False).agg(
        active_days_total=("dt", "size"), active_days_window=("in_window", "sum"),
        logins_total=("logins", "sum"), sessions_total=("sessions", "sum"),
        play_seconds_total=("play_seconds", "sum"), level_ups_total=("level_ups", "sum"),
        max_level=("max_level", "max"), purchases_total=("purchases", "sum"),
        purchase_days_total=("purchase_day", "sum"), revenue_total=("revenue", "sum"),
        max_daily_revenue=("revenue", "max"), first_active=("date", "min"), last_active=("date", "max"),
        first_purchase=("purchase_date", "min"), last_purchase=("purchase_date", "max"),
        purchase_day_revenue_std=("purchase_day_revenue", "std"),
    )


def _steps(history: pd.DataFrame, cutoff: dt.date, step_days: int, n_steps: int) -> pd.DataFrame:
    """Per player, the measures of each history step: w1 = [cutoff - step_days, cutoff), ..."""
    days_before = (pd.Timestamp(cutoff) - history["date"]).dt.days  # 1 for the day before the cutoff
    h = history.assign(step=(days_before - 1) // step_days + 1, active_days=1,
                       play_minutes=history["play_seconds"])
    h = h[h["step"] <= n_steps]
    sums = h.groupby(["player_id", "step"], sort=False)[STEP_MEASURES].sum()
    wide = sums.unstack("step").reindex(
        columns=pd.MultiIndex.from_product([STEP_MEASURES, range(1, n_steps + 1)]), fill_value=0)
    wide = wide.fillna(0)
    wide.columns = [f"{measure}_w{step}" for measure, step in wide.columns]
    minutes = [f"play_minutes_w{step}" for step in range(1, n_steps + 1)]
    wide[minutes] = wide[minutes] / 60.0  # summed in seconds, then converted, as the SQL does
    order = [f"{measure}_w{step}" for step in range(1, n_steps + 1) for measure in STEP_MEASURES]
    ints = [col for col in order if not col.startswith(("play_minutes", "revenue"))]
    return wide[order].astype({col: "int64" for col in ints})


def _gaps(history: pd.DataFrame) -> pd.DataFrame:
    """Days between consecutive purchase days: mean, sample std, min, max, the latest gap and the
    exact median (the mean of the two middle gaps for an even count)."""
    buys = history.loc[history["purchases"] > 0, ["player_id", "date"]].sort_values("date", kind="stable")
    buys["gap"] = buys.groupby("player_id", sort=False)["date"].diff().dt.days  # date order within a player
    buys = buys.dropna(subset=["gap"])
    g = buys.groupby("player_id", sort=False)["gap"]
    out = g.agg(["mean", "std", "min", "max", "last", "median"])  # std is the sample std (ddof=1)
    out.columns = ["purchase_gap_" + name for name in out.columns]
    return out.astype({f"purchase_gap_{k}": "Int64" for k in ("min", "max", "last")})


def _days_to(cutoff: dt.date, dates: pd.Series) -> pd.Series:
    """Whole days from `dates` (truncated to the day) to the cutoff; NA where a date is missing."""
    return (pd.Timestamp(cutoff) - dates.dt.normalize()).dt.days.astype("Int64")


def features(config: GameConfig, daily: pd.DataFrame, players: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    """Features of the population at `cutoff` (columns of features.sql), sorted by player id.

    Args:
        daily: player_day rows (any days; only dt < cutoff are used).
        players: the raw players table with a `dt` column (only dt < cutoff are used).
    """
    f = config.features
    cut = str(cutoff)
    window_start = str(cutoff - dt.timedelta(days=f.population_window_days))
    history = daily[daily["dt"] < cut].copy()
    history["date"] = pd.to_datetime(history["dt"])
    population = history.loc[history["dt"] >= window_start, "player_id"].drop_duplicates()

    lifetime = _lifetime(history, window_start)
    inst = installs(config, players[players["dt"].astype(str) < cut]).set_index("player_id")
    out = (pd.DataFrame({"player_id": population}).set_index("player_id")
           .join(lifetime, how="inner").join(inst, how="left")
           .join(_steps(history, cutoff, f.step_days, f.n_steps), how="left")
           .join(_gaps(history), how="left"))
    out = out[out["install_time"].isna() | (out["install_time"] < pd.Timestamp(cutoff))].reset_index()

    result = pd.DataFrame({"player_id": out["player_id"]})
    for name in config.logs.players.attributes:
        result[f"attr_{name}"] = out[f"attr_{name}"].fillna("unknown").astype(object)
    result["days_since_install"] = _days_to(cutoff, out["install_time"].fillna(out["first_active"]))
    result["days_since_last_active"] = _days_to(cutoff, out["last_active"])
    result["days_since_first_purchase"] = _days_to(cutoff, out["first_purchase"])
    result["days_since_last_purchase"] = _days_to(cutoff, out["last_purchase"])
    for col in ["active_days_total", "active_days_window", "logins_total", "sessions_total"]:
        result[col] = out[col]
    result["play_minutes_total"] = out["play_seconds_total"] / 60.0
    for col in ["level_ups_total", "max_level", "purchases_total", "purchase_days_total", "revenue_total",
                "max_daily_revenue"]:
        result[col] = out[col]
    result["revenue_per_purchase"] = (out["revenue_total"] / out["purchases_total"]).where(out["purchases_total"] > 0)
    result["purchase_day_rate"] = out["purchase_days_total"] / out["active_days_total"]
    result["revenue_per_active_day"] = out["revenue_total"] / out["active_days_total"]
    # the whole history as buy-till-you-die inputs: repeat purchase days, last - first purchase day
    paid = out["purchase_days_total"] > 0
    result["btyd_frequency"] = (out["purchase_days_total"] - 1).where(paid).astype("Int64")
    result["btyd_recency_days"] = (out["last_purchase"] - out["first_purchase"]).dt.days.astype("Int64")
    result["purchase_day_revenue_mean"] = (out["revenue_total"] / out["purchase_days_total"]).where(paid)
    result["purchase_day_revenue_std"] = out["purchase_day_revenue_std"]
    for col in ["mean", "std", "min", "max", "last", "median"]:
        result[f"purchase_gap_{col}"] = out[f"purchase_gap_{col}"]
    # days until the usual gap since the last purchase is reached (negative: overdue)
    since = result["days_since_last_purchase"]
    result["days_to_median_gap"] = result["purchase_gap_median"] - since
    result["days_to_usual_gap"] = result["purchase_gap_mean"] - since
    result["days_to_last_gap"] = result["purchase_gap_last"] - since
    steps = out[[f"{measure}_w{step}" for step in range(1, f.n_steps + 1) for measure in STEP_MEASURES]].fillna(0)
    ints = [col for col in steps.columns if not col.startswith(("play_minutes", "revenue"))]
    calendar = pd.DataFrame({"cutoff_weekday": np.int32(cutoff.isoweekday()), "cutoff_month": np.int32(cutoff.month),
                             "cutoff_day_of_month": np.int32(cutoff.day), "cutoff": cut}, index=out.index)
    result = pd.concat([result, steps.astype({col: "int64" for col in ints}), calendar], axis=1)
    return result.sort_values("player_id", ignore_index=True)


def features_from_lake(config: GameConfig, lake: Lake, daily: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    """Features at `cutoff` from a player_day frame and the lake's raw players table."""
    pl = config.logs.players
    columns = [pl.columns.player_id, pl.columns.install_time, *pl.attributes.values()]
    players = read_raw(lake, pl.table, list(dict.fromkeys(columns)), before=str(cutoff))
    return features(config, daily, players, cutoff)

