"""Figures of targeting results (matplotlib, Agg; the report writer saves them).

Both functions return a :class:`matplotlib.figure.Figure` built without pyplot, so they
need no display and leave no global state behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from povertymap.errors import InputError
from povertymap.target._checks import require_columns

__all__ = ["plot_parity_gaps", "plot_targeting_curves"]

_LABELS = {
    "share_poor_covered": "share of the poor covered",
    "exclusion_error": "exclusion error",
    "inclusion_error": "inclusion error",
    "welfare_vs_oracle": "welfare (share of oracle)",
}


def plot_targeting_curves(
    curves: pd.DataFrame,
    metric: str = "share_poor_covered",
    *,
    title: str | None = None,
) -> Figure:
    """One line per method: ``metric`` against the budget share (from :func:`targeting_curves`).

    For the share of the poor covered, the dashed diagonal is what a lottery achieves.
    """
    require_columns(curves, ["method", "budget_share", "group_by", metric], "curves")
    overall = curves[curves["group_by"] == "all"]
    if overall.empty:
        raise InputError("the curves have no overall rows", fix="pass targeting_curves' output")
    fig = Figure(figsize=(6.0, 4.5), constrained_layout=True)
    ax = fig.add_subplot()
    for name, frame in overall.groupby("method", sort=False):
        frame = frame.sort_values("budget_share")
        ax.plot(100 * frame["budget_share"], frame[metric], marker="o", ms=3, label=str(name))
    if metric == "share_poor_covered":
        ax.plot([0, 100], [0, 1], ls="--", lw=0.8, color="0.5", label="_lottery")
    ax.set_xlabel("budget (% of the population covered)")
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 1.02 if metric != "welfare_gain" else None)
    ax.grid(alpha=0.3)
    level = curves.attrs.get("level") or (curves["level"].iloc[0] if "level" in curves else "")
    ax.set_title(title or f"Targeting curves ({level} level)")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_parity_gaps(
    gaps: pd.DataFrame,
    metric: str = "share_poor_covered",
    *,
    title: str | None = None,
    methods: Sequence[str] | None = None,
) -> Figure:
    """Bars of the gap in ``metric`` between groups, per grouping, one bar per method.

    ``gaps`` is the output of :func:`~povertymap.target.metrics.parity_gaps` on stacked
    evaluations (with a ``method`` column). A gap of 0 means every group is served alike.
    """
    require_columns(gaps, ["group_by", "metric", "gap"], "gaps")
    sel = gaps[gaps["metric"] == metric].copy()
    if "method" not in sel:
        sel["method"] = "plan"
    if sel.empty:
        raise InputError(
            f"no parity gaps for metric {metric!r}",
            fix=f"use one of {sorted(gaps['metric'].unique())}",
        )
    names = list(methods) if methods is not None else list(dict.fromkeys(sel["method"]))
    groupings = list(dict.fromkeys(sel["group_by"]))
    fig = Figure(figsize=(max(5.0, 1.6 * len(groupings) * max(1, len(names)) ** 0.5), 4.0),
                 constrained_layout=True)  # fmt: skip
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groupings))
    for k, name in enumerate(names):
        frame = sel[sel["method"] == name].set_index("group_by")
        heights = [float(frame["gap"].get(g, np.nan)) for g in groupings]
        ax.bar(x + (k - (len(names) - 1) / 2) * width, heights, width, label=str(name))
    ax.set_xticks(x, [str(g) for g in groupings])
    ax.set_ylabel(f"gap in {_LABELS.get(metric, metric)} (max - min group)")
    ax.set_title(title or "Parity gaps between groups")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig
