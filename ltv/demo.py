"""The demo: simulate a game with a content update (drift), then run the daily loop over it.

It shows the whole local twin: a first champion, weekly scoring, the update detected and
alerted, retrains whose challengers are promoted or rejected by the promotion rule (a paired
bootstrap on the same unseen rows), each alert's life cycle (open → retrain requested → retrain
promoted / rejected → resolved, or escalated once), Kakao's drift experiment over the configured
dataset versions, an offer experiment (model-timed vs random-day offers vs none) read out beside
the simulator's truth, and the HTML report of the champion with the drift table and a link to the
readout. Everything goes to a new folder; nothing is overwritten.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ltv import config as cfg
from ltv import datasets, experiments
from ltv.errors import MissingPartitionError
from ltv.lake import Lake
from ltv.models.automl import fast_budget
from ltv.run import DailyLoop, RunSummary
from ltv.simulate import SimulationSummary, Simulator, simulate
from ltv.simulate import offers
from ltv.training import DriftExperiment, drift_experiment, write_evaluation

DEMO_GAME = "galaxy-raiders"
LOOP_START_AFTER_DAYS = 182   # the loop starts after 26 weeks of history
DEFAULT_INSTALLS = 200        # half of the game's configured installs, to stay in minutes on a laptop
OFFER_BUDGET_SHARE = 0.02     # the offer experiment's offers per day, as a share of the scored players


@dataclass
class DemoResult:
    lake: Lake
    simulation: SimulationSummary
    loop: RunSummary
    drift: DriftExperiment
    report: Path | None         # the champion on its test period, with the drift table
    incidents: list[dict[str, Any]]  # every alert's life cycle (ltv.monitoring.Incidents)
    experiment: OfferExperiment | None = None


# the demo explains fewer players than a game's default (exact contributions cost ~100x a
# prediction per row, and the demo scores weekly): the top 1 %, and 300 rows in each report
DEMO_EXPLANATIONS = {"top_share": 0.01, "sample_share": 0.0, "report_rows": 300}

# the demo retrains on schedule once a quarter, not monthly as the game does: its story is the
# retrains that monitoring asks for after the update; each monthly one adds ~40 s and shows nothing new
DEMO_RETRAIN = "cron(0 5 ? JAN,APR,JUL,OCT MON#1 *)"


@dataclass
class OfferExperiment:
    spec: experiments.Spec
    result: dict                # the readout
    truth: dict                 # per arm, the true mean uplift (the simulator's oracle)
    page: Path
    power: experiments.Power


def experiment_day(config: cfg.GameConfig) -> dt.date:
    """The last day the loop scores: the offer experiment starts there."""
    from ltv import schedule

    day = config.simulation.end - dt.timedelta(days=1)
    while not schedule.is_scoring_day(config.cutoffs, config.schedules.scoring, day):
        day -= dt.timedelta(days=1)
    return day


def offer_experiment(config: cfg.GameConfig, lake: Lake, engine, sim: Simulator, day: dt.date) -> OfferExperiment | None:
    """Model-timed vs random-day offers vs none, from the champion's predictions at `day`: the
    experiment is created, assigned and its offers logged in the lake; its 14 days of outcomes are
    drawn by the simulator's offers (`ltv.simulate.offers`), whose oracle knows the true uplift."""
    from ltv.report.experiment import render_readout
    from ltv.scoring import read_predictions

    try:
        pred = read_predictions(lake, day)
    except MissingPartitionError:
        return None
    spec = experiments.parse_spec({
        "id": f"offers-{day}", "game": config.game.id, "start": str(day), "horizon_days": 14,
        "arms": [{"name": "model", "policy": "model", "share": 0.4},
                 {"name": "random-day", "policy": "random-day", "share": 0.4},
                 {"name": "holdout", "policy": "none", "share": 0.2}],
        "holdout": "holdout", "primary_metric": "revenue_per_player", "mde": 0.05,
        "budget_per_day": max(1, int(OFFER_BUDGET_SHARE * len(pred)))})
    power = experiments.power_from_lake(engine, spec, pred)
    exp = experiments.create(lake, spec, power)
    experiments.assign(exp, day, pred)
    pre = experiments.spend(engine, day - dt.timedelta(days=spec.pre_period_days), day)
    pred = pred.merge(pre.rename(columns={"revenue": "pre_revenue"})[["player_id", "pre_revenue"]], on="player_id",
                      how="left").fillna({"pre_revenue": 0.0})
    pred["sim_player"] = offers.sim_players(config, pred["player_id"])
    outlook = offers.outlook(sim, spec.horizon_days)
    rng = np.random.default_rng([config.simulation.seed, 25])
    result, truth, counts = offers.simulated_experiment(spec, pred, pred["pre_revenue"].to_numpy(float), sim, outlook,
                                                        offers.OfferEffect(), rng)
    result["offers"] = counts
    page = experiments.write_readout(exp, result, render_readout(spec, result, truth))
    return OfferExperiment(spec, result, truth, page, power)


def demo_config(game: str, installs: int | None, days: int | None) -> cfg.GameConfig:
    sim = {k: v for k, v in (("daily_installs", installs), ("days", days)) if v}
    return cfg.load(game, {"simulation": sim, "explanations": DEMO_EXPLANATIONS, "schedules": {"retrain": DEMO_RETRAIN}})


def run_demo(root: Path, *, game: str = DEMO_GAME, installs: int | None = DEFAULT_INSTALLS, days: int | None = None,
             fast: bool = True, say: Callable[[str], None] | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    say = say or (lambda _m: None)
    config = demo_config(game, installs, days)
    lake = Lake(root, config.game.id)
    say(f"simulating {config.game.name}: {config.simulation.days} days from {config.simulation.start}, "
        f"~{config.simulation.daily_installs} installs/day, content update on {config.simulation.drift.day}")
    day = experiment_day(config)
    kept: list[Simulator] = []  # the latent state at the offer experiment's start

    def keep(state: Simulator) -> None:
        if state.world.date(state.t) == day:
            kept.append(state.fork(0))

    sim = simulate(config, lake, progress=(lambda d, n: progress("simulate", d, n)) if progress else None,
                   on_day=keep)
    say(f"{sim.events:,} events of {sim.players:,} players ({sim.events_per_second:,} events/s)")
    start = config.simulation.start + dt.timedelta(days=LOOP_START_AFTER_DAYS)
    end = config.simulation.end - dt.timedelta(days=1)
    loop = DailyLoop(config, lake, budget=fast_budget(config.model) if fast else None, say=say)
    summary = loop.run(start, end, progress=(lambda d, n: progress("daily loop", d, n)) if progress else None)
    say("drift experiment: a model fixed on the first dataset version vs one retrained on the latest")
    drift = drift_experiment(config, lake, loop.engine, budget=loop.budget, progress=say)
    experiment = None
    if kept:
        say(f"offer experiment from {day}: model-timed vs random-day offers vs none, readout beside the truth")
        experiment = offer_experiment(config, lake, loop.engine, kept[0], day)
    report = None
    champion = loop.registry.champion()
    if champion is not None:
        spec = datasets.find_spec(config, champion.lineage["dataset"]["name"])
        report, _ = write_evaluation(config, lake, loop.engine, loop.registry.load(champion.version),
                                     f"model version {champion.version} (champion)", spec)
    return DemoResult(lake, sim, summary, drift, report / "report.html" if report else None, loop.monitor.incidents(),
                      experiment)
