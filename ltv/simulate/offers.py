"""Offers in the simulator, with a known true effect: applied on top of the day's purchase
probabilities, never changing the game's own dynamics (`dynamics.py`) or its logs.

From the latent state at day t (a `Simulator`), `outlook` gives each player's probability of a
purchase on each day of a horizon, exactly as the oracle computes it (`truth._purchases`), the
probability of being there at all (alive and active), the expected revenue of a purchase day and
the player's **readiness**: how close the day is to the peak of the player's purchase rhythm
(purchase probability / the probability at the rhythm's peak, 0..1).

An offer on day j (`OfferEffect`):
- raises that day's purchase probability by `lift x readiness_j x (there_j - buy_j)`: it
  converts part of the headroom, the more the closer the player is to buying anyway;
- pulls `pull_forward` of that gain from the next `window_days` days (cannibalisation: part of
  the extra purchase is one the player would have made a little later), spread over them in
  proportion to their purchase probability.

So timing matters: an offer at a rhythm peak gains most and cannibalises least (the days after a
purchase are the rhythm's trough), an offer just before a peak mostly moves that purchase
forward. Every figure is known exactly: `true_effect` is the oracle of a policy's uplift, and
`draw` realises outcomes whose expectation it is (days drawn independently given the state at t:
the oracle's marginal purchase probabilities, not the day-by-day chain of `game.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltv.simulate import dynamics as dyn
from ltv.simulate.game import Simulator
from ltv.simulate.truth import _purchases, _survival_and_activity


@dataclass(frozen=True)
class OfferEffect:
    lift: float = 0.5           # share of the headroom an offer converts at full readiness
    pull_forward: float = 0.5   # share of the gain taken from the following days
    window_days: int = 7        # how far ahead the pulled purchases come from


@dataclass(frozen=True)
class Outlook:
    """Per player (simulator index) and day k = 0..horizon-1 from day t, without offers."""

    t: int
    player: np.ndarray
    buy: np.ndarray        # P(purchase on day k)
    there: np.ndarray      # P(alive and active on day k)
    readiness: np.ndarray  # buy / (there x the peak purchase probability), 0..1
    amount: np.ndarray     # expected revenue of a purchase day

    def rows(self, players: np.ndarray) -> np.ndarray:
        """Row of each simulator index in `players` (every one must be in the outlook)."""
        order = np.argsort(self.player)
        return order[np.searchsorted(self.player, players, sorter=order)]


def outlook(sim: Simulator, horizon: int) -> Outlook:
    """Every installed player's outlook from the simulator's current day `sim.t` (the day the
    next `step` would simulate); dead players and non-payers never buy."""
    p, t, world = sim.players, sim.t, sim.world
    idx = np.flatnonzero(p.install_day < t)
    n = len(idx)
    buy, there, ready, amount = (np.zeros((n, horizon)) for _ in range(4))
    living = np.flatnonzero(p.alive[idx])
    alive_k, act_k = _survival_and_activity(p, idx[living], t, world, horizon)
    there[living] = alive_k * act_k
    payers = living[(dyn.spending_type(p, idx[living], t, world) > 0)]
    if len(payers):
        sub = np.searchsorted(living, payers)
        pi = idx[payers]
        revenue, _ = _purchases(p, pi, t, world, horizon, alive_k[sub], act_k[sub])
        for k in range(horizon):
            amount[payers, k] = dyn.expected_amount(p, pi, t + k, world)
            peak = np.minimum(0.95, dyn.purchase_params(p, pi, t + k, world)[0])
            buy[payers, k] = revenue[:, k] / np.maximum(amount[payers, k], 1e-12)
            ready[payers, k] = np.clip(buy[payers, k] / np.maximum(there[payers, k] * peak, 1e-12), 0, 1)
    return Outlook(t, idx, buy, there, ready, amount)


def apply(out: Outlook, rows: np.ndarray, days: np.ndarray, effect: OfferEffect) -> np.ndarray:
    """Purchase probabilities with offers to `rows` on `days` (0-based days of the outlook),
    one offer per (row, day); several offers to one row apply in day order."""
    buy = out.buy.copy()
    horizon = buy.shape[1]
    for r, j in sorted(zip(np.asarray(rows, int), np.asarray(days, int)), key=lambda x: x[1]):
        gain = effect.lift * out.readiness[r, j] * max(out.there[r, j] - buy[r, j], 0.0)
        buy[r, j] += gain
        later = slice(j + 1, min(j + 1 + effect.window_days, horizon))
        weights = buy[r, later]
        if weights.sum() > 0:
            take = np.minimum(effect.pull_forward * gain * weights / weights.sum(), weights)
            buy[r, later] -= take
    return buy


def apply_many(out: Outlook, rows: np.ndarray, days: np.ndarray, effect: OfferEffect) -> np.ndarray:
    """`apply` for at most one offer per row, vectorised (the experiments' cooldown >= week)."""
    rows, days = np.asarray(rows, int), np.asarray(days, int)
    if len(np.unique(rows)) != len(rows):
        return apply(out, rows, days, effect)
    buy = out.buy.copy()
    horizon = buy.shape[1]
    gain = effect.lift * out.readiness[rows, days] * np.maximum(out.there[rows, days] - buy[rows, days], 0.0)
    buy[rows, days] += gain
    k = np.arange(horizon)[None, :]
    window = (k > days[:, None]) & (k <= days[:, None] + effect.window_days)
    weights = np.where(window, buy[rows], 0.0)
    total = weights.sum(axis=1, keepdims=True)
    take = np.minimum(effect.pull_forward * gain[:, None] * weights / np.where(total > 0, total, 1), weights)
    buy[rows] -= take
    return buy


def true_effect(out: Outlook, buy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per player: the true change of expected revenue and of P(at least one purchase) over the
    horizon that offers turning `out.buy` into `buy` cause."""
    revenue = ((buy - out.buy) * out.amount).sum(axis=1)
    conversion = np.prod(1 - out.buy, axis=1) - np.prod(1 - buy, axis=1)
    return revenue, conversion


def draw(sim: Simulator, out: Outlook, buy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Realised (revenue, converted) per player over the horizon, days independent, amounts drawn
    from the players' price mixes (two purchases on a day as often as the game has them)."""
    p, world = sim.players, sim.world
    revenue = np.zeros(len(out.player))
    bought = np.zeros(len(out.player), bool)
    for k in range(buy.shape[1]):
        rows = np.flatnonzero(rng.random(len(out.player)) < buy[:, k])
        idx = out.player[rows]
        t = out.t + k
        extra = rng.random(len(rows)) < dyn.EXTRA_PURCHASE_PROB[dyn.spending_type(p, idx, t, world)]
        amount = dyn.draw_amounts(p, idx, t, world, rng) + np.where(extra, dyn.draw_amounts(p, idx, t, world, rng), 0)
        revenue[rows] += amount
        bought[rows] = True
    return revenue, bought.astype(int)


def sim_players(config, ids) -> np.ndarray:
    """Simulator index of each logged player id (the inverse of `game.LogWriter.player_ids`)."""
    import pandas as pd

    ids = pd.Series(ids)
    if config.logs.player_id_type == "string":
        return ids.astype(str).str[1:].astype(np.int64).to_numpy()
    return ids.astype(np.int64).to_numpy() - 100_000_000


def simulated_experiment(spec, pred, pre_revenue: np.ndarray, sim: Simulator, out: Outlook, effect: OfferEffect,
                         rng: np.random.Generator, day=None) -> tuple[dict, dict, dict]:
    """One experiment run end to end on the simulator: assign `pred`'s players (simulator
    indices in `pred["sim_player"]`) by the spec's hash, plan each arm's offers with its policy
    (`ltv.experiments.plan_offers`), apply them, draw the outcomes and analyse them.

    Returns (readout, truth per non-holdout arm {metric: true mean difference vs no offer in
    that arm}, offers per arm)."""
    import pandas as pd

    from ltv import experiments as ex

    day = day or spec.start
    arms = ex.assign_arms(spec, pred["player_id"])
    assigned = pd.DataFrame({"player_id": pred["player_id"], "arm": arms})
    offers = ex.plan_offers(spec, day, pred, assigned)
    rows = out.rows(pred["sim_player"].to_numpy())
    if len(offers):
        where = pd.Series(np.arange(len(pred)), index=pred["player_id"])
        at = where.loc[offers["player_id"]].to_numpy()
        buy = apply_many(out, rows[at], offers["day"].to_numpy(int) - 1, effect)
    else:
        buy = out.buy
    uplift_revenue, uplift_conversion = true_effect(out, buy)
    revenue, converted = draw(sim, out, buy, rng)
    frame = pd.DataFrame({"arm": arms, "revenue": revenue[rows], "converted": converted[rows],
                          "pre_revenue": pre_revenue})
    truth = {a.name: {"revenue_per_player": float(uplift_revenue[rows][arms == a.name].mean()),
                      "conversion": float(uplift_conversion[rows][arms == a.name].mean())}
             for a in spec.arms if a.name != spec.holdout}
    counts = offers["arm"].value_counts().to_dict() if len(offers) else {}
    return ex.analyse(frame, spec), truth, counts
