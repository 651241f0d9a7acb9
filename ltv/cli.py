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
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ltv import config as cfg
from ltv.errors import LtvError
from ltv.lake import Lake

if TYPE_CHECKING:
    from ltv.training import DriftExperiment

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
    failed, valid = 0, []
    for path in files:
        try:
            c = cfg.load(path)
            out.print(f"[green]ok[/green] {escape(str(path))}: game {c.game.id!r} ({c.game.name}), config hash {c.config_hash()}")
            valid.append((path, c))
        except LtvError as e:
            failed += 1
            console.print(f"[red]invalid[/red] {escape(str(e))}", soft_wrap=True)
    try:
        cfg.one_file_per_game(valid)
    except LtvError as e:  # each file is valid, but two of them are the same game
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
    from ltv.validation import id_columns, validate_day

    config, game_id = load_game(game)
    engine = _engine(config, lake)
    for day in _days(date, to):
        report = validate_day(engine, config, day, report_dir=Lake(lake, game_id).validation_reports)
        out.print(f"[green]valid[/green] {game_id} {day}: {len(report.results)} checks, "
                  f"{len(report.warnings)} warning(s)")
        for w in report.warnings:
            out.print("  " + escape(w.line(id_columns(config).get(w.table))), soft_wrap=True)


@features_app.command("daily")
def features_daily(game: GameOpt, date: DateArg, lake: LakeOpt = DEFAULT_LAKE,
                   to: Annotated[Optional[dt.datetime], typer.Option(formats=["%Y-%m-%d"], help="last day (inclusive)")] = None,
                   check: Annotated[bool, typer.Option(help="validate each day first")] = True) -> None:
    """Validate raw logs and aggregate them into player_day, one partition per day.

    A daily run reads one raw partition. With --to it processes a range day by day.

    Example: ltv features daily --game galaxy-raiders --date 2025-01-06 --to 2025-03-31
    """
    from ltv.etl import build_player_day
    from ltv.validation import duplicate_free, validate_day, warning_summary

    config, game_id = load_game(game)
    engine = _engine(config, lake)
    days = _days(date, to)
    rows, reports = 0, []
    with progress_bar(f"player_day {game_id}") as update:
        for i, day in enumerate(days):
            clean: frozenset[str] = frozenset()
            if check:
                reports.append(validate_day(engine, config, day, report_dir=Lake(lake, game_id).validation_reports))
                clean = duplicate_free(reports[-1])
            rows += build_player_day(engine, config, day, duplicate_free=clean).rows
            update(i + 1, len(days))
    out.print(f"player_day: {len(days)} day(s), {rows:,} player-days in {Lake(lake, game_id).table('player_day')}")
    if check:
        summary = warning_summary(reports)
        out.print(f"validation: {sum(len(r.warnings) for r in reports)} warning(s)" + (":" if summary else ""))
        for line in summary:
            out.print("  " + escape(line), soft_wrap=True)
        if summary:
            out.print(f"  each day's report: {Lake(lake, game_id).validation_reports}/dt=*.json")


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
    test cutoffs, each period one label horizon after the previous (an embargo). Versions are immutable.

    Example: ltv datasets build --game galaxy-raiders --version v1
    """
    from ltv import datasets

    config, game_id = load_game(game)
    engine, lk = _engine(config, lake), Lake(lake, game_id)
    plan = _plan(config, engine, version)
    for spec in plan.specs:
        with progress_bar(f"dataset {spec.name}") as update:
            m = datasets.build_dataset(engine, plan.config, lk, spec, progress=update)
        out.print(f"{m['name']}: rows {m['rows']}, payers {m['payers']} -> {lk.datasets / m['name']}")


def _plan(config: cfg.GameConfig, engine, name: str | None, *, strict: bool = True, test_only: bool = False):
    """ltv.horizon's one rule for the datasets `name` asks for, its note printed. With
    strict=False a `HorizonError` is printed and None returned (for listings); `test_only`: see
    `horizon.plan` (an evaluation reads the test period only)."""
    from ltv import horizon
    from ltv.errors import HorizonError

    try:
        plan = horizon.plan(config, horizon.log_span(engine, config), name, test_only=test_only)
    except HorizonError as e:
        if strict:
            raise
        console.print(f"[yellow]{escape(str(e))}[/yellow]")
        return None
    if plan.message:
        console.print(f"[yellow]{escape(plan.message)}[/yellow]")
    return plan


@datasets_app.command("list")
def datasets_list(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """List built dataset versions and the configured ones not built yet.

    Example: ltv datasets list --game galaxy-raiders
    """
    from ltv import datasets

    config, game_id = load_game(game)
    built = {m["name"]: m for m in datasets.list_datasets(Lake(lake, game_id))}
    plan = _plan(config, _engine(config, lake), None, strict=False)
    t = Table(title=f"datasets of {game_id}")
    for col in ("version", "train", "validation", "test", "rows (train/val/test)", "built"):
        t.add_column(col)
    specs = {s.name: s for s in (plan.specs if plan else [])}
    for name in sorted(set(specs) | set(built)):
        m = built.get(name)
        cut = m["cutoffs"] if m else {k: [str(d) for d in v] for k, v in specs[name].splits().items()}
        span = lambda xs: f"{xs[0]}..{xs[-1]}" if xs else "-"  # noqa: E731
        rows = "/".join(str(m["rows"][s]) for s in datasets.SPLITS) if m else "-"
        t.add_row(name, span(cut["train"]), span(cut["validation"]), span(cut["test"]), rows, "yes" if m else "no")
    out.print(t)


# ----------------------------------------------------------------------------------------------
# models, registry, scoring, monitoring, the loop

registry_app = typer.Typer(help="The model registry: versions, approval status, champion, rollback.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
FastOpt = Annotated[bool, typer.Option("--fast", help="small model budget (LightGBM only, 150 rounds, 80k rows) for quick trials")]
BackendOpt = Annotated[str, typer.Option(
    "--registry", envvar="LTV_REGISTRY",
    help="local: the lake's registry; sagemaker: the game's model package group in its AWS account (config's "
         "aws.region, the environment's credentials)")]


def _budget(config: cfg.GameConfig, fast: bool) -> cfg.ModelBudget:
    from ltv.models.automl import fast_budget

    return fast_budget(config.model) if fast else config.model


def _registry(config: cfg.GameConfig, lake: Path, backend: str = "local"):
    if backend == "sagemaker":
        from ltv.sagemaker_registry import SageMakerRegistry

        return SageMakerRegistry(config.game.id, region=config.require_aws().region)
    if backend != "local":
        raise LtvError(f"--registry must be local or sagemaker, not {backend!r}")
    from ltv.registry import LocalRegistry

    return LocalRegistry(Lake(lake, config.game.id).registry, config.game.id)


@app.command()
def train(game: GameOpt, dataset: Annotated[str, typer.Option(
              help="dataset version: v1.., a full name, rolling-YYYY-MM-DD, or rolling (the newest the logs hold)")],
          lake: LakeOpt = DEFAULT_LAKE, fast: FastOpt = False,
          register: Annotated[bool, typer.Option(help="evaluate against the champion and register with the promotion rule's status")] = True) -> None:
    """Train the two-stage LTV, purchase-day and churn models on a dataset version.

    With --register (default) this is the whole retraining flow: train, evaluate the challenger
    and the champion on the same out-of-time test period, apply the promotion rule, register.

    Example: ltv train --game galaxy-raiders --dataset v1 --fast
    """
    from ltv import datasets
    from ltv.models import train as fit
    from ltv.training import runs_dir, train_evaluate_register

    config, game_id = load_game(game)
    lk, engine = Lake(lake, game_id), _engine(config, lake)
    plan = _plan(config, engine, dataset)
    config, spec = plan.config, plan.specs[0]
    say = lambda m: console.print(f"[dim]{escape(m)}[/dim]")  # noqa: E731
    if register:
        run = train_evaluate_register(config, lk, engine, _registry(config, lake), spec, budget=_budget(config, fast),
                                      progress=say)
        out.print(f"version {run.version.version}: [bold]{run.version.status}[/bold] ({escape(run.decision.reason)})")
        out.print(f"metrics: {run.run_dir / 'metrics.json'}\nreport:  {run.report}")
        return
    manifest = datasets.build_dataset(engine, config, lk, spec)
    target = runs_dir(lk) / f"{dt.datetime.now():%Y%m%dT%H%M%S}-{spec.name}" / "model"
    target.parent.mkdir(parents=True)
    fit(config, datasets.load_dataset(lk, spec.name), target, dataset=manifest, budget=_budget(config, fast), progress=say)
    out.print(f"model artifact: {target}")


@app.command()
def evaluate(game: GameOpt, dataset: Annotated[str, typer.Option(help="dataset version whose test period to use")],
             lake: LakeOpt = DEFAULT_LAKE,
             model: Annotated[Optional[str], typer.Option(help="registry version number or artifact path; default: champion")] = None,
             out_dir: Annotated[Optional[Path], typer.Option("--out", help="where to write metrics.json and report.html")] = None,
             allow_in_sample: Annotated[bool, typer.Option(
                 "--allow-in-sample", help="evaluate even if the model trained or validated on part of the test period; "
                                           "every output is then labelled in-sample")] = False) -> None:
    """Evaluate a model on a dataset's test period: metrics.json and an HTML report with plots.

    The model is compared with the baselines and, for simulated games, with the oracle. A model
    whose training or validation data reach the test period is refused (its figures would be
    in-sample) unless --allow-in-sample is given.

    Example: ltv evaluate --game galaxy-raiders --dataset v2
    """
    from ltv.models import LTVModel
    from ltv.training import write_evaluation

    config, game_id = load_game(game)
    lk, engine = Lake(lake, game_id), _engine(config, lake)
    plan = _plan(config, engine, dataset, test_only=True)
    reg = _registry(config, lake)
    if model is None or model.isdigit():
        version = reg.get(int(model)) if model else reg.champion()
        if version is None:
            raise LtvError("no champion to evaluate; pass --model VERSION or a path")
        m, label = LTVModel.load(version.path), f"version {version.version}"
    else:
        m, label = LTVModel.load(Path(model)), model
    target, ev = write_evaluation(plan.config, lk, engine, m, label, plan.specs[0], out_dir,
                                  allow_in_sample=allow_in_sample)
    if ev.metrics["in_sample"]:
        console.print(f"[red]IN-SAMPLE[/red]: the model saw data until {ev.metrics['in_sample']['seen_until']}; test "
                      f"cutoffs {', '.join(ev.metrics['in_sample']['cutoffs'])} are in that period. These figures "
                      "overstate its quality.")
    _print_metrics(ev.metrics)
    out.print(f"metrics: {target / 'metrics.json'}\nreport:  {target / 'report.html'}")


def _print_metrics(metrics: dict) -> None:
    """The headline metrics of an evaluation: model, oracle, and the strongest baseline on each."""
    t = Table(title="test-period metrics" + (" (IN-SAMPLE)" if metrics.get("in_sample") else ""),
              caption="strongest: the best baseline on that metric (recent revenue, payer mean, popularity, segment "
                      "median); the HTML report shows every baseline")
    for col in ("metric", "model", "oracle", "model/oracle", "strongest baseline", "model/strongest"):
        t.add_column(col, justify="right")
    o = metrics.get("oracle") or {}
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for k in ("normalized_gini", "spearman_payers", "minmax", "top1_revenue_capture", "payer_f1", "purchase_day_mae",
              "purchase_day_accuracy", "churn_f1", "total_ratio"):
        v, ov = metrics["model"].get(k), o.get(k)
        best = metrics.get("strongest_baseline", {}).get(k)
        t.add_row(k, fmt(v), fmt(ov), fmt(v / ov if v is not None and ov else None),
                  f"{fmt(best['value'])} {best['baseline']}" if best else "–", fmt(best["ratio"]) if best else "–")
    out.print(t)


@app.command()
def drift(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE, fast: FastOpt = False) -> None:
    """Reproduce Kakao's drift experiment on the configured dataset versions whose data is complete.

    Trains on the first version, evaluates that fixed model on every later version's test
    period, retrains on the latest version and evaluates it on the same data. Writes
    reports/drift.json; every later report shows the table.

    Example: ltv drift --game galaxy-raiders --fast
    """
    from ltv.training import drift_experiment

    config, game_id = load_game(game)
    engine = _engine(config, lake)
    if config.datasets.first_start == "auto":  # placed against the logs; versions that do not fit are skipped below
        config = _plan(config, engine, None).config
    result = drift_experiment(config, Lake(lake, game_id), engine, budget=_budget(config, fast),
                              progress=lambda m: console.print(f"[dim]{escape(m)}[/dim]"))
    for name, why in result.skipped.items():
        out.print(f"[yellow]skipped {name}[/yellow]: {escape(why)}", soft_wrap=True)
    out.print(_drift_table(result))
    out.print(f"drift table: {result.path} (shown by every later report)")


def _drift_table(result: "DriftExperiment") -> Table:
    """Kakao's drift table for an 80-column terminal: stale → retrained per metric, oracle Gini apart."""
    from ltv.evaluate import drift_cells

    t = Table(title=f"Drift: stale = trained on {result.stale.split('-')[0]}, retrained on "
                    f"{result.retrained.split('-')[0]}",
              caption="cells: stale → retrained; payers: minmax over players who paid; oracle: the simulator's "
                      "truth (Gini)"
                      + "".join(f"; {name} skipped: data not complete" for name in result.skipped))
    cells = drift_cells(result.table, ("normalized_gini", "minmax", "minmax_payers", "payer_f1"), oracle=False)
    cells["version"] = cells["version"].str.split("-").str[0]
    cells = cells.drop(columns=["test cutoffs"])  # 80 columns; `ltv datasets list` and reports/drift.json have them
    cells["oracle"] = [f"{v:.3f}" for v in result.table["oracle_normalized_gini"]]
    for column in cells.columns:
        t.add_column({"version": "v", "minmax (payers)": "payers"}.get(column, column),
                     justify="left" if column == "version" else "right", no_wrap=True)
    for row in cells.itertuples(index=False):
        t.add_row(*row)
    return t


