"""Buy-till-you-die models: BG/NBD for purchase counts and Gamma-Gamma for spend per purchase.

- BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way: An Alternative to
  the Pareto/NBD Model", Marketing Science 24(2)): while alive, a customer buys at Poisson rate
  λ ~ Gamma(r, α); after each purchase they drop out with probability p ~ Beta(a, b). Fitted by
  maximum likelihood (with a weak prior on r, a + b: `CONCENTRATION_PRIOR_MEAN`) on each customer's
  (x, t_x, T): repeat purchases, time of the last one and age, all from the first purchase.
  Gives E[purchases in the next t | x, t_x, T] (eq. 10 of the paper, with the hypergeometric
  term Euler-transformed so it stays finite for heavy buyers) and P(alive | x, t_x, T).
- Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value"): the spends of
  a customer are Gamma(p, ν) with ν ~ Gamma(q, γ); E[spend | x purchases averaging m] is the
  posterior mean (γ + m x) p / (p x + q - 1).

Here a "purchase" is a purchase *day* and time is counted in days (features.sql: btyd_*), so
same-day repeat orders are one transaction, as in the papers' weekly/daily CDNOW summaries.

Why an own implementation (measured 2026-11 on this machine, see docs/architecture.md):
pymc-marketing adds 56 packages (+350 MB, pytensor compiling C on first use: 22 s for the
first MAP fit of CDNOW, 8 s to import) and its MAP estimate includes priors; `lifetimes`
(unmaintained since 2020) works with numpy 2.4 / pandas 2.3 but pulls autograd. The two
likelihoods are a few lines of scipy; tests/test_btyd.py checks this fit against `lifetimes`
and the papers' published CDNOW estimates (r=0.243, α=4.414, a=0.793, b=2.426; p=6.25,
q=3.74, γ=15.44), and the expectations against Monte Carlo draws of the process itself.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import optimize, special

# feature columns (features.sql) the models read, and the columns they add
FREQUENCY, RECENCY, AGE = "btyd_frequency", "btyd_recency_days", "days_since_first_purchase"
SPEND = "purchase_day_revenue_mean"
COLUMNS = ("btyd_expected_purchases", "btyd_p_alive", "btyd_expected_spend", "btyd_expected_value")
MIN_CUSTOMERS = 20  # below this a fit is not attempted (the columns stay empty)
_FITS: dict[str, Btyd] = {}  # fits by the content of the rows they were fitted on (see `fit`)
_FITS_KEPT = 256
# Both fits maximise the likelihood times independent exponential priors, of this mean, on the
# shapes that the data can drive to infinity: BG/NBD's r (purchase rates' Gamma) and a + b
# (dropout's Beta), Gamma-Gamma's p (spends' Gamma) and q (spend rates' Gamma). On game data
# everyone's dropout (or spend rate) is nearly the same, or a player's purchases all cost the
# same, and the likelihood keeps rising, ever flatter, as a shape grows: without the prior the
# fit ended wherever rounding stopped it (b = 2054 on one CPU, 296 on another; issue 21). With
# it the maximum is unique and finite; it moves CDNOW's fit (r = 0.24, a + b = 3.2, p = 6.3,
# q = 3.7) by < 1e-4 (tests/test_btyd.py), and on simulated game-like data (a + b = 4,485 drawn)
# it put a + b at 1,400 with E[purchases in 28 days] 0.04 % above the limit a + b -> infinity.
CONCENTRATION_PRIOR_MEAN = 1e4
_LOG_BOUND = 15.0  # log-parameters stay within exp(±15)
_NEWTON_STEPS = 20
_H = 1e-4  # the central differences' step in log-parameters (the Hessian)
# Newton stops once a step moves no log-parameter by more than this: the noise floor of the
# flattest direction (a + b, or q, large) is ~3e-8 (rounding in the sums of ~1e4 customers)
_STEP_TOL = 1e-7


@dataclass(frozen=True)
class BetaGeo:
    """Fitted BG/NBD parameters (time unit: days)."""

    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at T | x repeat purchases, the last at t_x)."""
        x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
        return 1.0 / (1.0 + self._odds_dead(x, t_x, T))

    def _odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds = np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return np.where(x > 0, np.exp(np.minimum(log_odds, 700)), 0.0)

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10).

        The factor ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) is rewritten by Euler's
        transformation as (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), z = t/(α+T+t): equal, and
        free of the huge intermediate values the original form reaches for large x."""
        x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if abs(a - 1) < 1e-9:  # a removable singularity at a = 1: step beside it
            return BetaGeo(r, alpha, a + 1e-6, b).expected_purchases(t, x, t_x, T)
        z = t / (alpha + T + t)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            tail = (1 - z) ** (a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
            head = (a + b + x - 1) / (a - 1) * (1 - tail)
            alive_odds = 1 + self._odds_dead(x, t_x, T)  # 1 / P(alive)
            value = np.maximum(head / alive_odds, 0.0)
        # with a and b large (dropout nearly the same for everyone) the hypergeometric function
        # overflows; p | alive ~ Beta(a, b + x) is then concentrated at its mean, and the
        # expectation is P(alive) (1 - ((α+T)/(α+T+p t))^(r+x)) / p at that mean
        p = a / (a + b + x)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            sharp = (1 - ((alpha + T) / (alpha + T + p * t)) ** (r + x)) / p / alive_odds
        value = np.where(np.isfinite(value), value, sharp)
        return np.where(np.isfinite(value), value, np.nan)  # no value rather than a wrong one

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend parameters."""

    p: float
    q: float
    gamma: float

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[spend per purchase | x purchases with mean m]; the population mean where x = 0."""
        x, m = np.asarray(x, float), np.nan_to_num(np.asarray(m, float))
        p, q, g = self.p, self.q, self.gamma
        return (g + m * x) * p / (p * x + q - 1)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _bgnbd(params: BetaGeo, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
           gradient: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Each customer's BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6) and, if asked,
    its derivatives in (r, alpha, a, b), rows in that order: exact, where finite differences of
    a likelihood this flat are rounding noise. B(a, b+x) / B(a, b) replaces the four log-gammas
    of the paper's A2: equal, and without their cancellation when a and b are in the thousands."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a12 = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
           + special.betaln(a, b + x) - special.betaln(a, b))
    a3 = -(r + x) * np.log(alpha + T)
    bought = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(bought, np.log(a) - np.log(np.where(bought, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
                      -np.inf)
    tail = np.logaddexp(a3, a4)
    if not gradient:
        return a12 + tail, None
    w3, w4 = np.exp(a3 - tail), np.exp(a4 - tail)  # the two terms' shares of their sum
    common = special.digamma(a + b) - special.digamma(a + b + x)
    grad = np.stack([
        special.digamma(r + x) - special.digamma(r) + np.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x),
        r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x)),
        common + w4 / a,
        common + special.digamma(b + x) - special.digamma(b) - w4 / np.where(bought, b + x - 1, 1.0),
    ])
    return a12 + tail, grad


def bgnbd_log_likelihood(params: BetaGeo, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    return _bgnbd(params, *(np.asarray(v, float) for v in (x, t_x, T)))[0]


def _gamma_gamma(params: GammaGamma, x: np.ndarray, m: np.ndarray,
                 gradient: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Each customer's Gamma-Gamma log-likelihood of their mean spend m over x purchases
    (Fader & Hardie 2013, eq. 3, up to a constant that does not depend on the parameters) and,
    if asked, its derivatives in (p, q, gamma)."""
    p, q, g = params.p, params.q, params.gamma
    px = p * x
    ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(g)
          + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(g + m * x))
    if not gradient:
        return ll, None
    shared = special.digamma(px + q) - np.log(g + m * x)
    grad = np.stack([x * (shared - special.digamma(px) + np.log(m) + np.log(x)),
                     shared - special.digamma(q) + np.log(g),
                     q / g - (px + q) / (g + m * x)])
    return ll, grad


