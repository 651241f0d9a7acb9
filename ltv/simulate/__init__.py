"""Game simulator with ground truth: `simulate(config, lake)` writes a game's raw logs and oracle."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ltv.config import GameConfig
from ltv.lake import Lake, write_json_atomic, write_with
from ltv.simulate import dynamics as dyn
from ltv.simulate.game import LogWriter, Simulator, write_table
from ltv.simulate.truth import oracle

__all__ = ["TRUTH_DEFINITION", "Simulator", "SimulationSummary", "oracle", "simulate", "truth_definition", "truth_table"]


@dataclass
class SimulationSummary:
    game: str
    start: str
    end: str
    days: int
    players: int
    events: int
    seconds: float
    events_per_second: float
    revenue: float
    players_by_type: dict[str, int] = field(default_factory=dict)
    revenue_by_type: dict[str, float] = field(default_factory=dict)
    truth_cutoffs: list[str] = field(default_factory=list)
    drift_day: str | None = None

    @property
    def payer_share(self) -> float:
        return 1 - self.players_by_type.get("nonpayer", 0) / max(1, self.players)

    @property
    def whale_revenue_share(self) -> float:
        return self.revenue_by_type.get("whale", 0.0) / max(1e-9, self.revenue)


TRUTH_DEFINITION = "_definition.json"


def truth_definition(config: GameConfig) -> dict[str, int]:
    """What a truth partition's expectations are over: the label horizons of the config that
    simulated it. An oracle is only comparable with a model predicting the same horizons."""
    return {"ltv_days": config.horizons.ltv_days, "purchase_days": config.horizons.purchase_days}


def _write_truth(directory, table: pa.Table, config: GameConfig) -> None:
    write_table(table, directory)
    write_json_atomic(directory / TRUTH_DEFINITION, truth_definition(config))


def truth_table(sim: Simulator, writer: LogWriter, day: int) -> pa.Table:
    """The oracle at day `day` with the game's player ids."""
    h = sim.config.horizons
    frame = oracle(sim.players, day, sim.world, h.ltv_days, h.purchase_days)
    table = pa.Table.from_pandas(frame.drop(columns=["player"]), preserve_index=False)
    return table.add_column(0, "player_id", writer.player_ids(frame["player"].to_numpy()))


def simulate(config: GameConfig, lake: Lake, *, days: int | None = None,
             progress: Callable[[int, int], None] | None = None,
             on_day: Callable[[Simulator], None] | None = None) -> SimulationSummary:
    """Simulate the game's `simulation` section (or its first `days` days) into the lake.
    `on_day(sim)` sees the latent state at the start of each day (the oracle's state at it)."""
    if config.simulation is not None and config.simulation.profile in ("btyd", "retail"):
        from ltv.simulate.btyd import simulate_shop

        summary = SimulationSummary(**simulate_shop(config, lake, days=days, progress=progress))
        write_json_atomic(lake.base / "simulation.json", asdict(summary) | {"generated": dt.datetime.now().isoformat()})
        return summary
    sim = Simulator(config)
    writer = LogWriter(config)
    settings = sim.settings
    n_days = days or settings.days
    tables = config.logs
    events = 0
    revenue_by_type = np.zeros(len(dyn.TYPES))
    truth_days: list[str] = []
    started = time.perf_counter()
    for _ in range(n_days):
        t = sim.t
        day = sim.world.date(t)
        if on_day:
            on_day(sim)
        if config.cutoffs.is_cutoff(day) and t > 0:
            write_with(lake.partition("truth", "cutoff", day),
                       lambda d: _write_truth(d, truth_table(sim, writer, t), config))
            truth_days.append(str(day))
        log = sim.step()
        rng = np.random.default_rng([settings.seed, t, 1_000_003])
        table = writer.events_table(log.events, rng, sim.players.country)
        write_with(lake.raw_partition(tables.events.table, day), lambda d: write_table(table, d))
        write_with(lake.raw_partition(tables.players.table, day),
                   lambda d: write_table(writer.players_table(log.installs), d))
        events += table.num_rows
        bought = log.events[log.events["role"] == 2]
        players = bought["player"].astype("Int64").dropna().to_numpy(dtype=np.int64)
        ok = bought["player"].notna().to_numpy()
        np.add.at(revenue_by_type, sim.players.ptype[players], bought["revenue"].to_numpy()[ok])
        if progress:
            progress(t + 1, n_days)
    seconds = time.perf_counter() - started
    counts = np.bincount(sim.players.ptype, minlength=len(dyn.TYPES))
    summary = SimulationSummary(
        game=config.game.id, start=str(settings.start), end=str(sim.world.date(sim.t)), days=n_days,
        players=len(sim.players), events=events, seconds=round(seconds, 2),
        events_per_second=round(events / max(seconds, 1e-9)), revenue=round(float(revenue_by_type.sum()), 2),
        players_by_type={k: int(v) for k, v in zip(dyn.TYPES, counts)},
        revenue_by_type={k: round(float(v), 2) for k, v in zip(dyn.TYPES, revenue_by_type)},
        truth_cutoffs=truth_days, drift_day=str(settings.drift.day) if settings.drift else None)
    write_json_atomic(lake.base / "simulation.json", asdict(summary) | {"generated": dt.datetime.now().isoformat()})
    return summary
