"""The HTML readout of an experiment: one self-contained file, inline SVG plots (as the report)."""
from __future__ import annotations

import datetime as dt
import html
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ltv.experiments import SRM_LOSS
from ltv.report import CSS, _fmt, _svg, _table

LABELS = {"conversion": "conversion (share of players who bought)", "revenue_per_player": "revenue per player"}


def _arm_plot(result: dict[str, Any]) -> str:
    arms = result["arms"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, LABELS):
        names = list(arms)
        means = [arms[n][metric] or 0.0 for n in names]
        err = [1.96 * (arms[n][f"{metric}_se"] or 0.0) for n in names]
        ax.bar(names, means, yerr=err, capsize=4, color="#1f77b4")
        ax.set_title(LABELS[metric], fontsize=9)
        ax.set_xlabel("arm")
        ax.set_ylabel(f"{LABELS[metric]} (mean, 95 % CI)")
    fig.tight_layout()
    return _svg(fig)


def _diff_plot(result: dict[str, Any], truth: dict[str, Any] | None) -> str:
    comps = result["comparisons"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.9 + 0.7 * len(comps)))
    for ax, metric in zip(np.atleast_1d(axes), LABELS):
        for i, (arm, comp) in enumerate(comps.items()):
            for j, (kind, color) in enumerate((("plain", "#999999"), ("cuped", "#1f77b4"))):
                c = comp[metric][kind]
                yy = i + (0.15 if j else -0.15)
                ax.errorbar(c["diff"], yy, xerr=[[c["diff"] - c["low"]], [c["high"] - c["diff"]]], fmt="o",
                            color=color, capsize=3, label=kind if i == 0 else None)
            if truth and arm in truth and metric in truth[arm]:
                ax.plot(truth[arm][metric], i, "D", color="#2ca02c", label="truth" if i == 0 else None)
        ax.axvline(0, color="#444", lw=0.8)
        ax.set_yticks(range(len(comps)), [f"{a} − holdout" for a in comps])
        ax.set_title(f"difference in {metric.replace('_', ' ')}, 95 % CI", fontsize=9)
        ax.set_xlabel(f"arm − holdout, {metric.replace('_', ' ')}")
        ax.set_ylabel("comparison")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def _comparison_table(result: dict[str, Any], truth: dict[str, Any] | None) -> str:
    rows = []
    for arm, comp in result["comparisons"].items():
        for metric in LABELS:
            for kind in ("plain", "cuped"):
                c = comp[metric][kind]
                row = {"comparison": f"{arm} − holdout", "metric": metric, "method": kind, "difference": _fmt(c["diff"], 4),
                       "95 % CI": f"[{_fmt(c['low'], 4)}, {_fmt(c['high'], 4)}]", "p-value": _fmt(c["p_value"], 4)}
                if truth is not None:
                    row["true difference"] = _fmt((truth.get(arm) or {}).get(metric), 4)
                rows.append(row)
    return _table(pd.DataFrame(rows))


def render_readout(spec: Any, result: dict[str, Any], truth: dict[str, Any] | None = None) -> str:
    """The readout page: arms, differences (plain and CUPED) beside the truth when known, SRM, strata."""
    s = result["srm"]
    srm_text = (f"<p class={'bad' if s['mismatch'] else 'good'}>Sample-ratio check: chi² = {s['chi2']:.2f}, "
                f"p = {s['p_value']:.4g} — {'MISMATCH: the split is not the spec’s; do not trust the differences' if s['mismatch'] else 'no mismatch'} "
                f"(flagged below p = {s['alpha']}). At these {sum(s['observed'].values()):,} players the check flags the loss of "
                f"{SRM_LOSS:.1%} of one arm's players (a 50/50 split become 52/48) with probability "
                f"{s['power_52_48']:.0%}{'' if s['power_52_48'] >= 0.8 else ': a loss that size could go unseen'}.</p>")
    arms = pd.DataFrame([{"arm": n, **{k: _fmt(v, 4) if isinstance(v, float) else v for k, v in a.items()
                                       if not k.endswith("_se")}} for n, a in result["arms"].items()])
    strata = pd.DataFrame(result.get("strata", {})).T.rename_axis("stratum").reset_index() if result.get("strata") else None
    title = f"Experiment {spec.id}: readout"
    body = (f"<p>Window {spec.start} .. {spec.end - dt.timedelta(days=1)} (fixed horizon, {spec.horizon_days} days); "
            f"primary metric <b>{html.escape(spec.primary_metric)}</b>, minimum detectable effect {spec.mde:g}; "
            f"holdout <b>{html.escape(spec.holdout)}</b>. Differences are each arm minus the holdout; CUPED adjusts "
            f"for spend in the {spec.pre_period_days} days before the start.</p>"
            + "<h2>Arms</h2>" + _table(arms) + _arm_plot(result)
            + "<h2>Differences</h2>" + _diff_plot(result, truth) + _comparison_table(result, truth)
            + "<h2>Sample ratio</h2>" + srm_text
            + ("<h2>Strata (predicted-value decile at assignment)</h2>" + _table(strata) if strata is not None else ""))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