def gamma_gamma_log_likelihood(params: GammaGamma, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Each customer's Gamma-Gamma log-likelihood of their mean spend m over x purchases
    (Fader & Hardie 2013, eq. 3, up to a constant that does not depend on the parameters)."""
    return _gamma_gamma(params, np.asarray(x, float), np.asarray(m, float))[0]


def _grouped(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of the columns (sorted, so the order of the input rows does not matter) and
    their counts: daily summaries repeat a lot, and the likelihood of n identical customers is n
    times one."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(float)


def _maximise(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray) -> np.ndarray:
    """The maximiser of a log-posterior per customer, `objective(θ) -> (value, gradient)`,
    over log-parameters θ within ±`_LOG_BOUND`.

    L-BFGS-B with the exact gradient gets near it; Newton steps (Hessian by central differences
    of the exact gradient) then converge to the maximiser itself, so the result does not depend
    on where L-BFGS-B happened to stop, which is what last-bit differences between machines'
    numeric kernels (or summation orders) change. The objective must be strictly concave near
    its maximum: `CONCENTRATION_PRIOR_MEAN` makes it so where the likelihood alone is not."""
    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(theta)
        return (-value, -grad) if np.isfinite(value) and np.all(np.isfinite(grad)) else (1e12, np.zeros_like(theta))

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(start)
    theta = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10}).x
    free = np.abs(theta) < _LOG_BOUND - 1e-6  # Newton moves only what L-BFGS-B left off its bounds
    grad = loss(theta)[1][free]
    for _ in range(_NEWTON_STEPS if free.any() else 0):
        unit = np.eye(len(theta))[free]
        hess = np.array([(loss(theta + _H * e)[1] - loss(theta - _H * e)[1])[free] / (2 * _H) for e in unit])
        hess = (hess + hess.T) / 2
        try:
            np.linalg.cholesky(hess)  # positive definite: near a minimum of the loss
        except np.linalg.LinAlgError:
            break
        step = np.linalg.solve(hess, grad)
        moved = theta.copy()
        moved[free] -= step
        if not np.all(np.isfinite(moved)) or np.max(np.abs(step)) > 1 or np.max(np.abs(moved)) >= _LOG_BOUND:
            break  # not near an inner maximum: keep the point reached
        if np.max(np.abs(step)) < _STEP_TOL:
            return moved
        moved_grad = loss(moved)[1][free]
        if np.max(np.abs(moved_grad)) >= np.max(np.abs(grad)):
            break  # no progress: rounding noise, or not the quadratic basin
        theta, grad = moved, moved_grad
    return theta


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BetaGeo:
    """BG/NBD on customers' (repeat purchases, time of last, age): the maximum of the
    likelihood times the weak prior on r and a + b (`CONCENTRATION_PRIOR_MEAN`), over log-parameters."""
    (ux, ut, uT), w = _grouped(np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float))
    total = w.sum()

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = BetaGeo(*np.exp(theta))
        ll, grad = _bgnbd(params, ux, ut, uT, gradient=True)
        d_theta = (grad @ w) * np.exp(theta)  # d / d log-parameter
        # the prior on r and a + b; d(a + b) / d log a = a
        d_theta -= np.array([params.r, 0.0, params.a, params.b]) / CONCENTRATION_PRIOR_MEAN
        log_prior = -(params.r + params.a + params.b) / CONCENTRATION_PRIOR_MEAN
        return (float(w @ ll) + log_prior) / total, d_theta / total

    mean_T = max(float(np.average(uT, weights=w)), 1.0)
    return BetaGeo(*map(float, np.exp(_maximise(objective, np.log([0.5, mean_T / 4, 1.0, 2.0])))))


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> GammaGamma:
    """Gamma-Gamma on customers with x >= 1 purchases of mean spend m > 0: the maximum of the
    likelihood times the weak prior on p and q (`CONCENTRATION_PRIOR_MEAN`), over (log p, log(q - 1),
    log gamma): E[spend] needs q > 1."""
    x, m = np.asarray(x, float), np.asarray(m, float)
    keep = (x >= 1) & (m > 0) & np.isfinite(m)
    (ux, um), w = _grouped(x[keep], m[keep])
    total = w.sum()

    def params(theta: np.ndarray) -> GammaGamma:
        return GammaGamma(float(np.exp(theta[0])), float(1 + np.exp(theta[1])), float(np.exp(theta[2])))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        fitted = params(theta)
        ll, grad = _gamma_gamma(fitted, ux, um, gradient=True)
        d_theta = (grad @ w) * np.array([fitted.p, fitted.q - 1, fitted.gamma])
        d_theta -= np.array([fitted.p, fitted.q - 1, 0.0]) / CONCENTRATION_PRIOR_MEAN  # the prior on p and q
        return (float(w @ ll) - (fitted.p + fitted.q) / CONCENTRATION_PRIOR_MEAN) / total, d_theta / total

    mean = float(np.average(um, weights=w))
    return params(_maximise(objective, np.log([2.0, 2.0, 2.0 * mean])))


# ----------------------------------------------------------------------------------------------
# on feature frames


@dataclass(frozen=True)
class Btyd:
    """BG/NBD + Gamma-Gamma fitted on one cutoff's feature rows (history before the cutoff)."""

    counts: BetaGeo
    spend: GammaGamma
    customers: int

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts.to_json(), "spend": self.spend.to_json(), "customers": self.customers}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Btyd:
        return cls(BetaGeo(**payload["counts"]), GammaGamma(**payload["spend"]), int(payload["customers"]))


