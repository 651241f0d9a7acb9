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


def main() -> None:
    """Entry point: run the app, turning user errors into messages."""
    try:
        app()
    except LtvError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
