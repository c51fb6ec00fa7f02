"""The greedy fill shared by area and household targeting: never over budget."""

from __future__ import annotations

import numpy as np


def fill_greedy(
    order: np.ndarray,
    cost: np.ndarray,
    max_cov: np.ndarray,
    cov: np.ndarray,
    spent: float,
    capacity: float,
    *,
    partial: bool,
    target: float | None = None,
    reserve: float = 0.0,
) -> float:
    """Cover units in ``order`` until ``target`` (or the budget less ``reserve``) is spent.

    Updates ``cov`` in place and returns the new total spent. A unit is covered whole
    only when ``spent + cost <= capacity - reserve``; in partial mode the last one is
    covered in part. ``target`` bounds what this walk adds (a region's floor).
    """
    added = 0.0
    limit = capacity - reserve
    for i in order:
        if target is not None and added >= target:
            break
        if cost[i] <= 0 or cov[i] >= max_cov[i]:
            continue
        if partial:
            room = limit - spent
            if target is not None:
                room = min(room, target - added)
            add = min(cost[i] * (max_cov[i] - cov[i]), room)
            if add <= 0:
                if room <= 0:
                    break
                continue
            cov[i] = min(max_cov[i], cov[i] + add / cost[i])
            spent = min(spent + add, capacity)
            added += add
        elif cov[i] == 0 and max_cov[i] >= 1 and spent + cost[i] <= limit:
            cov[i] = 1.0
            spent += cost[i]
            added += cost[i]
    return spent


def fill_in_order(
    order: np.ndarray,
    cost: np.ndarray,
    max_cov: np.ndarray,
    cov: np.ndarray,
    spent: float,
    capacity: float,
    *,
    partial: bool,
) -> float:
    """Vectorised :func:`fill_greedy` without a target: same result, for long rankings.

    Whole units: take the longest prefix of the still-fitting candidates whose cumulative
    cost fits, then look again among the later candidates that fit in what is left (the
    skip rule); each pass covers at least one unit and the room shrinks every pass.
    """
    order = np.asarray(order)
    if partial:
        room_each = cost[order] * (max_cov[order] - cov[order])
        ok = (cost[order] > 0) & (room_each > 0)
        idx, need = order[ok], room_each[ok]
        room = capacity - spent
        if room <= 0 or len(idx) == 0:
            return spent
        cum = np.cumsum(need)
        full = int(np.searchsorted(cum, room, side="right"))
        cov[idx[:full]] = max_cov[idx[:full]]
        used = float(cum[full - 1]) if full else 0.0
        if full < len(idx):
            i = idx[full]
            cov[i] = min(max_cov[i], cov[i] + (room - used) / cost[i])
            return capacity
        return min(spent + used, capacity)
    ok = (cost[order] > 0) & (cov[order] == 0) & (max_cov[order] >= 1)
    cand = order[ok]
    while len(cand):
        room = capacity - spent
        cand = cand[cost[cand] <= room]
        if len(cand) == 0:
            break
        cum = np.cumsum(cost[cand])
        take = int(np.searchsorted(cum, room, side="right"))
        # cumsum rounding must never let the total pass the capacity
        while take > 0 and spent + float(cum[take - 1]) > capacity:
            take -= 1
        if take == 0:
            break
        cov[cand[:take]] = 1.0
        spent += float(cum[take - 1])
        cand = cand[take:]
    return spent
