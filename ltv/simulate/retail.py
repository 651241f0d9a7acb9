"""A harder shop, which BTYD does not generate (`simulation.profile: retail`), with its oracle.

Purchase-only logs like the `btyd` profile (same columns, same writer), but the process breaks
BG/NBD's assumptions on purpose (issue 22):

- segments with different purchase rhythms: one-time buyers (`one_time_share`, ~60 %) never
  order again; occasional, regular and heavy buyers order, while alive, with mean gaps of 120,
  30 and 10 days (the rate Gamma-distributed around them within a segment);
- regular gaps, not Poisson ones (BTYD's memoryless orders): a buyer's gaps between orders are
  Erlang-k (`occasional_shape`, `regular_shape`, `heavy_shape`; default 2, 4, 4), the
  regularity of Platzer & Reutterer (2016), "Ticking away the moments: timing regularity helps
  to better predict customer activity" (Marketing Science 35(5); the Pareto/GGG and
  (M)BG/CNBD-k models, R package BTYDplus): a regular buyer whose usual gap has long passed is
  likely gone, one mid-gap is not. Published: on BTYDplus's online-grocery data the MBG/CNBD-k
  fit estimates k = 2 and the Wheat-Morrison estimator detects Erlang-2 for the whole cohort,
  with stronger regularity among its customers with 10+ orders (BTYDplus vignette and demos);
  hence k = 2 for the occasional segment, 4 for the frequent ones. An Erlang-k renewal process
  is a Poisson process of phases at k times the order rate where every k-th phase is an
  order, so the mean gap is unchanged (1/λ) and its coefficient of variation is 1/sqrt(k);
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
alive, rate, hazard, spend scale, tenure, and the phase j = phases since the last order, 0..k-1):
E[revenue in [t, t+H)] = Σ_d (1-h)^(d+1) E[orders on day t+d] μ g(age + d). With Λ(d) = λ Σ_{i<d}
s(t+i) and M(d) ~ Poisson(k Λ(d)) phases, orders before day t+d number ⌊(j + M(d)) / k⌋, whose
mean is Λ(d) + (j - E[(j + M(d)) mod k]) / k; the phase mod k has a closed form by the discrete
Fourier transform (`phase_terms`), so no day-by-day propagation is needed. The first order
falls on day t+d with probability (1-h)^(d+1) (P(M(d) < k - j) - P(M(d+1) < k - j)). It is the
best any model could do only if the latent state were observable; the model sees orders, so
the achievable ceiling is lower.

Measured (benchmarks/README.md, issue 22): at a 273-day horizon the phase barely moves the
ranking (the oracle with every phase 0 ranks 0.9997 normalized Gini of itself), and a LightGBM
fitted to this oracle reaches only 1.00-1.01x BTYD's Gini (1.03-1.05x its top-10 % capture).
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


def phase_terms(k: int, j: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[(j + M) mod k] and P(j + M < k) for M ~ Poisson(mu), j (n,) the phases now, mu (n, d).
    The first by the DFT: E[w^(m(j+M))] = w^(mj) exp(mu (w^m - 1)) with w = exp(2πi/k), so
    E[(j+M) mod k] = Σ_m c_m w^(mj) exp(mu (w^m - 1)), c_m = (1/k) Σ_r r w^(-mr)."""
    m = np.arange(k)
    w = np.exp(2j * np.pi * m / k)
    c = (m[None, :] * w[:, None] ** -m[None, :]).sum(axis=1) / k  # c_m (m rows, r summed)
    mod = np.zeros(mu.shape)
    for i in range(1, k):  # c_0 w^0 exp(0) = (k-1)/2 is the m = 0 term
        mod += (c[i] * w[i] ** j[:, None] * np.exp(mu * (w[i] - 1))).real
    mod += (k - 1) / 2
    quiet, term = np.zeros(mu.shape), np.exp(-mu)
    for n in range(k):  # P(M = n) summed over n < k - j
        quiet += np.where(n < k - j[:, None], term, 0.0)
        term = term * mu / (n + 1)
    return mod, quiet


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
        self.shape = np.zeros(0, np.int64)  # Erlang k of each customer's gaps (their segment's)
        self.phase = np.zeros(0, np.int64)  # phases since the last order, 0..k-1 (module docstring)
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

    def shapes(self) -> np.ndarray:
        """Erlang shape k per segment (the one-time segment never reorders: 1)."""
        r = self.retail
        return np.array([1, r.occasional_shape, r.regular_shape, r.heavy_shape])

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
        self.shape = np.r_[self.shape, self.shapes()[seg]]
        self.phase = np.r_[self.phase, np.zeros(k, np.int64)]  # the first order starts the first gap
        self.rate = np.r_[self.rate, rng.gamma(2.0, mean_rate / 2.0)]  # heterogeneous rhythm within a segment
        self.mu = np.r_[self.mu, SPEND_MEDIAN[seg] * np.exp(SPEND_SIGMA[seg] * rng.standard_normal(k))]
        self.alive = np.r_[self.alive, seg != 0]  # a one-time buyer's first order is their last
        old = np.flatnonzero(self.alive & (self.arrival < t))
        churned = rng.random(len(old)) < HAZARD[self.segment[old]]  # churn at the day's start
        self.alive[old[churned]] = False
        old = old[~churned]
        shape = self.shape[old]
        phases = self.phase[old] + rng.poisson(shape * self.rate[old] * self.season[t])  # every k-th is an order
        placed = phases // shape
        self.phase[old] = phases % shape
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
        alive = self.alive[idx]
        horizon = max(h.ltv_days, h.purchase_days)
        days = np.arange(horizon)
        before = np.r_[0.0, np.cumsum(self.season[t:t + horizon])]  # season summed before day t+d, d = 0..horizon
        value, p_order = np.zeros(len(idx)), np.zeros(len(idx))
        first = np.zeros((len(idx), h.purchase_days))
        shape = self.shape[idx]
        for k in np.unique(shape[alive]):  # the dead expect nothing; one shape's phases at a time
            rows = np.flatnonzero(alive & (shape == k))
            c, j = idx[rows], self.phase[idx[rows]]
            surv = (1 - HAZARD[self.segment[c]])[:, None] ** (days[None, :] + 1)  # alive for day t+d's orders
            cum = self.rate[c, None] * before[None, :]                          # Λ(d): expected orders before t+d
            mod, quiet = phase_terms(int(k), j, k * cum)
            orders = np.diff(cum + (j[:, None] - mod) / k, axis=1)              # E[orders on day t+d], if alive
            spend = self.mu[c, None] * self.tenure((t - self.arrival[c])[:, None] + days[None, :])
            value[rows] = (surv * orders * spend)[:, :h.ltv_days].sum(axis=1)
            first_day = surv * -np.diff(quiet, axis=1)                          # first order on day t+d
            p_order[rows] = first_day[:, :h.ltv_days].sum(axis=1)
            first[rows] = first_day[:, :h.purchase_days]
        return _truth_frame(idx, alive, value, value, p_order, first)
