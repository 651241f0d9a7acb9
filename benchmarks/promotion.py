"""Promotion rule benchmark: how often the paired bootstrap promotes, over seeded holdouts.

    .venv/bin/python benchmarks/promotion.py [--seeds 100] [--players 3000] [--game galaxy-raiders]

What is measured (synthetic predictions, not AutoGluon retrains: a retrain costs minutes, the
rule's behaviour depends only on the two models' predictions on the holdout):

- **no change** (the control game): the champion and the challenger score the same world with
  the same skill (each is the players' true expected value blurred by an independent lognormal
  noise of the same size), on a fresh holdout per seed. Target: the challenger is promoted in
  <= 5 % of seeds (the rule's two-sided 95 % interval should promote ~2.5 %).
- **after the update**: the world changes at the update (a share of payers stop, engaged
  non-payers start, sized so that the stale model's minmax on the new world is ~10 % below the
  fresh one's, as in Kakao Games' ODIN drift experiment: 0.688 stale vs 0.760 retrained); the
  champion scores the old world, each retrain's challenger the new one with the same noise, on
  that retrain's own holdout (the next weeks' players). Target: promoted within 2 retrains in
  >= 90 % of seeds.

The rule is the game's `promotion:` section (primary metric, guards, bootstrap settings), applied
by `ltv.promotion.decide`, the function the loop and the pipeline's evaluate step call.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from simulator import machine, print_machine, verdict

from ltv import config as cfg
from ltv import metrics
from ltv.promotion import decide

NOISE = 0.6           # lognormal sigma of each model's error on the expected value
DROPOUT = 0.45        # share of payers who stop at the update (less engaged ones more often)
CONVERSION = 0.08     # share of non-payers who start (more engaged ones more often)
CUTOFFS = ("2025-09-01", "2025-09-08")


def world(players: int, rng: np.random.Generator, updated: bool) -> pd.DataFrame:
    """Players' expected value before the update and, if `updated`, after it (else the same)."""
    engagement = rng.lognormal(0, 0.5, players)
    payer_before = rng.random(players) < 0.12 * np.clip(engagement, 0.2, 3)
    value = rng.lognormal(2.5, 1.0, players)
    payer_after = payer_before.copy()
    if updated:
        payer_after &= ~(rng.random(players) < np.clip(DROPOUT / engagement, 0, 1))
        payer_after |= rng.random(players) < np.clip(CONVERSION * engagement, 0, 1)
    return pd.DataFrame({"player_id": [f"p{i}" for i in range(players)], "before": payer_before * value * 0.6,
                         "after": payer_after * value * 0.6, "p_before": payer_before * 0.6,
                         "p_after": payer_after * 0.6})


def holdout(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """What happened at each cutoff: each payer of the (new) world pays with probability 0.6."""
    rows = []
    for c in CUTOFFS:
        pays = (w["p_after"].to_numpy() > 0) & (rng.random(len(w)) < 0.6)
        ltv = np.where(pays, w["after"].to_numpy() / 0.6 * rng.lognormal(-0.125, 0.5, len(w)), 0.0)
        day = np.where(pays, rng.integers(1, 17, len(w)), 0)
        rows.append(w.assign(cutoff=c, ltv=ltv, payer=pays.astype(int), next_purchase_day=day, churned=0))
    return pd.concat(rows, ignore_index=True)


def model(rows: pd.DataFrame, knows: str, rng: np.random.Generator) -> pd.DataFrame:
    """A model that learnt the `knows` world ('before' or 'after'), with NOISE on its expected value."""
    blur = rng.lognormal(0, NOISE, len(rows))
    expected = rows[knows].to_numpy() * blur + 1e-3 * rng.random(len(rows))
    p = np.clip(rows[f"p_{knows}"].to_numpy() * blur, 0, 1)
    day = rows["next_purchase_day"].to_numpy()
    offer = np.clip(np.where(day > 0, day, 8) + rng.integers(-3, 4, len(rows)), 1, 16)
    return rows.assign(ltv_expected=expected, ltv_pred=np.where(p >= 0.3, expected / np.maximum(p, 1e-9), 0.0),
                       p_payer=p, payer_pred=(p >= 0.3).astype(int), offer_day=offer, likely_day=offer,
                       p_churn=0.0, churn_pred=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--players", type=int, default=3000)
    parser.add_argument("--game", default="galaxy-raiders")
    args = parser.parse_args()
    rule = cfg.load(args.game).promotion
    print_machine(machine())
    print(f"rule: {args.game} promotion {rule.model_dump()}")
    print(f"seeds 0..{args.seeds - 1}, {args.players} players x {len(CUTOFFS)} cutoffs per holdout, noise {NOISE}")
    started = time.time()
    null, update, minmax = [], [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        same = holdout(world(args.players, rng, updated=False), rng)
        null.append(decide(model(same, "before", rng), model(same, "before", rng), rule).promote)
        w = world(args.players, rng, updated=True)
        promoted = False
        for retrain in range(2):
            rows = holdout(w, rng)
            stale, fresh = model(rows, "before", rng), model(rows, "after", rng)
            if retrain == 0:
                minmax.append((metrics.minmax_score(rows.ltv, stale.ltv_pred), metrics.minmax_score(rows.ltv, fresh.ltv_pred),
                               metrics.normalized_gini(rows.ltv, stale.ltv_expected),
                               metrics.normalized_gini(rows.ltv, fresh.ltv_expected)))
            promoted = promoted or decide(fresh, stale, rule).promote
        update.append(promoted)
        if (seed + 1) % 10 == 0:  # a running tally, so a cut-short run still reports what it measured
            print(f"  seeds 0..{seed}: no change promoted {sum(null)}, after the update promoted within 2 "
                  f"{sum(update)}", flush=True)
    stale_mm, fresh_mm, stale_gini, fresh_gini = np.mean(minmax, axis=0)
    null_rate, update_rate = float(np.mean(null)), float(np.mean(update))
    print(f"\nupdate size: minmax stale {stale_mm:.3f} vs fresh {fresh_mm:.3f} (fresh / stale {fresh_mm / stale_mm:.3f}; "
          f"Kakao's ODIN: 0.688 vs 0.760, 1.105); normalized Gini stale {stale_gini:.3f} vs fresh {fresh_gini:.3f}")
    print("| case | promoted | target | |\n|---|---:|---:|---|")
    print(f"| no change: equal-skill challenger | {sum(null)} / {len(null)} = {null_rate:.1%} | <= 5 % | "
          f"{verdict(null_rate <= 0.05)} |")
    print(f"| after the update: within 2 retrains | {sum(update)} / {len(update)} = {update_rate:.1%} | >= 90 % | "
          f"{verdict(update_rate >= 0.90)} |")
    print(f"\n{3 * args.seeds} decisions in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
