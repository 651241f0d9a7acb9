"""A harder shop, which BTYD does not generate (`simulation.profile: retail`), with its oracle.

Purchase-only logs like the `btyd` profile (same columns, same writer), but the process breaks
BG/NBD's assumptions on purpose (issue 22):

- segments with different purchase rhythms: one-time buyers (`one_time_share`, ~60 %) never
  order again; occasional, regular and heavy buyers order, while alive, at Poisson rates with
  mean gaps of 120, 30 and 10 days (Gamma-distributed around them within a segment);
- time-based churn (a daily hazard per segment), not a dropout coin after each purchase;
- spend that grows with tenure (x (1 + `tenure_spend_growth` x min(age / 365, 1))), lognormal
  spend scales with a long tail of heavy buyers (wider and higher for the heavy segment);
- seasonality: the `btyd` settings' yearly peak multiplies every rate.

Ranges against published retail figures (docs in benchmarks/README.md): the average
e-commerce repeat-customer rate is ~28 % (15-30 % by industry; opensend.com, "Repeat purchase
rate statistics", 2025; 20-40 %, roiadvisers.com), i.e. 60-80 % of first-time buyers never
return; after a second and third order the chance of another rises to 54 %+ (opensend.com,
2026), the heavy, regular segments here; "8 % of customers drive ~41 % of revenue"
(ecommercefastlane.com), the heavy tail.

The oracle is the generating process's own expectation given the latent state (segment,
alive, rate, hazard, spend scale, tenure): E[revenue in [t, t+H)] = Σ_k (1-h)^(k+1) λ s(t+k)
μ g(age + k), with P(an order) and the first-order day from the same survival and Poisson
terms. It is the best any model could do only if the latent state were observable; the model
sees orders, so the achievable ceiling is lower.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ltv.config import GameConfig
from ltv.simulate.btyd import _truth_frame, season, shop_settings
from ltv.simulate.game import EPOCH, US_PER_DAY

SEGMENTS = ("one_time", "occasional", "regular", "heavy")
GAP_DAYS = np.array([np.inf, 120.0, 30.0, 10.0])          # mean days between orders while alive
HAZARD = np.array([1.0, 1 / 300, 1 / 500, 1 / 365])       # daily churn probability
SPEND_MEDIAN = np.array([35.0, 35.0, 40.0, 55.0])        # spend scale at tenure 0 (lognormal median)
SPEND_SIGMA = np.array([0.5, 0.5, 0.6, 0.7])             # the heavy segment's long tail


class RetailShop:
    """Steps the harder shop one day at a time (deterministic per (seed, day)); `truth(t)` is
    the oracle at day index t. Same interface as `ltv.simulate.btyd.BtydShop`."""

    def __init__(self, config: GameConfig):
        s = shop_settings(config)
        self.config, self.settings, self.proc, self.retail = config, s, s.btyd, s.retail
        h = config.horizons
        n = s.days + max(h.ltv_days, h.purchase_days) + 1
        self.season = season(self.proc, [s.start + dt.timedelta(days=k) for k in range(n)])
        self.arrival = np.zeros(0, np.int32)
        self.segment = np.zeros(0, np.int8)
        self.rate = np.zeros(0)
        self.mu = np.zeros(0)
        self.alive = np.zeros(0, bool)
        self.customers = self  # simulate_shop reports customers.arrival / .alive
        self.t = 0
        self._next_order = 0

    def date(self, t: int) -> dt.date:
        return self.settings.start + dt.timedelta(days=t)

    def _shares(self) -> np.ndarray:
        r = self.retail
        return np.array([r.one_time_share, 1 - r.one_time_share - r.regular_share - r.heavy_share, r.regular_share,
                         r.heavy_share])

    def tenure(self, age_days: np.ndarray) -> np.ndarray:
        """Spend multiplier by tenure (days since the first order)."""
        return 1 + self.retail.tenure_spend_growth * np.minimum(np.asarray(age_days, float) / 365.0, 1.0)

    def step(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Orders of day t (player, time_us, revenue, order) and the customers who arrived."""
        t = self.t
        rng = np.random.default_rng([self.settings.seed, t, 104_729])
        k = rng.poisson(self.settings.daily_installs)
        seg = rng.choice(len(SEGMENTS), size=k, p=self._shares()).astype(np.int8)
        first = len(self.arrival)
        new = np.arange(first, first + k)
        with np.errstate(divide="ignore"):
            mean_rate = 1 / GAP_DAYS[seg]
        self.arrival = np.r_[self.arrival, np.full(k, t, np.int32)]
        self.segment = np.r_[self.segment, seg]
        self.rate = np.r_[self.rate, rng.gamma(2.0, mean_rate / 2.0)]  # heterogeneous rhythm within a segment
        self.mu = np.r_[self.mu, SPEND_MEDIAN[seg] * np.exp(SPEND_SIGMA[seg] * rng.standard_normal(k))]
        self.alive = np.r_[self.alive, seg != 0]  # a one-time buyer's first order is their last
        old = np.flatnonzero(self.alive & (self.arrival < t))
        churned = rng.random(len(old)) < HAZARD[self.segment[old]]  # churn at the day's start
        self.alive[old[churned]] = False
        old = old[~churned]
        placed = rng.poisson(self.rate[old] * self.season[t])
        buyers = np.r_[new, np.repeat(old, placed)]
        mean = self.mu[buyers] * self.tenure(t - self.arrival[buyers])
        amounts = np.round(rng.gamma(2.0, mean / 2.0), 2)
        day_us = (self.date(t) - EPOCH).days * US_PER_DAY
        at = np.minimum((rng.random(len(buyers)) * US_PER_DAY).astype(np.int64), US_PER_DAY - 1)
        orders = pd.DataFrame({"player": buyers, "time_us": day_us + at, "revenue": amounts,
                               "order": self._next_order + np.arange(len(buyers))}).sort_values("time_us")
        self._next_order += len(buyers)
        self.t += 1
        return orders, new

    def truth(self, t: int) -> pd.DataFrame:
        """The oracle at day index t for customers who arrived before t (module docstring)."""
        h = self.config.horizons
        idx = np.flatnonzero(self.arrival < t)
        alive, lam, haz = self.alive[idx], self.rate[idx], HAZARD[self.segment[idx]]
        horizon = max(h.ltv_days, h.purchase_days)
        k = np.arange(horizon)
        s = self.season[t:t + horizon]
        surv = (1 - haz[:, None]) ** (k[None, :] + 1)                    # alive for day t+k's orders
        spend = self.mu[idx, None] * self.tenure((t - self.arrival[idx])[:, None] + k[None, :])
        daily = surv * lam[:, None] * s[None, :]                         # E[orders on day t+k]
        value = np.where(alive, (daily[:, :h.ltv_days] * spend[:, :h.ltv_days]).sum(axis=1), 0.0)
        cum = np.c_[np.zeros(len(idx)), np.cumsum(lam[:, None] * s[None, :], axis=1)]  # Λ before day t+k
        order_today = 1 - np.exp(-lam[:, None] * s[None, :])
        first_day = surv * np.exp(-cum[:, :-1]) * order_today             # first order on day t+k
        p_order = np.where(alive, first_day[:, :h.ltv_days].sum(axis=1), 0.0)
        first = np.where(alive[:, None], first_day[:, :h.purchase_days], 0.0)
        return _truth_frame(idx, alive, value, value, p_order, first)
