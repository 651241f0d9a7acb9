"""The `ltv` command: every stage of the local twin, one subcommand each.

Errors meant for users (`LtvError`) are printed as one clear message with exit code 2, never
as a stack trace.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ltv import config as cfg
from ltv.errors import LtvError
from ltv.lake import Lake

console = Console(stderr=True)
out = Console()

app = typer.Typer(help="Player LTV: predict lifetime value, churn and next purchase day per game.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Validate game configs and print their JSON Schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")

GameOpt = Annotated[str, typer.Option("--game", "-g", help="game id (config/games/<id>.yaml) or a YAML path")]
LakeOpt = Annotated[Path, typer.Option("--lake", envvar="LTV_LAKE", help="root of the local data lake")]
DateArg = Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="a date, YYYY-MM-DD")]
DEFAULT_LAKE = Path("lake")


@contextmanager
def progress_bar(label: str) -> Iterator:
    """A rich progress bar; yields `update(done, total)`."""
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, disable=not console.is_terminal and "LTV_PROGRESS" not in os.environ) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def load_game(game: str) -> tuple[cfg.GameConfig, str]:
    config = cfg.load(game)
    return config, config.game.id


# ----------------------------------------------------------------------------------------------
# config


@config_app.command("validate")
def config_validate(paths: Annotated[Optional[list[Path]], typer.Argument(help="YAML files; default: every game")] = None) -> None:
    """Validate game config files.

    Example: ltv config validate config/games/galaxy-raiders.yaml
    """
    files = paths or cfg.all_games()
    if not files:
        raise LtvError(f"no game configs found in {cfg.config_dir()}")
    failed = 0
    for path in files:
        try:
            c = cfg.load(path)
            out.print(f"[green]ok[/green] {escape(str(path))}: game {c.game.id!r} ({c.game.name}), config hash {c.config_hash()}")
        except LtvError as e:
            failed += 1
            console.print(f"[red]invalid[/red] {escape(str(e))}", soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@config_app.command("schema")
def config_schema(output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write to a file")] = None) -> None:
    """Print the JSON Schema of a game config (for editors: yaml-language-server).

    Example: ltv config schema -o config/schema.json
    """
    text = json.dumps(cfg.json_schema(), indent=2)
    if output:
        output.write_text(text + "\n")
        out.print(f"wrote {output}")
    else:
        print(text)


# ----------------------------------------------------------------------------------------------
# simulate


@app.command()
def simulate(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE,
             days: Annotated[Optional[int], typer.Option(help="simulate only the first N days")] = None) -> None:
    """Simulate a game's raw logs and ground truth from its `simulation:` section.

    Writes raw/<table>/dt=YYYY-MM-DD/ partitions in the game's own schema, and truth/cutoff=.../
    with each player's true expected spend and purchase-day distribution.

    Example: ltv simulate --game galaxy-raiders --lake lake --days 120
    """
    from ltv.simulate import simulate as run

    config, game_id = load_game(game)
    with progress_bar(f"simulating {game_id}") as update:
        s = run(config, Lake(lake, game_id), days=days, progress=update)
    t = Table(title=f"Simulated {s.game}: {s.start} .. {s.end}")
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in [("players", f"{s.players:,}"), ("events", f"{s.events:,}"),
                 ("events/s", f"{s.events_per_second:,}"), ("revenue", f"{s.revenue:,.0f}"),
                 ("latent payer share", f"{s.payer_share:.1%}"),
                 ("whale revenue share", f"{s.whale_revenue_share:.1%}"),
                 ("truth cutoffs", str(len(s.truth_cutoffs))), ("drift day", s.drift_day or "none")]:
        t.add_row(k, v)
    out.print(t)
    out.print(f"raw logs and truth in {Lake(lake, game_id).base}")


# ----------------------------------------------------------------------------------------------
# validation and ETL

features_app = typer.Typer(help="Build daily aggregates and per-cutoff features/labels.", no_args_is_help=True)
datasets_app = typer.Typer(help="Build and list immutable dataset versions.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(datasets_app, name="datasets")


def _engine(config: cfg.GameConfig, lake: Path):
    from ltv.engine import DuckDBEngine

    return DuckDBEngine(Lake(lake, config.game.id), config)


def _days(date: dt.datetime, to: dt.datetime | None) -> list[dt.date]:
    from ltv.etl import day_range

    end = (to or date).date()
    if end < date.date():
        raise LtvError(f"--to {end} is before --date {date.date()}")
    return day_range(date.date(), end + dt.timedelta(days=1))


@app.command()
def validate(game: GameOpt, date: DateArg, lake: LakeOpt = DEFAULT_LAKE,
             to: Annotated[Optional[dt.datetime], typer.Option(formats=["%Y-%m-%d"], help="last day (inclusive)")] = None) -> None:
    """Run the game's data validation checks on raw log partitions.

    Checks come from the config: schema and types, null ids, allowed event types, value
    ranges, duplicates, timestamps outside the day or in the future, freshness and volume.
    Exits 2 and names the check, table, partition and sample rows when an error-level check fails.

    Example: ltv validate --game galaxy-raiders --date 2025-03-01
    """
    from ltv.validation import validate_day

    config, game_id = load_game(game)
    engine = _engine(config, lake)
    for day in _days(date, to):
        report = validate_day(engine, config, day, report_dir=Lake(lake, game_id).base / "validation")
        out.print(f"[green]valid[/green] {game_id} {day}: {len(report.results)} checks, "
                  f"{len(report.warnings)} warning(s)")
        for w in report.warnings:
            out.print("  " + escape(w.line()), soft_wrap=True)


@features_app.command("daily")
def features_daily(game: GameOpt, date: DateArg, lake: LakeOpt = DEFAULT_LAKE,
                   to: Annotated[Optional[dt.datetime], typer.Option(formats=["%Y-%m-%d"], help="last day (inclusive)")] = None,
                   check: Annotated[bool, typer.Option(help="validate each day first")] = True) -> None:
    """Validate raw logs and aggregate them into player_day, one partition per day.

    A daily run reads one raw partition. With --to it processes a range day by day.

    Example: ltv features daily --game galaxy-raiders --date 2025-01-06 --to 2025-03-31
    """
    from ltv.etl import build_player_day
    from ltv.validation import validate_day

    config, game_id = load_game(game)
    engine = _engine(config, lake)
    days = _days(date, to)
    rows = 0
    with progress_bar(f"player_day {game_id}") as update:
        for i, day in enumerate(days):
            if check:
                validate_day(engine, config, day, report_dir=Lake(lake, game_id).base / "validation")
            rows += build_player_day(engine, config, day).rows
            update(i + 1, len(days))
    out.print(f"player_day: {len(days)} day(s), {rows:,} player-days in {Lake(lake, game_id).table('player_day')}")


@features_app.command("build")
def features_build(game: GameOpt, cutoff: DateArg, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Compute features (and labels, once the horizon has passed) at a cutoff date.

    Features read only player_day days before the cutoff; labels only [cutoff, cutoff + horizon).

    Example: ltv features build --game galaxy-raiders --cutoff 2025-03-31
    """
    from ltv import etl

    config, game_id = load_game(game)
    engine = _engine(config, lake)
    c = cutoff.date()
    f = etl.build_features(engine, config, c)
    msg = f"features at {c}: {f.rows:,} players"
    if etl.labels_available(engine, config, c):
        msg += f"; labels: {etl.build_labels(engine, config, c).rows:,} rows"
    else:
        msg += f"; labels not built (need player_day through {etl.Windows.of(config, c).label_end - dt.timedelta(days=1)})"
    out.print(msg)


