"""Does the history hold a dataset at the label horizon? And what to do when it does not.

The one rule every command applies before it builds or trains on a dataset (`ltv datasets
build/list`, `ltv train`, `ltv evaluate`, `ltv run`'s retraining, the Glue dataset job): `plan`.

A rolling dataset needs, after its first training cutoff: the training weeks, an embargo of one
label horizon, the validation weeks, another embargo, the test weeks and one more label horizon
for the last test labels (`ltv.datasets.rolling_spec`): three horizons in all. With a long horizon (e.g. value over 9 months) and
a short history that does not fit. `fit` says so with the numbers, and applies the game's
choice (`datasets.when_history_short`):

- `error` (default): a `HorizonError` naming the two ways out;
- `train_shorter`: train and evaluate at `datasets.training_ltv_days` (default: the longest
  horizon that fits), recorded with the asked one (`horizons.asked_ltv_days`). Each prediction
  is then extended per player to the asked horizon (`ltv_expected_asked`, `btyd.extend`): the
  model's value over the trained horizon plus BG/NBD + Gamma-Gamma's conditional expectation of
  the value after it. Who buys next month and who buys over the year differ (one-time buyers,
  slow but loyal ones), so the short ranking is not carried over as it is; the extension's
  assumptions and measured error are in benchmarks/README.md (benchmarks/horizon.py).

Configured versions start at `datasets.first_start`; `auto` is the latest start whose test
labels (of every configured version) end inside the logs. Errors say what does not fit and the
ways out; they never ask for logs after the last logged day.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ltv.config import GameConfig
from ltv.errors import HorizonError

MIN_HISTORY_DAYS = 7  # history before the first training cutoff, so it has players to score
HORIZONS = 3  # label horizons a dataset spans besides its weeks: two embargoes and the last test labels


@dataclass(frozen=True)
class HorizonFit:
    config: GameConfig     # the config to build datasets with (a shorter ltv_days if train_shorter applied)
    needed_days: int
    available_days: int
    message: str           # empty when the configured horizon fits


def needed_days(config: GameConfig, ltv_days: int | None = None, train_weeks: int | None = None) -> int:
    """Days of logs a rolling dataset needs at this label horizon."""
    d, h = config.datasets, max(ltv_days or config.horizons.ltv_days, config.horizons.purchase_days)
    weeks = (train_weeks or d.rolling_train_weeks) + d.validation_weeks + d.test_weeks
    return MIN_HISTORY_DAYS + 7 * weeks + HORIZONS * h


def longest_fitting(config: GameConfig, available: int, train_weeks: int | None = None) -> int:
    """The longest LTV horizon whose dataset fits in `available` days (0 if none)."""
    d = config.datasets
    weeks = (train_weeks or d.rolling_train_weeks) + d.validation_weeks + d.test_weeks
    h = (available - MIN_HISTORY_DAYS - 7 * weeks) // HORIZONS
    return h if h >= config.horizons.purchase_days else 0


def fit(config: GameConfig, first_day: dt.date, last_day: dt.date, train_weeks: int | None = None) -> HorizonFit:
    """Check the label horizon against the logs [first_day, last_day]; apply the config's choice."""
    available = (last_day - first_day).days + 1
    need = needed_days(config, train_weeks=train_weeks)
    if available >= need:
        return HorizonFit(config, need, available, "")
    h = config.horizons
    best = longest_fitting(config, available, train_weeks)
    weeks = (train_weeks or config.datasets.rolling_train_weeks, config.datasets.validation_weeks,
             config.datasets.test_weeks)
    why = (f"the logs hold {available} days ({first_day} .. {last_day}); a dataset at ltv_days={h.ltv_days} needs "
           f"{need}: {weeks[0]} training + {weeks[1]} validation + {weeks[2]} test weeks, an embargo of one label "
           f"horizon after training and after validation, and one more horizon for the last test labels")
    if config.datasets.when_history_short == "error":
        shorter = (f"train at a shorter horizon that fits (at most {best} days): set datasets.when_history_short: "
                   "train_shorter (and optionally datasets.training_ltv_days); each prediction is then extended per "
                   f"player to {h.ltv_days} days (ltv_expected_asked: plus BTYD's expected value after the trained "
                   "horizon)" if best else
                   "no horizon fits: shorten the training weeks (datasets.rolling_train_weeks for rolling datasets; "
                   "train_weeks, count or start_shift_weeks for the configured versions) or wait for more logs")
        raise HorizonError(f"{why}. Choose one: (1) {shorter}; (2) extrapolate to {h.ltv_days} days with the BTYD "
                           "model (E[purchases] x E[spend], ltv.models.btyd), which assumes a BG/NBD process.")
    target = config.datasets.training_ltv_days or best
    if not target or needed_days(config, target, train_weeks) > available:
        raise HorizonError(f"{why}; datasets.training_ltv_days={target} does not fit either (at most {best} days)")
    shorter = config.model_copy(update={"horizons": h.model_copy(update={"ltv_days": target, "asked_ltv_days": h.ltv_days})})
    return HorizonFit(shorter, needed_days(config, target, train_weeks), available,
                      f"{why}: training and evaluating at ltv_days={target} instead (datasets.when_history_short: "
                      f"train_shorter); ltv_expected_asked extends each prediction to {h.ltv_days} days (plus BTYD's "
                      f"expected value after day {target}).")


