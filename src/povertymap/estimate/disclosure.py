"""The disclosure gate: what may leave the building.

Rules for anything marked public (thresholds in :class:`DisclosureSettings`):

1. Never publish survey records: a table keyed by cluster or household (cluster
   coordinates, household welfare) is refused, and private columns are stripped from
   aggregate tables.
2. No area estimate resting on fewer than ``min_households`` surveyed households is shown
   as a direct estimate: the direct columns of such areas are withheld.
3. Precision: CV above ``cv_suppress`` suppresses every estimate of the area; CV in
   ``(cv_flag, cv_suppress]`` publishes it flagged; an area without a CV is suppressed.

Every decision is recorded per area in ``publish`` ("yes", "flagged", "suppressed") and
``reason``, so a reader of the public table knows why a value is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from povertymap.config.estimate import DisclosureSettings
from povertymap.errors import PovertyMapError

__all__ = [
    "PRIVATE_COLUMNS",
    "PUBLISH_VALUES",
    "RECORD_KEYS",
    "DisclosureError",
    "gate",
    "public_table",
    "strip_private",
    "violations",
]

PUBLISH_VALUES = ("yes", "flagged", "suppressed")
#: Keys of record-level survey tables; a table carrying one is never public.
RECORD_KEYS = ("cluster_id", "household_id", "hh_id", "hhid")
#: Columns that describe survey clusters or households and are dropped from public tables.
PRIVATE_COLUMNS = (
    *RECORD_KEYS,
    "welfare",
    "hh_size",
    "cluster_lon",
    "cluster_lat",
    "cluster_easting",
    "cluster_northing",
    "displacement_m",
    "displaced_far",
)


class DisclosureError(PovertyMapError, ValueError):
    """A table offered for publication holds survey records or breaks a disclosure rule."""


def strip_private(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` without private columns; refuses record-level tables.

    A table indexed by, or with a column of, a record key (``cluster_id``,
    ``household_id``...) is survey microdata or cluster coordinates: it raises
    :class:`DisclosureError` rather than being trimmed, since its rows themselves are
    the disclosure.
    """
    names = [n for n in (table.index.names or []) if n is not None]
    keys = [k for k in RECORD_KEYS if k in names or k in table.columns]
    if keys:
        raise DisclosureError(
            f"refusing to publish a record-level table keyed by {', '.join(keys)}: cluster "
            "coordinates and household records never leave the analysis. Publish area "
            "aggregates instead"
        )
    drop = [c for c in PRIVATE_COLUMNS if c in table.columns]
    return table.drop(columns=drop)


def _percent(share: float) -> str:
    """``share`` as a percentage, with one decimal where a whole number would hide the
    difference (a CV of 5.4% against a 5% threshold reads "5.4% above 5%")."""
    whole = f"{share:.0%}"
    return whole if abs(round(share * 100) - share * 100) < 1e-9 else f"{share:.1%}"


