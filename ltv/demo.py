"""The demo: simulate a game with a content update (drift), then run the daily loop over it.

It shows the whole local twin: a first champion, weekly scoring, the update detected and
alerted, retrains whose challengers are promoted or rejected by the promotion rule (a paired
bootstrap on the same unseen rows), each alert's life cycle (open → retrain requested → retrain
promoted / rejected → resolved, or escalated once), Kakao's
drift experiment over the configured dataset versions, and the HTML report of the champion
with the drift table. Everything goes to a new folder; nothing is overwritten.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltv import config as cfg
from ltv import datasets
from ltv.lake import Lake
from ltv.models.automl import fast_budget
from ltv.run import DailyLoop, RunSummary
from ltv.simulate import SimulationSummary, simulate
from ltv.training import DriftExperiment, drift_experiment, write_evaluation

DEMO_GAME = "galaxy-raiders"
LOOP_START_AFTER_DAYS = 182   # the loop starts after 26 weeks of history
DEFAULT_INSTALLS = 200        # half of the game's configured installs, to stay in minutes on a laptop


@dataclass
class DemoResult:
    lake: Lake
    simulation: SimulationSummary
    loop: RunSummary
    drift: DriftExperiment
    report: Path | None         # the champion on its test period, with the drift table
    incidents: list[dict[str, Any]]  # every alert's life cycle (ltv.monitoring.Incidents)


# the demo explains fewer players than a game's default (exact contributions cost ~100x a
# prediction per row, and the demo scores weekly): the top 1 %, and 300 rows in each report
DEMO_EXPLANATIONS = {"top_share": 0.01, "sample_share": 0.0, "report_rows": 300}


def demo_config(game: str, installs: int | None, days: int | None) -> cfg.GameConfig:
    sim = {k: v for k, v in (("daily_installs", installs), ("days", days)) if v}
    return cfg.load(game, {"simulation": sim, "explanations": DEMO_EXPLANATIONS})


def run_demo(root: Path, *, game: str = DEMO_GAME, installs: int | None = DEFAULT_INSTALLS, days: int | None = None,
             fast: bool = True, say: Callable[[str], None] | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    say = say or (lambda _m: None)
    config = demo_config(game, installs, days)
    lake = Lake(root, config.game.id)
    say(f"simulating {config.game.name}: {config.simulation.days} days from {config.simulation.start}, "
        f"~{config.simulation.daily_installs} installs/day, content update on {config.simulation.drift.day}")
    sim = simulate(config, lake, progress=(lambda d, n: progress("simulate", d, n)) if progress else None)
    say(f"{sim.events:,} events of {sim.players:,} players ({sim.events_per_second:,} events/s)")
    start = config.simulation.start + dt.timedelta(days=LOOP_START_AFTER_DAYS)
    end = config.simulation.end - dt.timedelta(days=1)
    loop = DailyLoop(config, lake, budget=fast_budget(config.model) if fast else None, say=say)
    summary = loop.run(start, end, progress=(lambda d, n: progress("daily loop", d, n)) if progress else None)
    say("drift experiment: a model fixed on the first dataset version vs one retrained on the latest")
    drift = drift_experiment(config, lake, loop.engine, budget=loop.budget, progress=say)
    report = None
    champion = loop.registry.champion()
    if champion is not None:
        spec = datasets.find_spec(config, champion.lineage["dataset"]["name"])
        report, _ = write_evaluation(config, lake, loop.engine, loop.registry.load(champion.version),
                                     f"model version {champion.version} (champion)", spec)
    return DemoResult(lake, sim, summary, drift, report / "report.html" if report else None, loop.monitor.incidents())