Span = tuple[dt.date, dt.date]  # the first and last logged day


@dataclass(frozen=True)
class Plan:
    config: GameConfig              # build and train with this: first_start resolved, a shorter horizon if applied
    specs: list                     # the datasets.DatasetSpec(s) asked for
    message: str                    # what train_shorter changed; empty when nothing did


def log_span(engine, config: GameConfig, before: dt.date | None = None) -> Span | None:
    """The first and last day of the raw event logs (only days before `before` if given: the
    retraining loop replays days), None when there are none."""
    days = [d for d in engine.partitions(config.logs.events.table) if before is None or d < str(before)]
    return (dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])) if days else None


def labels_end(config: GameConfig, spec) -> dt.date:
    """The last day the labels of a dataset's last test cutoff read."""
    from ltv import etl

    return spec.end + dt.timedelta(days=etl.label_horizon(config) - 1)


def _with_start(config: GameConfig, start: dt.date) -> GameConfig:
    return config.model_copy(update={"datasets": config.datasets.model_copy(update={"first_start": start})})


def _span_weeks(config: GameConfig) -> int:
    """Weeks from the first version's first training cutoff to the last version's last one."""
    d = config.datasets
    return max(d.start_shift_weeks * i + d.train_weeks_of(i) for i in range(d.count))


def latest_start(config: GameConfig, last: dt.date) -> dt.date:
    """The latest `first_start` whose configured versions all have their test labels end by `last`."""
    from ltv import datasets

    def end(start: dt.date) -> dt.date:
        return max(labels_end(config, s) for s in datasets.version_specs(_with_start(config, start)))

    start = last - (end(last) - last)  # the layout's length barely depends on the weekday
    while end(start) > last:
        start -= dt.timedelta(days=1)
    while end(start + dt.timedelta(days=1)) <= last:
        start += dt.timedelta(days=1)
    return start


def _select(config: GameConfig, name: str | None) -> list:
    from ltv import datasets

    return datasets.version_specs(config) if name is None else [datasets.find_spec(config, name)]


def plan(config: GameConfig, span: Span | None, name: str | None = None, *, test_only: bool = False) -> Plan:
    """The datasets `name` asks for (a configured version, all of them if None, `rolling` for the
    newest rolling window, or `rolling-YYYY-MM-DD`) and the config to build them with, checked
    against the logs `span`; a `HorizonError` naming the ways out when they do not fit.

    `test_only`: the caller reads only the test period of the one dataset `name` (an evaluation).
    Where the whole dataset does not fit but its test cutoffs and their labels lie inside the
    logs, it is planned as configured, the rule's refusal kept as the plan's message."""
    from ltv import datasets

    try:
        return _whole(config, span, name)
    except HorizonError as e:
        if not test_only or name is None or span is None or \
                (config.datasets.first_start == "auto" and not name.startswith("rolling")):
            raise
        spec = datasets.find_spec(config, name)
        if not spec.test or spec.test[0] < span[0] or labels_end(config, spec) > span[1]:
            raise
        return Plan(config, [spec], f"{e} The test period and its labels lie inside the logs: evaluating it as "
                                    "configured.")


