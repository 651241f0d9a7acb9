"""The label horizon against the length of the logs (ltv.horizon)."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml

from ltv import datasets, horizon
from ltv.errors import HorizonError
from ltv_cli import ltv as run_ltv
from conftest import make_config

FIRST = dt.date(2025, 1, 6)


def nine_months(**choice) -> object:
    return make_config(horizons={"ltv_days": 270, "purchase_days": 16}, datasets=choice)


def test_a_horizon_that_fits_changes_nothing() -> None:
    config = make_config()
    need = horizon.needed_days(config)
    assert need == 7 + 7 * (8 + 2 + 2) + 3 * 28  # weeks, two embargoes and the last test labels
    checked = horizon.fit(config, FIRST, FIRST + dt.timedelta(days=need - 1))
    assert checked.config is config and checked.message == ""


def test_a_horizon_longer_than_the_logs_allow_says_so_and_names_both_ways_out() -> None:
    config = nine_months()
    last = FIRST + dt.timedelta(days=364)  # 9 months of value from one year of logs cannot be tested
    with pytest.raises(HorizonError) as err:
        horizon.fit(config, FIRST, last)
    text = str(err.value)
    assert "365 days" in text and f"needs {horizon.needed_days(config)}" in text
    best = horizon.longest_fitting(config, 365)
    assert f"at most {best} days" in text and "train_shorter" in text and "BTYD" in text
    assert "extended per player to 270 days" in text and "ltv_expected_asked" in text


def test_train_shorter_trains_at_the_longest_horizon_that_fits_or_the_configured_one() -> None:
    last = FIRST + dt.timedelta(days=364)
    checked = horizon.fit(nine_months(when_history_short="train_shorter"), FIRST, last)
    best = horizon.longest_fitting(checked.config, 365)
    assert checked.config.horizons.ltv_days == best and horizon.needed_days(checked.config) <= 365
    assert horizon.needed_days(checked.config.model_copy(update={"horizons": checked.config.horizons.model_copy(
        update={"ltv_days": best + 1})})) > 365, "it is the longest"
    assert "ltv_expected_asked extends each prediction to 270 days" in checked.message
    assert checked.config.horizons.asked_ltv_days == 270 and checked.config.horizons.asked == 270
    # a rolling dataset at the shorter horizon has its test labels inside the logs
    spec = datasets.rolling_spec(checked.config, last + dt.timedelta(days=1))
    assert spec.train[0] >= FIRST
    fixed = horizon.fit(nine_months(when_history_short="train_shorter", training_ltv_days=90), FIRST, last)
    assert fixed.config.horizons.ltv_days == 90
    with pytest.raises(HorizonError, match="does not fit either"):
        horizon.fit(nine_months(when_history_short="train_shorter", training_ltv_days=200), FIRST, last)


# ----------------------------------------------------------------------------------------------
# one rule for every command (issue 22): ltv.horizon.plan

SHOP = Path(__file__).resolve().parent.parent / "config" / "examples" / "shop.yaml"
SHOP_DAYS = 273  # the purchase-only log: 9 months


def auto(config, **datasets_) -> object:
    return config.model_copy(update={"datasets": config.datasets.model_copy(update={"first_start": "auto", **datasets_})})


def test_first_start_auto_is_the_latest_start_whose_test_labels_end_inside_the_logs() -> None:
    config = auto(make_config())  # nine versions, shifted by four weeks
    last = FIRST + dt.timedelta(days=449)
    plan = horizon.plan(config, (FIRST, last))
    assert [s.name for s in plan.specs] == [s.name for s in datasets.version_specs(plan.config)]
    assert max(horizon.labels_end(config, s) for s in plan.specs) <= last
    later = plan.config.datasets.first_start + dt.timedelta(days=1)
    assert max(horizon.labels_end(config, s) for s in datasets.version_specs(
        plan.config.model_copy(update={"datasets": plan.config.datasets.model_copy(update={"first_start": later})}))) > last
    assert horizon.plan(config, (FIRST, last), "v2").specs == [plan.specs[1]]
    with pytest.raises(HorizonError, match="hold no day yet"):
        horizon.plan(config, None, "v1")


def test_a_rolling_dataset_after_the_logs_says_where_they_end() -> None:
    last = FIRST + dt.timedelta(days=299)
    with pytest.raises(HorizonError) as err:
        horizon.plan(make_config(), (FIRST, last), f"rolling-{last + dt.timedelta(days=30)}")
    assert f"they end on {last}" in str(err.value) and f"rolling-{last + dt.timedelta(days=1)}" in str(err.value)
    newest = horizon.plan(make_config(), (FIRST, last), "rolling")
    assert newest.specs[0].name == f"rolling-{last + dt.timedelta(days=1)}"
    assert horizon.labels_end(make_config(), newest.specs[0]) <= last


def test_an_evaluation_reads_a_dataset_whose_test_period_and_labels_alone_lie_inside_the_logs() -> None:
    """`test_only` (ltv evaluate): a rolling dataset whose training weeks the logs cannot hold is
    refused whole, but planned as configured for its test period when that period and its labels
    lie inside the logs; the refusal stays in the plan's message. Otherwise it is refused still."""
    config = make_config()
    last = FIRST + dt.timedelta(days=horizon.needed_days(config) - 30)  # a month too short
    name = f"rolling-{last + dt.timedelta(days=1)}"
    with pytest.raises(HorizonError, match="needs 175") as refused:
        horizon.plan(config, (FIRST, last), name)
    test_only = horizon.plan(config, (FIRST, last), name, test_only=True)
    spec, = test_only.specs
    assert spec == datasets.find_spec(config, name) and test_only.config is config
    assert spec.train[0] < FIRST <= spec.test[0] and horizon.labels_end(config, spec) <= last
    assert test_only.message.startswith(str(refused.value)) and "evaluating it as configured" in test_only.message
    v1 = datasets.find_spec(config, "v1")
    for span, dataset in (((spec.test[0] + dt.timedelta(days=1), last), name),  # logs start after its first test cutoff
                          ((v1.train[0], horizon.labels_end(config, v1) - dt.timedelta(days=1)), "v1")):  # labels after
        with pytest.raises(HorizonError) as whole:
            horizon.plan(config, span, dataset)
        with pytest.raises(HorizonError, match=f"^{re.escape(str(whole.value))}$"):
            horizon.plan(config, span, dataset, test_only=True)
    assert horizon.plan(config, (v1.train[0], horizon.labels_end(config, v1)), "v1", test_only=True).message == ""


def test_a_dataset_built_at_a_shorter_horizon_trains_a_model_of_that_horizon() -> None:
    config = nine_months()
    assert horizon.as_built(config, {"name": "x"}) is config
    built = horizon.as_built(config, {"horizons": {"ltv_days": 60, "purchase_days": 16}})
    assert built.horizons.ltv_days == 60 and config.horizons.ltv_days == 270


def test_the_longest_fitting_horizon_is_never_shorter_than_the_purchase_day_one() -> None:
    config = make_config()  # 8 + 2 + 2 weeks, purchase_days 16
    just = horizon.MIN_HISTORY_DAYS + 7 * 12 + 3 * 16
    assert horizon.longest_fitting(config, just) == 16 and horizon.longest_fitting(config, just + 3) == 17
    assert horizon.longest_fitting(config, just - 1) == 0, "shorter than the purchase-day horizon: none fits"
    with pytest.raises(HorizonError, match=r"Choose one: \(1\) no horizon fits: shorten the training weeks"):
        horizon.fit(config, FIRST, FIRST + dt.timedelta(days=just - 2))


class Partitions:
    """An engine that knows the logged days of a table (sorted, as engines list them)."""

    def __init__(self, days: list[str]):
        self.days, self.asked = days, []

    def partitions(self, table: str) -> list[str]:
        self.asked.append(table)
        return self.days


def test_the_log_span_is_the_first_and_last_logged_day_before_a_replayed_one() -> None:
    config = make_config()
    engine = Partitions(["2025-01-06", "2025-01-07", "2025-01-09"])
    assert horizon.log_span(engine, config) == (dt.date(2025, 1, 6), dt.date(2025, 1, 9))
    assert engine.asked == [config.logs.events.table]
    assert horizon.log_span(engine, config, before=dt.date(2025, 1, 9)) == (dt.date(2025, 1, 6), dt.date(2025, 1, 7))
    assert horizon.log_span(engine, config, before=dt.date(2025, 1, 6)) is None
    assert horizon.log_span(Partitions([]), config) is None


def test_a_datasets_labels_end_on_the_last_day_its_last_test_cutoffs_labels_read() -> None:
    """labels.sql reads [cutoff, cutoff + label horizon): the last day is the horizon's day minus one."""
    for config in (make_config(), nine_months()):
        spec = datasets.find_spec(config, "v1")
        days = max(config.horizons.ltv_days, config.horizons.purchase_days)
        assert horizon.labels_end(config, spec) == spec.test[-1] + dt.timedelta(days=days - 1)


