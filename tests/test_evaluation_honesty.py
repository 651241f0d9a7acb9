"""Ways a reported figure could be wrong without warning, each refused or labelled:
stale partitions after a definition change, an oracle for other horizons, in-sample evaluation,
and a champion compared on rows it trained on."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import loop_config
from ltv import datasets, etl
from ltv.engine import DuckDBEngine
from ltv.errors import InSampleError, StaleDefinitionError
from ltv.evaluate import evaluate
from ltv.lake import Lake
from ltv.models import LTVModel
from ltv.promotion import REJECTED
from ltv.training import evaluate_against_champion

pytestmark = pytest.mark.slow


def shared_lake(tiny_game, tmp_path: Path, *, share: tuple[str, ...] = ("raw", "player_day", "truth")) -> Lake:
    """A new lake reading the tiny game's raw logs, player_day and truth (symlinks), writing its own
    features, labels and datasets."""
    config, shared, _ = tiny_game
    lake = Lake(tmp_path / "lake", config.game.id)
    lake.base.mkdir(parents=True)
    for name in share:
        (lake.base / name).symlink_to(shared.base / name)
    return lake


def independent_ltv(engine: DuckDBEngine, cutoff: dt.date, days: int) -> pd.Series:
    """Revenue in [cutoff, cutoff + days) per player, straight from player_day."""
    end = cutoff + dt.timedelta(days=days)
    frame = engine.query(f"SELECT player_id, SUM(revenue) AS ltv FROM player_day WHERE dt >= '{cutoff}' "
                         f"AND dt < '{end}' GROUP BY player_id")
    return frame.set_index("player_id")["ltv"]


def test_partitions_built_under_another_definition_are_rebuilt(tiny_game, tmp_path: Path) -> None:
    """A 14-day horizon and 4 history steps, then 7 days and 2 steps in the config: the new
    dataset's labels are 7-day labels and its features stop at w2, not the old partitions' rows."""
    config, _, _ = tiny_game
    lake = shared_lake(tiny_game, tmp_path)
    engine = DuckDBEngine(lake, config, threads=1)
    spec = datasets.version_specs(config)[0]
    datasets.build_dataset(engine, config, lake, spec)
    assert "revenue_w4" in datasets.load_dataset(lake, spec.name)["train"]

    shorter = loop_config(horizons={"ltv_days": 7, "purchase_days": 7},
                          features={"n_steps": 2, "step_days": 7, "population_window_days": 14})
    assert etl.stale_partitions(engine, shorter, "labels", [str(c) for c in spec.cutoffs]) == \
        [str(c) for c in spec.cutoffs]
    new_spec = datasets.DatasetSpec("shorter", spec.train, spec.validation, spec.test)
    datasets.build_dataset(engine, shorter, lake, new_spec)
    splits = datasets.load_dataset(lake, "shorter")
    assert "revenue_w2" in splits["train"] and "revenue_w3" not in splits["train"]
    cutoff = spec.train[0]
    rows = splits["train"][splits["train"].cutoff == str(cutoff)].set_index("player_id")
    truth = independent_ltv(engine, cutoff, 7).reindex(rows.index).fillna(0.0)
    pd.testing.assert_series_equal(rows["ltv"], truth, check_names=False, check_exact=False)
    assert rows["next_purchase_day"].max() <= 7
    recorded = engine.get_partition_json("labels", str(cutoff), etl.DEFINITION_FILE)
    assert recorded["settings"]["horizons"] == {"ltv_days": 7, "purchase_days": 7}


def test_player_day_under_another_log_mapping_is_refused_with_the_rebuild_command(tiny_game, tmp_path: Path) -> None:
    config, _, _ = tiny_game
    engine = DuckDBEngine(shared_lake(tiny_game, tmp_path), config, threads=1)
    remapped = loop_config(logs={"events": {"event_types": {"purchase": ["iap_purchase", "ad_impression"],
                                                            "other": ["tutorial_step"]}}})
    with pytest.raises(StaleDefinitionError, match=r"another log mapping .* ltv features daily --game galaxy-raiders "
                                                   r"--date 2025-01-06 --to 2025-02-16"):
        etl.build_features(engine, remapped, dt.date(2025, 2, 17))
    assert "cutoff=2025-02-17" not in [p.name for p in (engine.lake.table("features")).glob("*")]


def test_an_oracle_for_other_horizons_is_not_reported(tiny_game, tiny_model, tmp_path: Path) -> None:
    """Truth computed for 28-day horizons is not the oracle of a 14-day model: no oracle, and why."""
    model, splits, _ = tiny_model
    lake = shared_lake(tiny_game, tmp_path, share=("raw", "player_day"))
    shutil.copytree(tiny_game[1].base / "truth", lake.base / "truth")
    assert evaluate(model, splits, lake).metrics["oracle"] is not None
    for marker in (lake.base / "truth").glob("cutoff=*/_definition.json"):
        marker.write_text(json.dumps({"ltv_days": 28, "purchase_days": 16}))
    metrics = evaluate(model, splits, lake).metrics
    assert metrics["oracle"] is None and "model_vs_oracle" not in metrics["ratios"]
    assert "horizons {'ltv_days': 28, 'purchase_days': 16}" in metrics["oracle_note"]


def test_evaluating_on_rows_the_model_learned_from_is_refused_or_labelled(tiny_game, tiny_model, tmp_path: Path) -> None:
    model, splits, _ = tiny_model
    seen = splits | {"test": splits["validation"]}
    with pytest.raises(InSampleError, match=r"in-sample.*--allow-in-sample"):
        evaluate(model, seen)
    labelled = evaluate(model, seen, allow_in_sample=True)
    assert labelled.metrics["in_sample"]["cutoffs"] == sorted(splits["validation"].cutoff.unique())
    assert labelled.metrics["in_sample"]["seen_until"] == model.manifest["trained_on"]["seen_until"]
    assert evaluate(model, splits).metrics["in_sample"] is None, "its own test period is out-of-sample"
    from ltv import report

    page = report.render(labelled, model.manifest, title="check")
    assert "IN-SAMPLE" in page.split("<body>")[1][:400]


def test_the_cli_refuses_an_in_sample_evaluation_and_labels_one_asked_for(scoring_lake, monkeypatch, capsys) -> None:
    """`ltv evaluate` of the champion on a rolling dataset whose test period lies in its training
    weeks: exit 2 with the reason; with --allow-in-sample every output says so. Run by `ltv.cli.main`
    as the console script runs it, in this process (a new interpreter would spend ~8 s CPU per
    command importing the model stack; tests/test_faults.py runs the real executable): any
    exception other than the exit is a traceback and fails the test."""
    from ltv import cli

    config, lake, _, registry = scoring_lake
    trained_on = registry.load(registry.champion().version).manifest["trained_on"]
    game_yaml = lake.base.parent / "game.yaml"
    game_yaml.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    rolling = f"rolling-{dt.date.fromisoformat(trained_on['validation'][-1]) + dt.timedelta(days=14)}"
    args = ["ltv", "evaluate", "--game", str(game_yaml), "--dataset", rolling, "--lake", str(lake.root)]

    def ltv(*argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", list(argv))
        with pytest.raises(SystemExit) as ended:
            cli.main()
        said = capsys.readouterr()
        return ended.value.code, said.err, said.out

    code, err, _ = ltv(*args)
    assert code == 2 and "in-sample" in err and "--allow-in-sample" in err, err
    assert "Traceback" not in err
    code, err, out = ltv(*args, "--allow-in-sample")
    assert code == 0, err
    assert "IN-SAMPLE" in err + out
    folder = next(lake.reports.glob("evaluation-*-in-sample"))
    assert json.loads((folder / "metrics.json").read_text())["in_sample"]["cutoffs"]
    assert "(IN-SAMPLE)" in (folder / "report.html").read_text()


class _OneChampion:
    """A registry holding one Approved champion (a model object with an edited training period)."""

    def __init__(self, model: LTVModel):
        self.model = model

    def champion(self):
        return type("Version", (), {"version": 7})()

    def load(self, version: int) -> LTVModel:
        return self.model


def _with_seen_until(model: LTVModel, day: str) -> LTVModel:
    manifest = json.loads(json.dumps(model.manifest))
    manifest["trained_on"]["seen_until"] = day
    return LTVModel(model.path, manifest, model.predictors)


def test_promotion_compares_only_on_test_cutoffs_the_champion_never_saw(tiny_game, tiny_model) -> None:
    """A champion whose training reached into the holdout would win on rows it learned from:
    both are compared on the later cutoffs only, and if none is left the challenger is rejected."""
    config, lake, engine = tiny_game
    model, splits, _ = tiny_model
    later = datasets.version_specs(config)[1]
    datasets.build_dataset(engine, config, lake, later)
    second = datasets.load_dataset(lake, later.name)["test"]
    holdout = splits | {"test": pd.concat([splits["test"], second], ignore_index=True)}
    first_cut, last_cut = sorted(holdout["test"].cutoff.unique())[0], sorted(holdout["test"].cutoff.unique())[-1]

    champion = _with_seen_until(model, last_cut)  # saw the first test cutoff, not the last
    evaluation, decision = evaluate_against_champion(model, holdout, config, _OneChampion(champion), None)
    block = evaluation.metrics["champion"]
    assert block["compared_on"] == [last_cut] and first_cut in block["in_sample_for_champion"]
    assert block["model"]["players"] == block["challenger"]["players"] == int((second.cutoff == last_cut).sum())
    assert evaluation.metrics["model"]["players"] == len(holdout["test"]), "the challenger's own report: every row"

    blind = _with_seen_until(model, str(dt.date.fromisoformat(last_cut) + dt.timedelta(days=1)))
    _, decision = evaluate_against_champion(model, holdout, config, _OneChampion(blind), None)
    assert decision.status == REJECTED and "no test cutoff is unseen" in decision.reason


def test_the_in_sample_boundary_is_the_day_after_the_last_label_any_training_row_read() -> None:
    """`seen_until` pinned to the day: the last train/validation cutoff plus the label horizon (the
    labels of a cutoff read [cutoff, cutoff + days)); a cutoff on that day is out-of-sample, the
    day before is not. Also for artifacts without `trained_on` (judged from the dataset's cutoffs)."""
    from types import SimpleNamespace

    from ltv.evaluate import in_sample_cutoffs
    from ltv.models import seen_until
    from ltv.models.ltv_model import label_days, trained_on

    splits = {"train": pd.DataFrame({"cutoff": ["2025-02-10", "2025-02-03", "2025-02-10"]}),
              "validation": pd.DataFrame({"cutoff": ["2025-02-17"]})}
    period = trained_on(splits, 14)
    assert period == {"train": ["2025-02-03", "2025-02-10"], "validation": ["2025-02-17", "2025-02-17"],
                      "label_days": 14, "seen_until": "2025-03-03"}
    assert label_days(loop_config(horizons={"ltv_days": 28, "purchase_days": 7})) == 28
    assert label_days(loop_config(horizons={"ltv_days": 7, "purchase_days": 21})) == 21
    assert seen_until({"trained_on": period}) == dt.date(2025, 3, 3)
    legacy = {"dataset": {"cutoffs": {"train": ["2025-02-03"], "validation": ["2025-02-17"], "test": ["2025-03-10"]}},
              "horizons": {"ltv_days": 7, "purchase_days": 14}}
    assert seen_until(legacy) == dt.date(2025, 3, 3), "the longer of the two horizons, from the last seen cutoff"
    assert seen_until({"dataset": {"cutoffs": {}}}) is None and seen_until({}) is None
    model = SimpleNamespace(manifest={"trained_on": period})
    cutoffs = ["2025-03-02", "2025-03-03", "2025-03-10"]
    assert in_sample_cutoffs(model, cutoffs) == ["2025-03-02"]
    assert in_sample_cutoffs(SimpleNamespace(manifest={}), cutoffs) == cutoffs, "unknown period: all in-sample"
