"""The evaluation report: one self-contained HTML file with inline SVG plots (no server, no JS).

Sections: headline metrics with model / oracle and model / baseline ratios; gain (Lorenz)
curve; decile bars; calibration; payer confusion matrix; purchase-day CDF examples and MAE by
segment; the drivers (mean exact contributions per segment: value deciles, payers vs non-payers,
new vs veteran, and permutation importance on validation rows); the drift table (Kakao's
experiment) when given; the model card (lineage, explanations, intended use, limitations).
"""
from __future__ import annotations

import datetime as dt
import html
import io
import itertools
from typing import Any

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: readable, searchable, checked in a browser
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ltv import metrics  # noqa: E402
from ltv.evaluate import Evaluation, drift_cells  # noqa: E402

SECTIONS = ("Summary", "Promotion", "Gain curve", "Deciles", "Calibration", "Payer stage", "Next purchase day",
            "Drivers", "Drift", "Model card")
COLORS = {"model": "#1f77b4", "oracle": "#2ca02c", "recent_revenue": "#ff7f0e", "payer_mean": "#9467bd",
          "popularity": "#ff7f0e", "random": "#999999", "past_spend": "#8c564b", "btyd": "#d62728"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.good{color:#16794a;font-weight:600} .bad{color:#b3261e;font-weight:600} .muted{color:#777}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem} nav a{margin-right:.8rem}
"""
# headline metrics: name, label, True if larger is better
HEADLINE = (("normalized_gini", "normalized Gini", True), ("spearman", "Spearman", True),
            ("spearman_payers", "Spearman among payers", True),
            ("minmax", "minmax score (Kakao)", True), ("minmax_payers", "minmax among payers", True),
            ("top1_revenue_capture", "revenue in top 1%", True),
            ("top10_revenue_capture", "revenue in top 10%", True),
            ("total_ratio", "total predicted / actual", None), ("decile_mape", "decile MAPE", False),
            ("payer_f1", "payer F1", True), ("payer_precision", "payer precision", True),
            ("payer_recall", "payer recall", True), ("payer_roc_auc", "payer ROC-AUC", True),
            ("purchase_day_mae", "purchase-day MAE (days)", False),
            ("purchase_day_accuracy", "purchase-day exact accuracy", True),
            ("purchase_day_f1", "purchase-day macro F1", True), ("churn_f1", "churn F1", True))
BASELINE_LABELS = {"recent_revenue": "recent revenue", "payer_mean": "payer mean", "popularity": "popularity (mode)",
                   "segment_median": "segment median"}
# why a baseline can look good on a metric for a reason that is not better prediction
NOTES = {
    "spearman": "computed on the hurdle prediction ltv_pred: with most actuals exactly 0, a rank correlation "
                "rewards predicting exact zeros (recent revenue does for every player without recent spend), "
                "so a continuous score cannot be read on it; see the Gini and Spearman among payers",
    "spearman_payers": "ltv_expected ranked among players who actually paid: how well value is ordered, "
                       "free of the zero ties",
    "minmax": "a player with no spend and a zero prediction scores 1, so when most players spend nothing the "
              "score sits near the share of non-spenders whatever the model does; see minmax among payers",
    "minmax_payers": "minmax on ltv_pred over players who actually paid: how close the amounts are, free of the "
                     "non-spenders' 0/0 = 1",
    "payer_f1": "the baselines' payer flag is 'paid recently / before', the model's the F1-optimal threshold on "
                "validation",
    "purchase_day_mae": "the segment median is the MAE-optimal constant per segment; King's popularity baseline "
                        "(the mode) is the strongest for exact-day accuracy",
}
_TEXT_IDS = itertools.count(1)


def _svg(fig: plt.Figure) -> str:
    """The figure as inline SVG; every plot must have a title and axis labels, which are tagged
    (`id="plot-title-…"`, `plot-xlabel-…`, `plot-ylabel-…`) so a browser test can find them."""
    for ax in fig.axes:
        texts = {"title": ax.title if ax.get_title() else fig._suptitle,
                 "xlabel": ax.xaxis.label if ax.get_xlabel() else fig._supxlabel,
                 "ylabel": ax.yaxis.label if ax.get_ylabel() else fig._supylabel}
        missing = [k for k, t in texts.items() if t is None or not t.get_text()]
        if missing:
            raise ValueError(f"a report plot lacks its {', '.join(missing)}")
        for kind, text in texts.items():
            if text.get_gid() is None:
                text.set_gid(f"plot-{kind}-{next(_TEXT_IDS)}")
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "<span class=muted>–</span>"
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{v if isinstance(v, str) else _fmt(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def _ratio_cell(model: float | None, ref: float | None, larger: bool | None) -> str:
    if model is None or ref in (None, 0) or not np.isfinite(ref):
        return _fmt(None)
    ratio = model / ref
    if larger is None:
        return _fmt(ratio)
    good = ratio >= 1 if larger else ratio <= 1
    return f"<span class={'good' if good else 'bad'}>{ratio:.3f}</span>"


def _summary(m: dict[str, Any]) -> str:
    """Every headline metric: which score it is computed on, the model, the oracle, every
    baseline, and the model's ratios to the oracle and to the strongest baseline on that metric."""
    base = m["baselines"]
    names = [b for b in BASELINE_LABELS if b in base] + [b for b in base if b not in BASELINE_LABELS]
    strongest = m.get("strongest_baseline", {})
    rows, notes = [], []
    for key, label, larger in HEADLINE:
        model = m["model"].get(key)
        if model is None and all(base[b].get(key) is None for b in names):
            continue
        best = strongest.get(key)
        cells = [label + ("" if key not in NOTES else f" <sup>{len(notes) + 1}</sup>"),
                 f"<span class=muted>{html.escape(metrics.METRIC_SCORE.get(key, ''))}</span>",
                 _fmt(model), _fmt((m["oracle"] or {}).get(key))]
        cells += [_fmt(base[b].get(key)) for b in names]
        cells.append(_ratio_cell(model, (m["oracle"] or {}).get(key), larger))
        cells.append(_ratio_cell(model, best["value"], larger) + f" <span class=muted>{BASELINE_LABELS.get(best['baseline'], best['baseline'])}</span>"
                     if best else _fmt(None))
        if key in NOTES:
            notes.append(NOTES[key])
        rows.append(cells)
    head = "".join(f"<th>{c}</th>" for c in ("metric", "computed on", "model", "oracle",
                                               *(BASELINE_LABELS.get(b, b) for b in names),
                                               "model / oracle", "model / strongest baseline"))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    foot = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"<table><tr>{head}</tr>{body}</table><ol class=muted>{foot}</ol>"


BTYD_GAIN = (("normalized_gini", "normalized Gini"), ("top10_revenue_capture", "top-10 % revenue capture"),
             ("top1_revenue_capture", "top-1 % revenue capture"), ("spearman", "Spearman"))


def _btyd_gain(m: dict[str, Any]) -> str:
    """The model's gain over BTYD (BG/NBD + Gamma-Gamma refitted at each test cutoff), the
    comparator whose value and P(alive) sit beside every prediction: model / BTYD per metric."""
    ratios = (m.get("ratios") or {}).get("model_vs_btyd") or {}
    cells = [f"{label} {_ratio_cell(m['model'].get(k), (m['baselines'].get('btyd') or {}).get(k), True)}"
             for k, label in BTYD_GAIN if ratios.get(k) is not None]
    if not cells:
        return ""
    return ("<p><b>Gain over BTYD</b> (model / BG/NBD + Gamma-Gamma, whose value and P(alive) the predictions table "
            "carries as btyd_value, btyd_p_alive): " + "; ".join(cells) + ".</p>")


def _gain_plot(ev: Evaluation) -> str:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    y = ev.frame["ltv"]
    curves = {"model": ev.frame["ltv_expected"]}
    if ev.oracle is not None:
        curves["oracle"] = ev.oracle["ltv_expected"]
    for name in ("recent_revenue", "payer_mean", "past_spend", "btyd"):
        if name in ev.baselines:
            curves[name] = ev.baselines[name]["ltv_expected"]
    for name, pred in curves.items():
        x, g = metrics.gain_curve(y, pred)
        ax.plot(x, g, label=f"{name} (Gini {metrics.normalized_gini(y, pred):.3f})", color=COLORS.get(name))
    x, g = metrics.gain_curve(y, y)
    ax.plot(x, g, "--", color="#444", lw=1, label="perfect")
    ax.plot([0, 1], [0, 1], ":", color=COLORS["random"], label="random")
    ax.set(title="Gain curve: actual revenue captured", xlabel="share of players (by predicted value)",
           ylabel="share of actual revenue", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower right")
    return _svg(fig)


def _decile_plot(ev: Evaluation) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    t = metrics.decile_table(ev.frame["ltv"], ev.frame["ltv_expected"])
    w = 0.38
    ax.bar(t.decile - w / 2, t.mean_actual, w, label="actual", color="#555")
    ax.bar(t.decile + w / 2, t.mean_predicted, w, label="predicted", color=COLORS["model"])
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set(title="Mean LTV by predicted decile", xlabel="predicted decile (1 = highest)", ylabel="mean LTV per player",
           xticks=t.decile)
    ax.legend(fontsize=8)
    return _svg(fig)


def _calibration_plot(ev: Evaluation) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, frame in (("model", ev.frame), ("oracle", ev.oracle)):
        if frame is None:
            continue
        t = metrics.decile_table(frame["ltv"], frame["ltv_expected"], groups=50)
        ax.loglog(t.mean_predicted.clip(lower=1e-3), t.mean_actual.clip(lower=1e-3), "o", ms=4, label=name,
                  color=COLORS[name], alpha=0.8)
    lims = [1e-3, max(1.0, float(ev.frame["ltv_expected"].max()))]
    ax.plot(lims, lims, ":", color="#444", label="calibrated")
    ax.set(title="Calibration", xlabel="mean predicted LTV (50 groups)", ylabel="mean actual LTV")
    ax.legend(fontsize=8)
    return _svg(fig)


def _confusion(ev: Evaluation) -> str:
    f = ev.frame
    tp = int(((f.payer == 1) & (f.payer_pred == 1)).sum())
    fp = int(((f.payer == 0) & (f.payer_pred == 1)).sum())
    fn = int(((f.payer == 1) & (f.payer_pred == 0)).sum())
    tn = int(((f.payer == 0) & (f.payer_pred == 0)).sum())
    return (f"<table><tr><th></th><th>predicted payer</th><th>predicted non-payer</th></tr>"
            f"<tr><th>actual payer</th><td>{tp:,}</td><td>{fn:,}</td></tr>"
            f"<tr><th>actual non-payer</th><td>{fp:,}</td><td>{tn:,}</td></tr></table>")


def _cdf_examples(ev: Evaluation, n: int = 6) -> str:
    f = ev.frame
    days = [c for c in f.columns if c.startswith("p_day_") and c != "p_day_none"]
    if not days:
        return "<p class=muted>no purchase-day distribution</p>"
    buyers = f[f.next_purchase_day > 0]
    sample = buyers.sample(min(n, len(buyers)), random_state=0) if len(buyers) else buyers
    # constrained layout leaves room for each subplot's title below the row above's tick labels
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.6), sharey=True, layout="constrained")
    x = np.arange(1, len(days) + 1)
    for ax, (i, row) in zip(axes.flat, sample.iterrows()):
        ax.step(x, np.cumsum(row[days].to_numpy(float)), where="post", color=COLORS["model"], label="model CDF")
        if ev.oracle is not None and "p_day_1" in ev.oracle:
            ax.step(x, np.cumsum(ev.oracle.loc[i, days].to_numpy(float)), where="post", color=COLORS["oracle"],
                    label="oracle CDF")
        ax.axvline(row.next_purchase_day, color="#b3261e", ls="--", label="actual day")
        ax.axvline(row.offer_day, color=COLORS["model"], ls=":", label="offer day")
        ax.set(title=f"player {row.player_id}", xticks=[1, 4, 8, 12, 16], ylim=(0, 1))
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Next-purchase-day CDF of six purchasers")
    fig.supxlabel("day after the cutoff")
    fig.supylabel("P(first purchase by day)")
    return _svg(fig)


def _mae_by_segment(m: dict[str, Any]) -> str:
    rows = pd.DataFrame(m.get("purchase_day_by_segment", []))
    if rows.empty:
        return ""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    x = np.arange(len(rows))
    bars = [("model_mae", "model (offer day)", COLORS["model"]), ("popularity_mae", "popularity (mode)", COLORS["popularity"]),
            ("segment_median_mae", "segment median", COLORS["payer_mean"])]
    bars = [b for b in bars if b[0] in rows]
    width = 0.8 / len(bars)
    for i, (col, label, color) in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, rows[col], width, label=label, color=color)
    ax.set(title="Purchase-day MAE by segment", xticks=x, xticklabels=rows.segment, ylabel="MAE (days)",
           xlabel="purchase-frequency segment")
    ax.legend(fontsize=8)
    return _svg(fig) + _table(rows)


