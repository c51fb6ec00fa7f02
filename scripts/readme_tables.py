"""The README's results section, generated from recorded metrics and checked by a test.

Every figure between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in README.md
comes from a ``metrics.json`` recorded under ``docs/results/`` by the command listed for
it in :data:`RESULTS`. To refresh the figures::

    .venv/bin/povertymap run data/demo/study.yaml --truth data/demo/truth --compare --out runs
    .venv/bin/python scripts/readme_tables.py record demo runs/<run_id>
    ... (the other commands of RESULTS, each followed by `record NAME FOLDER`)
    .venv/bin/python scripts/readme_tables.py write

``check`` exits with 1 when the README differs from what the recorded metrics give
(``tests/test_readme.py`` runs it), so no figure can be edited by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: Recorded metrics by name, with the command that made them (run from the repository root
#: after `make demo`, and `python examples/lsms-africa/prepare.py` for the LSMS ones).
RESULTS = {
    "demo": "povertymap run data/demo/study.yaml --truth data/demo/truth --compare",
    "demo-50km": "povertymap evaluate data/demo/study.yaml --block-size 50000 --buffer 10000",
    "demo-redisplace": "povertymap evaluate data/demo/study.yaml --block-size 2000 --buffer 0 "
    "--redisplace 5",
    "lsms-folds": "povertymap evaluate examples/lsms-africa/build/study.yaml --cv group "
    "--group fold",
    "lsms-countries": "povertymap evaluate examples/lsms-africa/build/study.yaml --cv group "
    "--group country",
    # the same with model.target_standardize_by: country (r² on the within-country index)
    "lsms-folds-within": "povertymap evaluate examples/lsms-africa/build/study-within.yaml "
    "--cv group --group fold",
    "lsms-countries-within": "povertymap evaluate examples/lsms-africa/build/study-within.yaml "
    "--cv group --group country",
}

LABELS = {
    "model": "**default: stack, calibrated**",
    "baseline": "nightlights only",
    "no_imagery": "LightGBM without imagery",
    "tabular": "tabular (LightGBM, simple imagery statistics)",
    "random features": "random convolutional features (ridge)",
    "transfer CNN": "transfer CNN (ridge)",
    "stacked": "stack of the three, uncalibrated",
}


def _f(x: Any, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _bold(row: str, yes: bool) -> str:
    if not yes:
        return row
    cells = row.strip("|").split("|")
    return "|" + "|".join(f" **{c.strip()}** " if c.strip() else c for c in cells) + "|"


def load(results: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """The recorded metrics by name."""
    recorded = {name: json.loads((results / f"{name}.json").read_text()) for name in RESULTS}
    recorded["robustness"] = json.loads((results / ROBUSTNESS.name).read_text())
    return recorded


def models_table(m: dict[str, Any]) -> list[str]:
    """CV and truth r² of the map and of every model compared with it."""
    cv, truth = m["cv"], m["truth"]
    rows = [
        "| model | CV r² | CV r², dark clusters | r² vs truth | r² vs truth, dark cells |",
        "|---|---|---|---|---|",
    ]
    for name, v in cv["models"].items():
        t = truth.get("estimate" if name == "model" else name, {})
        dark = v.get("by_group", {}).get("lights", {}).get("dark", {})
        row = (
            f"| {LABELS.get(name, name).strip('*')} | {_f(v['r2'])} | {_f(dark.get('r2'))} | "
            f"{_f(t.get('all', {}).get('r2'))} | {_f(t.get('dark', {}).get('r2'))} |"
        )
        rows.append(_bold(row, name == "model"))
    return rows


def checks_table(m: dict[str, Any]) -> list[str]:
    """Coverage of intervals and calibration against the truth."""
    e = m["truth"]["estimate"]
    cov, pov, adm = e["cell_coverage"], e.get("cell_poverty_coverage", {}), e["admin2"]
    after = e["calibration"]["after"]
    rows = ["| check | value |", "|---|---|"]
    rows.append(
        f"| cell 90% intervals, coverage (all / urban / rural) | {cov['overall']:.3f} / "
        f"{cov['urban']:.3f} / {cov['rural']:.3f} |"
    )
    if pov:
        rows.append(f"| cell poverty-rate 90% intervals, coverage | {pov['overall']:.3f} |")
    rows.append(
        "| admin-2 90% intervals, coverage: map / Fay-Herriot | "
        f"{adm['mean']['coverage']:.3f} / {adm['fh_mean']['coverage']:.3f} |"
    )
    rows.append(
        "| calibration, slope / variance ratio vs true cells (after) | "
        f"{after['slope_pop']:.3f} / {after['var_ratio_pop']:.3f} |"
    )
    sae = adm.get("sae_mean", {})
    if sae:
        rows.append(
            "| admin-2 RMSE: Fay-Herriot / direct survey / map | "
            f"{sae['rmse_fh']:.3f} / {sae['rmse_direct']:.3f} / {sae['rmse_synthetic']:.3f} |"
        )
    return rows


def targeting_table(m: dict[str, Any]) -> list[str]:
    """Every targeting method at the run's budget against the true consumption."""
    rows = [
        "| method | poor covered | exclusion error | inclusion error | welfare vs oracle |",
        "|---|---|---|---|---|",
    ]
    for name, v in m["truth"]["targeting"]["methods"].items():
        label = {"this plan": "this plan (targeting.csv)", "map (this run)": "map ranking"}.get(
            name, name
        )
        row = (
            f"| {label} | {v['poor_covered']:.3f} | {v['exclusion_error']:.3f} | "
            f"{v['inclusion_error']:.3f} | {v['welfare_vs_oracle']:.2f} |"
        )
        rows.append(_bold(row, name == "this plan"))
    return rows


