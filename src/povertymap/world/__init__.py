"""A synthetic country with ground truth: the default data of the demo and the tests.

:func:`generate` simulates a country (outline, admin units, settlements, roads, climate,
a latent welfare field and every household) and writes exactly the files a real user
brings (``study.yaml``, GeoTIFF rasters, GeoJSON layers, survey CSVs, a household
registry) plus the truth the pipeline never reads (``truth/``). The generative model and
its equations are documented in ``docs/world.md``.

Example::

    from pathlib import Path
    from povertymap.world import generate

    study_yaml = generate("demo", seed=7, out=Path("data/demo"))
"""

from povertymap.world.generate import GENERATOR_VERSION, generate
from povertymap.world.spec import PRESETS, WorldSpec, resolve_spec

__all__ = ["GENERATOR_VERSION", "PRESETS", "WorldSpec", "generate", "resolve_spec"]
