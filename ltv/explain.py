"""Why a player's value is what it is: exact per-feature contributions, in currency.

Each tree model of the two value stages gives exact additive contributions in its raw space
(TreeSHAP: LightGBM `pred_contrib=True`, CatBoost `ShapValues`, XGBoost `pred_contribs=True`):

    f_m(x) = b_m + sum_j phi_mj(x)      payer stage: log-odds of paying; value stage: log1p(value)

AutoGluon's weighted ensemble averages its members' outputs with weights w_m: probabilities for
the payer stage (P = sum_m w_m sigmoid(f_m)), raw outputs for the value stage (F = sum_m w_m f_m,
value V = max(0, smearing * expm1(F))). The predictions table's `ltv_expected` = P * V is not
additive in the features, so it is attributed by an exact, documented decomposition:

1. Each stage's change from its base (every contribution zero: P0 = sum_m w_m sigmoid(b_m),
   V0 = max(0, smearing * expm1(sum_m w_m b_m))) is split over the features in proportion to
   their raw contributions, model by model (the rescale rule: feature j gets
   phi_mj * (g(f_m) - g(b_m)) / (f_m - b_m) of model m's change, g its link). The parts sum
   exactly to the stage's change, and every feature keeps its sign: g is monotone.
2. The product's change P*V - P0*V0 is split between the stages by the two-player Shapley
   value: dP * (V + V0) / 2 + dV * (P + P0) / 2 (exact).

So for every player: `driver_base` + sum over all features = `ltv_expected` (in the game's
currency); the predictions table keeps the top `drivers` features up and down and the rest in
one number (`driver_rest`), so each row adds up by itself.

The contributions are over the project's feature names: AutoGluon's feature generator passes our
(numeric and categorical) features through under their own names, and XGBoost's one-hot columns
are summed back into the categorical feature they encode. A model without an exact contribution
API (RF, XT, KNN, LR), a bagged or stacked model, or an input that is not one of our features
makes the artifact unexplainable: `Unexplainable` says which, and scoring writes null drivers.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ltv.errors import ArtifactError

STAGES = ("payer", "value")  # the stages whose product is ltv_expected
DRIVERS = 3  # features shown per direction (up, down) per player: part of the predictions table's schema
EXPLAINED = ("LGBModel", "CatBoostModel", "XGBoostModel")  # AutoGluon model classes with exact contributions
# scoring refuses drivers whose sum misses the published ltv_expected by more than this (relative to
# max(1, value)): XGBoost predicts and explains in float32, so the rebuilt and the published value
# differ by ~1e-7 relative; a model read wrongly (an iteration range, a class, a link) misses by far more
CHECK_TOLERANCE = 1e-4


class Unexplainable(ArtifactError):
    """A stage's model has no exact per-feature contributions over the project's features."""


@dataclass(frozen=True)
class Member:
    """One tree model of a stage, its ensemble weight and its raw contributions on some rows."""

    name: str
    kind: str
    weight: float
    base: float                  # b_m: the model's expected raw output
    phi: np.ndarray              # (rows, features): contributions over the project's features

    @property
    def raw(self) -> np.ndarray:
        return self.base + self.phi.sum(axis=1)


_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # predictor -> its members, loaded once


def members(predictor: Any) -> list[tuple[Any, float]]:
    """The fitted models behind a stage's predictions with their weights (sum 1), loaded once
    per predictor (AutoGluon reads a model from disk at every `load_model`)."""
    try:
        return _LOADED[predictor]
    except (KeyError, TypeError):
        pass
    out = _members(predictor)
    try:
        _LOADED[predictor] = out
    except TypeError:  # not weakly referenceable: no cache
        pass
    return out


def _members(predictor: Any) -> list[tuple[Any, float]]:
    trainer = predictor._trainer
    best = trainer.load_model(predictor.model_best)
    weights = best._get_model_weights() if type(best).__name__ == "WeightedEnsembleModel" else {best.name: 1.0}
    out = [(trainer.load_model(name), float(w)) for name, w in weights.items() if w > 0]
    for model, _ in out:
        if type(model).__name__ not in EXPLAINED:
            raise Unexplainable(f"model {model.name} ({type(model).__name__}) of this artifact has no exact "
                                f"per-feature contributions (only {', '.join(EXPLAINED)} unbagged do): train with "
                                "model.families among GBM, CAT, XGB and no bagging presets to get drivers")
    return out


def _inputs(model: Any, features: list[str]) -> list[int]:
    """For each column the model sees, the index of the project feature it comes from."""
    if type(model).__name__ == "XGBoostModel" and getattr(model, "_ohe", False) and model._ohe_generator is not None:
        gen = model._ohe_generator
        names = [c for c, cats in zip(gen.cat_cols, gen.ohe_encs.categories_) for _ in range(len(cats))]
        names += list(gen.other_cols)
    else:
        names = list(model.features)
    unknown = [n for n in names if n not in features]
    if unknown:
        raise Unexplainable(f"model {model.name} sees inputs that are not the project's features ({unknown[:5]}): "
                            "contributions cannot be mapped back to features")
    position = {f: i for i, f in enumerate(features)}
    return [position[n] for n in names]


def _raw_contributions(model: Any, x: Any) -> np.ndarray:
    """(rows, inputs + 1): each input's contribution to the raw output, the base value last."""
    kind = type(model).__name__
    if kind == "LGBModel":
        return np.asarray(model.model.predict(x, pred_contrib=True), dtype=float)
    if kind == "CatBoostModel":
        from catboost import Pool

        pool = Pool(x, cat_features=model.model.get_cat_feature_indices())
        return np.asarray(model.model.get_feature_importance(pool, type="ShapValues", thread_count=-1), dtype=float)
    import xgboost

    best = getattr(model.model, "best_iteration", None)  # what predict uses after early stopping
    return np.asarray(model.model.get_booster().predict(
        xgboost.DMatrix(x), pred_contribs=True, iteration_range=(0, best + 1) if best is not None else (0, 0)),
        dtype=float)


