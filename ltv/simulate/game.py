"""Day-by-day simulation of a free-to-play game, written as that game's raw logs.

The simulator streams: each day draws installs, churn, activity, sessions, level-ups and
purchases for the living players only, writes that day's partition and forgets the events, so
memory grows with players, not with events. Each day has its own random stream derived from
(seed, day), which makes runs deterministic and lets a test fork the future from any state.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ltv.config import GameConfig, SimulationSettings
from ltv.errors import ConfigError
from ltv.simulate import dynamics as dyn
from ltv.simulate.dynamics import Players, World

EPOCH = dt.date(1970, 1, 1)
US_PER_DAY = 86_400_000_000
CANONICAL_ATTRIBUTES = ("country", "platform", "channel")
# currency used by players of each country, for games that log local-currency amounts
COUNTRY_CURRENCY = {"JP": "JPY", "KR": "KRW", "DE": "EUR", "FR": "EUR", "GB": "GBP", "BR": "BRL", "IN": "INR"}


@dataclass
class DayLog:
    """One day of output: events (canonical columns) and the players installed that day."""

    day: dt.date
    events: pd.DataFrame
    installs: pd.DataFrame


class Simulator:
    """Steps a game forward one day at a time; `players` is the full latent state."""

    def __init__(self, config: GameConfig, settings: SimulationSettings | None = None):
        settings = settings or config.simulation
        if settings is None:
            raise ConfigError(f"game {config.game.id!r} has no `simulation:` section; add one to simulate it")
        unknown = set(config.logs.players.attributes) - set(CANONICAL_ATTRIBUTES)
        if unknown:
            raise ConfigError(f"the simulator can generate attributes {CANONICAL_ATTRIBUTES}; "
                              f"the config asks for {sorted(unknown)}")
        self.config = config
        self.world = World(settings)
        self.players = Players()
        self.install_seconds = np.zeros(0, np.int64)
        self.t = 0  # the next day to simulate
        self._late: pd.DataFrame | None = None  # late-arriving events for the next partition
        self._fork = 0

    @property
    def settings(self) -> SimulationSettings:
        return self.world.settings

    def fork(self, fork_id: int) -> Simulator:
        """A copy with the same state whose future draws come from another random stream."""
        other = Simulator(self.config, self.settings)
        other.players, other.install_seconds, other.t = self.players.copy(), self.install_seconds.copy(), self.t
        other._fork = fork_id
        return other

    def _rng(self, t: int) -> np.random.Generator:
        return np.random.default_rng([self.settings.seed, t, self._fork])

    def step(self) -> DayLog:
        """Simulate day `self.t` and advance."""
        t, world, p = self.t, self.world, self.players
        rng = self._rng(t)
        day = world.date(t)
        weekday_boost = 1.3 if day.weekday() >= 5 else 1.0
        n_new = rng.poisson(self.settings.daily_installs * weekday_boost * world.campaign_factor(t))
        first_new = len(p)
        p.append(dyn.new_players(n_new, t, world, rng))
        install_sec = rng.integers(0, 86_000, n_new)
        self.install_seconds = np.concatenate([self.install_seconds, install_sec])

        idx = np.flatnonzero(p.alive)
        old = idx[p.install_day[idx] < t]
        churned = old[rng.random(len(old)) < dyn.churn_hazard(p, old, t)]
        p.alive[churned] = False
        idx = np.flatnonzero(p.alive)
        if world.transitions(t):  # its own stream: other draws unchanged
            dyn.transition(p, idx, t, world, np.random.default_rng([self.settings.seed, t, self._fork, 1]))
        active = idx[rng.random(len(idx)) < dyn.activity_prob(p, idx, t, world)]
        since = p.since_purchase[active]
        buys = rng.random(len(active)) < dyn.purchase_prob(p, active, since, t, world)
        buyers = active[buys]

        events = self._events(t, active, buyers, rng)
        # state for tomorrow
        p.since_purchase[idx] = np.where(p.since_purchase[idx] > 0, p.since_purchase[idx] + 1, 0)
        p.since_purchase[buyers] = 1
        installs = self._installs(first_new, install_sec, t)
        self.t += 1
        return DayLog(day, self._dirty(events, rng), installs)

    def _events(self, t: int, active: np.ndarray, buyers: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        p = self.players
        day_us = (self.world.date(t) - EPOCH).days * US_PER_DAY
        start_floor = np.where(p.install_day[active] == t, self.install_seconds[active], 0)
        # sessions: one login at the start, one session event carrying the length at the end
        n_sess = 1 + rng.poisson(p.sessions[active])
        s_player = np.repeat(active, n_sess)
        floor = np.repeat(start_floor, n_sess)
        first = np.r_[0, np.cumsum(n_sess)[:-1]]
        start = floor + rng.random(len(s_player)) * (86_300 - floor)
        start[first] = floor[first] + rng.random(len(first)) * np.minimum(3600, 86_300 - floor[first])
        # a session running past midnight is cut short, at a random point so timestamps stay distinct
        length = np.minimum(rng.lognormal(np.log(np.repeat(p.session_minutes[active], n_sess) * 60), 0.6),
                            (86_399 - start) * rng.uniform(0.5, 1.0, len(start)))
        # level-ups, slowing as the level rises
        rate = p.level_rate[active] * 1.5 / (1 + p.level[active] / 15)
        n_lvl = rng.poisson(rate)
        l_player = np.repeat(active, n_lvl)
        within = np.arange(len(l_player)) - np.repeat(np.r_[0, np.cumsum(n_lvl)[:-1]], n_lvl)
        l_level = p.level[l_player] + within + 1
        l_time = np.repeat(start_floor, n_lvl) + rng.random(len(l_player)) * (86_399 - np.repeat(start_floor, n_lvl))
        # purchases (sometimes two on one day), by the type that spends today: after a content
        # update a converted non-payer buys like its new type (as the oracle assumes)
        spends_as = dyn.spending_type(p, buyers, t, self.world)
        n_buy = 1 + (rng.random(len(buyers)) < dyn.EXTRA_PURCHASE_PROB[spends_as])
        b_player = np.repeat(buyers, n_buy)
        b_amount = dyn.draw_amounts(p, b_player, t, self.world, rng)
        b_floor = np.where(p.install_day[b_player] == t, self.install_seconds[b_player], 0)
        b_time = b_floor + rng.random(len(b_player)) * (86_399 - b_floor)

        level_now = p.level[s_player]
        p.level[active] += n_lvl.astype(np.int32)
        roles = np.concatenate([np.zeros(len(s_player), np.int8), np.ones(len(s_player), np.int8),
                                np.full(len(l_player), 3, np.int8), np.full(len(b_player), 2, np.int8)])
        secs = np.concatenate([start, start + length, l_time, b_time])
        return pd.DataFrame({
            "player": np.concatenate([s_player, s_player, l_player, b_player]),
            "time_us": day_us + (secs * 1e6).astype(np.int64),
            "role": roles,  # 0 login, 1 session, 2 purchase, 3 level_up
            "revenue": np.concatenate([np.full(2 * len(s_player) + len(l_player), np.nan), b_amount]),
            "level": np.concatenate([level_now, level_now, l_level, p.level[b_player]]).astype(np.int32),
            "session_seconds": np.concatenate([np.full(len(s_player), np.nan), length,
                                               np.full(len(l_player) + len(b_player), np.nan)]),
        })

    def _installs(self, first_new: int, install_sec: np.ndarray, t: int) -> pd.DataFrame:
        p = self.players
        sl = slice(first_new, len(p))
        day_us = (self.world.date(t) - EPOCH).days * US_PER_DAY
        return pd.DataFrame({
            "player": np.arange(first_new, len(p)),
            "install_us": day_us + install_sec.astype(np.int64) * 1_000_000,
            "country": dyn.COUNTRIES[p.country[sl]],
            "platform": dyn.PLATFORMS[p.platform[sl]],
            "channel": dyn.CHANNELS[p.channel[sl]],
        })

    def _dirty(self, ev: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Inject the configured data defects (all rates 0 by default)."""
        d = self.settings.dirty
        n = len(ev)
        if d.out_of_order_rate:
            pick = rng.random(n) < d.out_of_order_rate
            shift = (rng.random(pick.sum()) * (ev.loc[pick, "time_us"] % US_PER_DAY)).astype(np.int64)
            ev.loc[pick, "time_us"] -= shift
        if d.future_rate:
            ev.loc[rng.random(n) < d.future_rate, "time_us"] += 365 * US_PER_DAY
        if d.null_id_rate:
            ev["player"] = ev["player"].astype("Int64")
            ev.loc[rng.random(n) < d.null_id_rate, "player"] = pd.NA
        if d.duplicate_rate:
            ev = pd.concat([ev, ev[rng.random(n) < d.duplicate_rate]], ignore_index=True)
        late = None
        if d.late_rate:
            is_late = rng.random(len(ev)) < d.late_rate
            late, ev = ev[is_late], ev[~is_late]
        if self._late is not None:
            ev = pd.concat([ev, self._late], ignore_index=True)
        self._late = late
        return ev


