"""The oracle: each player's true expectations at a cutoff, from the latent state.

Computed analytically from the same hazards the simulator draws from (`dynamics.py`), never
from the realised future. For a cutoff day t and every installed player:

- `expected_ltv`: expected revenue over [t, t + ltv_days)
- `p_payer`: probability of at least one purchase in that window
- `p_active`: probability of at least one active day in it (1 - churn)
- `p_day_1..N`: probability that the first purchase falls on day d = 1..N (day 1 is t itself)
- `p_day_none`: no purchase within N days

Purchases reset the rhythm, so expected spend needs the distribution of "days since the last
purchase" over the window; it is propagated exactly over the states 0 (never) .. G_CAP. After a
content update, the daily transitions move that mass too: a payer's mass leaks out at the
dropout hazard, and a non-payer's mass waits outside the states (not paying yet) and enters
state 0 at the conversion hazard.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ltv.simulate import dynamics as dyn
from ltv.simulate.dynamics import Players, World


def oracle(p: Players, t: int, world: World, ltv_days: int, purchase_days: int) -> pd.DataFrame:
    """Ground truth for every player installed before day t (living or not)."""
    idx = np.flatnonzero(p.install_day < t)
    n = len(idx)
    out = {
        "player": idx,
        "player_type": np.asarray(dyn.TYPES)[dyn.spending_type(p, idx, t, world)],
        "alive": p.alive[idx].copy(),
        "expected_ltv": np.zeros(n),
        "p_payer": np.zeros(n),
        "p_active": np.zeros(n),
    }
    days = np.zeros((n, purchase_days))
    living = np.flatnonzero(p.alive[idx])
    horizon = max(ltv_days, purchase_days)
    alive_k, act_k = _survival_and_activity(p, idx[living], t, world, horizon)
    never_active = np.cumprod(1 - act_k, axis=1)
    first_active = alive_k * np.c_[np.ones(len(living)), never_active[:, :-1]] * act_k
    out["p_active"][living] = first_active[:, :ltv_days].sum(axis=1)

    # converted non-payers spend too, once the horizon reaches the content update; candidates of
    # the daily conversion may start within the horizon
    updated = world.regime(t + horizon - 1) > 0
    li = idx[living]
    spends = (dyn.spending_type(p, li, t, world) > 0) | (updated & (p.ptype_after[li] > 0))
    waiting = ~spends & dyn.can_convert(p, li) & (updated and world.settings.drift.conversion_hazard > 0)
    # the waiting start at "never purchased": within the horizon they reach states 0..horizon only,
    # so their (many) rows propagate over that many states, not all G_CAP + 1 (the oracle's cost)
    for rows, is_waiting, n_states in ((spends, False, dyn.G_CAP + 1), (waiting, True, horizon + 1)):
        payers = living[rows]
        if len(payers):
            ltv, first_buy = _purchases(p, idx[payers], t, world, horizon, alive_k[rows], act_k[rows],
                                        waiting=is_waiting, n_states=n_states)
            out["expected_ltv"][payers] = ltv[:, :ltv_days].sum(axis=1)
            out["p_payer"][payers] = first_buy[:, :ltv_days].sum(axis=1)
            days[payers] = first_buy[:, :purchase_days]
    frame = pd.DataFrame(out)
    for d in range(purchase_days):
        frame[f"p_day_{d + 1}"] = days[:, d]
    frame["p_day_none"] = np.clip(1 - days.sum(axis=1), 0, 1)
    return frame


def _survival_and_activity(p: Players, idx: np.ndarray, t: int, world: World,
                           horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """P(still playing on day t+k) and P(active on t+k | still playing), k = 0..horizon-1."""
    hazard = np.stack([dyn.churn_hazard(p, idx, t + k) for k in range(horizon)], axis=1)
    activity = np.stack([dyn.activity_prob(p, idx, t + k, world) for k in range(horizon)], axis=1)
    return np.cumprod(1 - hazard, axis=1), activity


def _purchases(p: Players, idx: np.ndarray, t: int, world: World, horizon: int, alive_k: np.ndarray,
               act_k: np.ndarray, *, waiting: bool = False,
               n_states: int = dyn.G_CAP + 1) -> tuple[np.ndarray, np.ndarray]:
    """Expected revenue per day, and P(first purchase on day k), for living players who pay
    (or, if `waiting`, non-payers who may start through the daily conversion), over the days-since-
    purchase states 0 .. n_states - 1 (the last one absorbing)."""
    n = len(idx)
    states = np.arange(n_states)
    grid = np.broadcast_to(states, (n, len(states)))
    dist = np.zeros((n, len(states)))  # P(paying and in state s), not normalised: dropout leaks it
    dist[np.arange(n), np.minimum(p.since_purchase[idx], n_states - 1)] = not waiting
    outside = np.full(n, float(waiting))  # P(not paying yet, may convert)
    path = p.since_purchase[idx].copy()  # the state if nothing is bought (0 for the waiting)
    no_buy_yet = np.full(n, float(not waiting))  # P(paying and nothing bought yet)
    revenue = np.zeros((n, horizon))
    first = np.zeros((n, horizon))
    kernels: dict[int, np.ndarray] = {}  # the rhythm over all states changes only with the regime
    for k in range(horizon):
        day = t + k
        # the waiting spend as the conversion type once converted
        ptype = np.full(n, world.conversion_type) if waiting else dyn.spending_type(p, idx, day, world)
        stop, convert = dyn.transition_hazards(p, idx, ptype, day, world)
        if stop.any():
            dist *= (1 - stop)[:, None]
            no_buy_yet *= 1 - stop
        if waiting:
            moved = outside * convert
            outside -= moved
            dist[:, 0] += moved
            no_buy_yet += moved
        base, period = dyn.purchase_params(p, idx, day, world, ptype)
        regime = world.regime(day)
        if regime not in kernels:
            kernels[regime] = dyn.rhythm(grid, period[:, None])
        buy = act_k[:, k:k + 1] * dyn.combine(base[:, None], kernels[regime])
        spent = dist * buy
        bought = spent.sum(axis=1)
        revenue[:, k] = alive_k[:, k] * bought * dyn.expected_amount(p, idx, day, world, ptype)
        b_path = buy[np.arange(n), np.minimum(path, n_states - 1)]
        first[:, k] = alive_k[:, k] * no_buy_yet * b_path
        no_buy_yet *= 1 - b_path
        path = np.where(path > 0, path + 1, 0)
        kept = dist - spent
        dist = np.empty_like(kept)
        dist[:, 0] = kept[:, 0]
        dist[:, 1] = bought
        dist[:, 2:] = kept[:, 1:-1]
        dist[:, -1] += kept[:, -1]
    return revenue, first


# The features tied to the oracle's latent spend: the simulator draws a player's spend from their
# spending type (purchase rate, rhythm period, price mix) and the days since their last purchase,
# which the logs show only through purchase events. Every feature computed from purchases
# (counts, revenue, gaps, recency, the BTYD fits of them) is tied; activity, levels, sessions,
# install age and player attributes are not (benchmarks/explain.py, tests/test_explain.py).
SPEND_MARKERS = ("purchase", "revenue", "btyd_", "days_to_")


def tied_to_spend(feature: str) -> bool:
    """Whether a feature is computed from purchase events (see SPEND_MARKERS)."""
    return any(marker in feature for marker in SPEND_MARKERS)
