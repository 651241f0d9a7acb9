"""What the pipeline definition (retrain.py) and the image's steps agree on: the property files
the steps write and the training metrics' log lines. Standard library only, so that building the
definition at synth time imports no step module (their imports reach AutoGluon and matplotlib)."""
from __future__ import annotations

DATASET_FILE = "dataset.json"         # resolve-dataset's output, the pipeline's Dataset PropertyFile
EVALUATION = "evaluation.json"        # evaluate's output, the pipeline's Evaluation PropertyFile
# validation metrics the training job reports to SageMaker (Studio shows them next to each run)
REPORTED = ("normalized_gini", "payer_f1", "purchase_day_mae")


def metric_definitions() -> list[dict[str, str]]:
    """The training job's metric definitions: one regex per reported metric, matching `metric_line`."""
    return [{"Name": f"validation:{name}", "Regex": f"validation:{name}=([-+0-9.eE]+|nan);"} for name in REPORTED]


def metric_line(name: str, value: float | None) -> str:
    return f"validation:{name}={'nan' if value is None else f'{value:.6g}'};"