# ----------------------------------------------------------------------------------------------
# Canonical -> the game's own schema


class LogWriter:
    """Turns canonical day logs into the game's configured tables and writes them as parquet."""

    def __init__(self, config: GameConfig):
        self.config = config
        ev = config.logs.events
        self.role_names = [ev.event_types.login, ev.event_types.session, ev.event_types.purchase,
                           ev.event_types.level_up]
        self.string_ids = config.logs.player_id_type == "string"
        self._names = np.zeros(0, dtype=object)

    def player_ids(self, players: np.ndarray | pd.Series) -> pa.Array:
        values = np.asarray(pd.Series(players).astype("Int64").fillna(-1), dtype=np.int64)
        mask = values < 0
        if self.string_ids:
            if values.max(initial=-1) >= len(self._names):  # format each id once, as players arrive
                self._names = np.concatenate([self._names, np.array(
                    [f"p{i:08d}" for i in range(len(self._names), int(values.max()) + 1)], dtype=object)])
            return pa.array(self._names[np.maximum(values, 0)], type=pa.string(), mask=mask)
        return pa.array(values + 100_000_000, type=pa.int64(), mask=mask)

    def events_table(self, ev: pd.DataFrame, rng: np.random.Generator, country_of: np.ndarray) -> pa.Table:
        cfg = self.config.logs.events
        c = cfg.columns
        ev = ev.sort_values("time_us", kind="stable") if not self.config.simulation.dirty.out_of_order_rate else ev
        role = ev["role"].to_numpy()
        names = np.empty(len(ev), dtype=object)
        for r, choices in enumerate(self.role_names):
            sel = role == r
            names[sel] = np.asarray(choices, dtype=object)[rng.integers(0, len(choices), sel.sum())]
        session = ev["session_seconds"].to_numpy()
        unit = {"seconds": 1.0, "milliseconds": 1000.0, "minutes": 1 / 60}[cfg.session_length_unit]
        if cfg.session_length_unit == "milliseconds":  # integer column, as such logs usually are
            session_col = pa.array(np.nan_to_num(np.round(session * unit)).astype(np.int64), mask=np.isnan(session))
        else:
            session_col = pa.array(session * unit, from_pandas=True)
        revenue = ev["revenue"].to_numpy()
        cols: dict[str, pa.Array] = {
            c.player_id: self.player_ids(ev["player"]),
            c.event_time: pa.array(ev["time_us"].to_numpy(), type=pa.timestamp("us")),
            c.event_type: pa.array(names, type=pa.string()),
            c.level: pa.array(ev["level"].to_numpy(), type=pa.int32()),
            c.session_length: session_col,
        }
        if c.currency:
            player = ev["player"].astype("Int64").fillna(0).to_numpy(dtype=np.int64)
            ccy = np.array([COUNTRY_CURRENCY.get(x, "USD") for x in dyn.COUNTRIES])[country_of[player]]
            ccy = np.where(np.isin(ccy, list(cfg.revenue.fx_rates) + [cfg.revenue.base_currency]), ccy,
                           cfg.revenue.base_currency)
            rate = np.array([cfg.revenue.fx_rates.get(x, 1.0) for x in ccy])
            local = np.round(revenue / rate, 2)
            cols[c.revenue] = pa.array(np.where(np.isnan(local), 0.0, local))
            cols[c.currency] = pa.array(np.where(np.isnan(revenue), None, ccy).astype(object), type=pa.string())
        else:
            cols[c.revenue] = pa.array(revenue, from_pandas=True)
        return pa.table(cols)

    def players_table(self, installs: pd.DataFrame) -> pa.Table:
        p = self.config.logs.players
        cols: dict[str, pa.Array] = {
            p.columns.player_id: self.player_ids(installs["player"]),
            p.columns.install_time: pa.array(installs["install_us"].to_numpy(), type=pa.timestamp("us")),
        }
        for feature, column in p.attributes.items():
            cols[column] = pa.array(installs[feature].to_numpy().astype(object), type=pa.string())
        return pa.table(cols)


def write_table(table: pa.Table, directory) -> None:
    pq.write_table(table, directory / "part-0.parquet", compression="zstd", row_group_size=1_000_000)
