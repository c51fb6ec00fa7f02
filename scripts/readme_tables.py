"""Print the README's result tables from a run directory's metrics.json (Markdown).

Run: ``.venv/bin/python scripts/readme_tables.py runs/<run_id>`` after
``povertymap run --compare`` on the demo country (with its truth). Every figure in the
README's results section comes from this output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LABELS = {
    "model": "default model (config)",
    "baseline": "nightlights only",
    "no_imagery": "no imagery (LightGBM)",
}


def _f(x: Any) -> str:
    return "" if x is None else f"{x:.3f}"


def main(run_dir: Path) -> None:
    m = json.loads((run_dir / "metrics.json").read_text())
    cv, truth = m["cv"], m.get("truth", {})
    print(
        f"CV: {cv['scheme']} blocks of {cv.get('block_size_m', 0) / 1000:g} km, "
        f"{cv['folds']} folds, {int(cv['n'])} clusters; random folds r² "
        f"{cv['random_cv']['r2']:.3f}"
    )
    print("\n| model | CV r² | CV r², dark clusters | r² vs truth | r² vs truth, dark cells |")
    print("|---|---|---|---|---|")
    for name, v in cv["models"].items():
        t = truth.get("estimate" if name == "model" else name, {})
        dark = v.get("by_group", {}).get("lights", {}).get("dark", {})
        print(
            f"| {LABELS.get(name, name)} | {_f(v['r2'])} | {_f(dark.get('r2'))} | "
            f"{_f(t.get('all', {}).get('r2'))} | {_f(t.get('dark', {}).get('r2'))} |"
        )
    e = truth.get("estimate", {})
    if "cell_coverage" in e:
        cov, pov = e["cell_coverage"], e.get("cell_poverty_coverage", {})
        adm = e.get("admin2", {})
        cal = m["estimate"]["calibration"]
        after = e["calibration"]["after"]
        print("\n| check | value |\n|---|---|")
        print(
            f"| cell 90% intervals, coverage (all / urban / rural) | {cov['overall']:.3f} / "
            f"{cov['urban']:.3f} / {cov['rural']:.3f} ({cov['n_urban']} urban cells) |"
        )
        if pov:
            print(f"| cell poverty-rate intervals, coverage | {pov['overall']:.3f} |")
        for key, label in (("mean", "admin-2 map intervals"), ("fh_mean", "admin-2 Fay-Herriot")):
            if key in adm:
                print(f"| {label}, coverage | {adm[key]['coverage']:.3f} |")
        print(
            f"| calibration slope / variance ratio, before (vs survey) | "
            f"{cal['slope_before']:.3f} / {cal['var_ratio_before']:.3f} |"
        )
        print(
            f"| calibration slope / variance ratio, after (vs survey) | "
            f"{cal['slope_after']:.3f} / {cal['var_ratio_after']:.3f} |"
        )
        print(
            f"| slope / variance ratio vs true cells, after (population weighted) | "
            f"{after['slope_pop']:.3f} / {after['var_ratio_pop']:.3f} |"
        )
        sae = adm.get("sae_mean", {})
        if sae:
            print(
                f"| area RMSE: Fay-Herriot / direct / map | {sae['rmse_fh']:.3f} / "
                f"{sae['rmse_direct']:.3f} / {sae['rmse_synthetic']:.3f} |"
            )
            print(
                f"| areas with FH MSE below the direct variance | "
                f"{sae['share_mse_below_design_var']:.2f} |"
            )
    tg = truth.get("targeting")
    if tg:
        print(f"\nTargeting at {tg['budget']} of people ({tg['level']} level):\n")
        print("| method | poor covered | exclusion error | inclusion error | welfare vs oracle |")
        print("|---|---|---|---|---|")
        for name, v in tg["methods"].items():
            print(
                f"| {name} | {v['poor_covered']:.3f} | {v['exclusion_error']:.3f} | "
                f"{v['inclusion_error']:.3f} | {v['welfare_vs_oracle']:.2f} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
