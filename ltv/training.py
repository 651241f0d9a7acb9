"""Train → evaluate → condition → register: the retraining flow, in one place.

The SageMaker pipeline runs the same steps with the same functions: `train` (ltv.models),
`evaluate_against_champion` (model and champion on the same out-of-time holdout, then the
promotion rule) and the registration with the decided status.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ltv import datasets, experiments, report
from ltv.config import GameConfig, ModelBudget
from ltv.engine import Engine
from ltv.errors import EmptyWindowError, MissingPartitionError
from ltv.evaluate import Evaluation, drift_table, evaluate, explain_evaluation, in_sample_cutoffs
from ltv.lake import Lake, write_json_atomic, write_text_atomic
from ltv.models import LTVModel, seen_until, train
from ltv.promotion import REJECTED, Decision, Focus, decide
from ltv.registry import LocalRegistry, ModelVersion


@dataclass
class TrainingRun:
    run_dir: Path
    dataset: str
    evaluation: Evaluation
    decision: Decision
    version: ModelVersion

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html"


def evaluate_against_champion(model: LTVModel, splits: dict[str, pd.DataFrame], config: GameConfig,
                              registry: LocalRegistry, lake: Lake | None, *,
                              focus: Focus | None = None) -> tuple[Evaluation, Decision]:
    """Evaluate the challenger and the current champion on the same test rows, and decide.

    The challenger must be out-of-sample on the whole test period (`InSampleError` otherwise).
    The two are compared only on test cutoffs neither has seen: a champion whose training
    reached into the holdout would otherwise win on rows it learned from. If no test cutoff is
    unseen by both, the challenger cannot be shown better and is rejected. `focus` (a label-decay
    retrain) lets the challenger win on the metric and cohorts that decayed."""
    evaluation = evaluate(model, splits, lake)
    explain_evaluation(model, splits, evaluation, config.explanations.report_rows)
    champion = registry.champion()
    ours, theirs = evaluation.frame, None
    evaluation.metrics["champion"] = None
    if champion is not None:
        incumbent = registry.load(champion.version)
        test_cutoffs = sorted(splits["test"]["cutoff"].unique().tolist())
        seen = in_sample_cutoffs(incumbent, test_cutoffs)
        common = [c for c in test_cutoffs if c not in seen]
        evaluation.metrics["champion"] = {"version": champion.version, "compared_on": common, "in_sample_for_champion": seen}
        if not common:
            decision = Decision(False, REJECTED, f"no test cutoff is unseen by champion version {champion.version} - its "
                                f"training reached {seen_until(incumbent.manifest)} - so the challenger cannot be "
                                "compared out-of-sample: evaluate it on a later dataset")
            evaluation.metrics["promotion"] = decision.to_json()
            return evaluation, decision
        subset = splits | {"test": splits["test"][splits["test"]["cutoff"].isin(common)]}
        if seen:  # compare both on the common unseen rows only
            mine = evaluate(model, subset)
            ours, challenger_metrics = mine.frame, mine.metrics["model"]
        else:
            challenger_metrics = evaluation.metrics["model"]
        incumbent_eval = evaluate(incumbent, subset)
        theirs = incumbent_eval.frame
        evaluation.metrics["champion"] |= {"model": incumbent_eval.metrics["model"], "challenger": challenger_metrics}
    decision = decide(ours, theirs, config.promotion, days=model.purchase_days, focus=focus)
    evaluation.metrics["promotion"] = decision.to_json()
    return evaluation, decision


def runs_dir(lake: Lake) -> Path:
    return lake.base / "runs"


def train_evaluate_register(config: GameConfig, lake: Lake, engine: Engine, registry: LocalRegistry,
                            spec: datasets.DatasetSpec, *, budget: ModelBudget | None = None,
                            drift: pd.DataFrame | None = None, progress: Callable[[str], None] | None = None,
                            focus: Focus | None = None) -> TrainingRun:
    """Build the dataset, train a challenger, evaluate it against the champion, register it with
    the status the promotion rule decides, and write metrics.json + report.html for the run.

    Registration is the commit point: the run's folder holds its report before it, and is removed
    if anything fails up to it; what follows (`finish_run`) can be redone after a crash."""
    say = progress or (lambda _msg: None)
    say(f"dataset {spec.name}")
    manifest = datasets.build_dataset(engine, config, lake, spec)
    splits = datasets.load_dataset(lake, spec.name)
    run_dir = runs_dir(lake) / f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{spec.name}-{uuid.uuid4().hex[:4]}"
    try:
        model = train(config, splits, run_dir / "model", dataset=manifest, budget=budget, progress=say)
        say("evaluating against the champion")
        evaluation, decision = evaluate_against_champion(model, splits, config, registry, lake, focus=focus)
        write_report(run_dir, evaluation, model.manifest, run_title(config, spec.name, decision.status),
                     drift if drift is not None else latest_drift(lake))
        version = registry.register(run_dir / "model", metrics=evaluation.metrics["model"], status=decision.status,
                                    reason=decision.reason)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-done: no version, no run folder
        raise
    evaluation.metrics["registered"] = finish_run(run_dir, version, config, spec.name)
    return TrainingRun(run_dir, spec.name, evaluation, decision, version)


def run_title(config: GameConfig, dataset: str, status: str, version: int | None = None) -> str:
    """A training run's report title: the challenger before registration, its version after."""
    return f"{config.game.name}: {'challenger' if version is None else f'model version {version}'} on {dataset} ({status})"


