"""Fixtures of the deep-learning tests: the tiny imagery area and one tiny trained CNN."""

from __future__ import annotations

import numpy as np
import pytest

from models.deep.deep_builders import TINY_SETTINGS, Trained, write_imagery_area
from povertymap.io.configfile import read_config
from povertymap.models.deep.labels import cell_means
from povertymap.models.deep.tiles import TileGrid
from povertymap.studyarea import StudyArea, load_study_area


@pytest.fixture(scope="session")
def imagery_area(tmp_path_factory: pytest.TempPathFactory) -> StudyArea:
    """The tiny study area with 50 m imagery (20 x 20 pixel tiles) and UTM nightlights."""
    root = tmp_path_factory.mktemp("deep-area")
    return load_study_area(read_config(write_imagery_area(root)))


@pytest.fixture(scope="session")
def trained(imagery_area: StudyArea, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Train once for the whole session (a few seconds): 3 epochs of 8-filter convolutions."""
    pytest.importorskip("tensorflow")
    from povertymap.models.deep.train import CNNSettings, train_transfer_cnn

    area = imagery_area
    ix = area.grid["ix"].to_numpy(np.int64)
    iy = area.grid["iy"].to_numpy(np.int64)
    with area.rasters["nightlights"].reader(crs=area.crs) as r:
        radiance = cell_means(r, area.cell_size, ix, iy)
    with area.rasters["imagery"].reader(crs=area.crs) as r:
        grid = TileGrid(r.transform, area.cell_size)
    result = train_transfer_cnn(
        area.rasters["imagery"],
        area.crs,
        grid,
        ix,
        iy,
        radiance,
        CNNSettings(**TINY_SETTINGS),  # type: ignore[arg-type]
        random_state=0,
        log_dir=tmp_path_factory.mktemp("tb"),
    )
    return Trained(result, grid, ix, iy, radiance)
