"""The daily loop on a tiny game with a content update (2025-03-31) against a control game
without it: champion, scoring, delayed-label alerts only where behaviour changed, an
alert-driven retrain, and promotion decisions that follow the rule on the recorded metrics."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from conftest import loop_config
from ltv.lake import Lake
from ltv.promotion import APPROVED, REJECTED
from ltv.run import DailyLoop
from ltv.scoring import scored_dates
from ltv.simulate import simulate

pytestmark = pytest.mark.slow

# the retrain cron fires on Jan 1 only, so every retrain in the replayed spring is either the
# first model or one a monitoring policy asked for
NO_SCHEDULED_RETRAIN = {"schedules": {"retrain": "cron(0 5 1 1 ? *)"}}
START = dt.date(2025, 3, 24)


def decay_values(lake: Lake) -> dict[str, float]:
    """The label_decay measurements of every monitored day: cohort -> relative drop."""
    out = {}
    for path in sorted(lake.monitoring.glob("date=*.json")):
        for m in json.loads(path.read_text())["measurements"]:
            if m["signal"] == "label_decay":
                out[m["details"]["cutoff"]] = m["value"]
    return out


@pytest.fixture(scope="module")
def updated_run(tiny_game, tmp_path_factory):
    """The loop over the tiny game, whose content update converts non-payers and changes spending."""
    config, shared, _ = tiny_game
    config = loop_config(**NO_SCHEDULED_RETRAIN)
    lake = Lake(tmp_path_factory.mktemp("updated"), config.game.id)
    lake.base.mkdir(parents=True)
    for name in ("raw", "truth"):
        (lake.base / name).symlink_to(shared.base / name)
    loop = DailyLoop(config, lake)
    return config, lake, loop.registry, loop.run(START, dt.date(2025, 5, 5))


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    """The same game simulated without the content update, replayed over the same weeks."""
    config = loop_config(**NO_SCHEDULED_RETRAIN, simulation={"drift": None})
    lake = Lake(tmp_path_factory.mktemp("control"), config.game.id)
    simulate(config, lake)
    loop = DailyLoop(config, lake)
    summary = loop.run(START, dt.date(2025, 4, 28))
    yield config, lake, summary
    shutil.rmtree(lake.base, ignore_errors=True)


def test_the_first_champion_waits_for_full_feature_history_and_scores_weekly(updated_run) -> None:
    config, lake, registry, summary = updated_run
    trained = summary.of("trained")
    assert trained[0].day == "2025-03-31", "the rolling dataset's first training cutoff needs 4 weeks of history"
    assert "no champion yet" in trained[0].text and APPROVED in trained[0].text
    assert {e.day for e in summary.of("scored")} == {"2025-04-07", "2025-04-14", "2025-04-21", "2025-04-28", "2025-05-05"}
    assert set(scored_dates(lake)) == {e.day for e in summary.of("scored")}
    assert summary.of("error") == [], [e.text for e in summary.of("error")]


def test_delayed_labels_catch_the_update_and_stay_quiet_without_it(updated_run, control_run, record_property) -> None:
    config, lake, _, summary = updated_run
    _, control_lake, control = control_run
    policy = next(p for p in config.monitoring.policies if p.signal == "label_decay")
    updated, quiet = decay_values(lake), decay_values(control_lake)
    record_property("label_decay", {"updated": updated, "control": quiet})  # --junitxml: compare runs
    assert len(updated) >= 3 and len(quiet) >= 2, "cohorts are evaluated once their horizon has passed"
    # Across CPUs: until issue 21's fix the BTYD fit (ltv.models.btyd: L-BFGS-B with numerical
    # gradients on a likelihood flat in (a, b)) turned the last-bit differences of numpy's
    # CPU-dispatched exp/log kernels (AVX-512 vs AVX2) into other BTYD features, so other trees.
    # Measured then (label_decay = payer_pr_auc drop, threshold 0.08; 2026-12-07; V3 =
    # `NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL"` standing in for an AVX2-only CPU):
    #   this game (seed 11): updated min 0.111 (AVX-512) / 0.115 (V3); control max 0.020 /
    #     0.031 (V3) / 0.044 (an AVX2 EPYC, issue #21), so `< threshold / 2` did not hold there;
    #   other seeds (simulation.seed 0-5 for the control, 0-3 updated; odd seeds V3): control max
    #     -0.022-0.074 (mean 0.047), updated min 0.056-0.150 (mean 0.095): games this small do not
    #     separate in every cohort (seeds 0 and 1 dip below 0.08 once).
    # With exact gradients, the prior and the Newton polish (tests/test_btyd.py) every value is
    # identical under AVX-512 and V3 (+ OPENBLAS_CORETYPE=Haswell), 2026-12-07: updated 0.1436,
    # 0.1179, 0.0804; control 0.0277, -0.0198. The updated run's last cohort now clears the
    # threshold by 0.0004 only (the fitted BTYD features moved): a thin margin on this seed,
    # not a machine-dependent one; the other seeds' spread above still applies.
    # The bounds asserted are the policy's own and follow that spread: the update fires in all but
    # at most one cohort (every seed measured did), the control in none.
    assert sum(v > policy.threshold for v in updated.values()) >= len(updated) - 1, updated
    assert max(quiet.values()) < policy.threshold, quiet
    alerts = [e for e in summary.of("alert") if "label_decay" in e.text]
    assert alerts and "[critical] label_decay open" in alerts[0].text and "unseen test split" in alerts[0].text
    states = [e.text.split(":")[0].split()[-1] for e in alerts]
    for before, after in zip(states, states[1:]):  # a life cycle, not the same critical alert every week
        assert after != "open" or before == "resolved", states
    assert states.count("escalated") <= 1, states
    assert [e for e in control.of("alert") if "label_decay" in e.text] == []


def test_an_alert_asks_for_a_retrain_once_the_cooldown_has_passed(updated_run, control_run) -> None:
    _, _, _, summary = updated_run
    reasons = [e.text.split(":")[0] for e in summary.of("trained")]
    assert reasons == ["first model", "a monitoring policy asked for retraining"], reasons
    retrain = summary.of("trained")[1]
    first_alert = next(e.day for e in summary.of("alert") if "label_decay" in e.text)
    assert retrain.day == "2025-04-28" > first_alert, "alerts before the 28-day cooldown do not retrain"
    focus = json.loads((summary.trainings[1].run_dir / "metrics.json").read_text())["promotion"]["focus"]
    assert focus["metric"] == "payer_pr_auc" and focus["policy"] == "label_decay", "judged on what decayed too"
    assert set(focus["cutoffs"]) <= set(decay_values(updated_run[1])), "on cohorts that decayed"
    assert [e for e in control_run[2].of("trained")][1:] == [], "without the update nothing asks for a retrain"


def test_every_decision_follows_the_rule_on_the_metrics_it_recorded(updated_run) -> None:
    """Recompute each promotion from the run's metrics.json: approved iff the lower bound of the
    primary gain (or, for a decay retrain, of the decayed metric's gain on the decayed cohorts)
    clears the minimum effect and no guard's upper bound of loss exceeds its tolerance, on test
    cutoffs neither model has seen; the registry's champion is the last approved version."""
    config, _, registry, summary = updated_run
    rule = config.promotion
    rechecked = []
    for run in summary.trainings:
        recorded = json.loads((run.run_dir / "metrics.json").read_text())
        champion, promotion = recorded["champion"], recorded["promotion"]
        assert promotion["reason"] in (run.run_dir / "report.html").read_text()
        assert registry.get(run.version.version).history[0]["reason"] == promotion["reason"], "the registry's record"
        if champion is None:
            assert run is summary.trainings[0], "only the first training meets no champion"
            assert run.version.status == APPROVED and 0 < recorded["promotion"]["primary"]["challenger"] <= 1
            continue
        assert champion["compared_on"] == recorded["cutoffs"], "the champion never saw this holdout"
        primary, focus = promotion["primary"], promotion["focus"]
        assert primary["challenger"] == pytest.approx(champion["challenger"][rule.primary_metric])
        assert primary["champion"] == pytest.approx(champion["model"][rule.primary_metric])
        assert primary["low"] <= primary["gain"] <= primary["high"]
        wins = primary["low"] > rule.min_effect
        if not wins and focus is not None:
            wins = focus["low"] > rule.min_effect and -primary["low"] <= rule.primary_tolerance
        for guard, tolerance in rule.guard_metrics.items():
            wins = wins and promotion["guards"][guard]["loss_upper"] <= tolerance
        assert run.version.status == (APPROVED if wins else REJECTED), promotion["reason"]
        assert registry.get(run.version.version).status == run.version.status
        rechecked.append(run.version.status)
    # every training after the first met a champion and was rechecked (the window holds one such
    # retrain, test_an_alert_asks_for_a_retrain_once_the_cooldown_has_passed; its outcome is not fixed)
    assert len(rechecked) == len(summary.trainings) - 1 >= 1, rechecked
    approved = [v.version for v in registry.versions() if v.status == APPROVED]
    assert registry.champion().version == approved[-1]


def test_a_day_with_bad_logs_is_recorded_and_the_loop_goes_on(scoring_lake) -> None:
    config, lake, engine, registry = scoring_lake
    loop = DailyLoop(config, lake)
    # 2035-01-01 has no raw partition: validation fails for freshness, nothing is built, no crash
    summary = loop.run(dt.date(2035, 1, 2), dt.date(2035, 1, 2))
    assert [e.kind for e in summary.events][:1] == ["validation"]
    assert "freshness" in summary.events[0].text
    assert not (lake.table("player_day") / "dt=2035-01-01").exists()