#: The robustness benchmark's rows (not a metrics.json: one row per simulated world).
ROBUSTNESS = RESULTS_DIR / "robustness.json"
ROBUSTNESS_COMMAND = "python benchmarks/robustness.py --json docs/results/robustness.json"


def robustness_table(rows: list[dict[str, Any]]) -> list[str]:
    """The headline columns of the robustness benchmark, one row per world."""
    out = [
        "| world | map r² | CV r² | CV gap | cell coverage (all / urban / rural) | "
        "width / truth sd | admin-2 coverage (map / FH) | calibration slope |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['world']} | {_f(r['map_r2'])} | {_f(r['cv_r2'])} | {r['cv_gap']:+.3f} | "
            f"{_f(r['cell_coverage'])} / {_f(r['cell_coverage_urban'])} / "
            f"{_f(r['cell_coverage_rural'])} | {_f(r['width_to_sd'], 2)} | "
            f"{_f(r['admin2_coverage_map'])} / {_f(r['admin2_coverage_fh'])} | "
            f"{_f(r['calibration_slope'], 2)} |"
        )
    return out


def missed_targets(rows: list[dict[str, Any]]) -> str:
    """One sentence counting the worlds that miss each target of the robustness table."""
    n = len(rows)

    def count(test: Any) -> int:
        return sum(1 for r in rows if test(r))

    def off(key: str, lo: float, hi: float) -> Any:
        return lambda r: r.get(key) is not None and not lo <= r[key] <= hi

    parts = [
        f"cell coverage above 0.92 in {count(lambda r: r['cell_coverage'] > 0.92)}",
        f"below 0.88 in {count(lambda r: r['cell_coverage'] < 0.88)}",
        f"urban or rural below 0.85 in "
        f"{count(lambda r: min(r['cell_coverage_urban'], r['cell_coverage_rural']) < 0.85)}",
        f"CV gap beyond 0.05 in {count(lambda r: abs(r['cv_gap']) > 0.05)}",
        f"admin-2 map intervals outside 0.85-0.95 in "
        f"{count(off('admin2_coverage_map', 0.85, 0.95))}",
        f"calibration slope outside 0.9-1.1 in {count(off('calibration_slope', 0.9, 1.1))}",
    ]
    return (
        f"Targets missed, of {n} worlds (docs/methods.md says where and why): "
        + "; ".join(parts)
        + ":"
    )