def gate(
    table: pd.DataFrame,
    settings: DisclosureSettings | None = None,
    *,
    cv: str = "cv",
    n_households: str = "n_households",
    direct_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Add ``publish`` and ``reason`` to an area table (a copy) by the rules above."""
    s = settings or DisclosureSettings()
    out = table.copy()
    c = pd.to_numeric(out[cv], errors="coerce") if cv in out else pd.Series(np.nan, out.index)
    publish = pd.Series("yes", index=out.index, dtype=object)
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    cv_arr = c.to_numpy(dtype=float)
    for i, val in enumerate(cv_arr):
        if not np.isfinite(val):
            publish.iloc[i] = "suppressed"
            reasons[i].append("no coefficient of variation (precision unknown)")
        elif val > s.cv_suppress:
            publish.iloc[i] = "suppressed"
            reasons[i].append(f"CV {_percent(val)} above {_percent(s.cv_suppress)}")
        elif val > s.cv_flag:
            publish.iloc[i] = "flagged"
            reasons[i].append(f"CV {_percent(val)} above {_percent(s.cv_flag)} (use with caution)")
    if direct_columns and n_households in out:
        nh = pd.to_numeric(out[n_households], errors="coerce").fillna(0).to_numpy()
        has_direct = out[[d for d in direct_columns if d in out]].notna().any(axis=1).to_numpy()
        for j in np.flatnonzero(has_direct & (nh < s.min_households)):
            reasons[int(j)].append(
                f"direct estimate withheld: {int(nh[j])} surveyed households < {s.min_households}"
            )
    out["publish"] = publish
    out["reason"] = ["; ".join(r) for r in reasons]
    return out


def public_table(
    table: pd.DataFrame,
    settings: DisclosureSettings | None = None,
    *,
    value_columns: Sequence[str],
    direct_columns: Sequence[str] = (),
    cv: str = "cv",
    n_households: str = "n_households",
) -> pd.DataFrame:
    """The publishable version of an area table.

    Gates the table (unless it already has ``publish``), blanks every value of suppressed
    areas, blanks the direct columns of areas under ``min_households``, and strips private
    columns. Descriptive columns (ids, names, population, counts) stay.
    """
    s = settings or DisclosureSettings()
    out = (
        table.copy()
        if "publish" in table
        else gate(table, s, cv=cv, n_households=n_households, direct_columns=direct_columns)
    )
    values = [c for c in (*value_columns, *direct_columns, cv) if c in out]
    direct = [c for c in direct_columns if c in out]
    sup = (out["publish"] == "suppressed").to_numpy()
    out.loc[sup, values] = np.nan
    if direct and n_households in out:
        small = pd.to_numeric(out[n_households], errors="coerce").fillna(0) < s.min_households
        out.loc[small.to_numpy(), direct] = np.nan
    return strip_private(out)


def violations(
    public: pd.DataFrame,
    settings: DisclosureSettings | None = None,
    *,
    value_columns: Sequence[str],
    direct_columns: Sequence[str] = (),
    cv: str = "cv",
    n_households: str = "n_households",
) -> list[str]:
    """Every way a public area table breaks the rules (empty when it is publishable).

    Written independently of :func:`gate` so that each checks the other.
    """
    s = settings or DisclosureSettings()
    found: list[str] = []
    names = [n for n in (public.index.names or []) if n is not None]
    for k in RECORD_KEYS:
        if k in names or k in public.columns:
            found.append(f"record key {k!r} present")
    found += [f"private column {c!r} present" for c in PRIVATE_COLUMNS if c in public.columns]
    if "publish" not in public or "reason" not in public:
        return [*found, "no publish/reason columns"]
    pub = public["publish"]
    bad = ~pub.isin(PUBLISH_VALUES)
    found += [f"area {i!r}: publish={v!r} not allowed" for i, v in pub[bad].items()]
    c = pd.to_numeric(public[cv], errors="coerce") if cv in public else None
    shown = [col for col in (*value_columns, *direct_columns) if col in public]
    for i in public.index[pub == "suppressed"]:
        row = public.loc[i, shown]
        if row.notna().any():
            found.append(f"area {i!r}: suppressed but shows {list(row[row.notna()].index)}")
    for i in public.index[pub.isin(("yes", "flagged"))]:
        cvi = float(c.loc[i]) if c is not None else float("nan")
        if not np.isfinite(cvi):
            found.append(f"area {i!r}: published without a CV")
        elif cvi > s.cv_suppress:
            found.append(f"area {i!r}: published with CV {cvi:.3f} > {s.cv_suppress}")
        elif pub.loc[i] == "yes" and cvi > s.cv_flag:
            found.append(f"area {i!r}: CV {cvi:.3f} > {s.cv_flag} but not flagged")
    for i in public.index[pub.isin(("flagged", "suppressed"))]:
        if not str(public.loc[i, "reason"]).strip():
            found.append(f"area {i!r}: {pub.loc[i]} without a reason")
    direct = [col for col in direct_columns if col in public]
    if direct:
        if n_households not in public:
            found.append("direct estimates shown without household counts")
        else:
            nh = pd.to_numeric(public[n_households], errors="coerce").fillna(0)
            small = public.index[(nh < s.min_households).to_numpy()]
            for i in small:
                row = public.loc[i, direct]
                if row.notna().any():
                    found.append(
                        f"area {i!r}: direct estimate shown on {int(nh.loc[i])} households"
                    )
    return found
