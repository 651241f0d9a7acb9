"""A game's stacks from its config, and the app with its guard rails."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from ltv import config as cfg
from ltv.config import GameConfig
from ltv.errors import ConfigError
from stacks.alerting import AlertsStack
from stacks.data_lake import DataLakeStack
from stacks.etl import EtlStack
from stacks.ml import MlStack
from stacks.monitoring import MonitoringStack
from stacks.names import Names
from stacks.packaging import GLUE, LAMBDA, Wheelhouse, lambda_bundle, wheelhouse as download
from stacks.scoring import ScoringStack

PROJECT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GameStacks:
    """The stacks of one game, one per concern."""

    data_lake: DataLakeStack
    alerts: AlertsStack
    etl: EtlStack
    ml: MlStack
    scoring: ScoringStack
    monitoring: MonitoringStack


def add_game(app: App, config: GameConfig, *, core_wheel: Path, wheelhouse: Wheelhouse, lambda_code: Path) -> GameStacks:
    """Add a game's stacks to the app, in the game's account and region, named after its id."""
    names = Names.of(config)
    aws = config.require_aws()
    env = Environment(account=aws.account, region=aws.region)
    protect = config.stack.removal_policy == "retain"
    # stack tags (CloudFormation puts them on every resource that takes tags): given explicitly, as
    # the `@aws-cdk/core:explicitStackTags` flag wants, so `Tags.of(...)` is not needed
    tags = {"ltv:game": config.game.id, **dict(sorted(config.stack.tags.items()))}
    lake = DataLakeStack(app, names.stack("DataLake"), config=config, env=env, stack_name=names.stack("DataLake"),
                         termination_protection=protect, tags=tags,
                         description=f"Player LTV data lake of {config.game.name}: buckets, catalog, workgroup")
    common = {"env": env, "termination_protection": protect, "tags": tags}
    alerts = AlertsStack(app, names.stack("Alerts"), config=config, lake=lake, lambda_bundle=lambda_code,
                         stack_name=names.stack("Alerts"), **common,
                         description=f"Player LTV alerts of {config.game.name}: the topic, its webhook, failed events")
    etl = EtlStack(app, names.stack("Etl"), config=config, lake=lake, core_wheel=core_wheel, wheelhouse=wheelhouse,
                   alerts=alerts, stack_name=names.stack("Etl"), **common,
                   description=f"Player LTV ETL of {config.game.name}: Glue jobs over Athena, workflows")
    ml = MlStack(app, names.stack("Ml"), config=config, lake=lake, core_wheel=core_wheel,
                 config_asset=etl.jobs.code["config"], dataset_job=names.resource("dataset"), stack_name=names.stack("Ml"), **common,
                 description=f"Player LTV ML of {config.game.name}: image, model registry group, retraining pipeline")
    scoring = ScoringStack(app, names.stack("Scoring"), config=config, lake=lake, ml=ml, etl=etl, alerts=alerts,
                           stack_name=names.stack("Scoring"), **common,
                           description=f"Player LTV scoring of {config.game.name}: S3 event -> Lambda -> batch transform")
    monitoring = MonitoringStack(app, names.stack("Monitoring"), config=config, lake=lake, etl=etl, ml=ml,
                                 scoring=scoring, alerts=alerts, stack_name=names.stack("Monitoring"), **common,
                                 description=f"Player LTV monitoring of {config.game.name}: job, alarms, retraining")
    # deploy in this order: the topic's policy names the rules of the other stacks, the Etl stack
    # publishes the config asset the pipeline reads, scoring serves what the ML stack registers
    # (and its targets job runs on the ETL jobs' code and security configuration), and monitoring
    # watches everything
    for stack, before in ((etl, alerts), (ml, etl), (scoring, alerts), (scoring, ml), (scoring, etl),
                          (monitoring, alerts), (monitoring, ml), (monitoring, scoring)):
        stack.add_stack_dependency(before)
    return GameStacks(lake, alerts, etl, ml, scoring, monitoring)


def select_configs(game: str | None) -> list[GameConfig]:
    """`-c game=NAME` -> that game's config; no game -> every config in config/games (CI synthesises all)."""
    if game:
        return [cfg.load(game)]
    paths = cfg.all_games()
    if not paths:
        raise ConfigError(f"no game configs in {cfg.config_dir()}")
    return cfg.load_all(paths)


def project_context() -> dict:
    """cdk.json's context, so an App built outside the CDK CLI (tests, `python app.py`) behaves the same."""
    return json.loads((PROJECT / "cdk.json").read_text()).get("context", {})


def build_app(*, core_wheel: Path, wheelhouse: Wheelhouse | None = None, configs: list[GameConfig] | None = None,
              outdir: str | None = None) -> App:
    """The CDK app: the selected games' stacks, checked by cdk-nag's AWS Solutions pack on synth
    (any unacknowledged finding fails the synthesis). `wheelhouse` defaults to the Glue jobs'
    locked wheels (downloaded once per lock, then cached); the Lambdas' code is built from their
    lock and the core wheel into the output directory."""
    app = App(context=project_context(), outdir=outdir)
    selected = configs if configs is not None else select_configs(app.node.try_get_context("game"))
    wheels = wheelhouse or (download(GLUE) if selected else None)
    code = lambda_bundle(core_wheel, download(LAMBDA), Path(app.outdir) / "ltv-inputs" / "lambda") if selected else None
    for config in selected:
        add_game(app, config, core_wheel=core_wheel, wheelhouse=wheels, lambda_code=code)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app