def test_first_start_auto_is_the_latest_start_for_every_last_day_of_a_fortnight() -> None:
    """Whatever the weekday of the last logged day: the configured versions' labels end by it, and
    one day later would not."""
    config = auto(make_config())

    def labels_end(start: dt.date) -> dt.date:
        return max(horizon.labels_end(config, s) for s in datasets.version_specs(horizon._with_start(config, start)))

    for days in range(440, 454):
        last = FIRST + dt.timedelta(days=days)
        start = horizon.latest_start(config, last)
        assert labels_end(start) <= last < labels_end(start + dt.timedelta(days=1)), last


def test_an_evaluation_of_a_test_period_lying_exactly_inside_the_logs_is_planned() -> None:
    """`test_only` boundaries: logs starting on the first test cutoff and ending on the last label
    day are enough; the exception is for a dataset named by its dates (a rolling one, or a
    configured version at a fixed start), never the configured versions at an `auto` start."""
    config = make_config()
    last = FIRST + dt.timedelta(days=horizon.needed_days(config) - 30)
    name = f"rolling-{last + dt.timedelta(days=1)}"
    spec = datasets.find_spec(config, name)
    exact = (spec.test[0], horizon.labels_end(config, spec))
    assert horizon.plan(config, exact, name, test_only=True).specs == [spec]
    with pytest.raises(HorizonError):
        horizon.plan(config, (exact[0], exact[1] - dt.timedelta(days=1)), name, test_only=True)
    # a configured version at its fixed start: its test period only
    v1 = datasets.find_spec(config, "v1")
    assert horizon.plan(config, (v1.test[0], horizon.labels_end(config, v1)), "v1", test_only=True).specs == [v1]
    # a rolling dataset of a config whose versions start `auto`: its dates are its own
    assert horizon.plan(auto(config), exact, name, test_only=True).specs == [spec]
    for args in ((auto(config), exact, "v1"), (config, exact, None), (config, None, "rolling")):
        with pytest.raises(HorizonError) as whole:
            horizon.plan(*args)
        with pytest.raises(HorizonError, match=f"^{re.escape(str(whole.value))}$"):
            horizon.plan(*args, test_only=True)


def test_without_logs_only_what_is_placed_against_them_is_refused() -> None:
    config = make_config()
    as_configured = horizon.plan(config, None)
    assert as_configured.config is config and as_configured.message == ""
    assert as_configured.specs == datasets.version_specs(config)
    assert horizon.plan(config, None, "v2").specs == [datasets.find_spec(config, "v2")]
    with pytest.raises(HorizonError, match=r"logs hold no day yet: rolling is placed against their last day "
                                           r"\(datasets.first_start: auto, or rolling\)"):
        horizon.plan(config, None, "rolling")
    with pytest.raises(HorizonError, match="logs hold no day yet: the configured versions is placed against"):
        horizon.plan(auto(config), None)
    dated = f"rolling-{FIRST}"
    assert horizon.plan(auto(config), None, dated).specs == [datasets.find_spec(config, dated)]


def test_configured_versions_at_a_fixed_start_are_checked_against_the_logs() -> None:
    config = make_config()  # first_start 2025-03-03, five versions; v5's labels end on 2026-02-08
    first = dt.date(2025, 1, 1)
    specs = datasets.version_specs(config)
    last = max(horizon.labels_end(config, s) for s in specs)
    fits = horizon.plan(config, (first, last))
    assert fits.config is config and fits.specs == specs and fits.message == ""
    with pytest.raises(HorizonError, match=re.escape(
            f"dataset {specs[-1].name}: its test labels end on {last}, after the logs' last day "
            f"{last - dt.timedelta(days=1)}: with datasets.first_start 2025-03-03 it does not fit. Set "
            "datasets.first_start: auto (the latest start that fits, 2025-02-24) or an earlier date")):
        horizon.plan(config, (first, last - dt.timedelta(days=1)))
    # v3 is the first to start after the logs; the horizon does not fit either, and it says so too
    with pytest.raises(HorizonError, match=re.escape(
            f"dataset {specs[2].name} starts on 2025-03-03 (datasets.first_start), after the logs end ({first} .. "
            "2025-04-27). Set datasets.first_start: auto (the latest start that fits) or a date inside the logs. "
            "Then: the logs hold 117 days (2025-01-01 .. 2025-04-27); a dataset at ltv_days=28 needs 371: 36 "
            "training")):
        horizon.plan(config, (first, specs[2].train[0] - dt.timedelta(days=1)))
    with pytest.raises(HorizonError, match=r"a date inside the logs\.$"):  # the horizon fits: nothing more to say
        horizon.plan(config, (first - dt.timedelta(days=400), specs[2].train[0] - dt.timedelta(days=1)))
    # one version, logs too short for it at 28 days: its own weeks count, and train_shorter applies
    span = (dt.date(2025, 2, 24), dt.date(2025, 8, 20))
    with pytest.raises(HorizonError, match="the logs hold 178 days .*needs 203: 12 training"):
        horizon.plan(config, span, "v1")
    shorter = horizon.plan(nine_months(when_history_short="train_shorter").model_copy(
        update={"horizons": config.horizons}), span, "v1")
    assert shorter.config.horizons.ltv_days == 19 and shorter.config.horizons.asked_ltv_days == 28
    assert "training and evaluating at ltv_days=19" in shorter.message
    assert shorter.specs == [datasets.find_spec(shorter.config, "v1")]
    assert horizon.labels_end(shorter.config, shorter.specs[0]) <= span[1]


