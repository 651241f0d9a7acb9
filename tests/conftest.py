"""Shared fixtures: small game configs derived from the example games, and temporary lakes."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# One thread per engine and numeric library, so no scheduling decides a tested number: DuckDB's
# parallel DOUBLE sums (labels' ltv, weekly revenue) and OpenBLAS' split reductions add in the
# order threads finish, and the BTYD fit turns such last-bit differences into other features
# (tests/test_run.py). LightGBM gets one thread from TINY_BUDGET's num_cpus.
for _var in ("LTV_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402  (after the thread counts: OpenBLAS reads them when it loads)
import pytest  # noqa: E402
import threadpoolctl  # noqa: E402
import yaml  # noqa: E402

import aws_constraints  # noqa: E402

from ltv import config as cfg  # noqa: E402

threadpoolctl.threadpool_limits(1)  # in case a plugin loaded numpy before this file
ROOT = Path(__file__).resolve().parent.parent
GAMES = ROOT / "config" / "games"
os.environ.setdefault("LTV_CONFIG_DIR", str(GAMES))
np.random.seed(0)
aws_constraints.install()  # AWS's API constraints on every botocore request of the session


@pytest.fixture(autouse=True)
def _aws_constraints_hold():
    """A request AWS would refuse fails its test even when the code under test caught the error."""
    yield
    broken, aws_constraints.VIOLATIONS[:] = list(aws_constraints.VIOLATIONS), []
    if broken:
        pytest.fail("\n".join(broken), pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _prediction_digests():
    """With LTV_PREDICTION_DIGESTS=file, every `LTVModel.predict` of the session appends the test
    that made it and a digest of its output: benchmarks/determinism.py compares an idle run with
    one on saturated cores, prediction by prediction (a fit bounded by time would differ)."""
    target = os.environ.get("LTV_PREDICTION_DIGESTS")
    if not target:
        yield
        return
    import hashlib

    import pandas as pd

    from ltv.models.ltv_model import LTVModel

    predict = LTVModel.predict

    def digested(self, features):
        out = predict(self, features)
        digest = hashlib.sha256(pd.util.hash_pandas_object(out, index=True).to_numpy().tobytes()).hexdigest()[:16]
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
        with open(target, "a") as f:
            f.write(json.dumps({"test": test, "rows": len(out), "digest": digest}) + "\n")
        return out

    LTVModel.predict = digested
    yield
    LTVModel.predict = predict


def pytest_sessionfinish(session):
    """An xdist worker hands its checked operations to the controller (see pytest_testnodedown)."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["aws_checked"] = sorted(map(list, aws_constraints.CHECKED))
        session.config.workeroutput["aws_requests"] = aws_constraints.REQUESTS[0]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", {})
    aws_constraints.CHECKED.update(map(tuple, output.get("aws_checked", [])))
    aws_constraints.REQUESTS[0] += output.get("aws_requests", 0)


def pytest_terminal_summary(terminalreporter):
    """How much of AWS's API the suite held to its constraints (all workers together); with
    LTV_API_CONSTRAINTS_REPORT=file, the operations are also written there (union runs with it)."""
    checked = aws_constraints.CHECKED
    if os.environ.get(aws_constraints.REPORT):
        Path(os.environ[aws_constraints.REPORT]).write_text(json.dumps(
            {"requests": aws_constraints.REQUESTS[0], "operations": sorted(map(list, checked))}, indent=1))
    if checked:
        services = sorted({s for s, _ in checked})
        terminalreporter.write_line(
            f"AWS API constraints: {aws_constraints.REQUESTS[0]} requests checked, {len(checked)} distinct operations "
            f"({len(services)} services: {', '.join(services)})")
        if terminalreporter.config.option.verbose > 0:
            terminalreporter.write_line("  " + " ".join(f"{s}.{o}" for s, o in sorted(checked)))


def raw_config(game: str = "galaxy-raiders") -> dict[str, Any]:
    return yaml.safe_load((GAMES / f"{game}.yaml").read_text())


def make_config(game: str = "galaxy-raiders", **overrides: Any) -> cfg.GameConfig:
    return cfg.load(GAMES / f"{game}.yaml", overrides)