@datasets_app.command("build")
def datasets_build(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE,
                   version: Annotated[Optional[str], typer.Option(help="v1.., a full name, or rolling-YYYY-MM-DD; default: all")] = None) -> None:
    """Materialise dataset versions (Kakao's scheme from the config): train, validation and
    test cutoffs separated by an embargo of one label horizon. Versions are immutable.

    Example: ltv datasets build --game galaxy-raiders --version v1
    """
    from ltv import datasets

    config, game_id = load_game(game)
    engine, lk = _engine(config, lake), Lake(lake, game_id)
    specs = [datasets.find_spec(config, version)] if version else datasets.version_specs(config)
    for spec in specs:
        with progress_bar(f"dataset {spec.name}") as update:
            m = datasets.build_dataset(engine, config, lk, spec, progress=update)
        out.print(f"{m['name']}: rows {m['rows']}, payers {m['payers']} -> {lk.datasets / m['name']}")


@datasets_app.command("list")
def datasets_list(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """List built dataset versions and the configured ones not built yet.

    Example: ltv datasets list --game galaxy-raiders
    """
    from ltv import datasets

    config, game_id = load_game(game)
    built = {m["name"]: m for m in datasets.list_datasets(Lake(lake, game_id))}
    t = Table(title=f"datasets of {game_id}")
    for col in ("version", "train", "validation", "test", "rows (train/val/test)", "built"):
        t.add_column(col)
    specs = {s.name: s for s in datasets.version_specs(config)}
    for name in sorted(set(specs) | set(built)):
        m = built.get(name)
        cut = m["cutoffs"] if m else {k: [str(d) for d in v] for k, v in specs[name].splits().items()}
        span = lambda xs: f"{xs[0]}..{xs[-1]}" if xs else "-"  # noqa: E731
        rows = "/".join(str(m["rows"][s]) for s in datasets.SPLITS) if m else "-"
        t.add_row(name, span(cut["train"]), span(cut["validation"]), span(cut["test"]), rows, "yes" if m else "no")
    out.print(t)


def main() -> None:
    """Entry point: run the app, turning user errors into messages."""
    try:
        app()
    except LtvError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
