"""A/B experiments on offer policies: spec, assignment, exposure log, power and an honest readout.

An experiment (a YAML spec, `Spec`) splits the players scored at its start into arms, each run
by an offer policy of `ltv.targets` (`model`, `random-day`, `none`), one of them the holdout
(policy `none`) every other arm is compared with. The rules, each in one place here:

- **Assignment** is a salted hash of the player id (`ltv.targets.unit_hash`, salt = id/seed):
  the same arm on every day and run, independent between experiments. A player's stratum (the
  predicted-value decile at first assignment) is frozen with the arm.
- **Traffic**: an experiment owns a slice [a, b) of a per-game hash of the player id; two
  experiments whose windows overlap must own disjoint slices (`ExperimentOverlapError`), so no
  player is in two experiments at once.
- **Exposures** (who was offered what, when) are appended to a log, never rewritten; a batch is
  written as one file named by the hash of its new rows, so a replay adds nothing.
- **Power** before the start: the population size needed to detect `mde` on the primary metric
  (two-sided test at `alpha`, `power`), from the metric's variance in the window before start.
- **Readout** (fixed horizon: a readout before the horizon is `PeekingError`): per arm the
  conversion and revenue per player; per comparison the difference with a 95 % CI (Welch
  standard error, corrected for the skew of spend: `diff_interval`), plain and
  CUPED-adjusted on pre-period spend (Deng et al., 2013, "Improving the sensitivity of online
  controlled experiments by utilizing pre-experiment data"); a sample-ratio-mismatch
  chi-square test of the arm counts against the shares, with its power at the experiment's n.

Why a fixed horizon and not an always-valid (sequential) method: the decision is taken once,
at a horizon set by the purchase cycle (offers pull purchases forward, so an early look
overstates them); a fixed-horizon interval is the narrowest valid one at that horizon, and
CUPED applies to it directly. An always-valid interval (mSPRT) pays for looking at any time
with a wider interval at the horizon. Peeking is prevented, not corrected.

Layout: <lake>/<game>/experiments/<id>/ spec.json, power.json, assignments/dt=D/,
exposures/<hash>.parquet, readout/ (readout.json, readout.html). Every write is atomic.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

from ltv import targets
from ltv.errors import (ExperimentError, ExperimentOverlapError, ExperimentSpecError, ExposureError,
                        ImmutableVersionError, PeekingError, ShareSumError, UnknownMetricError)
from ltv.lake import Lake, atomic_dir, complete_partitions, write_file_atomic, write_with

METRICS = ("conversion", "revenue_per_player")
# The SRM check's default threshold. At a game's usual size (~12,000 players) p < 0.001 catches a
# 52/48 split only ~85 % of the time; p < 0.01 ~96 %, at the price of 1 healthy experiment in
# 100 flagged (benchmarks/README.md measures both). `srm_alpha` in the spec overrides it.
SRM_ALPHA = 0.01
SRM_LOSS = 1 - 0.48 / 0.52  # the share of one arm's players whose loss turns a 50/50 split into 52/48
EXPOSURE_KEY = ["player_id", "offer_date"]
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # an experiment's id names its folder


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    policy: Literal["model", "random-day", "none"]
    share: float = Field(gt=0, le=1)


class Spec(BaseModel):
    """An experiment spec (YAML). `mde` is an absolute difference in the primary metric:
    a share of players for `conversion`, money per player for `revenue_per_player`."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    game: str
    start: dt.date
    horizon_days: int = Field(ge=1, le=365)
    arms: list[Arm] = Field(min_length=2)
    holdout: str
    primary_metric: str
    mde: float = Field(gt=0)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    strata: Literal["predicted_value_decile", "none"] = "predicted_value_decile"
    pre_period_days: int = Field(28, ge=1)
    traffic: tuple[float, float] = (0.0, 1.0)
    seed: int = 0
    srm_alpha: float = Field(SRM_ALPHA, gt=0, lt=0.5)  # flag a sample-ratio mismatch below this p-value
    budget_per_day: int = Field(1000, ge=0)   # offers per day over all arms, split by share
    cooldown_days: int = Field(7, ge=1)
    offer_days: int = Field(7, ge=1)          # offers in the first days of the window

    @property
    def salt(self) -> str:
        return f"{self.id}/{self.seed}"

    @property
    def end(self) -> dt.date:
        """The first day after the window [start, end)."""
        return self.start + dt.timedelta(days=self.horizon_days)

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


def parse_spec(data: dict[str, Any] | str | Path) -> Spec:
    """A validated spec from a dict, YAML text or a YAML file; a named error otherwise."""
    if isinstance(data, Path) or (isinstance(data, str) and "\n" not in data and data.endswith((".yaml", ".yml"))):
        path = Path(data)
        if not path.exists():
            raise ExperimentSpecError(f"experiment spec {path} does not exist")
        data = path.read_text()
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as e:
            raise ExperimentSpecError(f"the experiment spec is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ExperimentSpecError("an experiment spec is a mapping (id, game, start, horizon_days, arms, ...)")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ExperimentSpecError(f"invalid experiment spec: {problems}") from None
    if spec.primary_metric not in METRICS:
        raise UnknownMetricError(f"unknown primary_metric {spec.primary_metric!r}; the readout computes "
                                 f"{', '.join(METRICS)}")
    total = sum(a.share for a in spec.arms)
    if abs(total - 1) > 1e-9:
        raise ShareSumError(f"the arms' shares sum to {total:g}, not 1 ("
                            + ", ".join(f"{a.name}={a.share:g}" for a in spec.arms) + "); make them add up to 1")
    names = [a.name for a in spec.arms]
    if len(set(names)) != len(names):
        raise ExperimentSpecError(f"arm names must be unique: {names}")
    if spec.holdout not in names or spec.arm(spec.holdout).policy != "none":
        raise ExperimentSpecError(f"holdout {spec.holdout!r} must name an arm with policy 'none' (arms: {names})")
    a, b = spec.traffic
    if not 0 <= a < b <= 1:
        raise ExperimentSpecError(f"traffic must be a slice [a, b) of [0, 1] with a < b, got {list(spec.traffic)}")
    return spec


# ----------------------------------------------------------------------------------------------
# assignment


def assign_arms(spec: Spec, ids: pd.Series | np.ndarray) -> np.ndarray:
    """The arm of each player: a salted hash in [0, 1) cut at the cumulative shares."""
    u = targets.unit_hash(spec.salt, ids)
    edges = np.cumsum([a.share for a in spec.arms])
    edges[-1] = 1.0
    return np.asarray([a.name for a in spec.arms], dtype=object)[np.searchsorted(edges, u, side="right")]


def in_traffic(spec: Spec, ids: pd.Series | np.ndarray) -> np.ndarray:
    """Whether each player falls in the experiment's slice of the game's traffic hash."""
    u = targets.unit_hash(f"traffic/{spec.game}", ids)
    return (u >= spec.traffic[0]) & (u < spec.traffic[1])


# ----------------------------------------------------------------------------------------------
# power


@dataclass(frozen=True)
class Power:
    metric: str
    sigma: float                  # std of the metric per player, over a window as long as the horizon
    available: int                # players in the population (traffic slice)
    required: int                 # players needed for `mde` at alpha / power (every comparison)
    detectable: float             # the smallest difference detectable with `available` players
    mde: float

    @property
    def enough(self) -> bool:
        return self.available >= self.required


def power(spec: Spec, pre_metric: np.ndarray, available: int) -> Power:
    """Sample size for the two-sided z-test of each arm against the holdout.

    n_total = (z_{1-alpha/2} + z_power)^2 sigma^2 (1/s_arm + 1/s_holdout) / mde^2, for the
    smallest arm; sigma from the metric measured on the population before the start."""
    z = stats.norm.ppf(1 - spec.alpha / 2) + stats.norm.ppf(spec.power)
    sigma = float(np.std(pre_metric, ddof=1)) if len(pre_metric) > 1 else float("nan")
    h = spec.arm(spec.holdout).share
    factor = max(1 / a.share + 1 / h for a in spec.arms if a.name != spec.holdout)
    required = int(np.ceil((z * sigma) ** 2 * factor / spec.mde ** 2)) if np.isfinite(sigma) else 0
    detectable = z * sigma * np.sqrt(factor / max(available, 1))
    return Power(spec.primary_metric, sigma, int(available), required, float(detectable), spec.mde)


# ----------------------------------------------------------------------------------------------
# readout (pure: a frame of players -> figures)


@dataclass(frozen=True)
class Interval:
    diff: float
    se: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return not self.low <= 0 <= self.high


def _hall(t: float, a: float) -> float:
    """Hall's (1992) transform of a studentized statistic t whose estimator has skewness a:
    t + a t^2 / 3 + a^2 t^3 / 27 + a / 6 — monotone, and normal without the first-order skew."""
    return t if abs(a) < 1e-12 else ((1 + a * t / 3) ** 3 - 1) / a + a / 6


def _hall_inverse(u: float, a: float) -> float:
    return float(u) if abs(a) < 1e-12 else float(3 / a * (np.cbrt(1 + a * (u - a / 6)) - 1))


def diff_interval(y_t: np.ndarray, y_c: np.ndarray, level: float = 0.95) -> Interval:
    """Difference of means with the unpooled (Welch) standard error and an interval corrected for
    the difference's skewness (Hall, 1992).

    Why: spend is skewed, and the few big spenders a small holdout happens to get move its mean
    and its variance together, so the normal interval is lopsided — on the default game it lay
    above a zero effect in 3.2 % of no-effect CUPED revenue readouts, below it in 1.9 %
    (6,000 seeds, docs/experiments.md). The
    skewness of the difference is m3 (1/n_t^2 - 1/n_c^2) / sd^3 with the third moment m3 and sd of
    both arms pooled: per-arm moments move with the same big spenders and over-correct (measured),
    pooled ones do not. Equal arms cancel the skew (no correction); cost O(n)."""
    n_t, n_c = len(y_t), len(y_c)
    diff = float(np.mean(y_t) - np.mean(y_c))
    se = float(np.sqrt(np.var(y_t, ddof=1) / n_t + np.var(y_c, ddof=1) / n_c))
    z = stats.norm.ppf(0.5 + level / 2)
    if not se > 0:
        return Interval(diff, se, diff, diff, float(diff == 0) or 0.0)
    both = np.concatenate([y_t, y_c])
    d = both - both.mean()
    var = np.mean(d ** 2)
    a = float(np.mean(d ** 3) * (1 / n_t ** 2 - 1 / n_c ** 2) / (var * (1 / n_t + 1 / n_c)) ** 1.5) if var > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(_hall(diff / se, a))))
    return Interval(diff, se, float(diff - se * _hall_inverse(z, a)), float(diff - se * _hall_inverse(-z, a)), p)


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """CUPED-adjusted outcomes y - theta (x - mean x), theta = cov(y, x) / var(x) over all
    players of the comparison (Deng et al., 2013). Returns (adjusted, theta)."""
    vx = np.var(x, ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    return y - theta * (x - np.mean(x)), theta


def srm_power(shares: dict[str, float], n: int, alpha: float = SRM_ALPHA, loss: float = SRM_LOSS) -> float:
    """Power of the SRM test at `alpha` with n players when one arm loses `loss` of its players
    (default: the loss that turns 50/50 into 52/48), in the arm where the loss shows least:
    noncentral chi-square, noncentrality n * sum (q - p)^2 / p over the shares p and the shares q
    after the loss."""
    p = np.array(list(shares.values()), float)
    crit = stats.chi2.isf(alpha, len(p) - 1)
    least = 1.0
    for i in range(len(p)):
        q = p.copy()
        q[i] *= 1 - loss
        q /= q.sum()
        least = min(least, float(stats.ncx2.sf(crit, len(p) - 1, n * np.sum((q - p) ** 2 / p))))
    return least


def srm(counts: dict[str, int], shares: dict[str, float], alpha: float = SRM_ALPHA) -> dict[str, Any]:
    """Sample-ratio mismatch: Pearson chi-square of the arm counts against the spec's shares,
    flagged below `alpha`, with the test's power against a 52/48-sized loss at this n (what the
    check can see)."""
    names = list(shares)
    observed = np.array([counts.get(n, 0) for n in names], float)
    expected = observed.sum() * np.array([shares[n] for n in names])
    chi2, p = stats.chisquare(observed, expected)
    return {"chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < alpha), "alpha": alpha,
            "power_52_48": srm_power(shares, int(observed.sum()), alpha),
            "observed": {n: int(c) for n, c in zip(names, observed)},
            "expected": {n: float(e) for n, e in zip(names, expected)}}


def analyse(frame: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """Per arm and per comparison with the holdout, from one row per assigned player with
    `arm`, `revenue` and `converted` over the window, and `pre_revenue` (the CUPED covariate)."""
    arms, out = {}, {"primary_metric": spec.primary_metric, "comparisons": {}}
    y = {"conversion": frame["converted"].to_numpy(float), "revenue_per_player": frame["revenue"].to_numpy(float)}
    x = frame["pre_revenue"].to_numpy(float)
    arm = frame["arm"].to_numpy()
    for a in spec.arms:
        sel = arm == a.name
        arms[a.name] = {"policy": a.policy, "share": a.share, "players": int(sel.sum()),
                        **{m: float(y[m][sel].mean()) if sel.any() else None for m in METRICS},
                        **{f"{m}_se": float(y[m][sel].std(ddof=1) / np.sqrt(sel.sum())) if sel.sum() > 1 else None
                           for m in METRICS}}
    out["arms"] = arms
    control = arm == spec.holdout
    for a in spec.arms:
        if a.name == spec.holdout:
            continue
        treat = arm == a.name
        if treat.sum() < 2 or control.sum() < 2:
            raise ExperimentError(f"arm {a.name!r} or the holdout has fewer than 2 players; nothing to compare")
        both = treat | control
        comp = {}
        for m in METRICS:
            adjusted, theta = cuped(y[m][both], x[both])
            t_in_both = treat[both]
            comp[m] = {"plain": asdict(diff_interval(y[m][treat], y[m][control])),
                       "cuped": asdict(diff_interval(adjusted[t_in_both], adjusted[~t_in_both])), "theta": theta}
        out["comparisons"][a.name] = comp
    out["srm"] = srm({n: v["players"] for n, v in arms.items()}, {a.name: a.share for a in spec.arms}, spec.srm_alpha)
    if "stratum" in frame:
        out["strata"] = {str(k): v for k, v in
                         frame.groupby(["stratum", "arm"]).size().unstack(fill_value=0).to_dict("index").items()}
    return out


# ----------------------------------------------------------------------------------------------
# the experiment in the lake


@dataclass(frozen=True)
class Experiment:
    lake: Lake
    spec: Spec

    @property
    def path(self) -> Path:
        return experiments_dir(self.lake) / self.spec.id

    def assignments(self, before: dt.date | None = None) -> pd.DataFrame:
        """Every assignment so far (only those made before `before` if given)."""
        days = [d for d in complete_partitions(self.path / "assignments", "dt")
                if before is None or d < str(before)]
        frames = [pd.read_parquet(self.path / "assignments" / f"dt={d}" / "part-0.parquet") for d in days]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            {"player_id": [], "arm": [], "stratum": [], "assigned_on": []})

    def exposures(self) -> pd.DataFrame:
        folder = self.path / "exposures"
        files = sorted(folder.glob("[!.]*.parquet")) if folder.exists() else []
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame(
            {c: [] for c in ["player_id", "arm", "policy", "offer_date", "logged_at"]})


def experiments_dir(lake: Lake) -> Path:
    return lake.base / "experiments"


def load(lake: Lake, experiment_id: str) -> Experiment:
    path = experiments_dir(lake) / experiment_id / "spec.json"
    if not re.fullmatch(ID_PATTERN, experiment_id) or not path.exists():
        known = ", ".join(all_ids(lake)) or "none"
        raise ExperimentError(f"no experiment {experiment_id!r} in {lake.game} (known: {known}); "
                              "create it: ltv experiment create --game G SPEC.yaml")
    return Experiment(lake, Spec.model_validate_json(path.read_text()))


def all_ids(lake: Lake) -> list[str]:
    root = experiments_dir(lake)
    return sorted(p.name for p in root.iterdir() if (p / "spec.json").exists()) if root.exists() else []


def create(lake: Lake, spec: Spec, power_result: Power | None = None) -> Experiment:
    """Record a new experiment (idempotent for the same spec). Refuses a spec of another game, a
    changed spec under an existing id, and overlap with another experiment's players and days."""
    if spec.game != lake.game:
        raise ExperimentSpecError(f"the spec is for game {spec.game!r}, not {lake.game!r}")
    target = experiments_dir(lake) / spec.id
    if (target / "spec.json").exists():
        existing = load(lake, spec.id).spec
        if existing == spec:
            return Experiment(lake, existing)
        raise ImmutableVersionError(f"experiment {spec.id!r} exists with another spec; an experiment never changes "
                                    "once created: give the new one another id")
    for other_id in all_ids(lake):
        other = load(lake, other_id).spec
        days = spec.start < other.end and other.start < spec.end
        players = spec.traffic[0] < other.traffic[1] and other.traffic[0] < spec.traffic[1]
        if days and players:
            raise ExperimentOverlapError(
                f"experiment {spec.id!r} ({spec.start}..{spec.end}, traffic {list(spec.traffic)}) would share players "
                f"with {other.id!r} ({other.start}..{other.end}, traffic {list(other.traffic)}); give it a disjoint "
                "traffic slice or start it after the other ends")

    def write(tmp: Path) -> None:
        (tmp / "spec.json").write_text(spec.model_dump_json(indent=2))
        (tmp / "power.json").write_text(json.dumps(asdict(power_result) if power_result else None, indent=2))

    write_with(target, write, replace=False)
    return Experiment(lake, spec)


def assign(exp: Experiment, day: dt.date, pred: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assign the players of `day`'s predictions not yet assigned, and plan the arms' offers of the
    offer window's days from `day` on for every assigned player of those predictions (the earlier
    days' and the new ones), logging those that still fit: the first day's run logs the window's
    plan, a later day's run adds offers where an arm's daily budget is left (new players, players
    the earlier plans left out), never within a player's cooldown of a logged offer. Rerunning a
    day rewrites the same assignments and logs nothing new.

    Returns (the new assignments, the offers logged now)."""
    spec = exp.spec
    if not spec.start <= day < spec.end:
        raise ExperimentError(f"{day} is outside experiment {spec.id!r} ({spec.start}..{spec.end}); "
                              "assign on a day of its window")
    pred = pred[in_traffic(spec, pred["player_id"])].reset_index(drop=True)
    seen = set(exp.assignments(before=day)["player_id"])
    strata = targets.segments(pred) if spec.strata != "none" else np.zeros(len(pred), int)
    new = pd.DataFrame({"player_id": pred["player_id"], "arm": assign_arms(spec, pred["player_id"]),
                        "stratum": strata, "assigned_on": str(day)})
    new = new[~new["player_id"].isin(seen)].reset_index(drop=True)
    everyone = pd.concat([exp.assignments(before=day)[["player_id", "arm"]], new[["player_id", "arm"]]],
                         ignore_index=True)
    offers = _still_open(exp, plan_offers(spec, day, pred, everyone))
    write_with(exp.path / "assignments" / f"dt={day}", lambda tmp: new.to_parquet(tmp / "part-0.parquet", index=False))
    logged = log_exposures(exp, offers) if len(offers) else offers
    return new, logged


def arm_budget(spec: Spec, arm: Arm) -> int:
    """An arm's offers per day: its share of the experiment's budget."""
    return int(round(spec.budget_per_day * arm.share))


def plan_offers(spec: Spec, day: dt.date, pred: pd.DataFrame, assigned: pd.DataFrame) -> pd.DataFrame:
    """Each arm's target list for the offer window's days from `day` on (the window is the first
    `offer_days` of the experiment), its policy on its players, its share of the budget."""
    days = min((spec.start + dt.timedelta(days=spec.offer_days) - day).days, (spec.end - day).days)
    frames = []
    for a in spec.arms:
        if a.policy == "none" or days < 1:
            continue
        mine = pred[pred["player_id"].isin(assigned.loc[assigned["arm"] == a.name, "player_id"])]
        plan = targets.plan(mine, day, policy=a.policy, budget=arm_budget(spec, a),
                            cooldown_days=spec.cooldown_days, salt=f"{spec.salt}/{a.name}", days=days)
        frames.append(plan.assign(arm=a.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _still_open(exp: Experiment, offers: pd.DataFrame) -> pd.DataFrame:
    """The planned offers the exposure log leaves room for: none within a player's cooldown of one
    of their logged offers (the same date included), and per arm and date no more than the budget
    left, taken in the plan's order (by day, then expected value)."""
    done = exp.exposures()
    if offers.empty or done.empty:
        return offers
    spec = exp.spec
    dates = pd.to_datetime(offers["offer_date"])
    logged = pd.DataFrame({"player_id": done["player_id"].astype(str), "logged": pd.to_datetime(done["offer_date"])})
    pairs = pd.DataFrame({"row": np.arange(len(offers)), "player_id": offers["player_id"].astype(str).to_numpy(),
                          "date": dates.to_numpy()}).merge(logged, on="player_id")
    near = pairs.loc[(pairs["date"] - pairs["logged"]).abs().dt.days < spec.cooldown_days, "row"]
    open_ = offers.drop(index=offers.index[near.unique()])
    used = done.groupby(["arm", "offer_date"]).size()
    rank = open_.groupby(["arm", "offer_date"]).cumcount()
    left = [arm_budget(spec, spec.arm(a)) - int(used.get((a, d), 0)) for a, d in zip(open_["arm"], open_["offer_date"])]
    return open_[rank.to_numpy() < np.asarray(left, dtype=int)].reset_index(drop=True)


def log_exposures(exp: Experiment, offers: pd.DataFrame) -> pd.DataFrame:
    """Append offers (player_id, arm, offer_date, policy, ...) to the exposure log. Every player
    must be assigned to that arm and every date in the window, else `ExposureError` and nothing
    is written; rows already logged (same player and date) are skipped. Returns the new rows."""
    spec = exp.spec
    assigned = exp.assignments()
    assigned = pd.Series(assigned["arm"].to_numpy(), index=assigned["player_id"].astype(str))
    arm_of = offers["player_id"].astype(str).map(assigned)
    outside = offers[arm_of.isna()]
    if len(outside):
        raise ExposureError(f"{len(outside)} exposure(s) for players outside experiment {spec.id!r}, e.g. "
                            f"{outside['player_id'].head(3).tolist()}; nothing was logged. Assign them first "
                            "(ltv experiment assign) or drop them")
    wrong = offers[arm_of != offers["arm"]]
    if len(wrong):
        raise ExposureError(f"{len(wrong)} exposure(s) name another arm than the player's, e.g. "
                            f"{wrong[['player_id', 'arm']].head(3).to_dict('records')}; nothing was logged")
    dates = pd.to_datetime(offers["offer_date"]).dt.date
    late = offers[(dates < spec.start) | (dates >= spec.end)]
    if len(late):
        raise ExposureError(f"{len(late)} exposure(s) dated outside {spec.start}..{spec.end}, e.g. "
                            f"{late['offer_date'].head(3).tolist()}; nothing was logged")
    policy = offers["arm"].map({a.name: a.policy for a in spec.arms})
    rows = offers.assign(policy=policy, offer_date=dates.astype(str))
    done = exp.exposures()
    if len(done):
        key = pd.MultiIndex.from_frame(done[EXPOSURE_KEY].astype(str))
        rows = rows[~pd.MultiIndex.from_frame(rows[EXPOSURE_KEY].astype(str)).isin(key)]
    rows = rows.drop_duplicates(EXPOSURE_KEY).reset_index(drop=True)
    if rows.empty:
        return rows
    digest = hashlib.sha256("\n".join(rows["player_id"].astype(str) + "@" + rows["offer_date"]).encode()).hexdigest()
    rows["logged_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    write_file_atomic(exp.path / "exposures" / f"{digest[:20]}.parquet", lambda tmp: rows.to_parquet(tmp, index=False))
    return rows


def status(exp: Experiment, as_of: dt.date | None) -> dict[str, Any]:
    """What an experiment holds now: phase, players per arm (and the SRM test on them), offers."""
    spec, assigned, exposed = exp.spec, exp.assignments(), exp.exposures()
    counts = assigned["arm"].value_counts().to_dict()
    phase = ("read out" if (exp.path / "readout" / "readout.json").exists() else
             "created" if assigned.empty else
             "ready for readout" if as_of is not None and as_of >= spec.end else "running")
    return {"id": spec.id, "phase": phase, "window": [str(spec.start), str(spec.end)], "as_of": str(as_of),
            "players": {a.name: int(counts.get(a.name, 0)) for a in spec.arms},
            "offers": {a.name: int((exposed["arm"] == a.name).sum()) for a in spec.arms},
            "srm": srm(counts, {a.name: a.share for a in spec.arms}, spec.srm_alpha) if counts else None,
            "power": json.loads((exp.path / "power.json").read_text())}


def check_horizon(spec: Spec, as_of: dt.date) -> None:
    """Fixed horizon: no readout until data covers the whole window [start, end)."""
    if as_of < spec.end:
        raise PeekingError(f"experiment {spec.id!r} runs until {spec.end - dt.timedelta(days=1)} and the data reach "
                           f"{as_of - dt.timedelta(days=1)}: a readout before the fixed horizon would overstate "
                           f"effects (offers pull purchases forward) and inflate false positives. Read it out from "
                           f"{spec.end} on")


def write_readout(exp: Experiment, result: dict[str, Any], html: str) -> Path:
    target = exp.path / "readout"
    with atomic_dir(target) as tmp:
        (tmp / "readout.json").write_text(json.dumps(result, indent=2, default=str))
        (tmp / "readout.html").write_text(html)
    return target / "readout.html"


def readouts(lake: Lake) -> list[Path]:
    """The HTML readouts of a game's experiments (linked from the evaluation report)."""
    return [experiments_dir(lake) / i / "readout" / "readout.html" for i in all_ids(lake)
            if (experiments_dir(lake) / i / "readout" / "readout.html").exists()]


# ----------------------------------------------------------------------------------------------
# from the lake's player_day (locally DuckDB; the same SQL runs on Athena)


def spend(engine: Any, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Per player with activity in [start, end): revenue and whether they purchased."""
    return engine.query(f"SELECT player_id, SUM(revenue) AS revenue, CAST(SUM(purchases) > 0 AS INTEGER) AS converted "
                        f"FROM player_day WHERE dt >= '{start}' AND dt < '{end}' GROUP BY player_id")


def data_end(engine: Any) -> dt.date | None:
    """The day after the last player_day partition: what a readout can see."""
    days = engine.partitions("player_day")
    return dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1) if days else None


def outcome_frame(engine: Any, config: Any, spec: Spec, assigned: pd.DataFrame) -> pd.DataFrame:
    """Assigned players with their window outcomes and pre-period spend (0 without activity)."""
    from ltv import etl

    pre_start = spec.start - dt.timedelta(days=spec.pre_period_days)
    etl.require_player_day(engine, config, pre_start, spec.end, f"the readout of experiment {spec.id!r}")
    window = spend(engine, spec.start, spec.end)
    pre = spend(engine, pre_start, spec.start).rename(columns={"revenue": "pre_revenue"})[["player_id", "pre_revenue"]]
    key = assigned["player_id"].astype(str)
    frame = assigned.assign(_k=key)
    for part in (window, pre):
        frame = frame.merge(part.assign(_k=part["player_id"].astype(str)).drop(columns="player_id"), on="_k", how="left")
    return frame.drop(columns="_k").fillna({"revenue": 0.0, "converted": 0, "pre_revenue": 0.0})


def power_from_lake(engine: Any, spec: Spec, pred: pd.DataFrame) -> Power:
    """Power with the population of `pred` (in the traffic slice) and the primary metric's
    variance over the `horizon_days` before the start."""
    population = pred.loc[in_traffic(spec, pred["player_id"]), ["player_id"]]
    before = spend(engine, spec.start - dt.timedelta(days=spec.horizon_days), spec.start)
    merged = population.assign(_k=population["player_id"].astype(str)).merge(
        before.assign(_k=before["player_id"].astype(str)).drop(columns="player_id"), on="_k", how="left").fillna(0)
    column = "converted" if spec.primary_metric == "conversion" else "revenue"
    return power(spec, merged[column].to_numpy(float), len(population))


def readout(exp: Experiment, engine: Any, config: Any, as_of: dt.date | None = None,
            truth: dict[str, Any] | None = None) -> tuple[dict[str, Any], Path]:
    """Check the horizon, analyse, write readout.json + readout.html; returns (result, html path)."""
    as_of = as_of or data_end(engine)
    if as_of is None:
        raise PeekingError(f"no player_day yet: experiment {exp.spec.id!r} cannot be read out before {exp.spec.end}")
    check_horizon(exp.spec, as_of)
    assigned = exp.assignments()
    if assigned.empty:
        raise ExperimentError(f"experiment {exp.spec.id!r} has no assigned players; run ltv experiment assign first")
    from ltv.report.experiment import render_readout  # matplotlib: only once there is something to plot

    result = analyse(outcome_frame(engine, config, exp.spec, assigned), exp.spec)
    result["offers"] = exp.exposures()["arm"].value_counts().to_dict()
    html = render_readout(exp.spec, result, truth)
    return result, write_readout(exp, result, html)
