"""The bad-input catalogue (docs/reliability.md lists every case with its test).

Each case is an input, the named error it gets (or the documented tolerant behaviour), and the
proof that nothing half-written is left and earlier outputs are intact: `unchanged(root)`
fingerprints every file under the lake before the case and checks afterwards that none was
changed or removed and that nothing was added but what the behaviour names (a validation
report, which is written whatever the outcome). Scratch leftovers would show up as additions.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_config, loop_config, raw_config
from handmade import day, event, write_lake
from ltv import config as cfg
from ltv import datasets, etl
from ltv.config import merge
from ltv.engine import DuckDBEngine
from ltv_cli import ltv
from ltv.errors import (ArtifactError, ConfigError, DataValidationError, EmptyWindowError, LoopBusyError, LtvError,
                        MissingPartitionError, NoPayersError, RegistryError)
from ltv.lake import Lake
from ltv.promotion import APPROVED, REJECTED
from ltv.registry import LocalRegistry
from ltv.run import DailyLoop
from ltv.scoring import LATEST, date_dir, latest_run, score
from ltv.validation import validate_day

# ----------------------------------------------------------------------------------------------
# the proof: nothing half-written, earlier outputs intact


def fingerprints(root: Path) -> dict[str, str]:
    """Every file under `root` (symlinked folders, i.e. shared inputs, not entered) -> a content hash."""
    out = {}
    for parent, _, files in os.walk(root):
        for name in files:
            path = Path(parent, name)
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@contextmanager
def unchanged(root: Path, *allowed: str) -> Iterator[None]:
    """Assert that the block changes and removes no file under `root` and adds only files
    matching `allowed` (glob patterns relative to `root`)."""
    before = fingerprints(root)
    yield
    after = fingerprints(root)
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    removed = sorted(set(before) - set(after))
    added = sorted(k for k in set(after) - set(before) if not any(fnmatch(k, a) for a in allowed))
    assert not (changed or removed or added), f"changed {changed}, removed {removed}, added {added}"


# ----------------------------------------------------------------------------------------------
# config


def write_yaml(raw: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(raw, default=str))))
    return path


CONFIG_CASES = {
    "missing_field": (lambda r: r["logs"]["events"]["columns"].pop("player_id") and r,
                      "logs.events.columns.player_id: required field is missing"),
    "unknown_key": (lambda r: merge(r, {"horizons": {"ltv_dayz": 28}}), "did you mean 'ltv_days'"),
    "wrong_type": (lambda r: merge(r, {"features": {"n_steps": "twelve"}}), 'features.n_steps: got "twelve"'),
    "horizon_zero": (lambda r: merge(r, {"horizons": {"ltv_days": 0}}), "horizons.ltv_days: got 0"),
    "history_longer_than_a_year": (lambda r: merge(r, {"features": {"n_steps": 60}}), "features.n_steps: got 60"),
    "invalid_cron": (lambda r: merge(r, {"schedules": {"scoring": "every monday"}}), "six fields"),
    "invalid_account": (lambda r: merge(r, {"aws": {"account": "1234"}}), "12 digits"),
    "invalid_region": (lambda r: merge(r, {"aws": {"region": "Europe"}}), "aws.region"),
    "event_type_in_two_roles": (lambda r: merge(r, {"logs": {"events": {"event_types": {"login": ["iap_purchase"]}}}}),
                                "listed under both"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors_are_named_and_no_command_writes_anything(case: str, tmp_path: Path) -> None:
    change, message = CONFIG_CASES[case]
    path = write_yaml(change(raw_config()), tmp_path / "game.yaml")
    lake = tmp_path / "lake"
    (lake / "galaxy-raiders" / "player_day").mkdir(parents=True)  # an earlier output
    (lake / "galaxy-raiders" / "player_day" / "kept").write_text("earlier")
    with pytest.raises(ConfigError, match="game.yaml") as failure:
        cfg.load(path)
    assert message in str(failure.value)
    with unchanged(lake):
        code, output = ltv("features", "daily", "--game", str(path), "--lake", str(lake), "--date", "2025-03-03")
    assert code == 2 and message in " ".join(output.split())


def test_duplicate_game_ids_across_config_files_are_refused(tmp_path: Path) -> None:
    write_yaml(raw_config(), tmp_path / "galaxy-raiders.yaml")
    write_yaml(raw_config(), tmp_path / "galaxy-copy.yaml")
    with pytest.raises(ConfigError, match="galaxy-copy.yaml.*galaxy-raiders.yaml|galaxy-raiders.yaml.*galaxy-copy"):
        cfg.load_all([tmp_path / "galaxy-raiders.yaml", tmp_path / "galaxy-copy.yaml"])
    code, output = ltv("config", "validate", str(tmp_path / "galaxy-raiders.yaml"), str(tmp_path / "galaxy-copy.yaml"))
    assert code == 2 and "game id 'galaxy-raiders'" in output


# ----------------------------------------------------------------------------------------------
# raw logs: a handmade lake whose earlier days are aggregated; each case breaks the last day

DAYS = [f"2025-03-0{d}" for d in range(1, 9)]
LAST = DAYS[-1]


def clean_events(days: list[str] = DAYS) -> list[dict]:
    out = []
    for d in days:
        for p in ("A", "B", "C"):
            out += [event(p, f"{d} 10:00", "login"), event(p, f"{d} 10:30", "session", seconds=1800)]
        out.append(event("A", f"{d} 10:10", "purchase", 4.99))
    return out


INSTALLS = {"A": "2025-03-01 09:00", "B": "2025-03-01 09:00", "C": "2025-03-02 09:00"}


@pytest.fixture
def logs(tmp_path: Path):
    """(config, root, engine): raw logs of 8 days, player_day of the first 7 built by the CLI."""
    config = make_config()
    root = tmp_path / "lake"
    engine = write_lake(root, config, clean_events(), INSTALLS)
    code, output = ltv("features", "daily", "--game", "galaxy-raiders", "--lake", str(root), "--date", DAYS[0],
                       "--to", DAYS[-2])
    assert code == 0, output
    return config, root, engine


def rewrite(engine: DuckDBEngine, frame: pd.DataFrame, day_: str = LAST) -> None:
    part = engine.lake.raw_partition("events", day(day_))
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    frame.to_parquet(part / "part-0.parquet", index=False)


def raw_day(engine: DuckDBEngine, day_: str = LAST) -> pd.DataFrame:
    return pd.read_parquet(engine.lake.raw_partition("events", day(day_)) / "part-0.parquet")


def extra(frame: pd.DataFrame, *rows: dict) -> pd.DataFrame:
    more = pd.DataFrame(list(rows)).astype({"level": "int32"})
    more["event_ts"] = more["event_ts"].astype("datetime64[us]")
    return pd.concat([frame, more], ignore_index=True)


def daily(root: Path, day_: str = LAST) -> tuple[int, str]:
    return ltv("features", "daily", "--game", "galaxy-raiders", "--lake", str(root), "--date", day_)


REPORT = "galaxy-raiders/monitoring/validation/dt=*.json"
LOG_ERRORS = {
    "empty_day": (lambda f: f.head(0), "freshness on events (dt=2025-03-08): partition is missing or empty"),
    "wrong_column_type": (lambda f: f.assign(level=f.level.astype(str)), "'level' is string, expected float or integer"),
    "missing_column": (lambda f: f.drop(columns=["session_seconds"]), "missing column 'session_seconds'"),
    "null_player_ids": (lambda f: extra(f, event(None, f"{LAST} 11:00", "login")), "null_ids on events"),
    "empty_player_ids": (lambda f: extra(f, event("", f"{LAST} 11:00", "login"), event("  ", f"{LAST} 11:01", "login")),
                         "2 rows with a null or empty user_id"),
    "future_timestamps": (lambda f: extra(f, event("A", "2099-01-01 00:00", "login")), "future_events on events"),
    "timestamps_after_their_partition": (lambda f: extra(f, event("A", "2025-03-09 00:30", "login")),
                                         "events timestamped after their partition's day"),
    "negative_amounts": (lambda f: extra(f, event("A", f"{LAST} 11:00", "purchase", -4.99)),
                         "purchases with a negative amount"),
    "absurd_amounts": (lambda f: extra(f, event("A", f"{LAST} 11:00", "purchase", 49_999.0)),
                       "above max_amount 500.0 USD"),
    "unknown_event_type": (lambda f: extra(f, event("A", f"{LAST} 11:00", "battle_pass_purchase")),
                           "event type not in the config"),
}


@pytest.mark.parametrize("case", sorted(LOG_ERRORS))
def test_bad_raw_logs_fail_validation_and_build_nothing(case: str, logs) -> None:
    config, root, engine = logs
    change, message = LOG_ERRORS[case]
    rewrite(engine, change(raw_day(engine)))
    with unchanged(root, REPORT):
        code, output = daily(root)
    text = " ".join(output.split())
    assert code == 2 and message in text and "fix:" in text, output
    assert LAST not in engine.partitions("player_day")
    report = json.loads((Lake(root, config.game.id).validation_reports / f"dt={LAST}.json").read_text())
    assert report["passed"] is False, "the report says why, whatever the outcome"


def test_a_missing_partition_is_named_by_validation_and_by_the_aggregation(logs) -> None:
    config, root, engine = logs
    shutil.rmtree(engine.lake.raw_partition("events", day(LAST)))
    with unchanged(root, REPORT):
        code, output = daily(root)
        assert code == 2 and "freshness on events (dt=2025-03-08): partition is missing" in output
        with pytest.raises(MissingPartitionError, match="has no partition for 2025-03-08.*log export"):
            etl.build_player_day(engine, config, day(LAST))


def test_unknown_event_type_mapping_names_the_types_the_logs_really_use(logs, tmp_path: Path) -> None:
    """The config maps purchases to a name the export never writes (a typo): the real name is an
    unknown type, named with its rows, before anything is aggregated."""
    config, root, engine = logs
    raw = merge(raw_config(), {"logs": {"events": {"event_types": {"purchase": ["iap_purchse"]}}}})
    path = write_yaml(raw, tmp_path / "galaxy-raiders.yaml")
    with unchanged(root, REPORT):
        code, output = ltv("features", "daily", "--game", str(path), "--lake", str(root), "--date", LAST)
    assert code == 2 and "event_types on events" in output and "found: iap_purchase" in output


def player_day_of(engine: DuckDBEngine, day_: str = LAST) -> pd.DataFrame:
    frame = pd.read_parquet(engine.partition_dir("player_day", day_))
    return frame.sort_values("player_id", ignore_index=True)


def baseline(tmp_path: Path, events: list[dict]) -> pd.DataFrame:
    """player_day of the last day from clean logs, in a lake of its own."""
    engine = write_lake(tmp_path / "baseline", make_config(), events, INSTALLS)
    etl.build_player_day(engine, make_config(), day(LAST))
    return player_day_of(engine)


def test_an_extra_column_is_schema_evolution_and_changes_nothing(logs, tmp_path: Path) -> None:
    config, root, engine = logs
    rewrite(engine, raw_day(engine).assign(device_model="Pixel 9"))
    with unchanged(root, REPORT, f"galaxy-raiders/player_day/dt={LAST}/*"):
        code, output = daily(root)
    assert code == 0, output
    pd.testing.assert_frame_equal(player_day_of(engine), baseline(tmp_path, clean_events()))


def test_duplicate_events_warn_and_are_counted_once(logs, tmp_path: Path) -> None:
    config, root, engine = logs
    frame = raw_day(engine)
    rewrite(engine, pd.concat([frame, frame.head(4)], ignore_index=True))
    with unchanged(root, REPORT, f"galaxy-raiders/player_day/dt={LAST}/*"):
        code, output = daily(root)
    assert code == 0 and "duplicate_events" in output, output
    pd.testing.assert_frame_equal(player_day_of(engine), baseline(tmp_path, clean_events()))


def test_late_events_from_an_earlier_day_warn_and_are_left_out(logs, tmp_path: Path) -> None:
    config, root, engine = logs
    rewrite(engine, extra(raw_day(engine), event("B", "2025-03-07 23:50", "purchase", 9.99)))
    with unchanged(root, REPORT, f"galaxy-raiders/player_day/dt={LAST}/*"):
        code, output = daily(root)
    assert code == 0 and "late_events" in output, output
    pd.testing.assert_frame_equal(player_day_of(engine), baseline(tmp_path, clean_events()))


def test_a_bot_with_a_million_events_in_a_day_is_one_player_day(logs) -> None:
    config, root, engine = logs
    n = 1_000_000
    bot = pd.DataFrame({"user_id": "bot", "event_name": "login", "revenue_usd": np.nan, "level": np.int32(1),
                        "session_seconds": np.nan,
                        "event_ts": pd.Timestamp(f"{LAST} 00:00") + pd.to_timedelta(np.arange(n) * 80_000, unit="us")})
    rewrite(engine, pd.concat([raw_day(engine), bot[raw_day(engine).columns]], ignore_index=True))
    with unchanged(root, REPORT, f"galaxy-raiders/player_day/dt={LAST}/*"):
        code, output = daily(root)
    assert code == 0, output
    got = player_day_of(engine).set_index("player_id")
    assert got.loc["bot", "events"] == n and got.loc["bot", "logins"] == n
    assert len(got) == 4 and got.loc["A", "revenue"] == pytest.approx(4.99)


def test_mixed_currencies_convert_and_an_unknown_one_fails(tmp_path: Path) -> None:
    from ltv.simulate import simulate

    config = make_config("dragon-merge", simulation={"daily_installs": 30, "days": 3})
    lake = Lake(tmp_path, config.game.id)
    simulate(config, lake)
    engine = DuckDBEngine(lake, config, threads=1)
    first, second = day("2025-01-01"), day("2025-01-02")
    validate_day(engine, config, first, now=dt.datetime(2025, 1, 2, 2))
    etl.build_player_day(engine, config, first)
    frame = pd.read_parquet(lake.raw_partition("game_events", first))
    paid = frame[frame.Action.isin(config.logs.events.event_types.purchase)]
    rates = {"USD": 1.0, **config.logs.events.revenue.fx_rates}
    assert paid.Currency.nunique() > 1, "the day mixes currencies"
    expected = sum(a * rates[c] for a, c in zip(paid.Amount, paid.Currency))
    assert pd.read_parquet(engine.partition_dir("player_day", str(first))).revenue.sum() == pytest.approx(expected)
    part = lake.raw_partition("game_events", second) / "part-0.parquet"
    frame = pd.read_parquet(part)
    frame.loc[frame.Currency.notna().idxmax(), "Currency"] = "XYZ"
    frame.to_parquet(part, index=False)
    with unchanged(tmp_path, "dragon-merge/monitoring/validation/*"):
        with pytest.raises(DataValidationError, match="unknown_currency on game_events .* currency without an fx rate"):
            validate_day(engine, config, second, now=dt.datetime(2025, 1, 3, 2),
                         report_dir=lake.validation_reports)


# ----------------------------------------------------------------------------------------------
# games that are too young, too small or without payers


def test_a_game_without_payers_trains_nothing_and_leaves_no_run(tmp_path: Path) -> None:
    from ltv.simulate import simulate

    config = loop_config(simulation={"player_mix": {"minnow": 0.0, "dolphin": 0.0, "whale": 0.0}, "days": 90,
                                     "daily_installs": 60, "sales": None, "drift": None})
    lake = Lake(tmp_path, config.game.id)
    simulate(config, lake)
    loop = DailyLoop(config, lake)
    summary = loop.run(dt.date(2025, 3, 31), dt.date(2025, 3, 31))
    errors = [e.text for e in summary.of("error")]
    assert len(errors) == 1 and "NoPayers" not in errors[0] and "0 payer(s)" in errors[0], errors
    assert loop.registry.versions() == []
    assert not (lake.base / "runs").exists() or list((lake.base / "runs").iterdir()) == []
    spec = datasets.rolling_spec(config, dt.date(2025, 3, 31))
    assert datasets.list_datasets(lake)[0]["name"] == spec.name, "the dataset itself is complete and kept"
    with pytest.raises(NoPayersError, match="at least 10 in training"):
        from ltv.models import train

        train(config, datasets.load_dataset(lake, spec.name), tmp_path / "m")


def test_a_single_player_is_aggregated_and_scored(tiny_model, tmp_path: Path) -> None:
    config = loop_config()
    events = [event("solo", f"2025-0{m}-{d:02d} 10:00", "login") for m in (1, 2, 3) for d in range(1, 29, 3)]
    events += [event("solo", "2025-03-25 10:05", "purchase", 1.99)]
    engine = write_lake(tmp_path, config, events, {"solo": "2025-01-01 09:00"}, days=("2025-01-01", "2025-03-30"))
    etl.build_player_day(engine, config, day("2025-01-01"), day("2025-03-30"))
    registry = LocalRegistry(engine.lake.registry, config.game.id)
    registry.register(tiny_model[0].path, metrics={}, status=APPROVED, reason="fixture")
    result = score(config, engine.lake, engine, registry, day("2025-03-31"))
    pred = pd.read_parquet(result.path)
    assert result.rows == 1 and pred.player_id.tolist() == ["solo"]
    from ltv import explain
    from ltv.scoring import BTYD_COLUMNS

    nullable = [c for c, _ in (*explain.columns(), *BTYD_COLUMNS)]  # drivers of unselected players, BTYD of non-buyers
    assert np.isfinite(pred.drop(columns=nullable).select_dtypes("number").to_numpy(float)).all()


def test_a_dataset_before_the_feature_history_is_an_empty_window(tiny_game) -> None:
    config, lake, engine = tiny_game
    spec = datasets.rolling_spec(config, dt.date(2025, 3, 24))
    with pytest.raises(EmptyWindowError, match="needs 4 history steps of 7 days, from 2024-12-30 on, but the logs "
                                               "begin 2025-01-06"):
        datasets.check_history(engine, config, spec)


# ----------------------------------------------------------------------------------------------
# models and scoring


@pytest.fixture
def scored(scoring_lake):
    """The scoring lake with one complete scoring run at DAY: (config, lake, engine, registry, first run id)."""
    config, lake, engine, registry = scoring_lake
    first = score(config, lake, engine, registry, DAY)
    return config, lake, engine, registry, first.run_id


DAY = dt.date(2025, 4, 14)


def test_no_champion_scores_nothing(scored) -> None:
    config, lake, engine, registry, first = scored
    registry.reject(1, "no champion left")
    with unchanged(lake.root):
        with pytest.raises(RegistryError, match="no Approved model to score with; train one"):
            score(config, lake, engine, registry, DAY)
    assert latest_run(lake, DAY) == first


def test_a_corrupt_champion_scores_nothing_and_cannot_be_re_approved(scored) -> None:
    config, lake, engine, registry, first = scored
    pickle = next(Path(registry.get(1).path).rglob("*.pkl"))
    pickle.write_bytes(pickle.read_bytes()[:-7])
    with unchanged(lake.root):
        with pytest.raises(ArtifactError, match="corrupt.*restore it from the registry's copy or retrain"):
            score(config, lake, engine, registry, DAY)
    registry.reject(1, "found corrupt")
    with pytest.raises(ArtifactError, match="corrupt"):
        registry.approve(1, "try again")
    assert registry.get(1).status == REJECTED and latest_run(lake, DAY) == first


def test_a_champion_of_another_game_scores_nothing(scored, tiny_model) -> None:
    config, lake, engine, registry, first = scored
    manifest_path = Path(registry.get(1).path) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["game"] = "dragon-merge"  # placed by hand into this game's registry
    manifest_path.write_text(json.dumps(manifest))
    with unchanged(lake.root):
        with pytest.raises(ArtifactError, match="is a model of game 'dragon-merge'"):
            score(config, lake, engine, registry, DAY)
    assert latest_run(lake, DAY) == first


def test_a_champion_trained_on_another_feature_list_scores_nothing(scored) -> None:
    config, lake, engine, registry, first = scored
    other_day = dt.date(2025, 4, 21)
    # fewer history steps (missing columns), or longer steps (the same column names, other meanings)
    for change in ({"n_steps": 3}, {"step_days": 10}):
        other = config.model_copy(update={"features": config.features.model_copy(update=change)})
        with unchanged(lake.root):
            with pytest.raises(ArtifactError, match="trained on features defined otherwise than config"):
                score(other, lake, DuckDBEngine(lake, other, threads=1), registry, other_day)
    assert latest_run(lake, DAY) == first and not date_dir(lake, other_day).exists()
    model = registry.load(1)
    features = engine.query(f"SELECT * FROM features WHERE cutoff = '{DAY}'")
    with pytest.raises(ArtifactError, match="lack columns the model was trained on.*revenue_total"):
        model.predict(features.drop(columns="revenue_total"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_predictions_are_not_published(scored, monkeypatch, bad) -> None:
    from ltv.models import LTVModel

    config, lake, engine, registry, first = scored
    real = LTVModel.predict

    def broken(self, features):
        out = real(self, features)
        out.loc[out.index[:3], "value_if_payer"] = bad
        return out

    monkeypatch.setattr(LTVModel, "predict", broken)
    with unchanged(lake.root):
        with pytest.raises(ArtifactError, match=r"3 of \d+ rows a NaN or infinite score \(columns \['value_if_payer'\]"):
            score(config, lake, engine, registry, DAY)
    assert latest_run(lake, DAY) == first


def test_an_empty_scoring_population_scores_nothing(scored) -> None:
    config, lake, engine, registry, first = scored
    before_anyone = dt.date(2025, 1, 6)  # the game's first day: nobody was active before it
    # the features' whole-history summary at the cutoff is built first: complete and correct (empty)
    with unchanged(lake.root, "galaxy-raiders/features/cutoff=2025-01-06/*",
                   "galaxy-raiders/player_summary/cutoff=2025-01-06/*"):
        with pytest.raises(EmptyWindowError, match="no player was active in \\[2024-12-23, 2025-01-06\\)"):
            score(config, lake, engine, registry, before_anyone)
    assert not date_dir(lake, before_anyone).exists()
    assert not etl.is_current(engine, config, "features", "2025-01-06"), "the empty partition is never trusted"
    assert etl.is_current(engine, config, "player_summary", "2025-01-06")
    assert engine.query("SELECT COUNT(*) AS n FROM player_summary WHERE cutoff = '2025-01-06'")["n"][0] == 0


def test_a_scoring_run_resumed_by_its_id_is_completed_not_duplicated(scored) -> None:
    config, lake, engine, registry, first = scored
    again = score(config, lake, engine, registry, DAY, run_id=first)
    assert again.run_id == first and sorted(p.name for p in date_dir(lake, DAY).glob("run=*")) == [f"run={first}"]
    assert (date_dir(lake, DAY) / LATEST).read_text() == first


# ----------------------------------------------------------------------------------------------
# the local registry


def test_a_version_folder_without_its_record_is_skipped_not_retried_forever(tmp_path: Path, tiny_model) -> None:
    registry = LocalRegistry(tmp_path / "registry", "galaxy-raiders")
    registry.register(tiny_model[0].path, metrics={}, status=APPROVED, reason="v1")
    leftover = registry.dir / "2"
    (leftover / "model").mkdir(parents=True)  # a half-copied version (by hand, or an old crash)
    (leftover / "model" / "x").write_text("partial")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("register looped on the occupied number"))
    signal.alarm(60)
    try:
        with unchanged(tmp_path, "registry/ltv-galaxy-raiders/versions/3/**", "registry/ltv-galaxy-raiders/versions/3/*"):
            version = registry.register(tiny_model[0].path, metrics={}, status=REJECTED, reason="v3")
    finally:
        signal.alarm(0)
    assert version.version == 3 and [v.version for v in registry.versions()] == [1, 3]
    assert registry.champion().version == 1


def test_an_unreadable_version_record_is_a_registry_error(tmp_path: Path, tiny_model) -> None:
    registry = LocalRegistry(tmp_path / "registry", "galaxy-raiders")
    registry.register(tiny_model[0].path, metrics={}, status=APPROVED, reason="v1")
    (registry.dir / "1" / "status.jsonl").write_text('{"status": "Approv')
    with unchanged(tmp_path):
        with pytest.raises(RegistryError, match=r"versions/1/status.jsonl is unreadable \(JSONDecodeError.*backup"):
            registry.champion()


# ----------------------------------------------------------------------------------------------
# the loop and the command line


def test_a_loop_with_its_dates_reversed_is_refused(scoring_lake) -> None:
    config, lake, _, _ = scoring_lake
    with unchanged(lake.root):
        code, output = ltv("run", "--game", "galaxy-raiders", "--lake", str(lake.root), "--from", "2025-04-14",
                           "--to", "2025-04-07")
    assert code == 2 and "--to 2025-04-07 is before --from 2025-04-14" in output


def test_a_second_loop_on_the_same_lake_is_refused_while_the_first_runs(scoring_lake) -> None:
    import fcntl

    config, lake, _, _ = scoring_lake
    lock = lake.monitoring / "loop.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:  # what the running loop holds
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with unchanged(lake.root):
            with pytest.raises(LoopBusyError, match=r"another `ltv run` \(pid 4242\)"):
                DailyLoop(config, lake).run(DAY, DAY)


def test_every_named_error_says_what_to_do() -> None:
    """The catalogue's errors are LtvErrors (exit code 2, printed without a trace)."""
    import ltv.errors as errors

    named = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, LtvError) and c is not LtvError]
    assert len(named) >= 12 and all(c.__doc__ and len(c.__doc__.split()) >= 8 for c in named)


