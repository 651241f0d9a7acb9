"""Load check: the daily loop's ETL and scoring on a game 10x the demo's, within memory on 2 cores.

    .venv/bin/python benchmarks/load.py [--scale 10] [--budget-gib 8] [--duckdb-limit-gib 4]

The demo simulates galaxy-raiders for a year at 200 installs/day (`ltv demo`); this simulates it
at `--scale` times the installs (cached under benchmarks/out/load/, keyed like the ETL
benchmark's lake) and runs, each stage in a fresh child process with its peak RSS measured,
what the daily loop runs on it:

- backfill   player_day of every day in one range run (the loop's `backfill`, days deduplicated:
             no stored validation reports), the heaviest query there is;
- backfill@  the same with DuckDB's memory limited to `--duckdb-limit-gib` (a small worker: the
             engine must stream and spill rather than hold the year in memory);
- daily      one day as the loop does it: validation of the raw day, then its player_day;
- features   the population at the last cutoff;
- dataset    the rolling dataset version at the last day (features and labels of its cutoffs);
- train      the challenger on it with the fast budget (for the scoring stage; not a target);
- score      batch scoring of the last cutoff's population with that champion (`ltv predict`);
- monitor    the day's monitoring on those predictions.

Target: every stage's peak RSS <= `--budget-gib`, and the memory-limited backfill completes
within its limit (+ the interpreter and libraries). Misses print MISS.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import simulator as bench  # benchmarks/simulator.py: shared helpers
from simulator import OUT, Measured, emit, print_machine, run_child, verdict

from ltv import datasets, etl
from ltv.config import GameConfig
from ltv.demo import DEFAULT_INSTALLS, DEMO_GAME, demo_config
from ltv.lake import Lake

SCRIPT = Path(__file__).resolve()
STAGES = ("backfill", "backfill@", "daily", "features", "dataset", "train", "score", "monitor")


def cached_lake(scale: int) -> Path:
    """The simulated lake of the demo game at `scale` x its installs (simulated once; a lake of
    another scale is removed)."""
    config = demo_config(DEMO_GAME, DEFAULT_INSTALLS * scale, None)
    return bench.cached_simulation(config, OUT / "load", f"{DEMO_GAME}-x{scale}", {"scale": scale}, stale="*")


def open_lake(root: Path) -> tuple[GameConfig, Lake, dict[str, Any]]:
    settings = json.loads((root / "settings.json").read_text())
    config = demo_config(DEMO_GAME, DEFAULT_INSTALLS * settings["scale"], None)
    return config, Lake(root / "lake", config.game.id), settings


def last_cutoff(config: GameConfig) -> dt.date:
    day = config.simulation.end
    while not config.cutoffs.is_cutoff(day):
        day -= dt.timedelta(days=1)
    return day


# ----------------------------------------------------------------------------------------------
# stages (each in its own child)


def stage(name: str, root: Path, limit_gib: float) -> dict[str, Any]:
    from ltv.models.automl import fast_budget
    from ltv.monitoring import Monitor
    from ltv.run import DailyLoop, etl_validate
    from ltv.scoring import score
    from ltv.training import train_evaluate_register

    config, lake, _ = open_lake(root)
    loop = DailyLoop(config, lake, budget=fast_budget(config.model))
    end, cutoff = config.simulation.end, last_cutoff(config)
    last = end - dt.timedelta(days=1)
    out: dict[str, Any] = {}
    if name.startswith("backfill"):
        shutil.rmtree(lake.table("player_day"), ignore_errors=True)
        if name == "backfill@":
            loop.engine.con.execute(f"SET memory_limit = '{limit_gib}GiB'")
            out["duckdb_limit_gib"] = limit_gib
        with Measured() as m:
            out["days"] = loop.backfill(end)
    elif name == "daily":
        with Measured() as m:
            etl_validate(loop, last)
            out["rows"] = etl.build_player_day(loop.engine, config, last).rows
    elif name == "features":
        with Measured() as m:
            out["rows"] = etl.build_features(loop.engine, config, cutoff).rows
    elif name == "dataset":
        shutil.rmtree(lake.datasets, ignore_errors=True)
        spec = datasets.rolling_spec(config, end)
        with Measured() as m:
            out["rows"] = datasets.build_dataset(loop.engine, config, lake, spec)["rows"]
    elif name == "train":
        shutil.rmtree(lake.registry, ignore_errors=True)
        with Measured() as m:
            run = train_evaluate_register(config, lake, loop.engine, loop.registry, datasets.rolling_spec(config, end),
                                          budget=loop.budget)
        out["version"] = run.version.version
    elif name == "score":
        with Measured() as m:
            result = score(config, lake, loop.engine, loop.registry, cutoff)
        out["rows"] = result.rows
    else:
        with Measured() as m:
            report = Monitor(config, lake, loop.engine, loop.registry).run(cutoff)
        out["alerts"] = len(report.alerts)
    return m.result() | out


# ----------------------------------------------------------------------------------------------
# the report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10, help="times the demo's daily installs")
    parser.add_argument("--budget-gib", type=float, default=8.0, help="peak RSS every stage must stay under")
    parser.add_argument("--duckdb-limit-gib", type=float, default=4.0, help="DuckDB's memory limit in backfill@")
    parser.add_argument("--idle-timeout", type=float, default=600)
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        emit(stage(args.child, Path(args.root), args.duckdb_limit_gib))
        return 0

    m = bench.machine()
    root = cached_lake(args.scale)
    config, lake, settings = open_lake(root)
    s = config.simulation
    print(f"load benchmark  {dt.datetime.now():%Y-%m-%d %H:%M}")
    print(f"game    : {DEMO_GAME} at {args.scale}x the demo ({s.daily_installs} installs/day vs "
          f"{DEFAULT_INSTALLS}), seed {s.seed}, {s.days} days from {s.start}: {settings['events']:,} events, "
          f"{settings['players']:,} players; last cutoff {last_cutoff(config)}")
    print_machine(m)
    results: dict[str, dict[str, Any]] = {}
    for name in STAGES:
        r = run_child(SCRIPT, ["--root", str(root), "--duckdb-limit-gib", str(args.duckdb_limit_gib), "--child", name],
                      rss_limit_gib=0.9 * m["ram_gib"], idle_timeout_s=args.idle_timeout)
        if r is None:
            print(f"{name}: failed")
            return 1
        results[name] = r
        print(f"  {name:10s} {r['seconds']:7.1f} s  {r['peak_rss_mib']:8,.0f} MiB", flush=True)
    print(f"\n{'stage':12s} {'wall s':>8s} {'CPU s':>8s} {'peak MiB':>9s}  {'other load':>10s}  detail")
    for name, r in results.items():
        detail = {k: v for k, v in r.items() if k in ("days", "rows", "version", "alerts", "duckdb_limit_gib")}
        load = f"{r['foreign_share']:.0%}" + (" (contended)" if r["contended"] else "")
        print(f"{name:12s} {r['seconds']:8.1f} {r['cpu_s']:8.1f} {r['peak_rss_mib']:9,.0f}  {load:>10s}  {detail}")
    worst = max(results.items(), key=lambda kv: kv[1]["peak_rss_mib"])
    print(f"\npeak RSS of every stage <= {args.budget_gib:g} GiB: worst {worst[0]} "
          f"{worst[1]['peak_rss_mib'] / 1024:.2f} GiB  {verdict(worst[1]['peak_rss_mib'] <= args.budget_gib * 1024)}")
    limited = results["backfill@"]["peak_rss_mib"] / 1024
    print(f"backfill with DuckDB limited to {args.duckdb_limit_gib:g} GiB: peak {limited:.2f} GiB, "
          f"{results['backfill@']['seconds']:.0f} s vs {results['backfill']['seconds']:.0f} s unlimited  "
          f"{verdict(limited <= args.duckdb_limit_gib + 1.0)} (limit + 1 GiB for the interpreter and libraries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
