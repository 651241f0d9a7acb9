"""Experiments benchmark: is the readout honest, and does the model's timing earn more?

    .venv/bin/python benchmarks/experiments.py [--experiments 250] [--null-experiments 2000] [--installs 200] [--days 203]

One scored game, reused by every experiment (no retraining per experiment): galaxy-raiders
(no content update) is simulated, a model is trained once (fast budget) on the rolling dataset
as of the simulation's end D and scores the population at D. The simulator's latent state at D
gives each player's outlook (`ltv.simulate.offers`), so every experiment knows its truth. Each
seeded experiment assigns the scored players by its own salt to model-timed (40 %), random-day
(40 %) and no offer (20 %, the holdout), plans each arm's offers for the first week under the
same daily budget per player, applies them with the default `OfferEffect`, draws 14 days of
outcomes and reads them out (`ltv.experiments.analyse`). The same experiments, and more (the
false-positive rate needs thousands to tell 5 % from 6 %), are run with no true effect (lift 0).

Targets (issue 25; benchmarks/README.md):
- the 95 % CI covers the true uplift in 93-97 % of >= 200 experiments;
- with no true effect, <= 5 % false positives;
- CUPED narrows the CI by >= 20 %;
- SRM flags an injected 52/48 split and stays quiet on a fair one (>= 95 % each);
- the model-timed arm's true uplift >= 1.3 x the random-day arm's at the same budget.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simulator as bench  # benchmarks/simulator.py: shared helpers
from simulator import OUT, print_machine, verdict

from ltv import datasets, etl, experiments, sql
from ltv.engine import DuckDBEngine
from ltv.lake import Lake
from ltv.models import train
from ltv.models.automl import fast_budget
from ltv.scoring import predictions
from ltv.simulate import Simulator, simulate
from ltv.simulate import offers as of

GAME = "galaxy-raiders"
HORIZON = 14
BUDGET_SHARE = 0.02       # offers per day, as a share of the scored players (split by arm share)
SRM_SIZES = (5_000, 10_000, 20_000, 40_000)
SRM_REPS_GAME = 2000  # at the game's own size: binomial se ~0.005 around 0.95


def spec_of(day: dt.date, seed: int, budget: int) -> experiments.Spec:
    return experiments.parse_spec({
        "id": "bench", "game": GAME, "start": str(day), "horizon_days": HORIZON, "seed": seed,
        "arms": [{"name": "model", "policy": "model", "share": 0.4},
                 {"name": "random", "policy": "random-day", "share": 0.4},
                 {"name": "holdout", "policy": "none", "share": 0.2}],
        "holdout": "holdout", "primary_metric": "revenue_per_player", "mde": 0.1, "budget_per_day": budget})


def scored_game(installs: int, days: int) -> dict[str, Any]:
    """The simulated game, its model's predictions at the end D, pre-period spend, and the
    simulator at D: cached under benchmarks/out/experiments/ by settings and source."""
    config = bench.derive_config(GAME, simulation={"daily_installs": installs, "days": days, "drift": None})
    s = config.simulation
    key = hashlib.sha256((config.model_dump_json() + bench.source_hash()).encode()).hexdigest()[:10]
    root = OUT / "experiments" / f"{GAME}-{key}"
    lake = Lake(root, config.game.id)
    day = s.end
    cached = root / "predictions.parquet"
    if not cached.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"simulating {installs}/day x {days} days into {root} ...", flush=True)
        simulate(config, lake)
        engine = DuckDBEngine(lake, config)
        etl.build_player_day(engine, config, s.start, day - dt.timedelta(days=1))
        spec = datasets.rolling_spec(config, day)
        manifest = datasets.build_dataset(engine, config, lake, spec)
        started = time.perf_counter()
        model = train(config, datasets.load_dataset(lake, spec.name), root / "model", dataset=manifest,
                      budget=fast_budget(config.model), progress=lambda m: print(f"  {m}", flush=True))
        print(f"  trained once on {spec.name} in {time.perf_counter() - started:.0f} s", flush=True)
        etl.ensure_cutoff(engine, config, day, labels=False)
        pred = predictions(model, engine.query(f"SELECT * FROM features WHERE cutoff = '{day}'"), 1)
        pre = engine.query(f"SELECT player_id, SUM(revenue) AS pre_revenue FROM player_day "
                           f"WHERE dt >= '{day - dt.timedelta(days=28)}' AND dt < '{day}' GROUP BY 1")
        pred = pred.merge(pre, on="player_id", how="left").fillna({"pre_revenue": 0.0})
        pred.to_parquet(cached, index=False)
        (root / "etl.json").write_text(json.dumps({"sql_hash": sql.sql_hash(config)}))
    pred = pd.read_parquet(cached)
    pred["sim_player"] = of.sim_players(config, pred["player_id"])
    state = root / "simulator.pkl"
    if not state.exists():  # the latent state at D: the same seeded days again, in memory
        started = time.perf_counter()
        sim = Simulator(config)
        while sim.t < (day - s.start).days:
            sim.step()
        print(f"simulator state at {day} rebuilt in {time.perf_counter() - started:.0f} s", flush=True)
        state.write_bytes(pickle.dumps(sim))
    sim = pickle.loads(state.read_bytes())
    return {"config": config, "day": day, "pred": pred, "sim": sim, "out": of.outlook(sim, HORIZON)}


def run(game: dict[str, Any], n: int, n_null: int) -> dict[str, Any]:
    pred, sim, out, day = game["pred"], game["sim"], game["out"], game["day"]
    budget = max(1, int(BUDGET_SHARE * len(pred)))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for k in range(max(n, n_null)):
        spec = spec_of(day, k, budget)
        for lift in [of.OfferEffect().lift] * (k < n) + [0.0] * (k < n_null):
            rng = np.random.default_rng([k, int(lift * 100)])
            result, truth, offers = of.simulated_experiment(spec, pred, pred["pre_revenue"].to_numpy(float), sim, out,
                                                            of.OfferEffect(lift=lift), rng)
            for arm, t in truth.items():
                for metric, true in t.items():
                    c = result["comparisons"][arm][metric]
                    rows.append({"k": k, "lift": lift, "arm": arm, "metric": metric, "truth": true,
                                 "offers": offers.get(arm, 0), "players": result["arms"][arm]["players"],
                                 **{f"{m}_{f}": c[m][f] for m in ("plain", "cuped") for f in ("low", "high", "diff")},
                                 "srm": result["srm"]["mismatch"]})
        if (k + 1) % 50 == 0:
            print(f"  {k + 1} experiments ({time.perf_counter() - started:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    for m in ("plain", "cuped"):
        frame[f"{m}_covers"] = (frame[f"{m}_low"] <= frame["truth"]) & (frame["truth"] <= frame[f"{m}_high"])
        frame[f"{m}_positive"] = (frame[f"{m}_low"] > 0) | (frame[f"{m}_high"] < 0)
        frame[f"{m}_width"] = frame[f"{m}_high"] - frame[f"{m}_low"]
    return {"frame": frame, "budget": budget, "seconds": time.perf_counter() - started, "players": len(pred)}


def srm_rates(day: dt.date, sizes: tuple[int, ...], reps: int,
              alphas: tuple[float, ...]) -> dict[float, dict[int, tuple[float, float]]]:
    """Per threshold, (fair flagged, 52/48 flagged) rates of the SRM check over `reps` seeded
    two-arm splits of n synthetic players: the real hash, then arm b thinned to 48 % for the
    injected mismatch."""
    out: dict[float, dict[int, tuple[float, float]]] = {a: {} for a in alphas}
    for n in sizes:
        ids = pd.Series([f"p{i:08d}" for i in range(n)])
        fair, skewed = [], []
        for k in range(reps):
            spec = experiments.parse_spec({
                "id": "srm", "game": GAME, "start": str(day), "horizon_days": HORIZON, "seed": k, "holdout": "b",
                "arms": [{"name": "a", "policy": "model", "share": 0.5}, {"name": "b", "policy": "none", "share": 0.5}],
                "primary_metric": "conversion", "mde": 0.01})
            arms = experiments.assign_arms(spec, ids)
            a, b = int((arms == "a").sum()), int((arms == "b").sum())
            shares = {"a": 0.5, "b": 0.5}
            fair.append(experiments.srm({"a": a, "b": b}, shares)["p_value"])
            kept_b = np.random.default_rng(k).binomial(b, 1 - experiments.SRM_LOSS)  # logging loses ~8 % of arm b
            skewed.append(experiments.srm({"a": a, "b": int(kept_b)}, shares)["p_value"])
        for alpha in alphas:
            out[alpha][n] = (float(np.mean(np.array(fair) < alpha)), float(np.mean(np.array(skewed) < alpha)))
    return out


def report(game: dict[str, Any], res: dict[str, Any], srm: dict[float, dict[int, tuple[float, float]]],
           n: int) -> list[tuple]:
    f = res["frame"]
    eff = f[f["lift"] > 0]
    null = f[f["lift"] == 0]
    print(f"\n{n} experiments on {res['players']:,} scored players at {game['day']}: arms model 40 % / random-day "
          f"40 % / holdout 20 %, {HORIZON}-day horizon, offers in the first week, budget {res['budget']} offers/day "
          f"(x arm share); {res['seconds']:.0f} s")
    print("\n" + "metric / arm".ljust(34) + "".join(f"{h:>12}" for h in ("true uplift", "CI cover", "CUPED cover",
                                                                          "FP (null)", "CUPED FP", "CI narrowing")))
    for (metric, arm), g in eff.groupby(["metric", "arm"]):
        nl = null[(null["metric"] == metric) & (null["arm"] == arm)]
        narrowing = 1 - (g["cuped_width"] / g["plain_width"]).mean()
        print(f"{metric} / {arm}".ljust(34) + f"{g['truth'].mean():>12.4f}{g['plain_covers'].mean():>12.3f}"
              f"{g['cuped_covers'].mean():>12.3f}{nl['plain_positive'].mean():>12.3f}{nl['cuped_positive'].mean():>12.3f}"
              f"{narrowing:>12.3f}")
    rev = eff[eff["metric"] == "revenue_per_player"]
    model_up = rev.loc[rev["arm"] == "model", "truth"].mean()
    random_up = rev.loc[rev["arm"] == "random", "truth"].mean()
    offers = rev.groupby("arm")["offers"].mean()
    print(f"\ntrue revenue uplift per player: model-timed {model_up:.4f}, random-day {random_up:.4f} "
          f"(offers per experiment: model {offers['model']:.0f}, random {offers['random']:.0f})")
    print("\nSRM check over 400 seeded splits of n players: fair flagged / 52-48 flagged (stated power)")
    for alpha, rates in srm.items():
        for size, (fair, skew) in rates.items():
            stated = experiments.srm_power({"a": 0.5, "b": 0.5}, int(size * (1 - experiments.SRM_LOSS / 2)), alpha)
            print(f"  p < {alpha:<6g} n = {size:>6,}: {fair:.3f} / {skew:.3f} ({stated:.3f})")
    cover = eff["cuped_covers"].mean()
    fp = null["cuped_positive"].mean()
    per_experiment = null.groupby("k")["cuped_positive"].mean()
    fp_se = per_experiment.std() / np.sqrt(len(per_experiment))  # readouts of one experiment are correlated
    blocks = null.groupby(null["k"] // 500)["cuped_positive"].mean()
    primary = null[null["metric"] == "revenue_per_player"]["cuped_positive"].mean()
    print(f"\nover all {len(eff)} (experiment, arm, metric) readouts, CUPED: coverage {cover:.3f} (binomial se "
          f"{np.sqrt(cover * (1 - cover) / len(eff)):.3f}), false positives with no effect over {len(null)} readouts "
          f"{fp:.4f} (se {fp_se:.4f}, by experiment; blocks of 500 experiments {blocks.min():.3f}..{blocks.max():.3f}); "
          f"primary metric (revenue per player) alone: {primary:.4f}")
    for e in ("plain", "cuped"):
        z = null[f"{e}_diff"] / ((null[f"{e}_high"] - null[f"{e}_low"]) / (2 * 1.959964))
        print(f"  {e}: below the CI {(z > 1.959964).mean():.4f} / above it {(z < -1.959964).mean():.4f} "
              "(the truth, 0, outside the interval on each side)")
    narrowing = 1 - (rev["cuped_width"] / rev["plain_width"]).mean()
    pop = res["players"]
    fair, skewed = srm_rates(game["day"], (pop,), SRM_REPS_GAME, (experiments.SRM_ALPHA,))[experiments.SRM_ALPHA][pop]
    fair_pop = (1 - fair, skewed)
    print(f"  n = {pop:>6,} (this game's scored players, {SRM_REPS_GAME} splits), p < {experiments.SRM_ALPHA:g}: quiet on fair {fair_pop[0]:.3f}, "
          f"flags 52/48 {fair_pop[1]:.3f}")
    targets = [("CUPED 95 % CI covers the true uplift", cover, "0.93-0.97", 0.93 <= cover <= 0.97),
               ("false positives with no effect", fp, "<= 0.05", fp <= 0.05),
               ("CUPED CI narrowing (revenue)", narrowing, ">= 0.20", narrowing >= 0.20),
               ("SRM quiet on a fair split (this game)", fair_pop[0], ">= 0.95", fair_pop[0] >= 0.95),
               ("SRM flags 52/48 (this game)", fair_pop[1], ">= 0.95", fair_pop[1] >= 0.95),
               ("true uplift model / random-day", model_up / random_up, ">= 1.30", model_up / random_up >= 1.3)]
    print("\n" + "target".ljust(42) + f"{'value':>8}  {'target':>10}")
    for name, value, goal, ok in targets:
        print(f"{name.ljust(42)}{value:>8.3f}  {goal:>10}  {verdict(ok)}")
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=250)
    parser.add_argument("--null-experiments", type=int, default=2000, help="seeds run with no true effect")
    parser.add_argument("--installs", type=int, default=200, help="simulated daily installs (the demo's)")
    parser.add_argument("--days", type=int, default=203, help="simulated days (the end, D, is a Monday)")
    args = parser.parse_args(argv)
    print(f"experiments benchmark  {dt.datetime.now():%Y-%m-%d %H:%M}, seeds 0..{args.experiments - 1}")
    print_machine(bench.machine())
    started = time.perf_counter()
    game = scored_game(args.installs, args.days)
    res = run(game, args.experiments, args.null_experiments)
    srm = srm_rates(game["day"], SRM_SIZES, 400, tuple(sorted({0.001, experiments.SRM_ALPHA})))
    report(game, res, srm, args.experiments)
    print(f"\nwall {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