def _drivers(m: dict[str, Any]) -> str:
    """Per-segment drivers (mean contribution in currency) and the permutation importance."""
    e = m.get("explanations")
    if not e:
        return "<p class=muted>No drivers: this evaluation was not explained.</p>"
    if "unavailable" in e:
        return f"<p class=muted>No drivers: {html.escape(e['unavailable'])}</p>"
    amount = lambda pairs: ", ".join(f"{html.escape(f)} {v:+,.2f}" for f, v in pairs) or "–"  # noqa: E731
    rows = pd.DataFrame([{"segment": html.escape(f"{g['kind']}: {g['segment']}"), "players": g["players"],
                          "mean predicted value": g["mean_ltv_expected"], "pushes up (mean)": amount(g["up"]),
                          "pushes down (mean)": amount(g["down"])} for g in e["segments"]])
    intro = (f"<p>Each player's predicted value (ltv_expected) is the base value {e['base']:,.2f} plus one exact "
             "contribution per feature, in currency (LightGBM / CatBoost / XGBoost tree contributions of the payer and "
             "value stages, weighted as the ensemble weighs its models; ltv.explain documents the decomposition). "
             f"Mean contributions per segment of {e['rows']:,} test rows; the predictions table holds each scored "
             "player's own top drivers (driver_up_1.., driver_down_1..) and <code>ltv explain</code> tells one "
             "player's story.</p>")
    return intro + _table(rows) + _permutation_plot(e.get("permutation") or {})


