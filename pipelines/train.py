"""`train`: SageMaker's training contract around `ltv.models.train`, the function `ltv train` runs.

Reads the `dataset` channel (a dataset version as the dataset job writes it under
`s3://<curated>/datasets/<version>/`), the `config` channel (the game config the stack ships)
and `hyperparameters.json` (`game`; `budget`: `config`, the config's model budget, or `fast`;
`code_version`: the image's, recorded in the artifact's lineage).
Writes the checksummed artifact into `/opt/ml/model`, which SageMaker archives as
`model.tar.gz`, and prints the validation metrics that the pipeline's metric definitions turn
into Studio's per-run metrics. A failure's reason goes to `/opt/ml/output/failure`.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from ltv.config import GameConfig, ModelBudget
from ltv.errors import LtvError
from ltv.models import train, verify
from ltv.version import code_version
from pipelines.container import Paths, load_config, log, read_dataset, read_json, run
from pipelines.contract import REPORTED, metric_definitions, metric_line  # noqa: F401 - the step's contract

BUDGETS = ("config", "fast")


def budget(config: GameConfig, name: str) -> ModelBudget:
    if name not in BUDGETS:
        raise LtvError(f"hyperparameter budget={name!r}: expected one of {BUDGETS}")
    from ltv.models.automl import fast_budget

    return fast_budget(config.model) if name == "fast" else config.model


def train_model(paths: Paths, workdir: Path) -> str:
    """Train on the channels' dataset and config, leave the artifact in `paths.model`."""
    hyper = read_json(paths.hyperparameters, {})
    if hyper.get("code_version"):  # the image's code version, recorded in the artifact's lineage
        os.environ["LTV_CODE_VERSION"] = hyper["code_version"]
        code_version.cache_clear()
    hosts = read_json(paths.resources, {"hosts": ["algo-1"]}).get("hosts", [])
    if len(hosts) > 1:
        raise LtvError(f"the training job has {len(hosts)} instances; the core trains on one (set the pipeline's "
                       "TrainInstanceCount to 1)")
    paths.model.mkdir(parents=True, exist_ok=True)
    if any(paths.model.iterdir()):  # checked before training, not after it
        raise LtvError(f"{paths.model} is not empty; SageMaker hands training an empty model directory")
    config = load_config(paths.channel("config"), hyper.get("game"))
    splits, manifest = read_dataset(paths.channel("dataset"), config)
    log.info("training %s on dataset %s (%s)", config.game.id, manifest["name"], manifest["rows"])
    model = train(config, splits, workdir / "model", dataset=manifest, budget=budget(config, hyper.get("budget", "config")),
                  progress=log.info)
    for item in sorted(model.path.iterdir()):
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, paths.model / item.name)
    verify(paths.model)  # what SageMaker archives is exactly the checksummed artifact
    for name in REPORTED:
        print(metric_line(name, model.manifest["validation_metrics"].get(name)), flush=True)
    return f"artifact of {config.game.id} on {manifest['name']} in {paths.model}"


def main(argv: list[str] | None = None) -> int:
    paths = Paths.from_env()
    with tempfile.TemporaryDirectory(prefix="ltv-train-") as tmp:
        return run(lambda: train_model(paths, Path(tmp)), paths.training_failure)


if __name__ == "__main__":
    sys.exit(main())
