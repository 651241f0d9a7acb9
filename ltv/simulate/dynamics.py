"""The game's behavioural model: player types, their parameters and the daily hazards.

Both the day-by-day simulator (`game.py`) and the oracle (`truth.py`) call these functions, so
the ground truth is exactly the expectation of what the simulator draws.

Per player and day: the player may churn for good (hazard `churn_hazard`), is active with
`activity_prob` (decaying engagement, weekends, content updates) and, when active, purchases
with `purchase_prob`, which follows the player's inter-purchase rhythm: it peaks when the days
since the last purchase reach the player's period (King's observation that purchase timing is
regular per player). Amounts come from a price ladder, shifted per player and by drift.

A content update (`simulation.drift`) changes spending from its day on: per type (rates, prices,
rhythm), once on its day (`ptype_after`), and day by day after it: every day a payer may stop
paying for good and a non-payer may start (`transition_hazards`), at rates set by engagement. It
can also tie how much a payer spends to engagement (`spend_factor`), which it did not before.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from ltv.config import SimulationSettings

TYPES = ("nonpayer", "minnow", "dolphin", "whale")
PRICE_LADDER = np.array([0.99, 1.99, 4.99, 9.99, 19.99, 49.99, 99.99])
# probability of each price point, per type (rows follow TYPES)
PRICE_MIX = np.array([
    [1.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],
    [0.45, 0.30, 0.20, 0.05, 0.00, 0.00, 0.00],
    [0.05, 0.15, 0.35, 0.30, 0.15, 0.00, 0.00],
    [0.00, 0.00, 0.05, 0.20, 0.35, 0.30, 0.10],
])
PEAK_PURCHASE_PROB = np.array([0.0, 0.55, 0.65, 0.75])  # at the rhythm's peak, per active day
PERIOD_DAYS = np.array([30.0, 12.0, 6.0, 3.0])
FIRST_PURCHASE_FACTOR = 0.25  # the first purchase is rarer than a habitual one
RHYTHM_FLOOR = 0.04  # purchase hazard far from the rhythm's peak, relative to the peak
CYCLE_WEIGHTS = ((1, 1.0), (2, 0.7), (3, 0.5))  # relative strength of the 1st, 2nd, 3rd cycle
EXTRA_PURCHASE_PROB = np.array([0.0, 0.05, 0.10, 0.30])  # a second purchase on the same day
BASE_ACTIVITY = np.array([0.45, 0.85, 0.90, 0.93])
CHURN_HAZARD = np.array([0.030, 0.012, 0.008, 0.005])
EARLY_CHURN = 0.20  # extra churn hazard on the first days, decaying with age
G_CAP = 90  # days-since-purchase beyond which the hazard is flat (the rhythm kernel is at its floor)
COUNTRIES = np.array(["US", "JP", "KR", "DE", "BR", "IN", "GB", "FR"])
COUNTRY_P = np.array([0.25, 0.12, 0.08, 0.10, 0.15, 0.18, 0.07, 0.05])
COUNTRY_PAYER_LIFT = np.array([1.4, 1.6, 1.5, 1.0, 0.6, 0.35, 1.1, 0.9])
PLATFORMS = np.array(["ios", "android"])
PLATFORM_PAYER_LIFT = np.array([1.5, 0.8])
CHANNELS = np.array(["organic", "paid_social", "paid_search", "cross_promo", "campaign"])
CHANNEL_P = np.array([0.45, 0.25, 0.15, 0.15])  # 'campaign' only during the campaign


@dataclass
class Players:
    """Parameters (fixed at install) and state (changing daily) of every installed player."""

    install_day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ptype: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    ptype_after: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # type from the drift day on
    country: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    platform: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    channel: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    activity: np.ndarray = field(default_factory=lambda: np.zeros(0))      # base daily activity prob
    decay_days: np.ndarray = field(default_factory=lambda: np.zeros(0))    # engagement decay constant
    floor: np.ndarray = field(default_factory=lambda: np.zeros(0))         # long-run engagement share
    churn: np.ndarray = field(default_factory=lambda: np.zeros(0))         # base churn hazard
    peak_noise: np.ndarray = field(default_factory=lambda: np.zeros(0))    # player factor on the type's peak
    period_noise: np.ndarray = field(default_factory=lambda: np.zeros(0))  # player factor on the type's period
    price_offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    sessions: np.ndarray = field(default_factory=lambda: np.zeros(0))      # extra sessions per active day
    session_minutes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    level_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # state
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    converted: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # started paying after the update
    stopped: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))    # stopped paying after the update
    since_purchase: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # 0 = never
    level: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.install_day)

    def append(self, other: Players) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def copy(self) -> Players:
        return Players(**{k: getattr(self, k).copy() for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class World:
    """Calendar-level facts: the simulation settings turned into per-day lookups."""

    settings: SimulationSettings

    def day_index(self, day: dt.date) -> int:
        return (day - self.settings.start).days

    def date(self, index: int) -> dt.date:
        return self.settings.start + dt.timedelta(days=int(index))

    def regime(self, t: int) -> int:
        """0 before the content update (drift), 1 from its day on."""
        d = self.settings.drift
        return int(d is not None and t >= self.day_index(d.day))

    def transitions(self, t: int) -> bool:
        """Whether the update's daily transitions (dropout, conversion) run on day t."""
        d = self.settings.drift
        return bool(self.regime(t)) and bool(d.dropout_hazard or d.conversion_hazard)

    def weekend_factor(self, t: int) -> float:
        return 1.15 if self.date(t).weekday() >= 5 else 1.0

    def sale_factor(self, t: int) -> float:
        s = self.settings.sales
        if s is None:
            return 1.0
        first = self.day_index(s.first_day) if s.first_day else s.every_days - 1
        k = t - first
        return s.purchase_boost if k >= 0 and k % s.every_days < s.duration_days else 1.0

    def campaign_factor(self, t: int) -> float:
        c = self.settings.campaign
        return c.install_multiplier if c and 0 <= t - self.day_index(c.start) < c.days else 1.0

    def _per_type(self, mapping: dict[str, float], default: float) -> np.ndarray:
        return np.array([mapping.get(name, default) for name in TYPES], dtype=float)

    def rate_multiplier(self, t: int) -> np.ndarray:
        d = self.settings.drift
        return self._per_type(d.purchase_rate_multiplier, 1.0) if self.regime(t) else np.ones(4)

    def period_multiplier(self, t: int) -> np.ndarray:
        d = self.settings.drift
        return self._per_type(d.period_multiplier, 1.0) if self.regime(t) else np.ones(4)

    def price_shift(self, t: int) -> np.ndarray:
        d = self.settings.drift
        return self._per_type(d.price_shift, 0).astype(int) if self.regime(t) else np.zeros(4, int)

    @property
    def conversion_type(self) -> int:
        d = self.settings.drift
        return TYPES.index(d.conversion_type) if d is not None else 0

    def engagement(self, t: int) -> float:
        return self.settings.drift.engagement_multiplier if self.regime(t) else 1.0