def stage_members(predictor: Any, x: pd.DataFrame, features: list[str]) -> list[Member]:
    """Every model of one stage with its exact contributions on rows `x` (the model's input)."""
    if predictor.problem_type == "binary" and predictor.positive_class != 1:
        raise Unexplainable(f"the payer stage's positive class is {predictor.positive_class!r}, not 1")
    transformed = predictor.transform_features(x)
    return [member(model, weight, transformed, features) for model, weight in members(predictor)]


def member(model: Any, weight: float, transformed: pd.DataFrame, features: list[str]) -> Member:
    """One fitted tree model's contributions on rows already through the predictor's feature
    generator, mapped back onto the project's features."""
    raw = _raw_contributions(model, model.preprocess(transformed))
    phi = np.zeros((len(transformed), len(features)))
    np.add.at(phi.T, _inputs(model, features), raw[:, :-1].T)  # one-hot columns add up into their feature
    return Member(model.name, type(model).__name__, weight, float(raw[0, -1]) if len(raw) else 0.0, phi)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _rescale(change: np.ndarray, step: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """change / step, the link's secant slope; its derivative where the step is ~0 (no change to share)."""
    small = np.abs(step) < 1e-12
    return np.where(small, slope, change / np.where(small, 1.0, step))


@dataclass(frozen=True)
class Decomposition:
    """ltv_expected = base + contributions.sum(axis=1), per player (in currency)."""

    features: list[str]
    base: np.ndarray             # (rows,) P0 * V0 (the same for every row)
    contributions: np.ndarray    # (rows, features)
    p_payer: np.ndarray          # P and V as rebuilt from the contributions
    value: np.ndarray
    payer: list[Member]
    value_members: list[Member]

    @property
    def ltv_expected(self) -> np.ndarray:
        return self.p_payer * self.value


def decompose(predictors: dict[str, Any], x: pd.DataFrame, features: list[str], *, log_target: bool,
              smearing: float) -> Decomposition:
    """The exact decomposition of ltv_expected (module docstring) on the model-input rows `x`."""
    payer = stage_members(predictors["payer"], x, features)
    value = stage_members(predictors["value"], x, features)
    # stage 1: probabilities averaged over the members, each member's change shared by the rescale rule
    p0 = sum(m.weight * _sigmoid(m.base) for m in payer)
    p = sum(m.weight * _sigmoid(m.raw) for m in payer)
    d_payer = np.zeros_like(payer[0].phi)
    for m in payer:
        s, s0 = _sigmoid(m.raw), _sigmoid(m.base)
        d_payer += m.weight * _rescale(s - s0, m.raw - m.base, s * (1 - s))[:, None] * m.phi
    # stage 2: one raw output (the weighted sum), through the back-transform
    f0 = sum(m.weight * m.base for m in value)
    phi_v = sum(m.weight * m.phi for m in value)
    f = f0 + phi_v.sum(axis=1)
    link = (lambda z: np.maximum(smearing * np.expm1(z), 0.0)) if log_target else (lambda z: np.maximum(z, 0.0))
    v, v0 = link(f), link(np.asarray(f0, dtype=float))
    slope = np.where(v > 0, smearing * np.exp(f) if log_target else 1.0, 0.0)
    d_value = _rescale(v - v0, f - f0, slope)[:, None] * phi_v
    contributions = d_payer * ((v + v0) / 2)[:, None] + d_value * ((p + p0) / 2)[:, None]
    return Decomposition(features, np.full(len(x), p0 * v0), contributions, p, v, payer, value)


def drivers(dec: Decomposition, count: int = DRIVERS) -> pd.DataFrame:
    """The predictions table's driver columns for the decomposed rows: the `count` largest
    contributions up and down per player (feature name and amount; null where fewer push that
    way), the base, and the rest of the contributions (so each row adds up to ltv_expected)."""
    c = dec.contributions
    names = np.asarray(dec.features, dtype=object)
    out: dict[str, Any] = {}
    shown = np.zeros(len(c))
    for direction, sign in (("up", 1), ("down", -1)):
        order = np.argsort(-sign * c, axis=1, kind="stable")[:, :count]
        for k in range(count):
            value = np.take_along_axis(c, order[:, k:k + 1], axis=1)[:, 0]
            keep = sign * value > 0
            out[f"driver_{direction}_{k + 1}"] = pd.array(np.where(keep, names[order[:, k]], None), dtype="string")
            out[f"driver_{direction}_{k + 1}_value"] = np.where(keep, value, np.nan)
            shown += np.where(keep, value, 0.0)
    out["driver_base"] = dec.base
    out["driver_rest"] = c.sum(axis=1) - shown
    return pd.DataFrame(out)


def empty(index: pd.Index, count: int = DRIVERS) -> pd.DataFrame:
    """Driver columns with every value null (players not explained), typed as in the table."""
    return pd.DataFrame({name: pd.array([None] * len(index), dtype="string") if kind == "string"
                         else np.full(len(index), np.nan) for name, kind in columns(count)}, index=index)


def columns(count: int = DRIVERS) -> list[tuple[str, str]]:
    """The driver columns of the predictions table with their (Hive/Athena) types."""
    cols = [(f"driver_{d}_{k}{suffix}", kind) for d in ("up", "down") for k in range(1, count + 1)
            for suffix, kind in (("", "string"), ("_value", "double"))]
    return [*cols, ("driver_base", "double"), ("driver_rest", "double")]


def check(dec: Decomposition, ltv_expected: np.ndarray) -> None:
    """Refuse a decomposition that does not add up to the predictions it explains (base + every
    contribution against the predictors' own ltv_expected), within CHECK_TOLERANCE."""
    worst = gap(dec, ltv_expected)
    if worst > CHECK_TOLERANCE:
        raise ArtifactError(f"the drivers do not add up to ltv_expected (largest relative gap {worst:.2e} > "
                            f"{CHECK_TOLERANCE}): the artifact's models are not read as the explanation expects "
                            "(an AutoGluon or model library version it was not built for?); score with the locked versions")


def gap(dec: Decomposition, ltv_expected: np.ndarray) -> float:
    """The largest |base + sum of contributions - ltv_expected| / max(1, ltv_expected) over the rows."""
    total = dec.base + dec.contributions.sum(axis=1)
    return float(np.max(np.abs(total - ltv_expected) / np.maximum(1.0, np.abs(ltv_expected)), initial=0.0))


def settings(config: Any, validation_ltv: np.ndarray) -> dict[str, Any]:
    """What the artifact records of the game's `explanations` settings: which players get drivers,
    with the top share's threshold fixed on the validation period's predictions (so a player's
    selection never depends on which other rows are scored with it)."""
    return {"players": config.players, "top_share": config.top_share, "sample_share": config.sample_share,
            "top_threshold": float(np.quantile(validation_ltv, 1 - config.top_share)) if len(validation_ltv) else 0.0}


def selected(spec: dict[str, Any] | None, ltv_expected: np.ndarray, player_ids: pd.Series | None) -> np.ndarray:
    """Which rows get drivers: all, or the top share by value plus a hash-picked sample of the rest;
    none for an artifact that records no settings (trained before drivers existed)."""
    n = len(ltv_expected)
    if not spec:
        return np.zeros(n, bool)
    if spec["players"] == "all":
        return np.ones(n, bool)
    top = np.asarray(ltv_expected) >= spec["top_threshold"]
    if player_ids is None or spec["sample_share"] <= 0:
        return top
    unit = pd.util.hash_pandas_object(player_ids.astype(str), index=False).to_numpy() / 2.0 ** 64
    return top | (unit < spec["sample_share"])
