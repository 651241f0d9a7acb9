"""Feature statistics (King's platform) and the drift measure computed against them.

`feature_stats` summarises each column (count, nulls, min/max, mean, std, quantiles and a
histogram); the histogram's bin edges become the reference for `psi`, the Population
Stability Index of new values against those statistics:

    PSI = sum_b (a_b - e_b) * ln(a_b / e_b)

over bins b (plus a null bin), e = reference share, a = current share, both floored at 1e-4.
Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20
EPS = 1e-4


def feature_stats(df: pd.DataFrame, columns: Iterable[str] | None = None, bins: int = 10) -> dict[str, Any]:
    """Statistics of each column of df: numeric columns get quantiles and a histogram,
    other columns their most frequent values."""
    out: dict[str, Any] = {}
    for name in columns if columns is not None else df.columns:
        col = df[name]
        out[name] = _numeric(col, bins) if _is_numeric(col) else _categorical(col)
    return {"rows": int(len(df)), "features": out}


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _numeric(col: pd.Series, bins: int) -> dict[str, Any]:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    present = values[~np.isnan(values)]
    stats: dict[str, Any] = {"kind": "numeric", "count": int(len(values)), "nulls": int(len(values) - len(present))}
    if len(present) == 0:
        return stats | {"edges": [], "hist": [], "null_share": 1.0 if len(values) else 0.0}
    edges = bin_edges(present, bins)
    hist = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    q = np.quantile(present, QUANTILES)
    return stats | {
        "min": float(present.min()), "max": float(present.max()), "mean": float(present.mean()),
        "std": float(present.std()), "quantiles": {f"p{int(k * 100):02d}": float(v) for k, v in zip(QUANTILES, q)},
        "edges": [float(e) for e in edges], "hist": [int(h) for h in hist],
        "null_share": stats["nulls"] / len(values),
    }


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the quantiles; a value with a point mass (e.g. 0 revenue) gets a bin
    of its own, so a shift in how many players spend nothing is visible."""
    q = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges: list[float] = []
    for v in np.unique(q):
        edges.append(float(v))
        if np.sum(q == v) > 1 or np.mean(values == v) > 1 / bins:
            edges.append(float(np.nextafter(v, np.inf)))
    return np.unique(np.array(edges))


def _categorical(col: pd.Series) -> dict[str, Any]:
    values = col.astype("string")
    counts = values.value_counts(dropna=True)
    top = counts.head(TOP_CATEGORIES)
    return {"kind": "categorical", "count": int(len(values)), "nulls": int(values.isna().sum()),
            "distinct": int(len(counts)), "top": {str(k): int(v) for k, v in top.items()},
            "other": int(counts.iloc[TOP_CATEGORIES:].sum())}


def psi(reference: dict[str, Any], values: pd.Series) -> float:
    """PSI of `values` against one feature's reference statistics (see module doc)."""
    expected, actual = _shares(reference, values)
    e, a = np.maximum(expected, EPS), np.maximum(actual, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(reference: dict[str, Any], values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    n = max(len(values), 1)
    if reference["kind"] == "numeric":
        ref = np.array(reference["hist"] + [reference["nulls"]], dtype=float)
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        present = x[~np.isnan(x)]
        edges = np.array(reference["edges"])
        cur = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1).astype(float)
        cur = np.append(cur, len(x) - len(present))
    else:
        cats = list(reference["top"])
        ref = np.array([*reference["top"].values(), reference["other"], reference["nulls"]], dtype=float)
        s = values.astype("string")
        counts = s.value_counts(dropna=True)
        known = np.array([counts.get(c, 0) for c in cats], dtype=float)
        cur = np.append(known, [counts.sum() - known.sum(), s.isna().sum()])
    return ref / max(ref.sum(), 1), cur / n


def psi_table(reference: dict[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """PSI of every feature present in both the reference statistics and df, largest first."""
    rows = [(name, psi(stats, df[name])) for name, stats in reference["features"].items() if name in df]
    return pd.DataFrame(rows, columns=["feature", "psi"]).sort_values("psi", ascending=False, ignore_index=True)
