"""`evaluate`: the pipeline's evaluation step around `ltv.training.evaluate_against_champion`.

The processing job's inputs and output are given as arguments (`/opt/ml/processing/...` in the
pipeline): `--model` holds the training job's `model.tar.gz`, `--dataset` the dataset version it
trained on, `--config` the game config, `--output` receives `evaluation.json` (the evaluation
contract: `promotion.promote` for the condition step, `promotion.reason` for the fail step,
`registration` for the register step's metadata) and `report.html`. The champion is resolved at
run time from the game's model package group (or from a local registry with `--registry DIR`).
`--monitoring-state` (the state the monitoring job publishes, `s3://<curated>/monitoring/state.json`
in the pipeline) says whether a label-decay incident awaits this retrain: then the challenger is
also judged on the metric that decayed, on the cohorts that decayed (`ltv.promotion.Focus`), as
`ltv run` judges the retrain it asked for. No state yet (the monitoring job never ran) = no focus.

The challenger and the champion are scored on the same test rows with the local flow's
function and the one promotion rule (`ltv.promotion.decide`: a paired bootstrap over players,
seeded by the config, its intervals in `promotion.primary` / `promotion.guards` and its verdict
in the reason that becomes the package's metadata), so the decision is the one `ltv train` would take; a dataset whose test period the
model has seen is refused (`InSampleError`). A failure's reason goes to /opt/ml/output/message.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ltv import runs
from ltv.config import GameConfig
from ltv.errors import ArtifactError
from ltv.models import LTVModel
from ltv.monitoring import retrain_focus
from ltv.promotion import Focus
from ltv.sagemaker_registry import registration, unpack
from ltv.training import evaluate_against_champion, write_report
from pipelines.container import Paths, load_config, read_dataset, run
from pipelines.contract import EVALUATION
ARCHIVE = "model.tar.gz"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", required=True)
    for name in ("model", "dataset", "config", "output"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--registry", default="sagemaker", help="'sagemaker' (default) or a local registry directory")
    parser.add_argument("--region", default=None, help="the model package group's region (default: the job's)")
    parser.add_argument("--monitoring-state", default=None,
                        help="the monitoring state (s3:// URI or path): a label-decay incident awaiting a retrain "
                             "focuses the decision on what decayed")
    return parser.parse_args(argv)


def evaluate_challenger(args: argparse.Namespace, workdir: Path) -> str:
    config = load_config(args.config, args.game)
    archive = args.model / ARCHIVE
    if not archive.exists():
        raise ArtifactError(f"no {ARCHIVE} in {args.model}: the input must be the training job's model artifact")
    model = LTVModel.load(unpack(archive, workdir / "model"))
    splits, manifest = read_dataset(args.dataset, config)
    focus = decay_focus(args.monitoring_state, config, args.region)
    evaluation, decision = evaluate_against_champion(model, splits, config, _registry(args, config.game.id), None,
                                                     focus=focus)
    evaluation.metrics["registration"] = registration(model.manifest, decision.reason)
    title = f"{config.game.name}: challenger on {manifest['name']} ({'promoted' if decision.promote else 'not promoted'})"
    write_report(args.output, evaluation, model.manifest, title, None, metrics_name=EVALUATION)
    return f"{'promote' if decision.promote else 'do not promote'}: {decision.reason}"


def decay_focus(uri: str | None, config: GameConfig, region: str | None = None) -> Focus | None:
    """The focus of the monitoring state at `uri`; None without a state. Only a missing state
    means "none": any other failure to read it (e.g. access denied) stops the step, because
    deciding without the focus could reject the fix of a decay the team is waiting for."""
    if uri is None:
        return None
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        store: runs.Store = runs.S3Store(boto3.client("s3", region_name=region), bucket)
    else:
        store, key = runs.DirStore(Path(uri).parent), Path(uri).name
    stored = store.get(key)  # None only when absent (S3's NoSuchKey); other errors propagate
    return None if stored is None else retrain_focus(json.loads(stored.body), config.monitoring.policies)


def _registry(args: argparse.Namespace, game: str):
    if args.registry == "sagemaker":
        from ltv.sagemaker_registry import SageMakerRegistry

        return SageMakerRegistry(game, region=args.region)
    from ltv.registry import LocalRegistry

    return LocalRegistry(Path(args.registry), game)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="ltv-evaluate-") as tmp:
        return run(lambda: evaluate_challenger(args, Path(tmp)), Paths.from_env().processing_message)


if __name__ == "__main__":
    sys.exit(main())