def _whole(config: GameConfig, span: Span | None, name: str | None) -> Plan:
    """`plan` for datasets read whole (built, trained on)."""
    from ltv import datasets

    rolling = name is not None and name.startswith("rolling")
    if span is None:  # no logs: nothing to check against (the builders say what is missing)
        if name == "rolling" or (config.datasets.first_start == "auto" and not rolling):
            raise HorizonError(f"the {config.logs.events.table} logs hold no day yet: {name or 'the configured versions'} "
                               "is placed against their last day (datasets.first_start: auto, or rolling)")
        return Plan(config, _select(config, name), "")
    first, last = span
    if rolling:
        as_of = last + dt.timedelta(days=1) if name == "rolling" else dt.date.fromisoformat(name.removeprefix("rolling-"))
        if as_of > last + dt.timedelta(days=1):
            raise HorizonError(f"dataset {name} reads the logs up to {as_of - dt.timedelta(days=1)}, but they end on "
                               f"{last}: the newest rolling dataset is rolling-{last + dt.timedelta(days=1)}")
        checked = fit(config, first, as_of - dt.timedelta(days=1))
        return Plan(checked.config, [datasets.rolling_spec(checked.config, as_of)], checked.message)
    if config.datasets.first_start == "auto":
        checked = fit(config, first, last, train_weeks=_span_weeks(config))
        start = latest_start(checked.config, last)
        if start < first:  # fit's day count is a bound; the exact layout decides
            raise HorizonError(f"{checked.message or 'the configured versions'}: with datasets.first_start: auto they "
                               f"would start on {start}, before the logs begin ({first} .. {last}); shorten "
                               "datasets.train_weeks / count / start_shift_weeks or the horizon")
        resolved = _with_start(checked.config, start)
        return Plan(resolved, _select(resolved, name), checked.message)
    specs = _select(config, name)
    weeks = _span_weeks(config) if name is None else len(specs[0].train) * config.cutoffs.every_weeks
    for spec in specs:
        if spec.train[0] > last:
            try:
                fit(config, first, last, train_weeks=weeks)
                also = ""
            except HorizonError as e:  # moving the start is not enough: say the rest too
                also = f" Then: {e}"
            raise HorizonError(
                f"dataset {spec.name} starts on {config.datasets.first_start} (datasets.first_start), after the logs "
                f"end ({first} .. {last}). Set datasets.first_start: auto (the latest start that fits) or a date "
                f"inside the logs.{also}")
    if all(labels_end(config, s) <= last for s in specs):
        return Plan(config, specs, "")
    checked = fit(config, first, last, train_weeks=weeks)
    specs = _select(checked.config, name)
    late = [s for s in specs if labels_end(checked.config, s) > last]
    if late:
        fits = latest_start(checked.config, last)
        raise HorizonError(
            f"dataset {late[0].name}: its test labels end on {labels_end(checked.config, late[0])}, after the logs' last "
            f"day {last}: with datasets.first_start {config.datasets.first_start} it does not fit. Set "
            f"datasets.first_start: auto (the latest start that fits, {fits}) or an earlier date")
    return Plan(checked.config, specs, checked.message)


def as_built(config: GameConfig, manifest: dict | None) -> GameConfig:
    """The config with the label horizons a dataset was built at (its manifest's), so a model
    trained on it (locally or in the SageMaker training step) records what its labels measure."""
    from ltv.config import Horizons

    built = (manifest or {}).get("horizons")
    if not built or built == config.horizons.model_dump():
        return config
    return config.model_copy(update={"horizons": Horizons(**built)})