@registry_app.command("list")
def registry_list(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE, backend: BackendOpt = "local") -> None:
    """List model versions with status, dataset and key metrics; the champion is marked.

    Example: ltv registry list --game galaxy-raiders [--registry sagemaker]
    """
    config, game_id = load_game(game)
    reg = _registry(config, lake, backend)
    champion = reg.champion()
    t = Table(title=f"model group ltv-{game_id}")
    for col in ("version", "status", "created", "dataset", "gini", "minmax", "payer F1", "day MAE"):
        t.add_column(col)
    for v in reg.versions():
        m = v.metrics
        f = lambda k: "–" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
        mark = " ★" if champion and v.version == champion.version else ""
        t.add_row(f"{v.version}{mark}", v.status, v.created, (v.lineage.get("dataset") or {}).get("name", "–"),
                  f("normalized_gini"), f("minmax"), f("payer_f1"), f("purchase_day_mae"))
    out.print(t)


@registry_app.command("show")
def registry_show(game: GameOpt, version: int, lake: LakeOpt = DEFAULT_LAKE, backend: BackendOpt = "local") -> None:
    """Show one version: lineage, metrics and the full status history.

    Example: ltv registry show --game galaxy-raiders 3 [--registry sagemaker]
    """
    config, _ = load_game(game)
    v = _registry(config, lake, backend).get(version)
    print(json.dumps({"version": v.version, "status": v.status, "created": v.created, "path": str(v.path),
                      "lineage": v.lineage, "history": list(v.history), "metrics": v.metrics}, indent=2, default=str))


