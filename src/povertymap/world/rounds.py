"""Time in the simulator: a later survey round of the same country.

``generate(..., survey_round=2)`` builds the country of round 1 (same seed, same
geography, settlements and households) and moves it on before any household is drawn:

- **growth**: half of the admin-1 regions (at least one, drawn per round) gain
  :data:`GROWTH` log points of mean consumption, the others :data:`BASELINE_GROWTH`;
- **new electrification**: in growing regions, :data:`NEW_ELECTRIFICATION` of the
  populated unlit cells get the grid (their households light up);
- **new roads and settlements**: more households in growing regions
  (:data:`HOUSEHOLD_GROWTH`; the EA frame is rebuilt on them) and a new track from each
  of the villages farthest from a road to the nearest road;
- **a new survey sample**: the survey's draws (EAs and households) come from streams keyed
  by the round, as do the nightlight noise and the OSM mapping;
- optionally **a changed nightlight product** (``lights_gain`` != 1): a sensor
  recalibration that scales every radiance above zero without any change in welfare.

The poverty line stays the one of round 1 (the line is fixed in real money), so growth
lowers the headcount. Round 1 is the country :func:`generate` has always written: nothing
here runs for it, and its bytes are unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from povertymap.errors import ConfigError
from povertymap.world.country import Country
from povertymap.world.randomness import Streams
from povertymap.world.survey import make_ea_frame

__all__ = [
    "BASELINE_GROWTH",
    "GROWTH",
    "HOUSEHOLD_GROWTH",
    "NEW_ELECTRIFICATION",
    "RoundStreams",
    "advance",
    "check_round",
]

#: Log points of mean consumption gained by a growing region, and by the others.
GROWTH = 0.30
BASELINE_GROWTH = 0.02
#: Share of populated unlit cells of a growing region connected to the grid.
NEW_ELECTRIFICATION = 0.5
#: Relative growth of the households of a growing region.
HOUSEHOLD_GROWTH = 0.15
#: Villages farthest from a road that get a new track, as a share of villages.
NEW_TRACKS = 0.1
#: Components whose draws are new in every round (the rest is the same country).
FRESH = frozenset(
    {"survey-ea", "survey-households", "survey-districts", "lights-noise", "osm-roads", "osm-pois"}
)


class RoundStreams(Streams):
    """The seed's streams, with the components of :data:`FRESH` keyed by the round."""

    def __init__(self, seed: int, survey_round: int) -> None:
        super().__init__(seed)
        self.survey_round = int(survey_round)

    def get(self, name: str, *keys: int) -> np.random.Generator:
        if name in FRESH:
            return super().get(f"{name}@round{self.survey_round}", *keys)
        return super().get(name, *keys)


def check_round(survey_round: int, lights_gain: float) -> None:
    """Refuse a round below 1 or a non-positive nightlight gain."""
    if int(survey_round) < 1:
        raise ConfigError(
            f"survey round {survey_round!r} is below 1",
            where="generate(survey_round=...)",
            fix="use 1 (the country as it is) or a later round (2, 3, ...)",
        )
    if not lights_gain > 0:
        raise ConfigError(
            f"lights_gain={lights_gain!r} is not positive",
            where="generate(lights_gain=...)",
            fix="give the factor of the recalibrated nightlight product (e.g. 1.5)",
        )


def _rng(country: Country, name: str, survey_round: int) -> np.random.Generator:
    seed = np.random.SeedSequence(
        country.streams.seed, spawn_key=(zlib.crc32(f"round-{name}".encode()), survey_round)
    )
    return np.random.default_rng(seed)


def advance(country: Country, survey_round: int, *, lights_gain: float = 1.0) -> Country:
    """The country of ``survey_round`` (>= 2) from the country of round 1."""
    steps = survey_round - 1
    rng = _rng(country, "growth", survey_round)
    n_regions = len(country.admin1_codes)
    growing = rng.choice(n_regions, size=max(1, n_regions // 2), replace=False)
    grows = np.isin(country.admin1, growing) & (country.admin1 >= 0)
    mu = country.mu + steps * np.where(grows, GROWTH, BASELINE_GROWTH)

    populated = country.n_households > 0
    candidates = grows & populated & ~country.electrified
    connect = candidates & (
        _rng(country, "grid", survey_round).random(mu.shape) < min(1.0, NEW_ELECTRIFICATION * steps)
    )
    electrified = country.electrified | connect

    extra = _rng(country, "households", survey_round).poisson(
        HOUSEHOLD_GROWTH * steps * country.n_households * grows
    )
    n_hh = (country.n_households + extra).astype(np.int64)
    offset = (np.cumsum(n_hh.ravel()) - n_hh.ravel()).reshape(n_hh.shape)
    density = country.density * np.where(populated, n_hh / np.maximum(country.n_households, 1), 1)

    moved = replace(
        country,
        streams=RoundStreams(country.streams.seed, survey_round),
        mu=mu,
        electrified=electrified,
        n_households=n_hh,
        household_offset=offset,
        density=density,
        roads=_new_tracks(country),
        ea=make_ea_frame(n_hh, country.admin2, country.urban, country.spec.ea_households),
        lights_gain=float(lights_gain),
    )
    moved.round_info = {
        "survey_round": int(survey_round),
        "growing_admin1": [str(country.admin1_codes[i]) for i in sorted(growing)],
        "growth_log_points": {"growing": steps * GROWTH, "other": steps * BASELINE_GROWTH},
        "newly_electrified_cells": int(connect.sum()),
        "new_households": int(extra.sum()),
        "lights_gain": float(lights_gain),
    }
    return moved


def _new_tracks(country: Country) -> gpd.GeoDataFrame:
    """The road network with a new track from the villages farthest from any road."""
    roads = country.roads
    st = country.settlements.table
    villages = st[st["kind"] == "village"]
    if villages.empty or roads.empty:
        return roads
    pts = shapely.points(villages["x"].to_numpy(), villages["y"].to_numpy())
    tree = shapely.STRtree(roads.geometry.to_numpy())
    idx, dist = tree.query_nearest(pts, return_distance=True, all_matches=False)
    order = np.argsort(-dist)
    k = max(1, round(NEW_TRACKS * len(villages)))
    picked = order[:k]
    lines = shapely.shortest_line(pts[idx[0][picked]], roads.geometry.to_numpy()[idx[1][picked]])
    lines = [ln for ln in lines if ln.length > 0]
    if not lines:
        return roads
    new = gpd.GeoDataFrame(
        {"highway": ["track"] * len(lines), "surface": [roads["surface"].iloc[-1]] * len(lines)},
        geometry=lines,
        crs=roads.crs,
    )
    track = roads[roads["highway"] == "track"]
    if not track.empty:
        new["surface"] = track["surface"].iloc[0]
    new.insert(0, "road_id", np.arange(len(roads) + 1, len(roads) + len(new) + 1))
    return gpd.GeoDataFrame(pd.concat([roads, new], ignore_index=True), crs=roads.crs)
