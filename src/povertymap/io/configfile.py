"""The study-area config file (YAML)."""

from __future__ import annotations

from pathlib import Path

import yaml

from povertymap.config import StudyAreaConfig, config_from_dict
from povertymap.errors import ConfigError, InputNotFoundError

__all__ = ["read_config"]


def read_config(path: str | Path) -> StudyAreaConfig:
    """Load a study-area YAML file; relative paths resolve against its folder."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise InputNotFoundError(
            "config file does not exist",
            path=path,
            fix="pass the path of a study-area YAML (see `povertymap world` for an example)",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"cannot be parsed as YAML ({problem})",
            path=path,
            where=where,
            fix="check the indentation and the colons",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", path=path, fix="save it as UTF-8") from None
    return config_from_dict(data, base_dir=path.parent, source=path)