def test_fixed_start_boundaries_logs_ending_on_the_first_cutoff_or_the_last_label_day() -> None:
    """Logs ending on a version's first cutoff: it does not start after them (the horizon is what
    does not fit). train_shorter's labels ending on the last logged day: inside the logs."""
    config = make_config()
    v1 = datasets.find_spec(config, "v1")
    with pytest.raises(HorizonError, match=r"^the logs hold 62 days \(2025-01-01 .. 2025-03-03\); a dataset at "
                                           r"ltv_days=28 needs 203: 12 training"):
        horizon.plan(config, (dt.date(2025, 1, 1), v1.train[0]), "v1")
    shorter = make_config(datasets={"when_history_short": "train_shorter", "training_ltv_days": 19})
    span = (dt.date(2025, 1, 12), dt.date(2025, 8, 1))
    planned = horizon.plan(shorter, span, "v1")
    assert planned.config.horizons.ltv_days == 19 and horizon.labels_end(planned.config, planned.specs[0]) == span[1]


def test_configured_versions_at_an_auto_start_need_the_logs_of_their_whole_span() -> None:
    """`auto` checks the horizon over the versions' span of training weeks (36 here: the last
    version starts 16 weeks after the first and trains 20), not a rolling dataset's 8."""
    config = auto(make_config())
    with pytest.raises(HorizonError, match=r"the logs hold 200 days .* needs 371: 36 training \+ 2 validation"):
        horizon.plan(config, (FIRST, FIRST + dt.timedelta(days=199)))


def test_the_newest_rolling_dataset_reads_the_logs_up_to_their_last_day() -> None:
    config = make_config()
    last = FIRST + dt.timedelta(days=299)
    newest = f"rolling-{last + dt.timedelta(days=1)}"
    assert horizon.plan(config, (FIRST, last), newest).specs == horizon.plan(config, (FIRST, last), "rolling").specs
    with pytest.raises(HorizonError, match=f"reads the logs up to {last + dt.timedelta(days=1)}, but they end on {last}"):
        horizon.plan(config, (FIRST, last), f"rolling-{last + dt.timedelta(days=2)}")
    shorter = horizon.plan(nine_months(when_history_short="train_shorter"), (FIRST, last), "rolling")
    assert shorter.config.horizons.ltv_days < 270 and "train_shorter" in shorter.message
    assert shorter.specs == [datasets.rolling_spec(shorter.config, last + dt.timedelta(days=1))]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, Path, dt.date]:
    """The issue's case: the shop example (config/examples/shop.yaml, the BTYD profile) with 273
    days of purchase-only logs, player_day built: (config dir, lake root, last logged day)."""
    from ltv import etl
    from ltv.config import load
    from ltv.engine import DuckDBEngine
    from ltv.lake import Lake
    from ltv.simulate import simulate

    config = load(SHOP, {"simulation": {"days": SHOP_DAYS, "daily_installs": 12}})
    root = tmp_path_factory.mktemp("shop") / "lake"
    lake = Lake(root, config.game.id)
    simulate(config, lake)
    first, last = config.simulation.start, config.simulation.start + dt.timedelta(days=SHOP_DAYS - 1)
    etl.build_player_day(DuckDBEngine(lake, config), config, first, last)
    return tmp_path_factory.mktemp("configs"), root, last


