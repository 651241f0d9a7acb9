"""Model quality benchmark: the trained model next to the oracle and the baselines, from one run.

    .venv/bin/python benchmarks/model_quality.py [--fast] [--families-check] [--drift]
                                                 [--installs 500] [--as-of 2025-08-04]
                                                 [--train-weeks N] [--time-limit S]

Simulates the game (its `simulation:` section, daily installs scaled so >= 100k players are
installed before the dataset's date; cached under benchmarks/out/, keyed by the settings, the
game's YAML and the simulator's source), builds player_day and the rolling dataset as of
`--as-of` (`--train-weeks` overrides its training length), trains the model with the game's
configured budget (or `--fast`; `--time-limit` overrides time_limit_s per stage) and measures, in
one run:

- normalized Gini model / oracle (>= 0.95), payer F1 model / oracle (>= 0.90),
  purchase-day MAE model / the stronger per-segment baseline (<= 0.80; King reached 0.875
  against the mode; the segment median is the MAE-optimal constant and usually the stronger),
  exact-day accuracy model - the stronger per-segment baseline (>= +5 points), fit time, and
  batch scoring throughput of a warm `LTVModel.predict` on >= 1M rows in one call, the test
  rows replicated (>= 1M players/min); every metric beside every baseline, with the ratio to
  the strongest baseline on it;
- the next-purchase-day design choice: the model's two-part distribution
  P(purchase within N days) x P(day | purchase) against one plain 17-class multiclass
  (0 = none, 1..16) with the same features and the same total budget (two stages' time
  limit): offer-day MAE, exact-day accuracy of the most likely day, and log-loss of the full
  17-way distribution on the test split;
- `--families-check`: the payer classifier with the default families (GBM, CAT, XGB) against
  the same plus RandomForest / ExtraTrees: ROC-AUC / F1 against predict time and artifact size;
- `--drift`: Kakao's experiment over the configured dataset versions (stale model trained on
  the first, evaluated on every later test period; retrained on the last).

Every target is printed PASS or MISS; the oracle's own ceiling is printed beside each ratio.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simulator as bench  # benchmarks/simulator.py: shared helpers
from simulator import OUT, Measured, print_machine, verdict

from ltv import config as cfg
from ltv import datasets, etl, metrics, sql
from ltv.config import GameConfig, ModelBudget
from ltv.engine import DuckDBEngine
from ltv.evaluate import drift_table, evaluate
from ltv.lake import Lake
from ltv.models import LTVModel, automl, train
from ltv.models.ltv_model import model_features, model_input

TARGET_GINI = 0.95          # normalized Gini, model / oracle
TARGET_PAYER_F1 = 0.90      # payer F1, model / oracle
TARGET_DAY_MAE = 0.80       # purchase-day MAE, model / popularity baseline (King: 0.875)
TARGET_DAY_ACCURACY = 0.05  # exact-day accuracy, model - popularity baseline
TARGET_PLAYERS_PER_MIN = 1_000_000
MIN_PLAYERS = 100_000
SCORE_ROWS = 1_000_000
SCORE_ATTEMPTS = 3          # a scoring call disturbed by another job is repeated (all calls are printed)
DEFAULT_INSTALLS = 500      # the game's 400/day gives ~95k players by the default --as-of
DEFAULT_DAYS = 380          # the game's year + the label horizon of the last configured version
DEFAULT_AS_OF = dt.date(2025, 8, 4)  # ~7 months in; test labels end before the content update
EXTRA_FAMILIES = ["RF", "XT"]
ROOT_DIR = OUT / "model_quality"

# AutoGluon logs "Failed to import torch" at ERROR level on every fit of a torch-free install
logging.getLogger("autogluon.common.utils.resource_utils").setLevel(logging.CRITICAL)


# ----------------------------------------------------------------------------------------------
# data


def game_config(game: str, installs: int, days: int, seed: int | None) -> GameConfig:
    """The game's config with its simulation scaled."""
    base = cfg.load(game)
    update: dict[str, Any] = {"daily_installs": installs, "days": days}
    if seed is not None:
        update["seed"] = seed
    return base.model_copy(update={"simulation": base.simulation.model_copy(update=update)})


