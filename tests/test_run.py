"""The daily loop on a tiny game with a content update: champion, scoring, alerts, retraining."""
from __future__ import annotations

import datetime as dt

import pytest

from ltv.promotion import APPROVED
from ltv.run import DailyLoop
from ltv.scoring import scored_dates

pytestmark = pytest.mark.slow


def test_the_loop_finds_a_champion_scores_alerts_and_retrains(scoring_lake) -> None:
    config, lake, _, registry = scoring_lake
    for v in registry.versions():  # start from an empty model group
        registry.reject(v.version, "test starts without a champion")
    loop = DailyLoop(config, lake)
    summary = loop.run(dt.date(2025, 3, 17), dt.date(2025, 5, 12))
    trained = summary.of("trained")
    assert trained and "no champion yet" in trained[0].text and APPROVED in trained[0].text
    assert trained[0].day == "2025-03-24", "the first training waits for full feature history"
    assert len(summary.trainings) >= 3, "first champion, monthly retrains, alert-driven retrains"
    assert {e.day for e in summary.of("scored")} >= {"2025-04-07", "2025-04-14", "2025-04-21", "2025-04-28"}
    assert set(scored_dates(lake)) >= {"2025-04-07", "2025-05-12"}
    decay = [e for e in summary.of("alert") if "label_decay" in e.text]
    assert decay and decay[0].day >= "2025-03-31", "the content update of 2025-03-31 is caught by delayed labels"
    statuses = [r.version.status for r in summary.trainings]
    assert registry.champion() is not None and len(set(statuses)) >= 1
    for run in summary.trainings:
        assert (run.run_dir / "metrics.json").exists() and (run.run_dir / "report.html").exists()
    assert summary.of("error") == [], [e.text for e in summary.of("error")]


def test_a_day_with_bad_logs_is_recorded_and_the_loop_goes_on(scoring_lake) -> None:
    config, lake, engine, registry = scoring_lake
    loop = DailyLoop(config, lake)
    # 2035-01-01 has no raw partition: validation fails for freshness, nothing is built, no crash
    summary = loop.run(dt.date(2035, 1, 2), dt.date(2035, 1, 2))
    assert [e.kind for e in summary.events][:1] == ["validation"]
    assert "freshness" in summary.events[0].text