@pytest.fixture
def tiny_config() -> cfg.GameConfig:
    """galaxy-raiders at a size that simulates in about a second."""
    return make_config(simulation={"daily_installs": 60, "days": 90})


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    return tmp_path / "lake"


# bounded by work: one family, 60 rounds, one thread, a seed (ltv.models.automl.SEED); the time
# limit only guards against a hang; no machine is slow enough to reach it on the tiny game
TINY_BUDGET = {"hyperparameters": {"GBM": {"num_boost_round": 60}}, "fit_weighted_ensemble": False,
               "time_limit_s": 3600, "num_cpus": 1}


def loop_config(**overrides: Any) -> cfg.GameConfig:
    """A small galaxy-raiders with short horizons, so a few months of logs hold whole datasets."""
    base = {"simulation": {"daily_installs": 120, "days": 130, "campaign": None,
                           "drift": {"day": "2025-03-31", "purchase_rate_multiplier": {"dolphin": 3.0, "whale": 0.3},
                                     "price_shift": {"dolphin": 2, "whale": -2}, "nonpayer_conversion": 0.3,
                                     # the tests' update is all here, not inherited from the demo game's
                                     # tuning: a one-off conversion on its day, no daily transitions
                                     "payer_dropout": 0.0, "dropout_hazard": 0.0, "conversion_hazard": 0.0,
                                     "spend_elasticity": 0.0}},
            "horizons": {"ltv_days": 14, "purchase_days": 14},
            "features": {"step_days": 7, "n_steps": 4, "population_window_days": 14},
            "datasets": {"first_start": "2025-02-03", "count": 3, "start_shift_weeks": 3, "train_weeks": [3],
                         "validation_weeks": 1, "test_weeks": 1, "rolling_train_weeks": 3},
            "model": TINY_BUDGET}
    return make_config(**cfg.merge(base, overrides))


@pytest.fixture(scope="session")
def tiny_game(tmp_path_factory):
    """A simulated tiny game with player_day built: (config, lake, engine)."""
    import datetime as dt

    from ltv import etl
    from ltv.engine import DuckDBEngine
    from ltv.lake import Lake
    from ltv.simulate import simulate

    config = loop_config()
    lake = Lake(tmp_path_factory.mktemp("tiny"), config.game.id)
    simulate(config, lake)
    engine = DuckDBEngine(lake, config, threads=1)
    days = engine.partitions("events")
    etl.build_player_day(engine, config, dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1]))
    return config, lake, engine


@pytest.fixture(scope="session")
def tiny_model(tiny_game, tmp_path_factory):
    """A model trained on the tiny game's first dataset version: (model, splits, manifest)."""
    from ltv import datasets
    from ltv.models import train

    config, lake, engine = tiny_game
    spec = datasets.version_specs(config)[0]
    manifest = datasets.build_dataset(engine, config, lake, spec)
    splits = datasets.load_dataset(lake, spec.name)
    model = train(config, splits, tmp_path_factory.mktemp("models") / "m1", dataset=manifest)
    return model, splits, manifest


@pytest.fixture
def scoring_lake(tiny_game, tiny_model, tmp_path):
    """A fresh lake sharing the tiny game's raw logs and player_day (read-only, by symlink),
    with the tiny model registered as champion: (config, lake, engine, registry)."""
    from ltv.engine import DuckDBEngine
    from ltv.lake import Lake
    from ltv.promotion import APPROVED
    from ltv.registry import LocalRegistry

    config, shared, _ = tiny_game
    lake = Lake(tmp_path / "lake", config.game.id)
    lake.base.mkdir(parents=True)
    for name in ("raw", "player_day", "truth"):
        (lake.base / name).symlink_to(shared.base / name)
    registry = LocalRegistry(lake.registry, config.game.id)
    registry.register(tiny_model[0].path, metrics=tiny_model[0].manifest["validation_metrics"], status=APPROVED,
                      reason="fixture")
    return config, lake, DuckDBEngine(lake, config, threads=1), registry


@pytest.fixture(scope="session")
def example_app(tmp_path_factory):
    """The CDK app of both example games, synthesized once per test process (cdk-nag runs on it):
    the CDK, pipeline and security tests read the same templates."""
    from test_cdk import synth

    return synth([cfg.load(p) for p in sorted(GAMES.glob("*.yaml"))], tmp_path_factory.mktemp("cdk") / "cdk.out")