def _permutation_plot(perm: dict[str, Any], top: int = 15) -> str:
    if not perm.get("drop"):
        return "<p class=muted>No permutation importance (no validation payers).</p>"
    items = list(perm["drop"].items())[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(items) + 1.2))
    ax.barh([f for f, _ in items], [v for _, v in items], color=COLORS["model"])
    ax.set(title=f"Permutation importance ({perm['rows']:,} validation rows, Gini {perm['gini']:.3f})",
           xlabel="drop of the normalized Gini when the feature is shuffled", ylabel="feature")
    ax.tick_params(axis="y", labelsize=8)
    return ("<p>Global importance: how much the ranking quality (normalized Gini of ltv_expected) drops when one "
            f"feature's values are shuffled across the validation rows; the top {len(items)}.</p>" + _svg(fig))


def _drift(drift: pd.DataFrame | None) -> str:
    if drift is None or drift.empty:
        return ("<p class=muted>No drift table yet. Run <code>ltv drift --game GAME</code> to train on the first "
                "dataset version and evaluate that fixed model on every later version (Kakao's experiment).</p>")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, label in zip(axes, ("normalized_gini", "minmax", "payer_f1"), ("normalized Gini", "minmax", "payer F1")):
        for col, style in ((f"stale_{key}", "o-"), (f"retrained_{key}", "s--"), (f"oracle_{key}", "^:")):
            if col in drift and drift[col].notna().any():
                ax.plot(drift["version"], drift[col], style, label=col.split("_")[0])
        ax.set(title=label, xlabel="dataset version", ylabel=label)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    axes[0].legend(fontsize=8)
    return (_svg(fig) + "<p class=muted>Each cell: the stale model → the retrained one (the oracle). The retrained "
            "model is trained on the last version and scored on its test period only.</p>" + _table(drift_cells(drift)))