def _summary(features: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """(buyer mask, x, t_x, T, mean spend) of feature rows; x counts repeat purchase days."""
    x = pd.to_numeric(features[FREQUENCY], errors="coerce").to_numpy(float)
    t_x = pd.to_numeric(features[RECENCY], errors="coerce").to_numpy(float)
    T = pd.to_numeric(features[AGE], errors="coerce").to_numpy(float)
    m = pd.to_numeric(features[SPEND], errors="coerce").to_numpy(float)
    buyer = np.isfinite(x) & (x >= 0) & np.isfinite(T) & np.isfinite(t_x)
    return buyer, x, t_x, T, m


def fit(features: pd.DataFrame) -> Btyd | None:
    """Fit both models on the buyers among feature rows of one cutoff (None if too few). The
    same rows give the same fit, so fits are remembered by the rows' content: an evaluation
    scores the BTYD baseline for the challenger, the champion and the drift table on the
    same test cutoffs."""
    buyer, x, t_x, T, m = _summary(features)
    if buyer.sum() < MIN_CUSTOMERS or (x[buyer] > 0).sum() < 2:
        return None
    columns = (x[buyer], t_x[buyer], T[buyer], m[buyer])
    key = hashlib.sha256(b"".join(np.ascontiguousarray(c).tobytes() for c in columns)).hexdigest()
    if key not in _FITS:
        counts = fit_bgnbd(x[buyer], t_x[buyer], T[buyer])
        spend = fit_gamma_gamma(x[buyer] + 1, m[buyer])  # every purchase day counts for spend
        if len(_FITS) >= _FITS_KEPT:
            _FITS.pop(next(iter(_FITS)))
        _FITS[key] = Btyd(counts, spend, int(buyer.sum()))
    return _FITS[key]


def predict(model: Btyd | None, features: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """The BTYD columns for feature rows: E[purchase days in the horizon], P(alive), E[spend per
    purchase day], and their product, E[revenue in the horizon]. Empty (NaN) for players who
    never bought (BTYD models repeat buying) or when no model could be fitted."""
    out = pd.DataFrame(np.nan, index=features.index, columns=list(COLUMNS))
    if model is None:
        return out
    buyer, x, t_x, T, m = _summary(features)
    if not buyer.any():
        return out
    purchases = model.counts.expected_purchases(horizon_days, x[buyer], t_x[buyer], T[buyer])
    spend = model.spend.expected_spend(x[buyer] + 1, m[buyer])
    out.loc[buyer, "btyd_expected_purchases"] = purchases
    out.loc[buyer, "btyd_p_alive"] = model.counts.p_alive(x[buyer], t_x[buyer], T[buyer])
    out.loc[buyer, "btyd_expected_spend"] = spend
    out.loc[buyer, "btyd_expected_value"] = purchases * spend
    return out


def growth(model: Btyd | None, features: pd.DataFrame, short_days: int, long_days: int) -> np.ndarray:
    """Each player's growth of expected value from `short_days` to `long_days`: the ratio of
    BG/NBD's conditional expectations E[purchases in long | x, t_x, T] / E[purchases in short |
    x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10; E[spend per purchase] cancels). It extends a
    prediction trained at the short horizon to the long one per player: a steady buyer's expected
    purchases saturate as dropout accumulates, a rare buyer's keep growing, a lapsed one's stay
    near zero in both. Players who never bought get the ratio of a newly acquired customer
    (x = t_x = T = 0), fixed by the model, not by the other rows; without a fit the ratio is
    linear (long / short)."""
    linear = np.full(len(features), long_days / short_days)
    if model is None or not available(features):
        return linear
    buyer, x, t_x, T, _ = _summary(features)
    zero = np.zeros(1)
    fresh = model.counts.expected_purchases(long_days, zero, zero, zero) / model.counts.expected_purchases(
        short_days, zero, zero, zero)
    out = np.full(len(features), float(fresh[0]) if np.isfinite(fresh[0]) else long_days / short_days)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = model.counts.expected_purchases(long_days, x[buyer], t_x[buyer], T[buyer]) / \
            model.counts.expected_purchases(short_days, x[buyer], t_x[buyer], T[buyer])
    out[buyer] = np.where(np.isfinite(ratio) & (ratio > 0), ratio, out[buyer])
    return out


def tail_value(model: Btyd, features: pd.DataFrame, short_days: int, long_days: int) -> np.ndarray:
    """Each player's BTYD expected value in the days after `short_days` up to `long_days`:
    E[value in long] - E[value in short] (NaN where BTYD has no value for the player)."""
    return (predict(model, features, long_days)["btyd_expected_value"]
            - predict(model, features, short_days)["btyd_expected_value"]).to_numpy(float)


def extend(model: Btyd | None, features: pd.DataFrame, short_value: np.ndarray, short_days: int,
           long_days: int) -> np.ndarray:
    """Each player's value over `long_days` from a prediction over `short_days`: the prediction
    (trained and tested at that horizon, it holds what the features say beyond BTYD) plus BTYD's
    conditional expectation of the value in the days after it, E[value in long] - E[value in short]
    (BG/NBD + Gamma-Gamma given x, t_x, T, m). Players without BTYD values (never bought, no fit)
    grow by `growth`, the same expectation's ratio for a new customer (or linearly)."""
    short_value = np.asarray(short_value, float)
    out = short_value * growth(model, features, short_days, long_days)
    if model is None or not available(features):
        return out
    after = tail_value(model, features, short_days, long_days)
    known = np.isfinite(after)
    out[known] = short_value[known] + np.maximum(after[known], 0.0)
    return out


def fit_per_cutoff(features: pd.DataFrame) -> dict[str, Btyd | None]:
    """One fit per cutoff, each on that cutoff's rows only (their history ends at the cutoff)."""
    return {str(c): fit(rows) for c, rows in features.groupby("cutoff", sort=True)}


def with_features(features: pd.DataFrame, horizon_days: int, model: Btyd | None = None) -> pd.DataFrame:
    """Feature rows with the BTYD columns added: from `model` if given, else from a fit at each
    cutoff on that cutoff's rows (what training does: no fit sees history after its cutoff)."""
    if model is not None:
        return pd.concat([features, predict(model, features, horizon_days)], axis=1)
    fits = fit_per_cutoff(features)
    parts = [predict(fits[str(c)], rows, horizon_days) for c, rows in features.groupby("cutoff", sort=True)]
    return pd.concat([features, pd.concat(parts).reindex(features.index)], axis=1)


def available(features: pd.DataFrame) -> bool:
    """True when the frame carries the history summary BTYD needs (features.sql's btyd_*)."""
    return all(c in features for c in (FREQUENCY, RECENCY, AGE, SPEND))
