"""Does the history hold a dataset at the label horizon? And what to do when it does not.

A rolling dataset needs, after its first training cutoff: the training weeks, an embargo of one
label horizon, the validation weeks, another embargo, the test weeks and one more label horizon
for the last test labels (`ltv.datasets.rolling_spec`): three horizons in all. With a long horizon (e.g. value over 9 months) and
a short history that does not fit. `fit` says so with the numbers, and applies the game's
choice (`datasets.when_history_short`):

- `error` (default): a `HorizonError` naming the two ways out;
- `train_shorter`: train and evaluate at `datasets.training_ltv_days` (default: the longest
  horizon that fits). Rankings learned at a shorter horizon carry over to the long one (who
  spends most next month mostly spends most next year), absolute values do not: predictions
  are of value over the shorter horizon. The alternative for absolute long-horizon values is
  to extrapolate with the BTYD part (E[purchases in H] x E[spend] of `ltv.models.btyd`, whose
  `btyd_expected_*` columns are computed at any horizon), which assumes the BTYD process.
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
                   "train_shorter (and optionally datasets.training_ltv_days); rankings carry over to the long horizon, "
                   "absolute values do not" if best else
                   "no horizon fits: wait for more logs or shorten datasets.rolling_train_weeks")
        raise HorizonError(f"{why}. Choose one: (1) {shorter}; (2) extrapolate to {h.ltv_days} days with the BTYD "
                           "model (E[purchases] x E[spend], ltv.models.btyd), which assumes a BG/NBD process.")
    target = config.datasets.training_ltv_days or best
    if not target or needed_days(config, target, train_weeks) > available:
        raise HorizonError(f"{why}; datasets.training_ltv_days={target} does not fit either (at most {best} days)")
    shorter = config.model_copy(update={"horizons": h.model_copy(update={"ltv_days": target})})
    return HorizonFit(shorter, needed_days(config, target, train_weeks), available,
                      f"{why}: training and evaluating at ltv_days={target} instead (datasets.when_history_short: "
                      f"train_shorter). Rankings carry over to {h.ltv_days} days; absolute values are {target}-day values.")


def for_dataset(config: GameConfig, available: list[str], name: str) -> tuple[GameConfig, str]:
    """The config to build dataset `name` with, given the player_day days `available`: unchanged
    when its test labels lie inside the logs, else what `fit` decides (or its `HorizonError`)."""
    from ltv import datasets, etl

    if not available:
        return config, ""
    first, last = dt.date.fromisoformat(available[0]), dt.date.fromisoformat(available[-1])
    spec = datasets.find_spec(config, name)
    if max(spec.test) + dt.timedelta(days=etl.label_horizon(config) - 1) <= last:
        return config, ""
    checked = fit(config, first, last, train_weeks=len(spec.train) * config.cutoffs.every_weeks or None)
    return checked.config, checked.message