def _promotion(m: dict[str, Any]) -> str:
    """The promotion decision: each metric's gain over the champion with its bootstrap interval."""
    p = m.get("promotion")
    if not p:
        return "<p class=muted>No promotion decision: this report evaluates a model outside a training run.</p>"
    verdict = f"<p class={'good' if p['promote'] else 'bad'}>{html.escape(p['status'])}: {html.escape(p['reason'])}</p>"
    rows = []
    for role, b in [("primary", p.get("primary") or {}), *((f"guard (tolerance {g['tolerance']})" if g.get("checked")
                    else "guard (not checked)", g) for g in (p.get("guards") or {}).values()),
                    *([("decayed metric on the decayed cohorts", p["focus"])] if p.get("focus") else [])]:
        if "low" not in b:
            continue
        rows.append({"role": role, "metric": b["metric"], "challenger": b["challenger"], "champion": b["champion"],
                     "gain": b["gain"], f"CI{round(100 * b['confidence'])} low": b["low"], "high": b["high"],
                     "rows": b["rows"], "players": b["players"]})
    if not rows:
        return verdict
    first = rows[0]
    how = (f"<p class=muted>Paired bootstrap: {p['primary']['resamples']} resamples of the {first['players']:,} players "
           f"(all their rows together; seed {p['primary']['seed']}), both models scored on each; the gain is positive "
           "when the challenger is better. Promoted when the primary gain's lower bound clears the minimum effect and "
           "no guard's loss can exceed its tolerance.</p>")
    return verdict + how + _table(pd.DataFrame(rows))


