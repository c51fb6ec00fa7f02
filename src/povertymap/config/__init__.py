"""The study-area config and the settings of each stage, as pydantic models.

:mod:`.study` is the YAML contract of DESIGN.md (:class:`StudyAreaConfig`); the stage
sections it embeds live beside it (:mod:`.estimate`, :mod:`.targeting`), so reading a
config imports no stage package.
"""

from povertymap.config.estimate import DisclosureSettings, EstimationSettings
from povertymap.config.study import *  # noqa: F403
from povertymap.config.study import __all__ as _study_all
from povertymap.config.targeting import TargetingSettings

__all__ = [*_study_all, "DisclosureSettings", "EstimationSettings", "TargetingSettings"]