@registry_app.command("approve")
def registry_approve(game: GameOpt, version: int, lake: LakeOpt = DEFAULT_LAKE,
                     reason: Annotated[str, typer.Option(help="why (kept in the history)")] = "approved by hand",
                     backend: BackendOpt = "local") -> None:
    """Approve a version (it becomes champion if it is the latest approved).

    Example: ltv registry approve --game dragon-merge 4 --reason "reviewed the report" [--registry sagemaker]
    """
    config, _ = load_game(game)
    v = _registry(config, lake, backend).approve(version, reason)
    out.print(f"version {v.version}: {v.status}")


@registry_app.command("reject")
def registry_reject(game: GameOpt, version: int, lake: LakeOpt = DEFAULT_LAKE,
                    reason: Annotated[str, typer.Option(help="why (kept in the history)")] = "rejected by hand",
                    backend: BackendOpt = "local") -> None:
    """Reject a version (nothing is deleted).

    Example: ltv registry reject --game galaxy-raiders 5 --reason "odd whale predictions" [--registry sagemaker]
    """
    config, _ = load_game(game)
    v = _registry(config, lake, backend).reject(version, reason)
    out.print(f"version {v.version}: {v.status}")


@registry_app.command("rollback")
def registry_rollback(game: GameOpt, lake: LakeOpt = DEFAULT_LAKE,
                      reason: Annotated[str, typer.Option(help="why (kept in the history)")] = "rollback",
                      backend: BackendOpt = "local") -> None:
    """Reject the champion and re-approve the previous champion.

    Example: ltv registry rollback --game galaxy-raiders --reason "bad scores after release" [--registry sagemaker]
    """
    config, _ = load_game(game)
    old, new = _registry(config, lake, backend).rollback(reason)
    out.print(f"rolled back: version {old.version} {old.status}; champion is now version {new.version}")