def _card(m: dict[str, Any], manifest: dict[str, Any]) -> str:
    ds = manifest.get("dataset") or {}
    rows = [("game", manifest["game"]), ("dataset version", ds.get("name")), ("train cutoffs", _span(ds, "train")),
            ("validation cutoffs", _span(ds, "validation")),
            ("data seen until (last training/validation label day + 1)", (manifest.get("trained_on") or {}).get("seen_until", "unrecorded")),
            ("test cutoffs", ", ".join(m.get("cutoffs", [])) + (" (IN-SAMPLE)" if m.get("in_sample") else "")),
            ("test rows", f"{m.get('rows', 0):,}"), ("features", str(len(manifest["features"]))),
            ("label horizon (days)", _horizon(manifest["horizons"])),
            ("payer threshold (max F1 on validation)", f"{manifest['payer_threshold']:.4f}"),
            ("churn threshold", f"{manifest['churn_threshold']:.4f}"), ("log target smearing", f"{manifest['smearing']:.4f}"),
            ("stage models", ", ".join(f"{k}: {v['model']}" for k, v in manifest["stages"].items())),
            ("artifact size", f"{manifest.get('size_bytes', 0) / 1e6:.1f} MB"), ("config hash", manifest["config_hash"]),
            ("code version", manifest["code_version"]), ("trained", manifest["created"]),
            ("drivers (explanations)", _explained(manifest.get("explanations"))),
            ("intended use", "rank and size players' value over the horizon for offers and budgets; the drivers say "
                             "which features moved a prediction, not what causes spending"),
            ("limitations", "trained on past cutoffs: a content update or a new acquisition channel shifts behaviour "
                            "(see Drift and the monitoring alerts); drivers describe the model, and correlated "
                            "features share credit in ways that can look arbitrary")]
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def _explained(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "none recorded (an artifact from before drivers existed): its predictions carry null drivers"
    if spec["players"] == "all":
        return "every scored player: exact tree contributions to ltv_expected, in currency"
    return (f"the top {spec['top_share']:.0%} by predicted value (ltv_expected ≥ {spec['top_threshold']:,.2f}) plus "
            f"{spec['sample_share']:.0%} of the others by player-id hash: exact tree contributions, in currency")


def _horizon(h: dict[str, Any]) -> str:
    asked = h.get("asked_ltv_days")
    if not asked or asked == h["ltv_days"]:
        return str(h["ltv_days"])
    return (f"{h['ltv_days']} (trained shorter: the logs cannot hold a dataset at the asked {asked}; "
            f"datasets.when_history_short: train_shorter). Extension to {asked} days (ltv_expected_asked): the "
            f"prediction over {h['ltv_days']} days plus BG/NBD + Gamma-Gamma's conditional expected value after it "
            "(players who never bought: the growth of a new customer). Assumes the BTYD process beyond the trained "
            "horizon (stationary purchase rates, dropout after a purchase, spend independent of frequency); the "
            "figures above are at the trained horizon; the extension's error against simulators' truth (a BTYD shop "
            "and a harder one) is measured by benchmarks/horizon.py, results in benchmarks/README.md: on the harder "
            "shop it ranks level with BTYD, not above it; a tail learned from the revenue realised after the trained "
            "horizon did not beat it, and neither did a model fitted to that shop's true values")


def _span(ds: dict[str, Any], split: str) -> str:
    c = (ds.get("cutoffs") or {}).get(split) or []
    return f"{c[0]} .. {c[-1]} ({len(c)})" if c else "–"


def render(ev: Evaluation, manifest: dict[str, Any], *, title: str, drift: pd.DataFrame | None = None,
           experiments: list[tuple[str, str]] | None = None) -> str:
    """The whole report as one HTML string; `experiments`: (name, link) of experiment readouts."""
    m = ev.metrics
    oracle_note = "" if m["oracle"] else f"<p class=muted>No oracle: {html.escape(m.get('oracle_note') or 'no ground truth')}.</p>"
    warning = ""
    if m.get("in_sample"):
        cut = m["in_sample"]["cutoffs"]
        warning = (f"<p class=bad>IN-SAMPLE: the model's training or validation data reached {m['in_sample']['seen_until']}"
                   f"; test cutoffs {cut[0]}..{cut[-1]} lie in that period, so these figures overstate its quality.</p>")
    parts = {
        "Summary": warning + oracle_note + _summary(m) + _btyd_gain(m),
        "Promotion": _promotion(m),
        "Gain curve": "<p>Players sorted by predicted value (p(payer) × value); the closer to the perfect curve the "
                      "better the ranking. The normalized Gini is 2 × (area under this curve) − 1 divided by the same "
                      "for the perfect ordering; tied predictions are taken together (the curve is linear across a tie, "
                      "the trapezoid rule), which is google/lifetime_value's gain-curve Gini when there are no "
                      "ties.</p>" + _gain_plot(ev),
        "Deciles": _decile_plot(ev) + _table(pd.DataFrame(m["deciles"]["model"])),
        "Calibration": _calibration_plot(ev),
        "Payer stage": "<p>Stage 1 with the F1-maximising threshold chosen on the validation period.</p>" + _confusion(ev),
        "Next purchase day": "<p>MAE is measured for the offer day (conditional median), accuracy and F1 for the most "
                             "likely day, both on players who purchased within the horizon.</p>"
                             + _cdf_examples(ev) + _mae_by_segment(m),
        "Drivers": _drivers(m),
        "Drift": _drift(drift),
        "Model card": _card(m, manifest),
    }
    sections = SECTIONS
    if experiments:
        sections = (*SECTIONS, "Experiments")
        parts["Experiments"] = "<p>Readouts of the game's offer experiments (arms against the holdout, " \
                               "95 % CI, CUPED, sample-ratio check):</p><ul>" + "".join(
            f"<li><a href='{html.escape(link)}'>{html.escape(name)}</a></li>" for name, link in experiments) + "</ul>"
    nav = "".join(f"<a href='#{s.replace(' ', '-')}'>{s}</a>" for s in sections)
    body = "".join(f"<h2 id='{s.replace(' ', '-')}'>{s}</h2>{parts[s]}" for s in sections)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    title = f"{title} (IN-SAMPLE)" if m.get("in_sample") else title
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p class=muted>generated {stamp}</p><nav>{nav}</nav>{body}"
            "</body></html>")