def shop_config(directory: Path, name: str, **datasets_) -> Path:
    """The shop example's YAML with dataset settings changed (the rest as the user has it)."""
    raw = yaml.safe_load(SHOP.read_text())
    raw["simulation"]["days"] = SHOP_DAYS
    raw["datasets"].update(datasets_)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def no_future_days(text: str, last: dt.date, allowed: set[str] = frozenset()) -> None:
    """No message asks for player_day, nor names a day after the last logged one (beyond the
    configured dates it quotes)."""
    assert "features daily" not in text, text
    later = {d for d in re.findall(r"\d{4}-\d{2}-\d{2}", text) if d > str(last)} - set(allowed)
    assert not later, f"{later} in: {text}"


def ltv(*args: str) -> tuple[int, str]:
    """Exit code and everything the command said, its line breaks undone (consoles wrap lines)."""
    code, text = run_ltv(*args)
    return code, " ".join(text.split())


def test_every_command_with_the_shop_examples_own_start_says_the_start_lies_after_the_logs(shop) -> None:
    directory, lake, last = shop
    path = str(shop_config(directory, "own-start", first_start="2025-01-06"))  # what the example had (the issue)
    for command in (("datasets", "build"), ("datasets", "build", "--version", "v1"),
                    ("train", "--dataset", "v1", "--fast"), ("evaluate", "--dataset", "v1")):
        code, text = ltv(*command, "--game", path, "--lake", str(lake))
        assert code != 0 and "after the logs end (2023-01-02 .. 2023-10-01)" in text, (command, text)
        assert "first_start: auto" in text and "ltv_days=180 needs" in text, "the horizon does not fit either"
        no_future_days(text, last, {"2025-01-06"})
    code, text = ltv("datasets", "list", "--game", path, "--lake", str(lake))
    assert code == 0 and "after the logs end" in text
    no_future_days(text, last, {"2025-01-06"})


def test_every_command_at_180_days_on_273_days_of_logs_names_the_ways_out(shop) -> None:
    directory, lake, last = shop
    path = str(shop_config(directory, "auto-error"))  # the example as it is now: first_start: auto
    for command in (("datasets", "build"), ("datasets", "list"), ("train", "--dataset", "v1", "--fast"),
                    ("train", "--dataset", "rolling", "--fast"), ("evaluate", "--dataset", "rolling-2023-10-02")):
        code, text = ltv(*command, "--game", path, "--lake", str(lake))
        assert "the logs hold 273 days" in text and "at most 32 days" in text and "train_shorter" in text, (command, text)
        assert code != 0 or command[1] == "list"
        no_future_days(text, last)


def test_train_shorter_with_an_auto_start_builds_a_dataset_inside_the_logs(shop) -> None:
    from ltv.config import load
    from ltv.engine import DuckDBEngine
    from ltv.lake import Lake
    from ltv.run import DailyLoop

    directory, lake, last = shop
    path = shop_config(directory, "auto-shorter", first_start="auto", when_history_short="train_shorter")
    code, text = ltv("datasets", "build", "--game", str(path), "--lake", str(lake))
    assert code == 0 and "training and evaluating at ltv_days=32" in text, text
    no_future_days(text, last)
    built = sorted((lake / "corner-shop" / "datasets").glob("v1-*"))
    manifest = json.loads((built[-1] / "manifest.json").read_text())
    assert manifest["horizons"]["ltv_days"] == 32
    assert dt.date.fromisoformat(manifest["cutoffs"]["test"][-1]) + dt.timedelta(days=31) <= last
    code, text = ltv("datasets", "list", "--game", str(path), "--lake", str(lake))
    assert code == 0 and "v1-2023" in text and "│ yes │" in text
    # the Glue dataset job and the daily loop's retraining apply the same rule
    from glue_jobs import dataset as dataset_job

    said = dataset_job.main(["--game", "corner-shop", "--config", str(path), "--engine", "duckdb", "--lake", str(lake),
                             "--version", "v1"])
    assert "ltv_days=32" in said and built[-1].name in said
    with pytest.raises(HorizonError) as err:
        dataset_job.main(["--game", "corner-shop", "--config", str(shop_config(directory, "own", first_start="2025-01-06")),
                          "--engine", "duckdb", "--lake", str(lake), "--version", "rolling", "--date", "2023-12-31"])
    assert "they end on 2023-10-01" in str(err.value)
    config = load(path)
    loop = DailyLoop(config, Lake(lake, config.game.id))
    shorter, spec = loop._rolling(last + dt.timedelta(days=1))
    assert shorter.horizons.ltv_days == 32 and horizon.labels_end(shorter, spec) <= last
    assert isinstance(loop.engine, DuckDBEngine)