def churn_hazard(p: Players, idx: np.ndarray, t: int) -> np.ndarray:
    """Probability that a player alive yesterday has left for good before playing on day t."""
    age = t - p.install_day[idx]
    return np.minimum(1.0, p.churn[idx] + EARLY_CHURN * np.exp(-age / 3.0))


def activity_prob(p: Players, idx: np.ndarray, t: int, world: World) -> np.ndarray:
    """Probability that a living player plays on day t (always on the install day)."""
    age = t - p.install_day[idx]
    f = p.floor[idx]
    q = p.activity[idx] * (f + (1 - f) * np.exp(-age / p.decay_days[idx]))
    q = np.minimum(1.0, q * world.weekend_factor(t) * world.engagement(t))
    return np.where(age == 0, 1.0, q)


def rhythm(since: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Relative purchase hazard by days since the last purchase (0 = never purchased)."""
    g = np.minimum(since, G_CAP).astype(float)
    width = 0.08 * period + 0.4
    # a player who misses a cycle (a weekly pass, a monthly card) tends to buy at the next one
    bump = sum(w * np.exp(-0.5 * ((g - k * period) / (k * width)) ** 2) for k, w in CYCLE_WEIGHTS)
    kernel = RHYTHM_FLOOR + (1 - RHYTHM_FLOOR) * np.minimum(bump, 1.0)
    return np.where(since == 0, FIRST_PURCHASE_FACTOR, kernel)


def spending_type(p: Players, idx: np.ndarray, t: int, world: World) -> np.ndarray:
    """The type that drives spending on day t: from the drift day on, the type after the update,
    changed by the daily transitions drawn so far (`converted`, `stopped`)."""
    if not world.regime(t):
        return p.ptype[idx]
    after = np.where(p.converted[idx], world.conversion_type, p.ptype_after[idx])
    return np.where(p.stopped[idx], 0, after).astype(np.int8)


def can_convert(p: Players, idx: np.ndarray) -> np.ndarray:
    """Non-payers before and at the update that have not converted since: the daily conversion's
    candidates (a payer who stopped never starts again)."""
    return (p.ptype[idx] == 0) & (p.ptype_after[idx] == 0) & ~p.converted[idx]


def transition_hazards(p: Players, idx: np.ndarray, ptype: np.ndarray, t: int,
                       world: World) -> tuple[np.ndarray, np.ndarray]:
    """Per player on day t, 0 before the update: P(stops paying for good at the start of the day)
    if spending as `ptype` > 0, and P(starts paying as the conversion type) if a candidate
    (`can_convert`, which callers check). Engagement (the player's activity over the typical
    activity of their type, non-payers' for conversion) lowers dropout and raises conversion
    with elasticity `drift.engagement_elasticity`."""
    if not world.transitions(t):
        zero = np.zeros(len(idx))
        return zero, zero
    d = world.settings.drift
    e = d.engagement_elasticity
    stop = np.where(ptype > 0, np.minimum(1.0, d.dropout_hazard * (BASE_ACTIVITY[ptype] / p.activity[idx]) ** e), 0.0)
    convert = np.minimum(1.0, d.conversion_hazard * (p.activity[idx] / BASE_ACTIVITY[0]) ** e)
    return stop, convert


def transition(p: Players, idx: np.ndarray, t: int, world: World, rng: np.random.Generator) -> None:
    """Draw the day's transitions for the living players `idx` (before the day's purchases):
    payers stop first, then candidates convert, as the oracle assumes."""
    ptype = spending_type(p, idx, t, world)
    stop, convert = transition_hazards(p, idx, ptype, t, world)
    draw = rng.random((2, len(idx)))
    p.stopped[idx[draw[0] < stop]] = True
    p.converted[idx[can_convert(p, idx) & (draw[1] < convert)]] = True


def period_of(p: Players, idx: np.ndarray, ptype: np.ndarray, t: int, world: World) -> np.ndarray:
    return np.clip(PERIOD_DAYS[ptype] * p.period_noise[idx], 1.5, 30.0) * world.period_multiplier(t)[ptype]


def purchase_params(p: Players, idx: np.ndarray, t: int, world: World,
                    ptype: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per player on day t: the purchase probability at the rhythm's peak, and the period
    (spending as `ptype`, by default the type that spends on day t)."""
    ptype = spending_type(p, idx, t, world) if ptype is None else ptype
    peak = np.clip(PEAK_PURCHASE_PROB[ptype] * p.peak_noise[idx], 0, 0.9)
    return peak * world.rate_multiplier(t)[ptype] * world.sale_factor(t), period_of(p, idx, ptype, t, world)


def purchase_prob(p: Players, idx: np.ndarray, since: np.ndarray, t: int, world: World) -> np.ndarray:
    """Probability that an active player purchases on day t, given days since the last purchase.

    `since` is passed separately (not read from state) so the oracle can evaluate it for every
    possible value: a (players, states) array gives one column per state.
    """
    base, period = purchase_params(p, idx, t, world)
    if since.ndim == 2:
        base, period = base[:, None], period[:, None]
    return combine(base, rhythm(since, period))


def combine(base: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Purchase probability from the peak probability and the rhythm kernel."""
    return np.minimum(0.95, base * kernel)


def spend_factor(p: Players, idx: np.ndarray, t: int, world: World) -> np.ndarray:
    """Per player on day t, the update's multiplier on each purchase's amount: engagement (the
    player's activity over the typical activity of their type at install) ** `drift.spend_elasticity`
    from the update on, 1 before it. Before the update engagement sets how often a player buys but
    not how much, so no history from before shows this mapping."""
    k = world.settings.drift.spend_elasticity if world.regime(t) else 0.0
    return (p.activity[idx] / BASE_ACTIVITY[p.ptype[idx]]) ** k if k else np.ones(len(idx))


def expected_amount(p: Players, idx: np.ndarray, t: int, world: World, ptype: np.ndarray | None = None) -> np.ndarray:
    """Expected revenue of one purchase day (price mix shifted per player and by drift)."""
    ptype = spending_type(p, idx, t, world) if ptype is None else ptype
    shift = p.price_offset[idx] + world.price_shift(t)[ptype]
    per_purchase = _MIX_MEAN[ptype, np.clip(shift, -_MAX_SHIFT, _MAX_SHIFT) + _MAX_SHIFT]
    return per_purchase * (1 + EXTRA_PURCHASE_PROB[ptype]) * spend_factor(p, idx, t, world)


def draw_amounts(p: Players, idx: np.ndarray, t: int, world: World, rng: np.random.Generator) -> np.ndarray:
    """Amount of one purchase for each player in idx: a price point, times the update's
    `spend_factor` (rounded to cents: the oracle's expectation is off by under half a cent)."""
    ptype = spending_type(p, idx, t, world)
    shift = np.clip(p.price_offset[idx] + world.price_shift(t)[ptype], -_MAX_SHIFT, _MAX_SHIFT)
    cdf = _MIX_CDF[ptype, shift + _MAX_SHIFT]
    k = (rng.random(len(idx))[:, None] > cdf).sum(axis=1)
    price = PRICE_LADDER[np.minimum(k, len(PRICE_LADDER) - 1)]
    factor = spend_factor(p, idx, t, world)
    return price if (factor == 1).all() else np.round(price * factor, 2)


def _shifted_mixes(max_shift: int) -> np.ndarray:
    """PRICE_MIX moved along the ladder by -max..+max points, mass piling up at the ends."""
    out = np.zeros((len(TYPES), 2 * max_shift + 1, len(PRICE_LADDER)))
    n = len(PRICE_LADDER)
    for s in range(-max_shift, max_shift + 1):
        for k in range(n):
            out[:, s + max_shift, min(n - 1, max(0, k + s))] += PRICE_MIX[:, k]
    out[0] = 0.0  # non-payers never buy
    return out


_MAX_SHIFT = 3
_MIXES = _shifted_mixes(_MAX_SHIFT)
_MIX_MEAN = _MIXES @ PRICE_LADDER
_MIX_CDF = np.cumsum(_MIXES, axis=2)


def new_players(n: int, t: int, world: World, rng: np.random.Generator) -> Players:
    """Draw parameters for n players installing on day t."""
    s = world.settings
    in_campaign = world.campaign_factor(t) > 1.0
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_P).astype(np.int8)
    ios_share = np.where(np.isin(country, [0, 1, 6]), 0.55, 0.2)  # US, JP, GB lean iOS
    platform = np.where(rng.random(n) < ios_share, 0, 1).astype(np.int8)  # index into PLATFORMS
    channel = rng.choice(len(CHANNEL_P), n, p=CHANNEL_P).astype(np.int8)
    if in_campaign:
        campaign_share = 1 - 1 / world.campaign_factor(t)
        channel = np.where(rng.random(n) < campaign_share, len(CHANNELS) - 1, channel).astype(np.int8)
    # latent type: the mix, lifted by country/platform and lowered for campaign installs
    lift = COUNTRY_PAYER_LIFT[country] * PLATFORM_PAYER_LIFT[platform]
    if s.campaign is not None:
        lift = np.where(channel == len(CHANNELS) - 1, lift * s.campaign.payer_multiplier, lift)
    shares = np.array([s.player_mix.get(name, 0.0) for name in TYPES[1:]])
    probs = np.clip(shares[None, :] * lift[:, None], 0, None)
    probs = probs / np.maximum(1.0, probs.sum(axis=1, keepdims=True) / 0.9)
    cdf = np.cumsum(probs, axis=1)
    ptype = (1 + (rng.random(n)[:, None] > cdf).sum(axis=1)).astype(np.int8)
    ptype = np.where(ptype > 3, 0, ptype).astype(np.int8)
    lognormal = lambda sigma: rng.lognormal(-sigma**2 / 2, sigma, n)  # noqa: E731  (mean 1)
    activity = np.clip(BASE_ACTIVITY[ptype] * lognormal(0.25), 0.05, 0.98)
    ptype_after = ptype.copy()
    d = s.drift
    if d is not None and d.nonpayer_conversion:
        # the update converts non-payers, the more engaged ones more often
        chance = np.clip(d.nonpayer_conversion * activity / BASE_ACTIVITY[0], 0, 1)
        converts = (ptype == 0) & (rng.random(n) < chance)
        ptype_after[converts] = TYPES.index(d.conversion_type)
    if d is not None and d.payer_dropout:
        # and some payers stop, the less engaged ones more often: a stale model keeps ranking them high
        chance = np.clip(d.payer_dropout * BASE_ACTIVITY[ptype] / activity, 0, 1)
        ptype_after[(ptype > 0) & (rng.random(n) < chance)] = 0
    return Players(
        install_day=np.full(n, t, np.int32), ptype=ptype, country=country, platform=platform, channel=channel,
        activity=activity,
        decay_days=rng.uniform(10, 60, n),
        floor=rng.uniform(0.2, 0.6, n),
        churn=CHURN_HAZARD[ptype] * lognormal(0.5),
        ptype_after=ptype_after,
        peak_noise=lognormal(0.3),
        period_noise=lognormal(0.35),
        price_offset=rng.choice([-1, 0, 1], n, p=[0.25, 0.5, 0.25]).astype(np.int8),
        sessions=np.where(ptype > 0, 1.2, 0.7) * lognormal(0.4),
        session_minutes=np.where(ptype > 0, 16.0, 9.0) * lognormal(0.5),
        level_rate=rng.uniform(0.2, 1.2, n),
        alive=np.ones(n, bool), converted=np.zeros(n, bool), stopped=np.zeros(n, bool), since_purchase=np.zeros(n, np.int32), level=np.ones(n, np.int32),
    )
