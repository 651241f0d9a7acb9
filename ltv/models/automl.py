"""AutoGluon, configured once: model families and budget from the game config, small artifacts.

Only LightGBM / CatBoost / XGBoost (no torch, no fastai). RandomForest, ExtraTrees and KNN are
left out by default: they are slow to predict and their artifacts are hundreds of MB.
"""
from __future__ import annotations

import copy
import functools
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ltv.config import ModelBudget

HEARTBEAT_S = 10.0  # while one model fits, progress is reported at least this often

os.environ.setdefault("AUTOGLUON_TELEMETRY", "0")
warnings.filterwarnings("ignore", message=".*torch.*")
logging.getLogger("autogluon").setLevel(logging.ERROR)
# without torch (not needed: no neural models) AutoGluon logs an error on every fit when it counts GPUs
logging.getLogger("autogluon.common.utils.resource_utils").setLevel(logging.CRITICAL)

SEED = 0


def hyperparameters(budget: ModelBudget) -> dict[str, Any]:
    """Explicit hyperparameters if the config gives them, else each family's defaults."""
    return budget.hyperparameters or {family: {} for family in budget.families}


def _fitted(path: Path) -> list[str]:
    """Models AutoGluon has finished so far, oldest first: it saves each model's folder under the
    predictor's path when that model is fitted (read from disk, so nothing is added to the
    predictor, which pickles whatever it is given)."""
    models = [p for p in (path / "models").glob("*") if p.is_dir()] if (path / "models").exists() else []
    return [p.name for p in sorted(models, key=lambda p: p.stat().st_mtime)]


@contextmanager
def _heartbeat(path: Path, stage: str, say: Callable[[str], None], planned: list[str]):
    """Report stage, models done (of those planned) and elapsed seconds every HEARTBEAT_S until
    the block ends."""
    stop, started = threading.Event(), time.monotonic()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            done = _fitted(path)
            say(f"{stage}: fitting, {time.monotonic() - started:.0f} s; models done: {', '.join(done) or 'none yet'} "
                f"(planned: {', '.join(planned)})")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        say(f"{stage}: done in {time.monotonic() - started:.0f} s ({', '.join(_fitted(path)) or 'no model'})")


@contextmanager
def _nothing():
    yield


def fit(train: pd.DataFrame, label: str, problem_type: str, eval_metric: str, budget: ModelBudget,
        path: Path, tuning: pd.DataFrame | None = None, *, progress: Callable[[str], None] | None = None,
        stage: str = "") -> Any:
    """Fit one TabularPredictor within the budget; `tuning` drives early stopping and selection.
    With `progress`, each model's start and end and a heartbeat while it fits are reported."""
    TabularPredictor = _tabular_predictor()  # noqa: N806
    if budget.max_train_rows and len(train) > budget.max_train_rows:
        train = train.sample(budget.max_train_rows, random_state=SEED)
    predictor = TabularPredictor(label=label, problem_type=problem_type, eval_metric=eval_metric,
                                 path=str(path), verbosity=0)
    bagged = any(p in budget.presets for p in ("best", "high", "extreme"))
    kwargs: dict[str, Any] = {"use_bag_holdout": True} if bagged and tuning is not None else {}
    with _heartbeat(path, stage or label, progress, list(hyperparameters(budget))) if progress else _nothing():
        predictor.fit(train, tuning_data=tuning, time_limit=budget.time_limit_s, presets=budget.presets,
                      hyperparameters=hyperparameters(budget), fit_weighted_ensemble=budget.fit_weighted_ensemble,
                      calibrate_decision_threshold=False, num_cpus=budget.num_cpus or "auto", num_gpus=0,
                      ag_args_fit={"random_seed": SEED}, **kwargs)
    return predictor


def deploy(predictor: Any, target: Path) -> Path:
    """Copy only what the best model needs to predict into `target` (a relocatable folder)."""
    clone = predictor.clone_for_deployment(str(target), return_clone=True)
    clone.save_space()
    return target


def load(path: Path) -> Any:
    return _tabular_predictor().load(str(path), verbosity=0, require_py_version_match=False)


@functools.cache
def _tabular_predictor() -> Any:
    """AutoGluon's TabularPredictor, its environment metadata computed once per process: each
    save and each load recomputes it by reading the metadata of every installed distribution
    (measured: a five-stage model loads in 0.50 s with it, 0.02 s without; the loop loads one at
    every scoring run), and it cannot change while the process runs. Each caller gets a copy."""
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular.predictor import predictor as module

    measured = functools.cache(module.get_autogluon_metadata)
    module.get_autogluon_metadata = lambda: copy.deepcopy(measured())
    return TabularPredictor


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def fast_budget(budget: ModelBudget) -> ModelBudget:
    """A small budget for demos and quick trials: LightGBM only, 150 rounds, no ensemble,
    at most 80k training rows per stage. Bounded by that work, not by time: the time limit only
    guards against a hang, so a busy or slow machine fits the same model, just later."""
    return budget.model_copy(update={"hyperparameters": {"GBM": {"num_boost_round": 150}},
                                     "fit_weighted_ensemble": False, "time_limit_s": max(budget.time_limit_s, 3600),
                                     "max_train_rows": min(budget.max_train_rows or 80_000, 80_000)})