def cached_lake(config: GameConfig) -> Lake:
    """The simulated lake for these settings, simulating only if it is not cached yet."""
    s = config.simulation
    settings = {"game": config.game.id, "daily_installs": s.daily_installs, "days": s.days, "seed": s.seed}
    root = bench.cached_simulation(config, ROOT_DIR, f"{config.game.id}-i{s.daily_installs}-d{s.days}-s{s.seed}",
                                   settings)
    return Lake(root / "lake", config.game.id)


def ensure_player_day(engine: DuckDBEngine, config: GameConfig, lake: Lake) -> None:
    """player_day for every simulated day (one range run); derived tables are rebuilt when the SQL changed."""
    marker = lake.base / "etl.json"
    sql_hash = sql.sql_hash(config)
    if marker.exists() and json.loads(marker.read_text())["sql_hash"] != sql_hash:
        for table in ("player_day", "features", "labels", "datasets"):
            shutil.rmtree(lake.base / table, ignore_errors=True)
    s = config.simulation
    days = {str(d) for d in etl.day_range(s.start, s.end)}
    if not days <= set(engine.partitions("player_day")):
        started = time.perf_counter()
        etl.build_player_day(engine, config, s.start, s.end - dt.timedelta(days=1))
        print(f"  player_day for {len(days)} days in {time.perf_counter() - started:.0f} s", flush=True)
    marker.write_text(json.dumps({"sql_hash": sql_hash}))


def dataset(engine: DuckDBEngine, config: GameConfig, lake: Lake,
            spec: datasets.DatasetSpec) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    started = time.perf_counter()
    manifest = datasets.build_dataset(engine, config, lake, spec)
    splits = datasets.load_dataset(lake, spec.name)
    print(f"  dataset {spec.name} ready in {time.perf_counter() - started:.0f} s", flush=True)
    return manifest, splits


def players_installed_before(engine: DuckDBEngine, config: GameConfig, lake: Lake, day: dt.date) -> int:
    t = config.logs.players
    glob = lake.raw(t.table) / "dt=*" / "*.parquet"
    return int(engine.con.execute(
        f"SELECT COUNT(DISTINCT \"{t.columns.player_id}\") FROM read_parquet('{glob}', hive_partitioning = true, "
        f"hive_types = {{'dt': VARCHAR}}) WHERE dt < '{day}'").fetchone()[0])