def section(results: dict[str, dict[str, Any]]) -> str:
    """The generated part of the README."""
    demo = results["demo"]
    cv = demo["cv"]
    t = demo["targeting"]
    tg = demo["truth"]["targeting"]
    wide = results["demo-50km"]["cv"]
    moved = results["demo-redisplace"]["displacement"]
    folds, countries = results["lsms-folds"]["cv"], results["lsms-countries"]["cv"]
    seconds = sum(demo["timings_s"].values())
    lines = [
        BEGIN,
        "",
        f"Measured on the demo country (seed 7) with `{RESULTS['demo']}`. Cross-validation:",
        f"spatial blocks of {cv['block_size_m'] / 1000:g} km chosen by distance matching",
        "(`block_size_m: auto`, [docs/mapping.md](docs/mapping.md)),",
        f'{cv["folds"]} folds, {int(cv["n"])} clusters; "vs truth" compares the map with the',
        "true mean of every populated 1 km cell, weighted by people; dark = below the",
        "nightlight floor.",
        "",
        *models_table(demo),
        "",
        f"Random folds would claim {cv['random_cv']['r2']:.3f}; "
        f"{wide['block_size_m'] / 1000:g} km blocks with a {wide['buffer_m'] / 1000:g} km "
        f"buffer (the default for national surveys) say {wide['r2']:.3f} on this small,",
        f"densely surveyed country (`{RESULTS['demo-50km']}`), far below the map's true",
        f"{demo['truth']['estimate']['all']['r2']:.3f}. Re-displacing the clusters once more",
        f"by the DHS rules moves the CV r² by {moved['mean_change']:+.3f} on average "
        f"({moved['draws']} draws, sd {moved['sd']:.3f}; `{RESULTS['demo-redisplace']}`).",
        "",
        "Honest estimates ([docs/methods.md](docs/methods.md)), against the truth:",
        "",
        *checks_table(demo),
        "",
        f"Targeting {t['budget']} of the {t['measure']} ({t['method']}, {t['unit']}s), "
        "against every household's",
        f"true consumption at {tg['level']} level ([docs/targeting.md](docs/targeting.md)):",
        "",
        *targeting_table(demo),
        "",
        "Real data, LSMS Africa (3,020 villages in five countries;",
        "[examples/lsms-africa](examples/lsms-africa)), `povertymap evaluate` with LightGBM on",
        f"features derived from the satellite histograms: **r² {folds['r2']:.3f}** under the",
        f"published folds A-E (`{RESULTS['lsms-folds']}`; the data's reference: 0.67) and",
        f"**{countries['r2']:.3f}** leave-one-country-out (`--group country`; reference: -0.03).",
        "",
        f"The same job on {len(results['robustness']['rows'])} simulated worlds that differ "
        "in what matters for the methods",
        f"([docs/methods.md](docs/methods.md) has every column; `{ROBUSTNESS_COMMAND}`,",
        "LightGBM on the classical features, seed 7). "
        + missed_targets(results["robustness"]["rows"]),
        "",
        *robustness_table(results["robustness"]["rows"]),
        "",
        f"The demo run above took {seconds:.0f} s on 2 cores (`timings_s` of its metrics:",
        ", ".join(f"{k} {v:.0f} s" for k, v in demo["timings_s"].items() if v >= 1) + ").",
        "Speed and memory benchmarks print JSON: `make bench`.",
        "",
        END,
    ]
    return "\n".join(lines)


def render(readme: str, results: dict[str, dict[str, Any]]) -> str:
    """``readme`` with its results section replaced by :func:`section`."""
    head, _, rest = readme.partition(BEGIN)
    _, found, tail = rest.partition(END)
    if not found:
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    return head + section(results) + tail


def main(argv: list[str]) -> int:
    """``record NAME FOLDER``, ``write`` or ``check``."""
    if argv[:1] == ["record"] and len(argv) == 3:
        name, folder = argv[1], Path(argv[2])
        if name not in RESULTS:
            raise SystemExit(f"unknown result {name!r}; one of {', '.join(RESULTS)}")
        metrics = json.loads((folder / "metrics.json").read_text())
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{name}.json").write_text(json.dumps(metrics, indent=1) + "\n")
        return 0
    if argv == ["write"]:
        README.write_text(render(README.read_text(), load()))
        return 0
    if argv == ["check"]:
        text = README.read_text()
        if render(text, load()) != text:
            print("README.md results differ from docs/results/: run `readme_tables.py write`")
            return 1
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
