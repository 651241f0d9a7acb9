"""The crash kit's own checks (fast, no loop is run): which phase a path belongs to, and that the
end-state comparison of tests/test_crash.py fails when any compared artefact differs between two
lakes, while time stamps and run ids alone do not make them differ."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import loop_config
from crashkit import phase_of, signature
from test_crash import COMPARED, assert_same, end_state


def test_every_phase_of_the_loop_is_told_apart() -> None:
    game = "galaxy-raiders"
    cases = {"player_day/dt=2025-04-01/part-0.parquet": "player_day",
             "player_summary/dt=2025-04-01/part-0.parquet": "player_summary",
             "features/cutoff=2025-03-31/x": "features", "labels/cutoff=2025-03-31/x": "labels",
             "datasets/rolling-2025-03-31": "dataset", "runs/x/metrics.json": "training",
             "registry/ltv-g/versions/1": "registry", "reports/drift.json": "reports",
             "monitoring/validation/dt=2025-04-01.json": "validation", "monitoring/loop.json": "journal",
             "monitoring/.tmp-loop.json": "journal", "monitoring/alerts.jsonl": "monitoring", "raw/x": "other"}
    for path, phase in cases.items():
        assert phase_of(f"{game}/{path}") == phase, path
    assert phase_of("predictions/game=g/dt=2025-04-07/run=r/part-0.parquet") == phase_of("predictions") == "scoring"
    assert signature("rename", "g/runs/20250414T031502.123456-v3-ab12cd/x-0123abcd-p42") == \
        "rename g/runs/<time>-v3-<random>/x-<scratch>"


def lake(root: Path, run_id: str, stamp: str) -> Path:
    """A lake holding one of each artefact the comparison reads beyond the tables."""
    base = root / "galaxy-raiders"
    monitoring = base / "monitoring"
    (monitoring / "validation").mkdir(parents=True)
    (monitoring / "delayed").mkdir()
    (monitoring / "state.json").write_text(json.dumps({"monitored_scores": ["2025-04-07"], "evaluated": []}))
    (monitoring / "loop.json").write_text(json.dumps({"days": {"2025-04-07": {"scored": run_id, "trained": None}}}))
    (monitoring / "alerts.jsonl").write_text(json.dumps({"date": "2025-04-07", "policy": "feature_drift",
                                                          "at": stamp}) + "\n")
    (monitoring / "date=2025-04-07.json").write_text(json.dumps({"values": [{"policy": "p", "value": 0.25}],
                                                                 "run": run_id}))
    (monitoring / "delayed" / "cutoff=2025-03-24.json").write_text(json.dumps({"normalized_gini": 0.5}))
    (monitoring / "validation" / "dt=2025-04-07.json").write_text(json.dumps({"passed": True, "checked": stamp}))
    run = base / "runs" / f"{run_id[:15]}-rolling-2025-03-31-{run_id[-4:]}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": {"normalized_gini": 0.7}, "registered": {"at": stamp}}))
    (base / "reports").mkdir()
    (base / "reports" / "drift.json").write_text(json.dumps({"version": ["v1"], "stale_normalized_gini": [0.9]}))
    return root


# each compared artefact beyond the tables, and a change to it
CHANGES = {
    "alerts": ("monitoring/alerts.jsonl", lambda text: text + text),
    "monitored": ("monitoring/state.json", lambda text: text.replace("2025-04-07", "2025-04-08")),
    "journal": ("monitoring/loop.json", lambda text: text.replace('"trained": null', '"trained": true')),
    "monitoring": ("monitoring/date=2025-04-07.json", lambda text: text.replace("0.25", "0.26")),
    "validation": ("monitoring/validation/dt=2025-04-07.json", lambda text: text.replace("true", "false")),
    "run_metrics": ("runs/*/metrics.json", lambda text: text.replace("0.7", "0.71")),
    "reports": ("reports/drift.json", lambda text: text.replace("0.9", "0.8")),
}


@pytest.fixture
def two_lakes(tmp_path):
    config = loop_config()
    # the same work run twice: other run ids and time stamps
    a = lake(tmp_path / "a", "20250407T040000.000001-v1-aaaaaa", "2026-12-07T10:00:00.123456+00:00")
    b = lake(tmp_path / "b", "20250407T050000.000002-v1-bbbbbb", "2026-12-07T11:30:00.654321+00:00")
    return config, a, b


def test_the_same_work_compares_equal_despite_time_stamps_and_run_ids(two_lakes) -> None:
    config, a, b = two_lakes
    state = end_state(a, config)
    assert set(state) == set(COMPARED)
    assert state["run_metrics"] and state["validation"] and state["monitoring"] and state["reports"]
    assert_same(state, end_state(b, config))


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_a_difference_in_any_compared_artefact_fails_the_comparison(two_lakes, key) -> None:
    config, a, b = two_lakes
    pattern, change = CHANGES[key]
    path = next((b / "galaxy-raiders").glob(pattern))
    path.write_text(change(path.read_text()))
    with pytest.raises(AssertionError, match=f"{key} differs"):
        assert_same(end_state(a, config), end_state(b, config))


def test_a_missing_artefact_or_prediction_fails_the_comparison(two_lakes) -> None:
    config, a, b = two_lakes
    shutil.rmtree(b / "galaxy-raiders" / "reports")
    with pytest.raises(AssertionError, match="reports differs"):
        assert_same(end_state(a, config), end_state(b, config))
    reference = end_state(a, config)
    with pytest.raises(AssertionError, match="every compared artefact"):
        assert_same(reference, {k: v for k, v in reference.items() if k != "alerts"})
    with pytest.raises(AssertionError):
        assert_same(reference | {"player_summary": {"2025-04-01": "1/1"}}, reference)
