"""The model lifecycle on the tiny country: card, tracking, pyfunc, registry, drift, retrain.

A real MLflow sqlite store in ``tmp_path``; two survey rounds of the simulator (round 2:
growth, new lights, roads and households, a new survey, a nightlight recalibration).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from povertymap.cli import app
from povertymap.io.configfile import read_config
from povertymap.rundir import open_run

pytestmark = pytest.mark.slow

mlflow = pytest.importorskip("mlflow")


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


# -- model card --------------------------------------------------------------------------
def test_every_run_writes_a_model_card_listed_in_the_manifest(champion_run: Path) -> None:
    run = open_run(champion_run)
    assert run.verify() == []
    assert {"model_card.md", "model_card.json"} <= set(run.manifest["files"])
    card = json.loads((champion_run / "model_card.json").read_text())
    metrics = run.metrics()
    ev = card["evaluation"]
    assert ev["cv_scheme"] == "spatial" and ev["folds"] == metrics["cv"]["folds"]
    assert ev["overall"]["r2"] == pytest.approx(metrics["cv"]["r2"])
    assert set(ev["by_urban"]) == {"rural", "urban"}
    by_region = metrics["cv"]["by_group"]["region"]
    assert ev["by_region"]["R01"]["r2"] == pytest.approx(by_region["R01"]["r2"])
    assert card["intervals"]["cell_coverage_against_truth"]["overall"] == pytest.approx(
        metrics["truth"]["estimate"]["cell_coverage"]["overall"]
    )
    assert card["disclosure"]["rules"]["cv_suppress"] == 0.3
    assert card["targeting"]["against_truth"]["exclusion_error"] == pytest.approx(
        metrics["truth"]["targeting"]["methods"]["this plan"]["exclusion_error"]
    )
    assert any(x.startswith("dark areas:") for x in card["limitations"])
    assert card["intended_use"]["out_of_scope"]
    md = (champion_run / "model_card.md").read_text()
    assert "## Intended use" in md and "Out of scope" in md and "## Known limitations" in md
    assert f"r2 {metrics['cv']['r2']:.3f}" in md


# -- tracking and the pyfunc model --------------------------------------------------------
def test_log_run_records_params_metrics_tags_artifacts_and_a_pyfunc(
    champion_run: Path, tmp_path: Path
) -> None:
    from povertymap.mlops.tracking import RUN_TAG, find_mlflow_run, log_run

    uri = _uri(tmp_path)
    rid = log_run(champion_run, uri=uri)
    run = open_run(champion_run)
    assert find_mlflow_run(run.run_id, uri) == rid
    mlflow.set_tracking_uri(uri)
    logged = mlflow.get_run(rid)
    metrics = run.metrics()
    assert logged.data.params["model.name"] == "ridge"
    assert logged.data.params["cv.scheme"] == "spatial"
    assert logged.data.metrics["cv.r2"] == pytest.approx(metrics["cv"]["r2"])
    assert logged.data.metrics["cv.by_group.urban.rural.r2"] == pytest.approx(
        metrics["cv"]["by_group"]["urban"]["rural"]["r2"]
    )
    cover = metrics["truth"]["estimate"]["cell_coverage"]["overall"]
    assert logged.data.metrics["truth.estimate.cell_coverage.overall"] == pytest.approx(cover)
    assert "targeting.units_selected" in logged.data.metrics
    tags = logged.data.tags
    assert tags[RUN_TAG] == run.run_id
    assert tags["povertymap.config_sha256"] == run.manifest["config_sha256"]
    sha = run.manifest["inputs"]["survey.clusters"]["sha256"]
    assert tags["povertymap.input.survey.clusters.sha256"] == sha
    assert tags["povertymap.version"]
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(rid)}
    assert {"report.html", "metrics.json", "model_card.md", "model_card.json"} <= names
    # the pyfunc gives predict_features' numbers, with a signature of the feature columns
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{rid}/model")
    model = run.model()
    inputs = pyfunc.metadata.get_input_schema().input_names()
    assert inputs[: len(model.columns_)] == model.columns_
    frame = model.training_X_.head(20).assign(population=100.0, urban=False)
    got = pyfunc.predict(frame)
    expected = model.predict_features(frame)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.to_numpy(float), expected.to_numpy(float))


def test_cli_run_is_tracked_unless_no_track(rounds: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["evaluate", str(rounds["round1"]), "--out", str(runs / "e")])
    assert result.exit_code == 0, result.stderr
    assert "tracked: MLflow run" in result.stdout
    assert (runs / "mlflow.db").is_file()
    mlflow.set_tracking_uri(_uri(runs))
    found = mlflow.search_runs(search_all_experiments=True)
    assert len(found) == 1 and found["tags.povertymap.kind"].iloc[0] == "evaluate"
    metrics = open_run(runs / "e").metrics()
    assert found["metrics.cv.r2"].iloc[0] == pytest.approx(metrics["cv"]["r2"])
    result = runner.invoke(
        app, ["evaluate", str(rounds["round1"]), "--out", str(runs / "f"), "--no-track"]
    )
    assert result.exit_code == 0 and "tracked: MLflow run" not in result.stdout
    assert len(mlflow.search_runs(search_all_experiments=True)) == 1


def test_mlflow_is_not_imported_by_the_package_or_the_cli() -> None:
    import subprocess

    code = (
        "import povertymap, povertymap.cli, povertymap.mlops, sys; print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- registry -------------------------------------------------------------------------------
def test_register_promote_list_and_rollback(champion_run: Path, tmp_path: Path) -> None:
    from povertymap.errors import InputError
    from povertymap.mlops.registry import alias_history, get_version, list_models

    runner = CliRunner()
    store = ["--runs", str(tmp_path)]
    for _ in range(2):
        result = runner.invoke(
            app, ["models", "register", str(champion_run), "--name", "tiny", *store]
        )
        assert result.exit_code == 0, result.stderr
    assert "registered tiny version 2" in result.stdout
    uri = _uri(tmp_path)
    v1 = get_version("tiny/1", uri=uri)
    run = open_run(champion_run)
    assert v1.run_id == run.run_id
    sha = run.manifest["inputs"]["rasters.nightlights"]["sha256"]
    assert v1.tags["povertymap.input.rasters.nightlights.sha256"] == sha
    assert "## Intended use" in v1.tags["model_card"]
    card = json.loads(v1.tags["model_card.json"])
    assert card["model_details"]["run_id"] == run.run_id
    assert v1.cv_r2 == pytest.approx(run.metrics()["cv"]["r2"], abs=1e-5)

    for version in ("1", "2"):
        result = runner.invoke(app, ["models", "promote", "tiny", version, *store])
        assert result.exit_code == 0, result.stderr
    assert get_version("tiny@champion", uri=uri).version == "2"
    assert alias_history("tiny", uri=uri) == ["1"]
    listed = {v.version: v.aliases for v in list_models(uri=uri)}
    assert listed == {"2": ("champion",), "1": ()}
    result = runner.invoke(app, ["models", "list", *store])
    assert result.exit_code == 0 and "champion" in result.stdout
    result = runner.invoke(app, ["models", "rollback", "tiny", *store])
    assert result.exit_code == 0, result.stderr
    assert "rolled back to version 1" in result.stdout
    assert get_version("tiny@champion", uri=uri).version == "1"
    result = runner.invoke(app, ["models", "rollback", "tiny", *store])
    assert result.exit_code == 2 and "no earlier champion" in result.stderr
    with pytest.raises(InputError, match="no registered model 'other'"):
        get_version("other@champion", uri=uri)


# -- drift and retraining on round 2 ------------------------------------------------------
def test_monitor_flags_round_two_and_not_round_one(
    champion_run: Path, rounds: dict[str, Path], tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "drift2"
    result = runner.invoke(
        app, ["monitor", str(champion_run), str(rounds["round2"]), "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    assert "DRIFT" in result.stdout
    doc = json.loads((out / "drift.json").read_text())
    assert doc["drift"] is True
    nl = doc["features"]["nl_mean"]
    assert nl["psi"] > 0.25 and nl["drift"] is True  # the recalibrated lights
    assert min(f["ks_p"] for f in doc["features"].values()) < 0.01
    assert doc["prediction"]["psi"] > 0.25
    assert doc["labels"]["n"] == 160 and doc["labels"]["rmse"] > 0
    assert set(doc["gauges"]) >= {"detected", "feature_psi_max", "prediction_psi"}
    assert "## Drift" in (out / "drift.md").read_text()
    # the training round against itself: nothing moved
    same = tmp_path / "drift1"
    result = runner.invoke(
        app, ["monitor", str(champion_run), str(rounds["round1"]), "--out", str(same)]
    )
    assert result.exit_code == 0, result.stderr
    doc1 = json.loads((same / "drift.json").read_text())
    assert doc1["drift"] is False and doc1["summary"]["max_psi"] == pytest.approx(0.0, abs=1e-9)
    assert doc1["prediction"]["psi"] == pytest.approx(0.0, abs=1e-9)


def test_psi_and_ks_on_known_distributions() -> None:
    from povertymap.mlops.drift import ks_p, psi

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    assert psi(a, b) < 0.01 and ks_p(a, b) > 0.01
    shifted = rng.normal(0.5, 1.0, 5000)  # half an sd: PSI about 0.25 (theory: 0.25)
    assert 0.18 < psi(a, shifted) < 0.32 and ks_p(a, shifted) < 1e-10
    assert psi(np.zeros(100), np.ones(100)) > 5  # a constant reference that moved
    assert psi(a, np.r_[a[:4000], np.full(1000, np.nan)]) > 0.5  # a fifth now missing


def test_retrain_promotes_a_better_challenger_and_refuses_shuffled_labels(
    champion_run: Path, rounds: dict[str, Path], tmp_path: Path
) -> None:
    from povertymap.mlops.registry import get_version, promote, register
    from povertymap.mlops.retrain import retrain
    from povertymap.pipeline import predict, run
    from povertymap.truth import read_truth, score_cells

    runs = tmp_path / "runs"
    uri = _uri(runs)
    register(champion_run, "tiny", uri=uri)
    promote("tiny", 1, uri=uri)
    cfg2 = read_config(rounds["round2"])

    # a deliberately broken challenger: round 2 with its labels shuffled
    clusters = pd.read_csv(rounds["round2"].parent / "clusters.csv")
    shuffled = clusters.assign(
        log_consumption=np.random.default_rng(1).permutation(clusters["log_consumption"])
    )
    shuffled.to_csv(rounds["round2"].parent / "clusters-shuffled.csv", index=False)
    data = yaml.safe_load(rounds["round2"].read_text())
    data["survey"]["clusters"]["path"] = "clusters-shuffled.csv"
    data["survey"].pop("households")  # the households carry the true welfare
    data.pop("poverty_line")
    data["name"] = "tiny-shuffled"
    broken_yaml = rounds["round2"].parent / "study-shuffled.yaml"
    broken_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    broken = run(read_config(broken_yaml), runs=runs).path
    refused = retrain("tiny", cfg2, runs=runs, uri=uri, challenger_run=broken)
    # drift broke the champion so badly that even noise beats its r2: the skill check
    # (the challenger must rank the new labels better than chance) refuses it
    assert refused.promoted is False and refused.checks["skill"] is False, refused.reasons
    assert refused.challenger["own_cv"]["spearman_p_one_sided"] > 0.05
    assert get_version("tiny@champion", uri=uri).version == "1"
    assert (
        get_version(f"tiny/{refused.challenger_version}", uri=uri).tags["povertymap.gate"]
        == "refused"
    )

    # the real challenger, trained on round 2, also judged on field feedback: round 2's
    # true cell means at 60 populated cells, placed at the cells' centres
    from povertymap.truth import TRUE_MEAN

    truth = read_truth(rounds["truth2"])
    cells = open_run(champion_run).cells()
    picked = truth["cells"].loc[truth["cells"]["population"] > 0].index.intersection(cells.index)
    picked = picked[:: max(1, len(picked) // 60)][:60]
    centres = cells.loc[picked].geometry.centroid.to_crs("EPSG:4326")
    feedback = pd.DataFrame(
        {
            "lon": centres.x.to_numpy(),
            "lat": centres.y.to_numpy(),
            "value": truth["cells"].loc[picked, TRUE_MEAN].to_numpy(),
            "poor": None,
        }
    )
    decision = retrain("tiny", cfg2, runs=runs, uri=uri, truth=rounds["truth2"], feedback=feedback)
    assert decision.promoted, decision.reasons
    assert all(decision.checks.values()) and "feedback" in decision.checks
    champ_fb, chall_fb = decision.champion["feedback"], decision.challenger["feedback"]
    assert champ_fb["n_values"] == chall_fb["n_values"] == 60
    assert any(r.startswith("feedback not worse") for r in decision.reasons)
    assert decision.challenger["r2"] > decision.champion["r2"]
    assert decision.folds == 5
    assert get_version("tiny@champion", uri=uri).version == decision.challenger_version
    # against round 2's truth the retrained map beats the old model's map of round 2
    old_map = predict(champion_run, cfg2, runs=tmp_path / "predicted").path
    old = score_cells(open_run(old_map).cells(), truth["cells"], ("estimate",))
    new_run = open_run(runs / decision.challenger_run)
    new = new_run.metrics()["truth"]["estimate"]["all"]
    assert new["r2"] > old["estimate"]["all"]["r2"]
    # every decision is an MLflow run with its reasons
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name("tiny-retrain")
    decisions = mlflow.search_runs([exp.experiment_id])
    assert sorted(decisions["tags.povertymap.decision"]) == ["promoted", "refused"]
    doc = mlflow.artifacts.load_dict(f"runs:/{decision.mlflow_run_id}/decision.json")
    assert doc["reasons"][0].startswith("better")
    print(
        "retrain figures:",
        json.dumps(
            {
                "champion_r2_round2_folds": decision.champion["r2"],
                "challenger_r2_round2_folds": decision.challenger["r2"],
                "shuffled_r2": refused.challenger["r2"],
                "truth_r2_old_map": old["estimate"]["all"]["r2"],
                "truth_r2_new_map": new["r2"],
                "feedback_rmse_old_map": champ_fb["rmse"],
                "feedback_rmse_new_map": chall_fb["rmse"],
            }
        ),
    )