# ----------------------------------------------------------------------------------------------
# cloud entrypoints: Glue job arguments, the pipeline's dataset parameter, SageMaker's inputs


def test_a_glue_job_refuses_a_malformed_date_and_a_game_that_is_a_path(tmp_path: Path) -> None:
    from glue_jobs import daily

    config_file = write_yaml(raw_config(), tmp_path / "galaxy-raiders.yaml")
    lake = tmp_path / "lake"
    (lake / "galaxy-raiders").mkdir(parents=True)
    base = ["--config", str(config_file), "--engine", "duckdb", "--lake", str(lake)]
    with unchanged(tmp_path):
        with pytest.raises(LtvError, match="--date '2025-13-40' is not a date; give YYYY-MM-DD"):
            daily.main(["--game", "galaxy-raiders", *base, "--date", "2025-13-40"])
        with pytest.raises(LtvError, match=r"--game '\.\./\.\./etc' is not a game id"):
            daily.main(["--game", "../../etc", *base, "--date", "2025-01-20"])


def test_the_pipelines_dataset_parameter_cannot_leave_the_datasets_prefix(tmp_path: Path, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    from pipelines import resolve

    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("LTV_SM_ROOT", str(tmp_path / "opt-ml"))
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="curated", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for key in ("datasets/rolling-2025-04-07/manifest.json", "datasets/rolling-2025-04-07/_SUCCESS",
                    "raw/_SUCCESS", "raw/manifest.json"):
            s3.put_object(Bucket="curated", Key=key, Body=b"{}")
        for escape in ("../raw", "rolling-2025-04-07/../../raw", "/raw"):
            assert resolve.main(["--curated-uri", "s3://curated", "--version", escape, "--output",
                                 str(tmp_path / "out")], s3=s3) == 2
            message = (tmp_path / "opt-ml" / "output" / "message").read_text()
            assert message.startswith("MissingPartitionError: no complete version") and "rolling-2025-04-07" in message
        assert not (tmp_path / "out").exists()


def test_a_training_channel_without_a_dataset_fails_with_the_reason_and_no_artifact(tiny_game, tmp_path,
                                                                                   monkeypatch) -> None:
    from pipelines import container
    from test_container import write_config

    config = tiny_game[0]
    root = tmp_path / "opt-ml"
    (root / "input" / "data" / "dataset").mkdir(parents=True)
    (root / "input" / "data" / "dataset" / "part-0.parquet").write_bytes(b"not a dataset version")
    write_config(config, root / "input" / "data" / "config")
    monkeypatch.setenv("LTV_SM_ROOT", str(root))
    with unchanged(root, "output/failure"):
        assert container.main(["train"]) == 2
    assert "holds no dataset version (no manifest.json)" in (root / "output" / "failure").read_text()


def test_a_model_archive_whose_members_leave_its_folder_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    from ltv.sagemaker_registry import unpack

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"owned"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with unchanged(tmp_path):
        with pytest.raises(ArtifactError, match="is not a readable model archive"):
            unpack(archive, tmp_path / "model")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "model").exists()


def test_the_unchanged_guard_sees_changes_additions_and_removals(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    for action in (lambda: (tmp_path / "a").write_text("2"), lambda: (tmp_path / "b").write_text("new"),
                   lambda: (tmp_path / "a").unlink()):
        with pytest.raises(AssertionError):
            with unchanged(tmp_path):
                action()
        for name in ("a", "b"):
            (tmp_path / name).unlink(missing_ok=True)
        (tmp_path / "a").write_text("1")
