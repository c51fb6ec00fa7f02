"""Settings of the estimation stage (the ``estimate:`` key of a study-area config).

Every field has a documented default chosen for a DHS/LSMS-like survey (clusters of about
25 households, displaced coordinates) and the publication rules common in official
small-area statistics (Eurostat/ONS/INE practice: CV <= 20 % plain, 20-30 % flagged,
> 30 % suppressed; no direct estimate on fewer than 25 households).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DisclosureSettings", "EstimationSettings"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisclosureSettings(_Model):
    """Publication rules for anything marked public (see :mod:`povertymap.estimate.disclosure`)."""

    min_households: Annotated[int, Field(ge=1)] = Field(
        25,
        description="An area whose direct estimate rests on fewer surveyed households never "
        "shows it (the direct columns are withheld).",
    )
    cv_flag: Annotated[float, Field(gt=0)] = Field(
        0.20, description="CV above this (and up to cv_suppress) is published with a flag."
    )
    cv_suppress: Annotated[float, Field(gt=0)] = Field(
        0.30, description="CV above this suppresses every estimate of the area."
    )

    @model_validator(mode="after")
    def _ordered(self) -> DisclosureSettings:
        if self.cv_flag > self.cv_suppress:
            raise ValueError(
                f"cv_flag={self.cv_flag} exceeds cv_suppress={self.cv_suppress}; "
                "the flag threshold must not be above the suppression threshold"
            )
        return self


class WithinSd(_Model):
    """Within-cluster sd of the target among households, by urban/rural."""

    urban: Annotated[float, Field(gt=0)] = Field(description="In urban clusters.")
    rural: Annotated[float, Field(gt=0)] = Field(description="In rural clusters.")


class EstimationSettings(_Model):
    """How cell and area estimates, their intervals and the public tables are made."""

    level: Annotated[float, Field(gt=0.5, lt=1.0)] = Field(
        0.9, description="Nominal coverage of every interval (cells, areas, headcounts)."
    )
    calibration: Literal["balanced", "regression", "variance", "none"] = Field(
        "regression",
        description="How out-of-fold predictions are de-shrunk: 'regression' (slope of truth "
        "on estimate 1, variance ratio r²: the most accurate estimate of each cell), "
        "'variance' (variance ratio 1, slope r), 'balanced' (the geometric middle), or "
        "'none'. Both targets at once need r >= 0.81.",
    )
    cell_target: Literal["realized", "expected"] = Field(
        "realized",
        description="What cell intervals cover: the mean (and headcount) realised by the "
        "people living in the cell, which for a cell of a few households strays far from "
        "its expected value (finite-population deviation, variance within_sd² K / H), or "
        "the expected (superpopulation) mean.",
    )
    map_benchmark: Literal["survey", "none"] = Field(
        "survey",
        description="'survey': shift every cell estimate by one constant so that their "
        "population-weighted mean over the training area equals the survey's design-based "
        "direct estimate of the national mean (a difference benchmark, as small-area "
        "estimates are benchmarked to a reliable direct estimate); its sampling error is "
        "shared by every cell in the area intervals. Cells are featurised unlike the "
        "clusters the model learnt from and their mean drifts (docs/methods.md). Needs "
        "the survey's households; 'none' keeps the calibrated predictions.",
    )
    mondrian: bool = Field(
        True, description="Separate conformal quantiles (and error sds) for urban and rural."
    )
    mondrian_groups: Literal["map", "survey"] = Field(
        "map",
        description="Which urban flag puts clusters in the conformal groups: 'map' (the "
        "urban flag of the map cell at the cluster's published location, the rule that "
        "groups the cells: Mondrian conformal prediction needs one taxonomy for "
        "calibration and test points) or 'survey' (the survey's own urban/rural "
        "classification, generally another definition than the map's).",
    )
    noise_correction: Literal["scale", "none"] = Field(
        "scale",
        description="'scale': deconvolve the cluster sampling noise (within-cluster "
        "variance / n) from the conformal scores so intervals cover the true cell mean; "
        "'none': plain conformal against noisy cluster means (wider).",
    )
    position_draws: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Re-displacements of the survey clusters that measure the part of the "
        "out-of-fold error due to their displaced coordinates (the map's cells have none): "
        "each fold model also predicts its clusters from features at locations displaced "
        "once more, and the rise in squared error is removed from the cell intervals' "
        "error variance like sampling noise (SIMEX). 0 (default) keeps it in: with a ridge "
        "on point-sensitive features the rise was two thirds of the error and the "
        "intervals covered 0.61 (docs/methods.md).",
    )
    min_group_size: Annotated[int, Field(ge=5)] = Field(
        30,
        description="Clusters a Mondrian group needs for its own quantile; smaller groups "
        "fall back to the pooled quantile (recorded in the metrics).",
    )
    measurement_error_sd: Annotated[float, Field(ge=0)] = Field(
        0.0,
        description="Known sd of measurement error of household log consumption (from "
        "validation studies); removed from the within-cluster dispersion used for "
        "headcounts. 0 keeps the measured dispersion (conservative for headcounts near "
        "the middle of the distribution, biased in the tails).",
    )
    within_sd: WithinSd | None = Field(
        None,
        description="For a survey given as cluster means only (no households table): the "
        "sd of the target among a cluster's households, urban and rural (from the survey's "
        "report or an earlier round). With the clusters' household counts "
        "(survey.clusters.households) it gives each cluster mean's sampling noise, "
        "within_sd² / n, which is then removed from the out-of-fold residuals as a "
        "households table's would be; without it the noise stays in and the intervals "
        "lean wide. Ignored when the survey has households.",
    )
    person_weighted: bool = Field(
        True,
        description="Weight households by weight x hh_size (statistics of people, as "
        "headcounts are); False weights by household weight only.",
    )
    correlation: Literal["variogram", "independent"] = Field(
        "variogram",
        description="Error correlation between cells for area intervals: an exponential "
        "covariance fitted to the OOF residuals' variogram, or none (too narrow; for "
        "comparison only).",
    )
    area_effects: bool = Field(
        True,
        description="Fit, beside the exponential error field, errors shared by every "
        "place of an admin-2 and of an admin-1 unit (from OOF residual pairs within and "
        "across units) and draw them in the area simulations. Without them area "
        "intervals ignore what the features cannot see about a district and are too "
        "narrow.",
    )
    variogram_max_m: Annotated[float, Field(gt=0)] = Field(
        60_000.0, description="Largest cluster separation used in the variogram (m)."
    )
    variogram_bins: Annotated[int, Field(ge=4)] = Field(12, description="Variogram lag bins.")
    n_simulations: Annotated[int, Field(ge=50)] = Field(
        1000, description="Draws of the correlated error field for area intervals."
    )
    fh_method: Literal["REML", "ML", "FH"] = Field(
        "REML", description="Fay-Herriot variance estimator (as R sae::eblupFH)."
    )
    out_of_area_refits: Annotated[int, Field(ge=2)] | None = Field(
        10,
        description="Refits behind Fay-Herriot's synthetic estimate (each cell predicted "
        "by a model that never saw its admin-2 unit's clusters): the surveyed units are "
        "dealt in id order into this many groups, one refit without each group's clusters "
        "(cross-fitting); null refits once per unit.",
    )
    variance_smoothing: Literal["gvf", "direct"] = Field(
        "gvf",
        description="Sampling variances given to Fay-Herriot: 'gvf' smooths every area's "
        "with a design-effect generalised variance function; 'direct' keeps design "
        "variances where an area has >= 2 clusters and uses the GVF only for the rest.",
    )
    design_strata: tuple[str, ...] = Field(
        ("parent_id", "urban"),
        description="Cluster columns whose combinations are the survey's design strata "
        "(DHS and LSMS stratify by region x urban/rural); absent columns are ignored, () "
        "treats the survey as unstratified. A cluster column 'pi' (first-stage inclusion "
        "probability) or 'ea_households' (households listed in the EA) adds the "
        "first-stage finite-population correction (see docs/methods.md).",
    )
    benchmark: Literal["none", "ratio", "difference"] = Field(
        "none",
        description="Adjust FH estimates so their population-weighted mean equals the "
        "national direct estimate.",
    )
    disclosure: DisclosureSettings = Field(default_factory=DisclosureSettings)
    seed: int | None = Field(
        None, description="Seed of the simulations when no numpy Generator is passed."
    )
