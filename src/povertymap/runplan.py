"""The run plan: which stages a run will make of a study area, checked before any work.

:func:`plan_run` looks only at what :func:`~povertymap.studyarea.load_study_area` read
(no feature is computed) and says, stage by stage, whether it runs and what it needs. A
stage whose optional input is missing is skipped, with one warning when the run starts; a
stage the config asks for explicitly (a poverty line, a household targeting method, a
listed feature block) and cannot make is a :class:`~povertymap.errors.ConfigError` here,
at second zero, not after minutes of feature work. ``povertymap validate`` prints the
plan; ``run`` checks it first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from povertymap.errors import ConfigError, InputWarning, ModelError
from povertymap.features.build import make_blocks
from povertymap.features.imagery import imagery_of
from povertymap.models.evaluate import MIN_CLUSTERS, require_pooled_target

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["REQUIRED", "RunPlan", "Step", "plan_run", "survey_households"]

#: Stages without which there is no map: :meth:`RunPlan.check` refuses a run that lacks one.
REQUIRED = ("cross-validation",)


@dataclass(frozen=True)
class Step:
    """One stage of a run: whether it runs, what it needs, and why it is skipped."""

    name: str
    runs: bool
    needs: str
    why_not: str = ""


@dataclass(frozen=True)
class RunPlan:
    """The stages of a run of one study area, in order."""

    steps: list[Step]

    @property
    def skipped(self) -> list[Step]:
        """The stages that will not run."""
        return [s for s in self.steps if not s.runs]

    def check(self) -> None:
        """Raise :class:`ModelError` when a stage no map can do without will not run."""
        for step in self.skipped:
            if step.name in REQUIRED:
                raise ModelError(
                    f"{step.name} cannot run: {step.why_not}",
                    where="key survey",
                    fix=f"use a survey with at least {MIN_CLUSTERS} clusters",
                )

    def warn(self) -> None:
        """One :class:`InputWarning` per skipped stage."""
        for step in self.skipped:
            if step.name not in REQUIRED:
                warnings.warn(f"{step.name} skipped: {step.why_not}", InputWarning, stacklevel=2)


def survey_households(area: StudyArea) -> pd.DataFrame | None:
    """The survey households the estimation can use: those with a welfare column.

    A households table that carries only proxy-means variables still serves the proxy
    means test's registry columns, but no sampling noise, direct estimate or headcount.
    """
    households = area.households
    if households is None or "welfare" not in households:
        return None
    return households


def plan_run(area: StudyArea, *, truth: bool = False) -> RunPlan:
    """The run plan of ``area``; raises ConfigError for what the config asks and cannot get.

    ``truth`` says whether the run will be scored against a synthetic country's truth
    (which adds its step).
    """
    require_pooled_target(area.config.model)
    cfg = area.config
    area.require_admin()
    n = len(area.clusters)
    blocks = make_blocks(area, cfg.features, for_map=True)
    if "imagery" in area.rasters:
        imagery_of(area)  # its radiometry and mask (a band, or a raster) are checked now
    households = survey_households(area)
    no_welfare = (
        "the survey has no households table (survey.households)"
        if area.households is None
        else "the households table has no welfare column (survey.households.welfare)"
    )
    with_hh = households is not None
    declared_noise = cfg.estimate.within_sd is not None and "n_households" in area.clusters
    line = cfg.poverty_line is not None
    if line and not with_hh:
        raise ConfigError(
            f"poverty_line is set, but {no_welfare}: headcounts need the spread of welfare "
            "within clusters",
            where="key poverty_line",
            fix="add survey households with a welfare column, or remove poverty_line",
        )
    method = cfg.targeting.method
    registry = cfg.registry is not None
    if method != "geographic" and not (registry and with_hh):
        missing = "a household registry (registry:)" if not registry else no_welfare
        raise ConfigError(
            f"targeting method {method!r} needs {missing}",
            where="key targeting.method",
            fix="add it, or use method: geographic",
        )
    no_line = "no poverty_line in the config"
    steps = [
        Step("features", True, ", ".join(b.name for b in blocks)),
        Step(
            "cross-validation",
            n >= MIN_CLUSTERS,
            f"at least {MIN_CLUSTERS} survey clusters",
            f"the survey has {n} clusters: too few to fit and cross-validate a model",
        ),
        Step("map of cells", True, "boundaries and the features above"),
        Step(
            "sampling noise of cluster means",
            with_hh or declared_noise,
            "households with welfare, or estimate.within_sd and the clusters' household counts",
            f"{no_welfare}, and no estimate.within_sd with household counts "
            "(survey.clusters.households)",
        ),
        Step(
            "intervals of the realised cell mean",
            with_hh and cfg.estimate.cell_target == "realized",
            "households with welfare; estimate.cell_target: realized",
            no_welfare if not with_hh else "estimate.cell_target is expected",
        ),
        Step("poverty headcounts", line, "a poverty line and households with welfare", no_line),
        Step(
            "direct estimates and Fay-Herriot per admin-2",
            with_hh,
            "households with welfare",
            no_welfare,
        ),
        Step(
            "targeting plan",
            line or cfg.targeting.rank_by == "estimate",
            f"a poverty line, or targeting.rank_by: estimate; method {method}",
            f"{no_line} (set one, e.g. 40%, or targeting.rank_by: estimate)",
        ),
        Step(
            "proxy means test and hybrid targeting",
            registry and with_hh,
            "a household registry and households with welfare",
            "no registry in the config" if not registry else no_welfare,
        ),
    ]
    if truth:
        steps.append(
            Step(
                "targeting against the truth",
                registry and line,
                "a registry and a poverty line",
                "no registry in the config" if not registry else no_line,
            )
        )
    return RunPlan(steps)
