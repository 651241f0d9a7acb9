"""SageMaker's container contracts, with every path under one root the tests can move.

The game's image (`Dockerfile`) runs `python -m pipelines COMMAND`:

    train             SageMaker training (`docker run IMAGE train`)
    evaluate          the pipeline's evaluate processing job (its ContainerEntrypoint)
    resolve-dataset   the pipeline's first processing job: which dataset version to train on
    serve             batch transform / endpoints (`docker run IMAGE serve`): HTTP on 8080

and honours these paths (under $LTV_SM_ROOT, default /opt/ml, so tests use a temp dir):

    input/data/<channel>/              training channels: `dataset` (a dataset version), `config`
    input/config/hyperparameters.json  training hyperparameters (SageMaker passes strings)
    input/config/resourceconfig.json   the training job's hosts
    model/                             training: the artifact to archive; serving: the unpacked archive
    output/failure                     why a training job failed (its FailureReason)
    output/message                     why a processing job failed (its ExitMessage)
    processing/...                     processing inputs and outputs, passed to `evaluate` as arguments
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ltv import config as cfg
from ltv import datasets
from ltv.errors import ConfigError, LtvError
from ltv.lake import SUCCESS, is_complete

log = logging.getLogger("ltv.container")
# the image's commands and the modules that run them (each has `main(argv) -> exit code`)
COMMANDS = {"train": "pipelines.train", "evaluate": "pipelines.evaluate", "resolve-dataset": "pipelines.resolve",
            "serve": "pipelines.serve"}
MESSAGE_BYTES = 1024  # SageMaker keeps the first KiB of a failure file


@dataclass(frozen=True)
class Paths:
    """SageMaker's paths under `root` (/opt/ml in a job)."""

    root: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get("LTV_SM_ROOT", "/opt/ml")))

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def resources(self) -> Path:
        return self.root / "input" / "config" / "resourceconfig.json"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def training_failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def processing_message(self) -> Path:
        return self.root / "output" / "message"

    def processing(self, name: str) -> Path:
        return self.root / "processing" / name


def run(step: Callable[[], str], failure_file: Path) -> int:
    """Run a step and return its exit code. A failure's reason goes to `failure_file`, where
    SageMaker picks it up (first KiB) for the job's description, and to the log: a user error
    (`LtvError`) as its message with exit code 2, anything else with its traceback and 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        log.info(step())
        return 0
    except LtvError as e:
        reason, code = f"{type(e).__name__}: {e}", e.exit_code
        log.error(reason)
    except Exception as e:  # noqa: BLE001 - every failure must reach SageMaker's failure file
        reason, code = f"{type(e).__name__}: {e}", 1
        log.error("%s\n%s", reason, traceback.format_exc())
    failure_file.parent.mkdir(parents=True, exist_ok=True)
    # the first KiB, cut at a character boundary: a split UTF-8 character would make the reason unreadable
    failure_file.write_bytes(reason.encode()[:MESSAGE_BYTES].decode(errors="ignore").encode())
    return code


def load_config(directory: Path, game: str | None = None) -> cfg.GameConfig:
    """The game config in a channel or processing input: the one YAML file the stack shipped."""
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if len(files) != 1:
        raise ConfigError(f"expected exactly one game config (*.yaml) in {directory}, found {[f.name for f in files]}")
    config = cfg.load(files[0])
    if game is not None and config.game.id != game:
        raise ConfigError(f"{files[0].name} is the config of {config.game.id!r}, not of {game!r}")
    return config


def read_dataset(directory: Path, config: cfg.GameConfig) -> tuple[dict, dict]:
    """(splits, manifest) of the dataset version downloaded into `directory` (the contents of
    `s3://<curated>/datasets/<version>/`), read by the core's own loader."""
    if not (directory / "manifest.json").exists():
        raise LtvError(f"{directory} holds no dataset version (no manifest.json): the input must be "
                       "s3://<curated bucket>/datasets/<version>/, as the dataset job writes it")
    manifest = datasets.read_manifest(directory)
    if manifest.get("game") != config.game.id:
        raise ConfigError(f"dataset {manifest.get('name')!r} belongs to game {manifest.get('game')!r}, "
                          f"not {config.game.id!r}")
    if not is_complete(directory):
        raise LtvError(f"{directory} holds dataset {manifest.get('name')!r} without its {SUCCESS} marker: the "
                       "dataset job did not finish writing it; rebuild the version, then start the pipeline again")
    return datasets.read_splits(directory), manifest


def read_json(path: Path, default: dict | None = None) -> dict:
    if not path.exists():
        if default is not None:
            return default
        raise LtvError(f"{path} is missing")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines COMMAND [ARGS]`: the image's entrypoint."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m pipelines {{{','.join(COMMANDS)}}} [ARGS]", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
