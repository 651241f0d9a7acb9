"""Feature ETL benchmark: the core (DuckDB SQL) against pandas and against a bare parquet scan.

    .venv/bin/python benchmarks/etl.py [--events 50000000] [--game galaxy-raiders] [--threads N]

Simulates >= `--events` raw events once (cached under benchmarks/out/, keyed by the game, the
settings and the simulator's source), warms the page cache, then measures in one run, each
stage in a fresh child process (time inside the child, peak RSS of the child):

- scan     a bare DuckDB scan with simple aggregates over the raw columns player_day reads:
           the I/O + decode floor of any engine on this data;
- core     the full feature build: player_day for all days (one range run = full recompute)
           + features at a late cutoff, every day deduplicated (no validation results used); the
           features' whole-history summary is built from scratch (a first cutoff);
- clean    the same, with every day declared duplicate-free (`duplicate_free=`, as the daily
           loop's backfill does from stored validation reports): true by construction here,
           the simulated lake has no duplicate events (simulation.dirty.duplicate_rate = 0);
- cutoff   the daily path of a cutoff: its features when the summary of the previous scheduled
           cutoff exists (built, untimed, before): the summary merges it with the days since, the
           features read the summary and the recent steps of player_day;
- daily    the incremental daily run: player_day of the last day alone;
- pandas   benchmarks/pandas_reference.py on the same data and cutoff (player_day + features,
           both written as parquet like the core's). If it needs more memory than the machine
           has, it is measured on a prefix of the days against the core on the same prefix.

Targets: pandas/core >= 10x, core/scan <= 3x. Every miss is printed as MISS.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import simulator as bench  # benchmarks/simulator.py: shared helpers
from simulator import OUT, Measured, emit, print_machine, run_child, verdict

from ltv import etl
from ltv.config import GameConfig
from ltv.engine import DuckDBEngine
from ltv.lake import Lake

TARGET_PANDAS_RATIO = 10.0
TARGET_SCAN_RATIO = 3.0
SCRIPT = Path(__file__).resolve()


# ----------------------------------------------------------------------------------------------
# data


def cached_lake(game: str, events: int, days: int | None, seed: int | None) -> Path:
    """The directory of the simulated lake for these settings, simulating it only if not cached
    (keyed by the settings, the game's YAML and the simulator's source; older lakes of the same
    game and event count are removed)."""
    base = bench.derive_config(game).simulation
    days, seed = days or base.days, base.seed if seed is None else seed
    config = bench.sized_config(game, events, days, seed)
    settings = {"game": game, "daily_installs": config.simulation.daily_installs, "days": days, "seed": seed}
    return bench.cached_simulation(config, OUT / "etl", f"{game}-e{events}-d{days}-s{seed}", settings,
                                   stale=f"{game}-e{events}-*")


def open_lake(root: Path) -> tuple[GameConfig, Lake]:
    """The config and lake of a cached simulation directory."""
    s = json.loads((root / "settings.json").read_text())
    config = bench.derive_config(s["game"], simulation={"daily_installs": s["daily_installs"], "days": s["days"],
                                                         "seed": s["seed"]})
    return config, Lake(root / "lake", config.game.id)


def late_cutoff(config: GameConfig, last_day: dt.date) -> dt.date:
    """The last scheduled cutoff at most the day after the last simulated day."""
    day = last_day + dt.timedelta(days=1)
    while not config.cutoffs.is_cutoff(day):
        day -= dt.timedelta(days=1)
    return day


def raw_stats(engine: DuckDBEngine, config: GameConfig, days: list[dt.date]) -> tuple[int, int]:
    """(rows, bytes) of the raw event partitions of these days."""
    stats = [engine.raw_partition_stats(config.logs.events.table, str(d)) for d in days]
    return sum(s[0] for s in stats), sum(s[1] for s in stats)


def warm_cache(lake: Lake) -> float:
    """Read every raw file once so that every stage starts with the same (warm) page cache."""
    started = time.perf_counter()
    for f in lake.base.joinpath("raw").rglob("*.parquet"):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------------------
# stages (each runs in its own child process)


def _engine(config: GameConfig, lake: Lake, threads: int | None) -> DuckDBEngine:
    return DuckDBEngine(lake, config, threads=threads)


def stage_scan(config: GameConfig, lake: Lake, first: dt.date, last: dt.date, threads: int | None) -> dict[str, Any]:
    """Simple aggregates over the raw columns player_day.sql reads, same reader options."""
    engine = _engine(config, lake, threads)
    c = config.logs.events.columns

    def q(name: str) -> str:
        return f'"{name}"'

    aggs = [f"COUNT({q(c.player_id)})", f"MAX({q(c.event_time)})", f"MIN({q(c.event_type)})",
            f"SUM({q(c.revenue)})", f"MAX({q(c.level)})", f"SUM({q(c.session_length)})", "MAX(dt)"]
    if c.currency:
        aggs.append(f"MIN({q(c.currency)})")
    base = lake.raw(config.logs.events.table)
    sql = (f"SELECT {', '.join(aggs)} FROM read_parquet('{base}/dt=*/*.parquet', hive_partitioning = true, "
           f"hive_types = {{'dt': VARCHAR}}, union_by_name = true) WHERE dt BETWEEN '{first}' AND '{last}'")
    with Measured() as m:
        row = engine.con.execute(sql).fetchone()
    return m.result() | {"rows": row[0], "sql": sql}


def stage_core(config: GameConfig, lake: Lake, first: dt.date, last: dt.date, cutoff: dt.date,
               threads: int | None, clean: bool = False) -> dict[str, Any]:
    """Full recompute: player_day for [first, last] in one range run, then features at the cutoff.

    With `clean`, every day is passed as validated duplicate-free (no DISTINCT)."""
    for table in ("player_day", "player_summary", "features"):
        shutil.rmtree(lake.table(table), ignore_errors=True)
    engine = _engine(config, lake, threads)
    duplicate_free = frozenset(str(d) for d in etl.day_range(first, last + dt.timedelta(days=1))) if clean else frozenset()
    with Measured() as m:
        with Measured() as m_day:
            pday = etl.build_player_day(engine, config, first, last, duplicate_free=duplicate_free)
        with Measured() as m_feat:
            with Measured() as m_summary:
                etl.build_summary(engine, config, cutoff)
            feats = etl.build_features(engine, config, cutoff)  # the summary is current: features only
    return m.result() | {"player_day_s": m_day.seconds, "features_s": m_feat.seconds, "summary_s": m_summary.seconds,
                         "player_day_rows": pday.rows, "feature_rows": feats.rows}


def previous_cutoff(config: GameConfig, cutoff: dt.date) -> dt.date:
    """The scheduled cutoff before `cutoff`."""
    day = cutoff - dt.timedelta(days=1)
    while not config.cutoffs.is_cutoff(day):
        day -= dt.timedelta(days=1)
    return day


def stage_cutoff(config: GameConfig, lake: Lake, cutoff: dt.date, threads: int | None) -> dict[str, Any]:
    """The daily path of a cutoff (after the full build's player_day): its features when the
    previous scheduled cutoff's summary exists, i.e. summary merged from it + features."""
    for table in ("player_summary", "features"):
        shutil.rmtree(lake.table(table), ignore_errors=True)
    engine = _engine(config, lake, threads)
    previous = previous_cutoff(config, cutoff)
    etl.build_summary(engine, config, previous)  # as the previous cutoff's run left it (not timed)
    with Measured() as m:
        with Measured() as m_summary:
            summary = etl.ensure_summary(engine, config, cutoff)
        feats = etl.build_features(engine, config, cutoff)
    lineage = engine.get_partition_json("player_summary", str(cutoff), etl.LINEAGE_FILE)
    assert summary is not None and lineage["previous"] == str(previous), lineage
    rows = engine.query(f"SELECT COUNT(*) FILTER (WHERE dt >= '{previous}') AS merged, COUNT(*) AS history, "
                        f"COUNT(*) FILTER (WHERE dt >= '{etl.Windows.of(config, cutoff).recent_start}') AS recent, "
                        f"COUNT(*) FILTER (WHERE purchases > 0) AS purchase_days FROM player_day WHERE dt < '{cutoff}'")
    return m.result() | {"summary_s": m_summary.seconds, "features_s": m.seconds - m_summary.seconds,
                         "previous": str(previous), "feature_rows": feats.rows, "summary_rows": summary.rows,
                         **{k: int(v) for k, v in rows.iloc[0].items()}}


def stage_daily(config: GameConfig, lake: Lake, day: dt.date, threads: int | None) -> dict[str, Any]:
    """The incremental daily run: player_day of one day (after the full build exists)."""
    engine = _engine(config, lake, threads)
    with Measured() as m:
        result = etl.build_player_day(engine, config, day)
    with Measured() as again:
        etl.build_player_day(engine, config, day)
    return m.result() | {"repeat_s": again.seconds, "rows": result.rows}


def stage_pandas(config: GameConfig, lake: Lake, first: dt.date, last: dt.date, cutoff: dt.date,
                 out: Path) -> dict[str, Any]:
    """The pandas reference: player_day and features, both written as parquet."""
    import pandas_reference as ref

    shutil.rmtree(out, ignore_errors=True)
    with Measured() as m:
        with Measured() as m_day:
            daily = ref.player_day_from_lake(config, lake, first, last)
        feats = ref.features_from_lake(config, lake, daily, cutoff)
        out.mkdir(parents=True)
        daily.to_parquet(out / "player_day.parquet", index=False, compression="zstd")
        feats.to_parquet(out / "features.parquet", index=False, compression="zstd")
    return m.result() | {"player_day_s": m_day.seconds, "features_s": m.seconds - m_day.seconds,
                         "player_day_rows": len(daily), "feature_rows": len(feats)}


def child_main(args: argparse.Namespace) -> None:
    root = Path(args.root)
    config, lake = open_lake(root)
    first = config.simulation.start
    last = dt.date.fromisoformat(args.last) if args.last else config.simulation.end - dt.timedelta(days=1)
    cutoff = dt.date.fromisoformat(args.cutoff) if args.cutoff else late_cutoff(config, last)
    if args.child == "scan":
        result = stage_scan(config, lake, first, last, args.threads)
    elif args.child in ("core", "clean"):
        result = stage_core(config, lake, first, last, cutoff, args.threads, clean=args.child == "clean")
    elif args.child == "cutoff":
        result = stage_cutoff(config, lake, cutoff, args.threads)
    elif args.child == "daily":
        result = stage_daily(config, lake, last, args.threads)
    else:
        result = stage_pandas(config, lake, first, last, cutoff, root / "pandas_out")
    emit(result)


# ----------------------------------------------------------------------------------------------
# the report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--game", default="galaxy-raiders")
    parser.add_argument("--days", type=int, default=None, help="default: the game's simulation.days")
    parser.add_argument("--seed", type=int, default=None, help="default: the game's simulation.seed")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: the engine's)")
    parser.add_argument("--pandas-limit-gib", type=float, default=None,
                        help="kill the pandas run above this RSS (default: 90%% of RAM)")
    parser.add_argument("--idle-timeout", type=float, default=3600,
                        help="seconds to wait, before each stage, for other processes to leave the CPUs idle")
    parser.add_argument("--child", choices=["scan", "clean", "core", "cutoff", "daily", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--last", help=argparse.SUPPRESS)
    parser.add_argument("--cutoff", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return 0

    m = bench.machine()
    root = cached_lake(args.game, args.events, args.days, args.seed)
    config, lake = open_lake(root)
    s = config.simulation
    first, last = s.start, s.end - dt.timedelta(days=1)
    cutoff = late_cutoff(config, last)
    engine = DuckDBEngine(lake, config)
    all_days = etl.day_range(first, s.end)
    rows, size = raw_stats(engine, config, all_days)
    common = ["--root", str(root)] + (["--threads", str(args.threads)] if args.threads else [])

    print(f"ETL benchmark  {dt.datetime.now():%Y-%m-%d %H:%M}")
    print(f"game    : {args.game}, seed {s.seed}, {s.days} days from {s.start}, {s.daily_installs} installs/day")
    print_machine(m)
    print(f"data    : {rows:,} raw events, {size / 2**20:,.0f} MiB of parquet in {len(all_days)} partitions; "
          f"cutoff {cutoff}")
    print(f"threads : DuckDB {args.threads or 'engine default (LTV_THREADS or all cores)'}")
    print(f"cache   : raw files read once before measuring ({warm_cache(lake):.1f} s); all stages warm\n", flush=True)

    stages = ["scan", "clean", "core", "cutoff", "daily"]  # cutoff and daily need the full build's player_day
    if config.simulation.dirty.duplicate_rate > 0:
        stages.remove("clean")
        print("(the lake has duplicate events: no 'clean' stage)")
    measured: dict[str, dict | None] = {"clean": None}
    for stage in stages:
        measured[stage] = run_child(SCRIPT, [*common, "--child", stage], idle_timeout_s=args.idle_timeout)
        if measured[stage] is None:
            return 1
        print(f"  {stage:6s} {measured[stage]['seconds']:7.1f} s", flush=True)
    scan, clean, core, daily = measured["scan"], measured["clean"], measured["core"], measured["daily"]
    limit = args.pandas_limit_gib or 0.9 * m["ram_gib"]
    pandas = run_child(SCRIPT, [*common, "--child", "pandas"], rss_limit_gib=limit, idle_timeout_s=args.idle_timeout)
    prefix = None
    if pandas is not None:
        print(f"  pandas {pandas['seconds']:7.1f} s", flush=True)
    else:  # measure both on a prefix that fits, and say so
        for share in (0.5, 0.25, 0.125):
            p_last = first + dt.timedelta(days=int(len(all_days) * share) - 1)
            p_args = [*common, "--last", str(p_last), "--cutoff", str(late_cutoff(config, p_last))]
            pandas = run_child(SCRIPT, [*p_args, "--child", "pandas"], rss_limit_gib=limit,
                               idle_timeout_s=args.idle_timeout)
            if pandas is not None:
                p_core = run_child(SCRIPT, [*p_args, "--child", "core"], idle_timeout_s=args.idle_timeout)
                if p_core is None:
                    return 1
                prefix = (p_last, p_core)
                break
        if pandas is None:
            print("pandas did not fit in memory even on 1/8 of the days")
            return 1
    report(config, rows, size, cutoff, scan, core, clean, measured["cutoff"], daily, pandas, prefix, engine, all_days,
           limit)
    return 0


def _row(label: str, r: dict, events: int) -> str:
    load = f"{r['foreign_share']:.0%}" + (" (contended)" if r["contended"] else "")
    return (f"{label:32s} {r['seconds']:8.2f} {r['cpu_s']:8.1f} {events / r['seconds']:12,.0f} "
            f"{r['peak_rss_mib']:9,.0f}   {load}")


def report(config: GameConfig, rows: int, size: int, cutoff: dt.date, scan: dict, core: dict, clean: dict | None,
           inc: dict, daily: dict, pandas: dict, prefix: tuple | None, engine: DuckDBEngine, all_days: list[dt.date],
           limit: float) -> None:
    d_rows, d_size = raw_stats(engine, config, all_days[-1:])
    print(f"\n{'stage':32s} {'wall s':>8s} {'CPU s':>8s} {'events/s':>12s} {'peak MiB':>9s}   other load")
    print(_row("bare DuckDB scan (I/O floor)", scan, rows))
    print(_row("core full build", core, rows))
    print(f"  player_day, {len(all_days)} days, one run {core['player_day_s']:8.2f}   "
          f"({core['player_day_rows']:,} player-days)")
    print(f"  features at {cutoff}       {core['features_s']:8.2f}   ({core['feature_rows']:,} players; "
          f"whole-history summary from scratch {core['summary_s']:.2f} s of it)")
    inc_rows, _ = raw_stats(engine, config, [d for d in all_days if inc["previous"] <= str(d) < str(cutoff)])
    print(_row("features, daily path", inc, inc_rows))
    print(f"  summary merged from {inc['previous']}  {inc['summary_s']:8.2f}   ({inc['merged']:,} player-days read of "
          f"{inc['history']:,} before the cutoff; {inc['summary_rows']:,} players)")
    print(f"  features from the summary       {inc['features_s']:8.2f}   ({inc['recent']:,} recent player-days + "
          f"{inc['purchase_days']:,} purchase days for the median gap)")
    if clean is not None:
        print(_row("core full build, days clean", clean, rows))
        print(f"  player_day without DISTINCT     {clean['player_day_s']:8.2f}")
        print(f"  features at {cutoff}       {clean['features_s']:8.2f}")
    print(_row("core daily run (1 day)", daily, d_rows) + f"   [rerun {daily['repeat_s']:.2f} s]")
    if prefix is None:
        print(_row("pandas reference", pandas, rows))
        print(f"  player_day                     {pandas['player_day_s']:8.2f}")
        print(f"  features + writing both        {pandas['features_s']:8.2f}")
        ratio_pandas = pandas["seconds"] / core["seconds"]
        basis = "all data"
    else:
        p_last, p_core = prefix
        p_rows, _ = raw_stats(engine, config, [d for d in all_days if d <= p_last])
        print(f"pandas reference did NOT fit in {limit:.1f} GiB on all data; measured on the days up to {p_last} "
              f"({p_rows:,} events, {p_rows / rows:.0%}) against the core on the same prefix:")
        print(_row("  pandas reference (prefix)", pandas, p_rows))
        print(_row("  core full build (prefix)", p_core, p_rows))
        ratio_pandas = pandas["seconds"] / p_core["seconds"]
        basis = f"prefix, {p_rows / rows:.0%} of events"
    ratio_scan = core["seconds"] / scan["seconds"]
    print(f"\n{'ratio':40s} {'value':>9s}   target")
    print(f"{'pandas / core (' + basis + ')':40s} {ratio_pandas:8.1f}x   >= {TARGET_PANDAS_RATIO:.0f}x  "
          f"{verdict(ratio_pandas >= TARGET_PANDAS_RATIO)}")
    print(f"{'core / scan':40s} {ratio_scan:8.1f}x   <= {TARGET_SCAN_RATIO:.0f}x   "
          f"{verdict(ratio_scan <= TARGET_SCAN_RATIO)}")
    if clean is not None and prefix is None:
        r_pandas, r_scan = pandas["seconds"] / clean["seconds"], clean["seconds"] / scan["seconds"]
        print(f"{'pandas / core, days clean':40s} {r_pandas:8.1f}x   >= {TARGET_PANDAS_RATIO:.0f}x  "
              f"{verdict(r_pandas >= TARGET_PANDAS_RATIO)}   (pandas still deduplicates)")
        print(f"{'core, days clean / scan':40s} {r_scan:8.1f}x   <= {TARGET_SCAN_RATIO:.0f}x   "
              f"{verdict(r_scan <= TARGET_SCAN_RATIO)}")
    print(f"{'features, daily path / from scratch':40s} {inc['seconds'] / core['features_s']:9.3f}   "
          f"({inc['seconds']:.2f} s vs {core['features_s']:.2f} s)")
    print(f"{'daily / full: rows read':40s} {d_rows / rows:9.4f}   (1 of {len(all_days)} partitions: "
          f"{d_rows:,} of {rows:,} rows)")
    print(f"{'daily / full: bytes read':40s} {d_size / size:9.4f}   ({d_size / 2**20:.1f} of "
          f"{size / 2**20:,.0f} MiB)")
    print(f"{'daily / full: time':40s} {daily['seconds'] / core['player_day_s']:9.4f}   "
          f"({daily['seconds']:.2f} s vs {core['player_day_s']:.1f} s for player_day)")
    contended = [n for n, r in [("scan", scan), ("core", core), ("clean", clean), ("cutoff", inc), ("daily", daily),
                                ("pandas", pandas)] if r is not None and r["contended"]]
    if contended:
        print(f"WARNING: other processes competed for the CPUs during {', '.join(contended)}; "
              "those wall times are inflated (CPU s is the steadier measure); rerun on an idle machine")


if __name__ == "__main__":
    sys.exit(main())