def finish_run(run_dir: Path, version: ModelVersion, config: GameConfig, dataset: str) -> dict[str, Any]:
    """Complete a run whose model the registry holds (idempotent): record the version in
    metrics.json and the report's title, drop the run's copy of the artifact, write model.txt."""
    status = version.history[0]["status"]
    registered = {"version": version.version, "status": status}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics.get("registered") != registered:
        write_json_atomic(run_dir / "metrics.json", metrics | {"registered": registered})
    page = (run_dir / "report.html").read_text()
    before, after = (html.escape(run_title(config, dataset, status, v)) for v in (None, version.version))
    if before in page:
        write_text_atomic(run_dir / "report.html", page.replace(before, after))
    shutil.rmtree(run_dir / "model", ignore_errors=True)  # the registry holds the artifact now
    write_text_atomic(run_dir / "model.txt", str(version.path) + "\n")
    return registered


def write_report(target: Path, evaluation: Evaluation, manifest: dict[str, Any], title: str,
                 drift: pd.DataFrame | None, metrics_name: str = "metrics.json",
                 readouts: list[Path] | None = None) -> None:
    """The metrics (`metrics_name`: the pipeline's condition step reads evaluation.json) and
    report.html in `target`, linking the given experiment readouts."""
    links = [(p.parent.parent.name, os.path.relpath(p, target)) for p in readouts or []]
    write_json_atomic(target / metrics_name, evaluation.metrics)
    write_text_atomic(target / "report.html", report.render(evaluation, manifest, title=title, drift=drift,
                                                            experiments=links))


def latest_drift(lake: Lake) -> pd.DataFrame | None:
    path = lake.reports / "drift.json"
    return pd.DataFrame(json.loads(path.read_text())["rows"]) if path.exists() else None


def record_drift(lake: Lake, table: pd.DataFrame, details: dict[str, Any]) -> Path:
    path = lake.reports / "drift.json"
    write_json_atomic(path, details | {"rows": table.to_dict("records")})
    return path


@dataclass
class DriftExperiment:
    table: pd.DataFrame
    path: Path                  # reports/drift.json, which every later report shows
    stale: str                  # the version the fixed model was trained on
    retrained: str              # the version the fresh model was trained on
    skipped: dict[str, str]     # versions whose data is not complete yet, and why


def drift_experiment(config: GameConfig, lake: Lake, engine: Engine, *, budget: ModelBudget | None = None,
                     progress: Callable[[str], None] | None = None) -> DriftExperiment:
    """Kakao's drift experiment over the configured dataset versions whose data is complete:
    train on the first, evaluate that fixed model on every version's test period, retrain on
    the last and evaluate it on the same data. Versions whose labels reach past the logs are
    skipped (and named), so the experiment runs as soon as two versions are complete."""
    say = progress or (lambda _msg: None)
    loaded: dict[str, dict[str, pd.DataFrame]] = {}
    skipped: dict[str, str] = {}
    for spec in datasets.version_specs(config):
        try:
            datasets.build_dataset(engine, config, lake, spec)
        except (MissingPartitionError, EmptyWindowError) as e:
            skipped[spec.name] = str(e)
            continue
        loaded[spec.name] = datasets.load_dataset(lake, spec.name)
        say(f"dataset {spec.name} ready")
    if len(loaded) < 2:
        raise EmptyWindowError("the drift experiment needs two complete dataset versions, found "
                               f"{len(loaded)}: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    names = list(loaded)
    base = runs_dir(lake) / f"drift-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"
    models = {}
    for which, name in (("stale", names[0]), ("retrained", names[-1])):
        say(f"training the {which} model on {name}")
        models[which] = train(config, loaded[name], base / which, budget=budget,
                              dataset=datasets.read_manifest(lake.datasets / name))
    say("evaluating both on every version's test period")
    table = drift_table(models["stale"], models["retrained"], loaded, lake)
    path = record_drift(lake, table, {"stale": names[0], "retrained": names[-1], "skipped": skipped})
    return DriftExperiment(table, path, names[0], names[-1], skipped)


def write_evaluation(config: GameConfig, lake: Lake, engine: Engine, model: LTVModel, label: str,
                     spec: datasets.DatasetSpec, target: Path | None = None, *,
                     allow_in_sample: bool = False) -> tuple[Path, Evaluation]:
    """Evaluate a model on a dataset's test period: metrics.json and report.html (with the
    latest drift table) in `target`, by default reports/evaluation-<dataset>. A test period the
    model has seen raises `InSampleError`, unless `allow_in_sample`, which labels every output
    (metrics.json's `in_sample`, the report's title and banner, the default folder name)."""
    splits = datasets.load_dataset(lake, datasets.build_dataset(engine, config, lake, spec)["name"])
    evaluation = evaluate(model, splits, lake, allow_in_sample=allow_in_sample)
    explain_evaluation(model, splits, evaluation, config.explanations.report_rows)
    suffix = "-in-sample" if evaluation.metrics["in_sample"] else ""
    target = target or lake.reports / f"evaluation-{spec.name}{suffix}"
    write_report(target, evaluation, model.manifest, f"{config.game.name}: {label} on {spec.name}", latest_drift(lake),
                 readouts=experiments.readouts(lake))
    return target, evaluation