# ----------------------------------------------------------------------------------------------
# measurements


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def replicate(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`rows` rows made of whole copies of `frame` (then a prefix of one more copy)."""
    copies = math.ceil(rows / len(frame))
    return pd.concat([frame] * copies, ignore_index=True).iloc[:rows]


def scoring_throughput(model: LTVModel, test: pd.DataFrame, rows: int, idle_timeout: float,
                       attempts: int = SCORE_ATTEMPTS) -> dict[str, Any]:
    """Time one `LTVModel.predict` call on `rows` rows (replicated test features), after a warm-up.

    On a shared machine another job can start during the call: such a measurement (other
    processes > 5% of the machine) is repeated, up to `attempts` calls; every call is reported
    and the first undisturbed one (else the fastest) is the result."""
    big = replicate(test.drop(columns=[c for c in datasets.LABELS if c in test]), rows)
    model.predict(big.iloc[:2000])  # first-call costs (lazy model loading) are not throughput
    calls = []
    for _ in range(attempts):
        busy = bench.wait_until_idle(timeout_s=idle_timeout)
        with Measured() as m:
            out = model.predict(big)
        assert len(out) == rows
        calls.append(m.result() | {"busy_before": busy})
        if m.foreign_share <= 0.05:
            break
    best = next((c for c in calls if c["foreign_share"] <= 0.05), min(calls, key=lambda c: c["seconds"]))
    return best | {"rows": rows, "copies": math.ceil(rows / len(test)), "test_rows": len(test),
                   "players_per_min": rows / best["seconds"] * 60, "calls": calls}


def day_distributions(frame: pd.DataFrame, days: int) -> np.ndarray:
    """The 17-way distribution [none, day 1..N] from `p_day_none`, `p_day_1..N` columns."""
    p = frame[[f"p_day_{d}" for d in range(1, days + 1)]].to_numpy(float)
    none = frame["p_day_none"].to_numpy(float) if "p_day_none" in frame else np.clip(1 - p.sum(axis=1), 0, 1)
    return np.c_[none, p]


def log_loss(actual: np.ndarray, proba: np.ndarray, eps: float = 1e-15) -> float:
    """Multiclass log-loss of class indices `actual` under rows of `proba` (renormalised, clipped)."""
    p = proba / proba.sum(axis=1, keepdims=True)
    return float(-np.log(np.clip(p[np.arange(len(actual)), actual], eps, 1)).mean())


def day_scores(actual: np.ndarray, proba: np.ndarray | None, offer: np.ndarray | None = None,
               likely: np.ndarray | None = None, days: int = 16) -> dict[str, float]:
    """MAE of the offer day, accuracy of the most likely day (purchasers), 17-way log-loss (all rows)."""
    if proba is not None:
        offer, likely = metrics.offer_day(proba[:, 1:]), metrics.likely_day(proba[:, 1:])
    m = metrics.purchase_day_metrics(actual, offer, likely, days)
    return {"mae": m["purchase_day_mae"], "accuracy": m["purchase_day_accuracy"], "f1": m["purchase_day_f1"],
            "log_loss": log_loss(actual, proba) if proba is not None else float("nan")}


def paired_se(frame: pd.DataFrame, baseline: pd.DataFrame, days: int) -> float:
    """Standard error of the exact-day accuracy gain (model - baseline) over the same purchasers."""
    actual = frame["next_purchase_day"].to_numpy(int)
    keep = (actual >= 1) & (actual <= days)
    gain = ((frame["likely_day"].to_numpy(int) == actual).astype(float)
            - (baseline["offer_day"].to_numpy(int) == actual).astype(float))[keep]
    return float(gain.std(ddof=1) / np.sqrt(len(gain)))


PURCHASE_DAY_STAGES = 2  # the two-part distribution fits `purchase_soon` and `purchase_day`


def equal_total_budget(budget: ModelBudget, stages: int = PURCHASE_DAY_STAGES) -> ModelBudget:
    """The budget of one model that equals `stages` stages of `budget`: the time limit and any
    explicit boosting-round counts multiplied, so the comparison is not won by spending more."""
    rounds = ("num_boost_round", "n_estimators", "iterations")
    hyper = {family: ([{k: (v * stages if k in rounds else v) for k, v in h.items()} for h in params]
                      if isinstance(params, list) else {k: (v * stages if k in rounds else v) for k, v in params.items()})
             for family, params in (budget.hyperparameters or {}).items()} or None
    return budget.model_copy(update={"time_limit_s": budget.time_limit_s * stages, "hyperparameters": hyper})


def fit_multiclass(splits: dict[str, pd.DataFrame], features: list[str], budget: ModelBudget,
                   work: Path) -> tuple[Any, dict[str, float]]:
    """The alternative: one 17-class model (0 = no purchase within N days, 1..N) on every row,
    with the total budget of the two-part model's two stages."""
    tr, val = (pd.concat([model_input(splits[s], features), splits[s][["next_purchase_day"]]], axis=1)
               for s in ("train", "validation"))
    val = val[val["next_purchase_day"].isin(set(tr["next_purchase_day"].unique()))]
    with Measured() as m:
        predictor = automl.fit(tr, "next_purchase_day", "multiclass", "log_loss", equal_total_budget(budget), work, val)
    return predictor, m.result()


def multiclass_proba(predictor: Any, frame: pd.DataFrame, features: list[str], days: int) -> np.ndarray:
    proba = predictor.predict_proba(model_input(frame, features), as_multiclass=True)
    out = np.zeros((len(frame), days + 1))
    for cls, col in zip(proba.columns, proba.to_numpy().T):
        out[:, int(cls)] = col
    return out


def families_check(splits: dict[str, pd.DataFrame], features: list[str], budget: ModelBudget, work: Path,
                   score_rows: int) -> list[dict[str, Any]]:
    """The payer classifier with the default families and with RF/XT added: quality vs cost."""
    tr, val, test = (pd.concat([model_input(splits[s], features), splits[s][["payer"]]], axis=1)
                     for s in ("train", "validation", "test"))
    big = replicate(test[features], score_rows)
    rows = []
    defaults = list(budget.families)
    for label, families in (("default", defaults), ("+RF/XT", defaults + [f for f in EXTRA_FAMILIES if f not in defaults])):
        b = budget.model_copy(update={"families": families, "hyperparameters": None})
        print(f"  families check: fitting the payer classifier with {'/'.join(families)}", flush=True)
        with Measured() as fit_m:
            predictor = automl.fit(tr, "payer", "binary", "log_loss", b, work / f"fit-{label}", val)
        deployed = automl.deploy(predictor, work / f"deployed-{label}")
        members = predictor._trainer.get_minimum_model_set(predictor.model_best)  # what deployment keeps
        clone = automl.load(deployed)
        threshold = metrics.best_f1_threshold(val["payer"], clone.predict_proba(val[features], as_multiclass=True)[1])
        p = clone.predict_proba(test[features], as_multiclass=True)[1].to_numpy()
        clone.predict_proba(big.iloc[:2000])  # warm-up
        with Measured() as pred_m:
            clone.predict_proba(big, as_multiclass=True)
        _, _, f1 = metrics.precision_recall_f1(test["payer"], p >= threshold)
        rows.append({"families": "/".join(families), "label": label, "fit_s": fit_m.seconds,
                     "model_best": predictor.model_best, "members": sorted(members),
                     "roc_auc": metrics.roc_auc(test["payer"], p), "pr_auc": metrics.pr_auc(test["payer"], p),
                     "f1": f1, "predict_s": pred_m.seconds, "predict_rows": len(big),
                     "predict_foreign_share": pred_m.foreign_share,
                     "artifact_mib": dir_size(deployed) / 2**20,
                     "trained": predictor.model_names()})
    return rows


def drift_experiment(engine: DuckDBEngine, config: GameConfig, lake: Lake, budget: ModelBudget,
                     work: Path) -> pd.DataFrame | None:
    """Stale (first version) vs retrained (last version) over the configured versions whose labels are simulated."""
    end = config.simulation.end
    specs = [s for s in datasets.version_specs(config)
             if s.end + dt.timedelta(days=etl.label_horizon(config)) <= end]
    if len(specs) < 2:
        print(f"  drift: only {len(specs)} configured version(s) have complete labels by {end}; skipped")
        return None
    versions = {s.name: dataset(engine, config, lake, s) for s in specs}
    first, last = specs[0].name, specs[-1].name
    print(f"  drift: training the stale model on {first} and the retrained one on {last}", flush=True)
    stale = train(config, versions[first][1], work / "stale", dataset=versions[first][0], budget=budget)
    fresh = train(config, versions[last][1], work / "retrained", dataset=versions[last][0], budget=budget)
    return drift_table(stale, fresh, {name: v[1] for name, v in versions.items()}, lake)


# ----------------------------------------------------------------------------------------------
# the report


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def print_metrics(ev: dict[str, Any]) -> None:
    cols = {"model": ev["model"], "oracle": ev["oracle"] or {}, **ev["baselines"]}
    names = ("normalized_gini", "spearman", "spearman_payers", "top1_revenue_capture", "top10_revenue_capture",
             "minmax", "total_ratio", "payer_f1", "payer_roc_auc", "payer_pr_auc", "purchase_day_mae",
             "purchase_day_accuracy", "purchase_day_f1", "churn_f1", "churn_roc_auc")
    print(f"\n{'metric (test split)':24s}{'computed on':>22s}" + "".join(f"{c:>15s}" for c in cols)
          + f"{'strongest baseline':>28s}")
    for n in names:
        best = ev["strongest_baseline"].get(n)
        strongest = f"{best['baseline']} x{fmt(best['ratio'])}" if best else "-"
        print(f"{n:24s}{metrics.METRIC_SCORE.get(n, ''):>22.22s}" + "".join(f"{fmt(m.get(n)):>15s}" for m in cols.values())
              + f"{strongest:>28s}")
    print("  spearman is on ltv_pred (exact zeros fit the 90 % zero actuals), spearman_payers on ltv_expected among "
          "actual payers; 'strongest baseline' = the best baseline on that metric and model / it")


def target_line(label: str, value: float, target: str, ok: bool, note: str = "") -> str:
    return f"{label:44s} {value:10.3f}   {target:10s} {verdict(ok)}   {note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="galaxy-raiders")
    parser.add_argument("--installs", type=int, default=DEFAULT_INSTALLS, help="simulated daily installs")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="simulated days")
    parser.add_argument("--seed", type=int, default=None, help="default: the game's simulation.seed")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF,
                        help="date of the rolling dataset (its test labels end the day before)")
    parser.add_argument("--train-weeks", type=int, default=None,
                        help="training weeks of the rolling dataset (default: datasets.rolling_train_weeks)")
    parser.add_argument("--fast", action="store_true", help="automl.fast_budget instead of the configured budget")
    parser.add_argument("--time-limit", type=int, default=None, help="override the budget's time_limit_s per stage")
    parser.add_argument("--score-rows", type=int, default=SCORE_ROWS)
    parser.add_argument("--families-check", action="store_true", help="also compare GBM/CAT/XGB with +RF/XT")
    parser.add_argument("--drift", action="store_true", help="also run the drift experiment over the versions")
    parser.add_argument("--idle-timeout", type=float, default=300,
                        help="seconds to wait for other jobs to leave the machine before timed blocks")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    load_before = os.getloadavg()
    config = game_config(args.game, args.installs, args.days, args.seed)
    budget = automl.fast_budget(config.model) if args.fast else config.model
    budget_name = "fast (automl.fast_budget)" if args.fast else "configured (config.model)"
    if args.time_limit:
        budget = budget.model_copy(update={"time_limit_s": args.time_limit})
        budget_name += f" with time_limit_s {args.time_limit}"
    label = ("fast" if args.fast else "configured") + (f"-{args.train_weeks}w" if args.train_weeks else "") + (
        f"-{args.time_limit}s" if args.time_limit else "")
    m = bench.machine()
    import autogluon.tabular
    import catboost
    import lightgbm
    import xgboost

    s = config.simulation
    print(f"model quality benchmark  {dt.datetime.now():%Y-%m-%d %H:%M}")
    print(f"game    : {args.game}, seed {s.seed}, {s.days} days from {s.start}, {s.daily_installs} installs/day "
          f"(config: {cfg.load(args.game).simulation.daily_installs}); model seed {automl.SEED}")
    print_machine(m)
    print(f"models  : AutoGluon {autogluon.tabular.__version__}, LightGBM {lightgbm.__version__}, "
          f"CatBoost {catboost.__version__}, XGBoost {xgboost.__version__}")
    print(f"budget  : {budget_name}: {budget.model_dump(exclude={'exclude_features'})}")
    print(f"load    : load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} at start", flush=True)

    lake = cached_lake(config)
    engine = DuckDBEngine(lake, config)
    ensure_player_day(engine, config, lake)
    spec = datasets.rolling_spec(config, args.as_of, args.train_weeks)
    if args.train_weeks:  # another definition: another (immutable) dataset version
        spec = datasets.DatasetSpec(f"{spec.name}-{args.train_weeks}w", spec.train, spec.validation, spec.test)
    manifest, splits = dataset(engine, config, lake, spec)
    installed = players_installed_before(engine, config, lake, args.as_of)
    total = json.loads((lake.base / "simulation.json").read_text())["players"]
    print(f"players : {installed:,} installed before {args.as_of} ({total:,} in the whole simulation): "
          f">= {MIN_PLAYERS:,} {verdict(installed >= MIN_PLAYERS)}")
    for split in datasets.SPLITS:
        f = splits[split]
        print(f"  {split:10s} cutoffs {min(manifest['cutoffs'][split])}..{max(manifest['cutoffs'][split])}  "
              f"{len(f):8,} rows  payers {f['payer'].mean():6.2%}  purchase within 16 d "
              f"{(f['next_purchase_day'] > 0).mean():6.2%}", flush=True)

    run = ROOT_DIR / "runs" / f"{dt.datetime.now():%Y%m%dT%H%M%S}-{label}"
    for old in (ROOT_DIR / "runs").glob(f"*-{label}"):  # earlier runs of the same kind
        shutil.rmtree(old, ignore_errors=True)
    run.mkdir(parents=True)
    days = config.horizons.purchase_days

    # --- the model: fit, evaluate
    print("\ntraining the model (5 stages)", flush=True)
    busy_fit = bench.wait_until_idle(timeout_s=args.idle_timeout)
    with Measured() as fit_m:
        model = train(config, splits, run / "model", dataset=manifest, budget=budget,
                      progress=lambda msg: print(f"  {msg}  [{time.perf_counter() - started:.0f} s]", flush=True))
    evaluation = evaluate(model, splits, lake)
    ev = evaluation.metrics
    print_metrics(ev)

    # --- next purchase day: the two-part distribution vs one 17-class model
    print("\nfitting the single 17-class purchase-day model (same features, same budget)", flush=True)
    features = model_features(splits["train"], budget)
    mc, mc_fit = fit_multiclass(splits, features, budget, run / "multiclass")
    test = splits["test"].reset_index(drop=True)
    actual = test["next_purchase_day"].to_numpy(int)
    pop = evaluation.baselines["popularity"]["offer_day"].to_numpy(int)
    med = evaluation.baselines["segment_median"]["offer_day"].to_numpy(int)
    day_rows = {
        "two-part (model)": day_scores(actual, day_distributions(evaluation.frame, days), days=days),
        "17-class multiclass": day_scores(actual, multiclass_proba(mc, test, features, days), days=days),
        "popularity (mode)": day_scores(actual, None, pop, pop, days),
        "segment median": day_scores(actual, None, med, med, days),
    }
    if evaluation.oracle is not None:
        day_rows["oracle"] = day_scores(actual, day_distributions(evaluation.oracle, days), days=days)
    print(f"\n{'next purchase day (test)':24s}{'offer-day MAE':>15s}{'exact-day acc':>15s}{'macro F1':>10s}"
          f"{'17-way logloss':>16s}")
    for name, r in day_rows.items():
        print(f"{name:24s}{fmt(r['mae']):>15s}{fmt(r['accuracy']):>15s}{fmt(r['f1']):>10s}{fmt(r['log_loss'], 4):>16s}")
    print(f"  (MAE / accuracy on the {int((actual > 0).sum()):,} test rows with a purchase within {days} days; "
          f"log-loss on all {len(actual):,} rows; the multiclass model had the two-part model's total budget, "
          f"2 x time_limit_s (and 2 x any boosting rounds): fit {mc_fit['seconds']:.0f} s)")
    automl.remove(run / "multiclass")

    # --- scoring throughput
    print(f"\nscoring {args.score_rows:,} rows in one LTVModel.predict call", flush=True)
    score = scoring_throughput(model, splits["test"], args.score_rows, args.idle_timeout)

    fam = None
    if args.families_check:
        print("\nfamilies check (payer classifier)", flush=True)
        fam = families_check(splits, features, config.model, run / "families", args.score_rows)
        automl.remove(run / "families")
    drift = None
    if args.drift:
        print("\ndrift experiment", flush=True)
        drift = drift_experiment(engine, config, lake, budget, run / "drift")
        automl.remove(run / "drift")

    # --- the report
    # day targets against the stronger per-segment baseline on each metric: the segment median is
    # the MAE-optimal constant, the mode (King's popularity) the accuracy-optimal one
    mo, orc = ev["model"], ev["oracle"] or {}
    mae_base = ev["strongest_baseline"]["purchase_day_mae"]["baseline"]
    acc_base = ev["strongest_baseline"]["purchase_day_accuracy"]["baseline"]
    mae_b, acc_b = ev["baselines"][mae_base]["purchase_day_mae"], ev["baselines"][acc_base]["purchase_day_accuracy"]
    gini_r = mo["normalized_gini"] / orc["normalized_gini"]
    f1_r = mo["payer_f1"] / orc["payer_f1"]
    mae_r = mo["purchase_day_mae"] / mae_b
    acc_d = mo["purchase_day_accuracy"] - acc_b
    o_mae_r = orc["purchase_day_mae"] / mae_b
    o_acc_d = orc["purchase_day_accuracy"] - acc_b
    acc_se = paired_se(evaluation.frame, evaluation.baselines[acc_base], days)
    pop_mae = ev["baselines"]["popularity"]["purchase_day_mae"]
    load_after = os.getloadavg()
    print(f"\n{'target (one run, test split)':44s} {'value':>10s}   {'target':10s} verdict")
    print(target_line("normalized Gini, model / oracle", gini_r, f">= {TARGET_GINI}", gini_r >= TARGET_GINI,
                      f"({mo['normalized_gini']:.3f} / {orc['normalized_gini']:.3f})"))
    print(target_line("payer F1, model / oracle", f1_r, f">= {TARGET_PAYER_F1}", f1_r >= TARGET_PAYER_F1,
                      f"({mo['payer_f1']:.3f} / {orc['payer_f1']:.3f})"))
    print(target_line(f"purchase-day MAE, model / {mae_base}", mae_r, f"<= {TARGET_DAY_MAE}", mae_r <= TARGET_DAY_MAE,
                      f"({mo['purchase_day_mae']:.2f} / {mae_b:.2f} d; oracle / {mae_base} {o_mae_r:.3f}; against "
                      f"King's popularity (mode, {pop_mae:.2f} d) {mo['purchase_day_mae'] / pop_mae:.3f})"))
    print(target_line(f"exact-day accuracy, model - {acc_base}", acc_d, f">= +{TARGET_DAY_ACCURACY}",
                      acc_d >= TARGET_DAY_ACCURACY,
                      f"({mo['purchase_day_accuracy']:.3f} - {acc_b:.3f}, paired SE "
                      f"{acc_se:.3f}; oracle - {acc_base} {o_acc_d:+.3f}: the model gets {acc_d / o_acc_d:.0%} "
                      "of the oracle's gain)"))
    for key, name in (("normalized_gini", "Gini"), ("top1_revenue_capture", "top-1 % capture"),
                      ("spearman_payers", "Spearman among payers")):
        best = ev["strongest_baseline"].get(key)
        if best:
            print(f"{'  ' + name + ', model / ' + best['baseline']:44s} {fmt(best['ratio']):>10s}   (no target; "
                  f"the strongest baseline on this metric)")
    print(target_line("batch scoring, M players/min", score["players_per_min"] / 1e6, ">= 1.0",
                      score["players_per_min"] >= TARGET_PLAYERS_PER_MIN,
                      f"(warm model, {score['rows']:,} rows = {score['copies']} copies of the {score['test_rows']:,} "
                      f"test rows, one call, {score['seconds']:.1f} s, CPU {score['cpu_s']:.0f} s)"))
    if len(score["calls"]) > 1:
        print(f"{'':44s} scoring calls: " + "; ".join(
            f"{c['seconds']:.1f} s with {c['foreign_share']:.0%} other load" for c in score["calls"]))
    print(f"{'fit time, 5 stages (s)':44s} {fit_m.seconds:10.0f}   (no target)  "
          f"budget {budget_name}; {len(splits['train']):,} train rows; CPU {fit_m.cpu_s:.0f} s")
    stage_models = ", ".join(f"{k}={v['model']}" for k, v in model.manifest["stages"].items())
    print(f"{'artifact size (MiB)':44s} {model.manifest['size_bytes'] / 2**20:10.1f}   "
          f"stages: {stage_models}")
    loaded = [(n, r) for n, r in (("fit", fit_m.result()), ("scoring", score)) if r["foreign_share"] > 0.05]
    print(f"load    : other processes used {fit_m.foreign_share:.0%} of the machine during the fit "
          f"({busy_fit:.0%} busy before), {score['foreign_share']:.0%} during scoring ({score['busy_before']:.0%} "
          f"busy before); load average {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} at the end")
    if loaded:
        print(f"WARNING: the machine was shared during {', '.join(n for n, _ in loaded)}: those wall times are "
              "inflated (CPU s is the steadier measure)")

    if fam:
        print(f"\n{'payer classifier families':22s}{'ROC-AUC':>9s}{'PR-AUC':>9s}{'F1':>7s}{'fit s':>8s}"
              f"{'predict s / ' + format(fam[0]['predict_rows'], ',') + ' rows':>30s}{'other load':>11s}{'artifact MiB':>14s}"
              "  best (members)")
        for r in fam:
            print(f"{r['families']:22s}{r['roc_auc']:9.4f}{r['pr_auc']:9.4f}{r['f1']:7.3f}{r['fit_s']:8.0f}"
                  f"{r['predict_s']:30.1f}{r['predict_foreign_share']:11.0%}{r['artifact_mib']:14.1f}  {r['model_best']} ({', '.join(r['members'])})")
            print(f"{'':22s}trained: {', '.join(r['trained'])}")
    if drift is not None:
        print("\ndrift experiment (stale = trained on the first version; retrained on the last)")
        with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
            print(drift.to_string(index=False))

    results = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": m, "budget": budget_name,
               "settings": {"game": args.game, "installs": s.daily_installs, "days": s.days, "seed": s.seed,
                            "as_of": str(args.as_of), "players_installed": installed},
               "dataset": {k: manifest[k] for k in ("name", "rows", "payers")},
               "metrics": {k: ev[k] for k in ("model", "oracle", "baselines", "ratios", "strongest_baseline")},
               "targets": {"gini_ratio": gini_r, "payer_f1_ratio": f1_r, "day_mae_ratio": mae_r,
                           "day_accuracy_gain": acc_d, "day_accuracy_gain_se": acc_se, "oracle_day_mae_ratio": o_mae_r, "oracle_day_accuracy_gain": o_acc_d},
               "purchase_day": day_rows, "multiclass_fit": mc_fit, "fit": fit_m.result(), "scoring": score,
               "families": fam, "drift": drift.to_dict("records") if drift is not None else None,
               "wall_s": time.perf_counter() - started}
    out = ROOT_DIR / f"results-{label}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwall time {time.perf_counter() - started:.0f} s; results in {out.relative_to(bench.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