@app.command()
def predict(game: GameOpt, date: DateArg, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Score the population at a date with the champion (new run id; never overwrites).

    Writes predictions/game=G/dt=D/run=R/ and moves dt=D/_LATEST to the new run.

    Example: ltv predict --game galaxy-raiders --date 2025-06-02
    """
    from ltv.scoring import score

    config, game_id = load_game(game)
    r = score(config, Lake(lake, game_id), _engine(config, lake), _registry(config, lake), date.date())
    out.print(f"scored {r.rows:,} players with version {r.model_version}: {r.path}")


@app.command("explain")
def explain_cmd(game: GameOpt, player: Annotated[str, typer.Option(help="the player's id")], date: DateArg,
                lake: LakeOpt = DEFAULT_LAKE,
                top: Annotated[int, typer.Option(help="features to list (largest contributions first)")] = 10) -> None:
    """Why a player's predicted value is what it is: each feature's exact contribution to
    ltv_expected (in the game's currency), from the model that scored that date.

    Example: ltv explain --game galaxy-raiders --player 12345 --date 2025-06-02
    """
    import pandas as pd

    from ltv.scoring import explain_player

    config, game_id = load_game(game)
    story = explain_player(config, Lake(lake, game_id), _engine(config, lake), _registry(config, lake), date.date(),
                           player)
    s = story.scored
    out.print(f"player {escape(story.player)} at {story.date} (model version {story.model_version}): expected value "
              f"[bold]{s['ltv_expected']:,.2f}[/bold] over {config.horizons.ltv_days} days = p(payer) "
              f"{s['p_payer']:.3f} x value if payer {s['value_if_payer']:,.2f}")
    out.print(f"a player with no information would get {story.base:,.2f}; the features move it by "
              f"{s['ltv_expected'] - story.base:+,.2f}:")
    table = Table("feature", "player's value", "contribution", "")
    shown = story.contributions.head(top)
    for row in shown.itertuples(index=False):
        value = ("missing" if row.value is None or row.value is pd.NA or row.value != row.value else
                 row.value if isinstance(row.value, str) else f"{float(row.value):,.4g}")
        table.add_row(row.feature, escape(str(value)), f"{row.contribution:+,.3f}",
                      "pushes up" if row.contribution > 0 else "pushes down" if row.contribution < 0 else "")
    rest = story.contributions["contribution"].iloc[top:].sum()
    table.add_row(f"{max(len(story.contributions) - top, 0)} other features", "", f"{rest:+,.3f}", "")
    out.print(table)


@app.command()
def monitor(game: GameOpt, date: DateArg, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Measure drift, delayed-label quality and missed predictions, and apply the alert policies.

    Example: ltv monitor --game galaxy-raiders --date 2025-09-01
    """
    from ltv.monitoring import Monitor

    config, game_id = load_game(game)
    lk = Lake(lake, game_id)
    report = Monitor(config, lk, _engine(config, lake), _registry(config, lake)).run(date.date())
    for m in report.measurements:
        out.print(f"{m.signal}: {m.value:.4g}")
    for v in report.values:  # what the AWS monitoring job publishes as CloudWatch metrics, per policy
        out.print(f"policy {v.policy}: {v.value:.4g} (threshold {v.threshold:g})" + (" [fired]" if v.fired else ""))
    for a in report.alerts:
        out.print(f"[red]ALERT[/red] [{a.severity}] {a.policy}: {escape(a.message)}" + (" → retrain" if a.retrain else ""))
    if not report.alerts:
        out.print("no alerts")


@app.command("run")
def run_loop(game: GameOpt, start: Annotated[dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first day")],
             end: Annotated[dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="last day (inclusive)")],
             lake: LakeOpt = DEFAULT_LAKE, fast: FastOpt = False) -> None:
    """Replay days as the schedulers would: validation, player_day, scoring, monitoring, retraining.

    Example: ltv run --game galaxy-raiders --from 2025-06-01 --to 2025-09-30 --fast
    """
    from ltv.run import DailyLoop

    config, game_id = load_game(game)
    loop = DailyLoop(config, Lake(lake, game_id), budget=_budget(config, fast),
                     say=lambda m: console.print(f"[dim]{escape(m)}[/dim]"))
    with progress_bar(f"days of {game_id}") as update:
        summary = loop.run(start.date(), end.date(), progress=update)
    _print_summary(summary)


def _print_summary(summary) -> None:
    t = Table(title=f"{summary.game}: {summary.start} .. {summary.end}")
    for col in ("day", "what", "detail"):
        t.add_column(col)
    for e in summary.events:
        if e.kind != "scored":
            t.add_row(e.day, e.kind, escape(e.text))
    out.print(t)
    out.print(f"{len(summary.of('scored'))} scoring runs, {len(summary.of('alert'))} alerts, "
              f"{len(summary.trainings)} trainings")


# ----------------------------------------------------------------------------------------------
# offers: target lists and experiments

experiment_app = typer.Typer(help="A/B experiments on offer policies: create, assign, status, readout.",
                             no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")
ExperimentArg = Annotated[str, typer.Argument(help="the experiment's id (the `id` of its spec)")]


def _latest_predictions(lake: Lake, day: dt.date):
    """The published predictions of the latest scored date on or before `day`, or None."""
    from ltv.scoring import read_predictions, scored_dates

    dates = [d for d in scored_dates(lake) if d <= str(day)]
    return read_predictions(lake, dates[-1]) if dates else None


@app.command()
def targets(game: GameOpt, date: DateArg, lake: LakeOpt = DEFAULT_LAKE,
            budget: Annotated[Optional[int], typer.Option(help="offers per day at most (default: the game's "
                                                               "targets.budget)")] = None,
            cooldown_days: Annotated[Optional[int], typer.Option(help="days between two offers to one player "
                                                                      "(default: targets.cooldown_days)")] = None,
            policy: Annotated[Optional[str], typer.Option(help="model | random-day | none (default: "
                                                               "targets.policy)")] = None,
            output: Annotated[Optional[Path], typer.Option("--output", "-o", help="also export as .csv or .json")] = None) -> None:
    """The players to offer to on each day of the coming week, from the published predictions of D.

    Writes targets/game=G/dt=D/run=R/ (R: the predictions' run), each offer with its reason.
    Budget, cooldown and policy default to the game config's `targets:` section.

    Example: ltv targets --game galaxy-raiders --date 2025-09-01 --budget 500 -o offers.csv
    """
    from ltv import targets as tg
    from ltv.scoring import Predictions

    config, game_id = load_game(game)
    lk = Lake(lake, game_id)
    plan, run = tg.make(config, Predictions.of(lk), date.date(), policy=policy, budget=budget,
                        cooldown_days=cooldown_days)
    path = tg.write_targets(lk, config, date.date(), run, plan)
    if output:
        tg.export(plan, output)
    for day, n in plan.groupby("offer_date").size().items():
        out.print(f"{day}: {n:,} offers")
    out.print(f"{len(plan):,} offers ({policy or config.targets.policy}) to {plan['player_id'].nunique():,} players: "
              f"{path}" + (f", exported to {output}" if output else ""))


@experiment_app.command("create")
def experiment_create(game: GameOpt, spec: Annotated[Path, typer.Argument(help="the experiment's YAML spec")],
                      lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Record an experiment from its YAML spec, with its power analysis (players needed for the MDE).

    Example: ltv experiment create --game galaxy-raiders offers-2025-09.yaml
    """
    from ltv import experiments as ex

    config, game_id = load_game(game)
    lk = Lake(lake, game_id)
    s = ex.parse_spec(spec)
    pred = _latest_predictions(lk, s.start)
    power = ex.power_from_lake(_engine(config, lake), s, pred) if pred is not None else None
    exp = ex.create(lk, s, power)
    out.print(f"experiment {s.id}: {s.start} .. {s.end} ({s.horizon_days} days), arms "
              + ", ".join(f"{a.name}={a.share:g} ({a.policy})" for a in s.arms) + f": {exp.path}")
    if power is None:
        out.print("[yellow]no predictions before the start: power not computed[/yellow]")
    else:
        verdict = "[green]enough[/green]" if power.enough else "[red]NOT enough[/red]"
        out.print(f"power: {power.required:,} players needed for an MDE of {s.mde:g} on {s.primary_metric}, "
                  f"{power.available:,} available ({verdict}; detectable with them: {power.detectable:.4g})")


@experiment_app.command("assign")
def experiment_assign(game: GameOpt, experiment: ExperimentArg, date: DateArg, lake: LakeOpt = DEFAULT_LAKE,
                      exposures: Annotated[Optional[Path], typer.Option(help="a CSV of delivered offers to log "
                                                                            "(player_id, arm, offer_date)")] = None) -> None:
    """Assign the players scored at D (new ones only; stable hash) and log the arms' planned offers.

    Example: ltv experiment assign --game galaxy-raiders offers-2025-09 --date 2025-09-01
    """
    from ltv import experiments as ex
    from ltv.scoring import read_predictions

    _, game_id = load_game(game)
    lk = Lake(lake, game_id)
    exp = ex.load(lk, experiment)
    new, offers = ex.assign(exp, date.date(), read_predictions(lk, date.date()))
    out.print(f"{len(new):,} players assigned ({', '.join(f'{k}={v:,}' for k, v in new['arm'].value_counts().items())}), "
              f"{len(offers):,} offers logged")
    if exposures:
        import pandas as pd

        logged = ex.log_exposures(exp, pd.read_csv(exposures, dtype={"player_id": str}))
        out.print(f"{len(logged):,} delivered offers logged from {exposures}")


@experiment_app.command("status")
def experiment_status(game: GameOpt, experiment: ExperimentArg, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Phase, players and offers per arm, the sample-ratio check so far, the power analysis.

    Example: ltv experiment status --game galaxy-raiders offers-2025-09
    """
    from ltv import experiments as ex

    config, game_id = load_game(game)
    print(json.dumps(ex.status(ex.load(Lake(lake, game_id), experiment), ex.data_end(_engine(config, lake))),
                     indent=2, default=str))


@experiment_app.command("readout")
def experiment_readout(game: GameOpt, experiment: ExperimentArg, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Per arm and against the holdout (plain and CUPED, 95 % CI), with the SRM check; fixed horizon.

    Refused (PeekingError) until player_day covers the whole window. Writes readout.json and readout.html.

    Example: ltv experiment readout --game galaxy-raiders offers-2025-09
    """
    from ltv import experiments as ex

    config, game_id = load_game(game)
    exp = ex.load(Lake(lake, game_id), experiment)
    result, page = ex.readout(exp, _engine(config, lake), config)
    t = Table(title=f"{experiment}: {result['primary_metric']} (each arm − holdout)")
    for col in ("arm", "players", "difference", "95 % CI", "CUPED difference", "CUPED 95 % CI"):
        t.add_column(col)
    metric = result["primary_metric"]
    for arm, comp in result["comparisons"].items():
        p, c = comp[metric]["plain"], comp[metric]["cuped"]
        t.add_row(arm, f"{result['arms'][arm]['players']:,}", f"{p['diff']:.4g}", f"[{p['low']:.4g}, {p['high']:.4g}]",
                  f"{c['diff']:.4g}", f"[{c['low']:.4g}, {c['high']:.4g}]")
    out.print(t)
    s = result["srm"]
    out.print(("[red]SAMPLE-RATIO MISMATCH[/red]" if s["mismatch"] else "sample ratio ok")
              + f" (p = {s['p_value']:.3g}, flagged below {s['alpha']:g}; power against a 52/48-sized loss "
              f"at this n: {s['power_52_48']:.0%})")
    out.print(f"readout: {page}")


@app.command()
def sql(query: Annotated[str, typer.Argument(help="SQL over player_day, player_summary, features, labels, raw tables, "
                                                    "predictions")],
        game: GameOpt, lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Query the local lake with DuckDB (the local twin of Athena).

    Views: the game's raw tables, player_day, player_summary, features, labels, predictions (every run),
    latest_predictions (the _LATEST run of each date) and targets (the target lists).

    Example: ltv sql --game galaxy-raiders "SELECT dt, AVG(ltv_expected) FROM latest_predictions GROUP BY 1"
    """
    from ltv import targets as tg
    from ltv.scoring import add_prediction_views

    config, _ = load_game(game)
    engine = _engine(config, lake)
    try:
        add_prediction_views(engine.con, lake)
    except LtvError:
        pass  # no predictions yet: the other tables still answer
    tg.add_view(engine.con, lake)
    print(engine.query(query).to_string(index=False))


@app.command()
def demo(lake: Annotated[Optional[Path], typer.Option("--lake", help="where to write (default: a new folder under ./demo)")] = None,
         installs: Annotated[int, typer.Option(help="daily installs of the simulated game")] = 200,
         full: Annotated[bool, typer.Option("--full", help="use the game's full model budget instead of the fast one")] = False) -> None:
    """The whole local loop on a simulated game with a content update (drift).

    Simulates galaxy-raiders for a year, then replays the daily loop from month 7: validation,
    player_day, weekly scoring, monitoring with alerts, monthly and alert-driven retraining
    with the promotion rule. Ends with a summary and the path of the HTML report.

    Example: ltv demo
    """
    from ltv.demo import run_demo

    root = lake or Path("demo") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if root.exists() and any(root.iterdir()):
        raise LtvError(f"{root} is not empty; the demo writes into a new folder (omit --lake to get one)")
    say = lambda m: console.print(f"[dim]{escape(m)}[/dim]")  # noqa: E731
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as prog:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        result = run_demo(root, installs=installs, fast=not full, say=say, progress=progress)
    s, loop = result.simulation, result.loop
    out.print(f"\n[bold]Simulated[/bold] {s.players:,} players, {s.events:,} events, {s.start} .. {s.end}; "
              f"content update on {s.drift_day}")
    t = Table(title="Trainings (train → evaluate against the champion → promotion rule → register)")
    for col in ("day", "version", "status", "why"):
        t.add_column(col)
    for run in loop.trainings:
        t.add_row(run.dataset.removeprefix("rolling-"), str(run.version.version), run.version.status,
                  escape(run.decision.reason))
    out.print(t)
    a = Table(title="Alerts and what came of them (open → retrain requested → retrain promoted / rejected → "
                    "resolved, or escalated once)")
    for col in ("policy", "opened", "life cycle", "now"):
        a.add_column(col)
    for incident in result.incidents:
        steps = [h for h in incident["history"] if h["state"] != "open"]
        a.add_row(incident["policy"], incident["opened"],
                  escape("\n".join(f"{h['date']} {h['state']}: {h['note']}" for h in steps) or "-"), incident["state"])
    out.print(a)
    out.print(f"{len(loop.of('alert'))} alert messages (one per change of an incident's state)")
    out.print(f"{len(loop.of('scored'))} weekly scoring runs; {len(loop.of('validation'))} days failed validation; "
              f"{len(loop.of('error'))} errors")
    out.print(_drift_table(result.drift))
    if result.experiment:
        out.print(_experiment_table(result.experiment))
    if result.report:
        out.print(f"report of the champion, with the drift table: [bold]{result.report}[/bold]")
        out.print(f"every training's report: {result.lake.base / 'runs'}/*/report.html")
    out.print(f"lake: {result.lake.root}  (try: ltv registry list --game {s.game} --lake {result.lake.root})")


def _experiment_table(e) -> Table:
    """The demo's offer experiment: the readout (each arm − holdout, CUPED 95 % CI) beside the truth."""
    r = e.result
    t = Table(title=f"Offer experiment {e.spec.id} ({e.spec.horizon_days} days): revenue per player, arm − holdout; "
                    f"sample ratio {'MISMATCH' if r['srm']['mismatch'] else 'ok'}")
    for col in ("arm", "players", "offers", "readout (CUPED)", "95 % CI", "true uplift"):
        t.add_column(col)
    for arm, comp in r["comparisons"].items():
        c = comp["revenue_per_player"]["cuped"]
        t.add_row(arm, f"{r['arms'][arm]['players']:,}", f"{r['offers'].get(arm, 0):,}", f"{c['diff']:+.3f}",
                  f"[{c['low']:+.3f}, {c['high']:+.3f}]", f"{e.truth[arm]['revenue_per_player']:+.3f}")
    p = e.power
    t.caption = (f"power before the start: {p.required:,} players needed for an MDE of {p.mde:g}, {p.available:,} "
                 f"available (detectable: {p.detectable:.3g}); readout: {e.page}")
    return t


def main() -> None:
    """Entry point: run the app, turning user errors into messages."""
    from ltv.lake import storage_error

    try:
        try:
            app()
        except OSError as e:  # a write no atomic helper wrapped: still a named error, not a trace
            raise storage_error(e, Path(e.filename or ".")) or e
    except LtvError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
