"""Offers in the simulator: the outlook agrees with the oracle, the true effect is the expectation
of the drawn outcomes, cannibalisation takes back part of the gain, and timing matters."""
from __future__ import annotations

import numpy as np
import pytest

from ltv.simulate import Simulator, oracle
from ltv.simulate import offers as of


@pytest.fixture(scope="module")
def state(request):
    from conftest import make_config

    config = make_config(simulation={"daily_installs": 80, "days": 120})
    sim = Simulator(config)
    for _ in range(100):
        sim.step()
    return sim


def test_the_outlook_is_the_oracle(state):
    h = 28
    out = of.outlook(state, h)
    truth = oracle(state.players, state.t, state.world, h, 16)
    assert (truth["player"].to_numpy() == out.player).all()
    assert np.allclose((out.buy * out.amount).sum(axis=1), truth["expected_ltv"], rtol=1e-9, atol=1e-9)
    assert (out.buy <= out.there + 1e-12).all() and (0 <= out.readiness).all() and (out.readiness <= 1).all()


def test_the_true_effect_is_the_expectation_of_the_draws(state):
    out = of.outlook(state, 14)
    payers = np.flatnonzero(out.buy.sum(axis=1) > 0.05)
    days = out.readiness[payers, :7].argmax(axis=1)
    with_offers = of.apply_many(out, payers, days, of.OfferEffect())
    revenue, conversion = of.true_effect(out, with_offers)
    assert revenue.sum() > 0 and conversion.sum() > 0
    rng = np.random.default_rng(0)
    reps = 300
    diffs = [(of.draw(state, out, with_offers, rng)[0] - of.draw(state, out, out.buy, rng)[0])[payers].sum()
             for _ in range(reps)]
    conv = [(of.draw(state, out, with_offers, rng)[1] - of.draw(state, out, out.buy, rng)[1])[payers].sum()
            for _ in range(reps)]
    for draws, truth in ((diffs, revenue.sum()), (conv, conversion.sum())):
        se = np.std(draws, ddof=1) / np.sqrt(reps)
        assert abs(np.mean(draws) - truth) < 4 * se


def test_vectorised_and_sequential_offers_agree(state):
    out = of.outlook(state, 14)
    rows = np.arange(0, len(out.player), 3)
    days = rows % 7
    assert np.allclose(of.apply(out, rows, days, of.OfferEffect()), of.apply_many(out, rows, days, of.OfferEffect()))


def test_cannibalisation_takes_back_part_of_the_gain_and_no_lift_no_effect(state):
    out = of.outlook(state, 14)
    rows = np.flatnonzero(out.buy.sum(axis=1) > 0.05)
    days = np.zeros(len(rows), int) + 2
    full = of.apply_many(out, rows, days, of.OfferEffect(pull_forward=0.0))
    half = of.apply_many(out, rows, days, of.OfferEffect(pull_forward=0.5))
    gain = (full - out.buy).sum(axis=1)[rows]
    kept = (half - out.buy).sum(axis=1)[rows]
    assert (kept >= 0.5 * gain - 1e-12).all() and kept.sum() < 0.9 * gain.sum()
    assert (half >= 0).all()
    none = of.apply_many(out, rows, days, of.OfferEffect(lift=0.0))
    assert np.array_equal(none, out.buy)


def test_timing_matters(state):
    """The same players, one offer each in the first week: on their day of highest readiness the
    true uplift is larger than on a random day, and that larger than on their least ready day."""
    out = of.outlook(state, 14)
    rows = np.flatnonzero(out.buy.sum(axis=1) > 0.05)
    best = out.readiness[rows, :7].argmax(axis=1)
    random = np.random.default_rng(1).integers(0, 7, len(rows))
    worst = out.readiness[rows, :7].argmin(axis=1)
    at = {name: of.true_effect(out, of.apply_many(out, rows, days, of.OfferEffect()))[0].sum()
          for name, days in (("best", best), ("random", random), ("worst", worst))}
    assert at["best"] > 1.2 * at["random"] > 1.2 * at["worst"] > 0
