"""docs/api.md is generated from the service's OpenAPI schema by scripts/api_docs.py and
must match it: a route, parameter or model changed without regenerating the page fails."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("fastapi", reason="the service needs the `serve` extra")

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "api.md"


@pytest.fixture(scope="module")
def api_docs() -> ModuleType:
    """scripts/api_docs.py as a module."""
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema(api_docs: ModuleType) -> dict:
    return api_docs.openapi_schema()


def test_page_is_fresh(api_docs: ModuleType, schema: dict) -> None:
    assert PAGE.read_text(encoding="utf-8") == api_docs.render(schema), (
        "docs/api.md is stale: run `python scripts/api_docs.py` and commit it"
    )


def test_page_lists_every_operation_with_its_role(api_docs: ModuleType, schema: dict) -> None:
    text = api_docs.render(schema)
    ops = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in api_docs.METHODS
    ]
    assert len(ops) >= 14
    for path, method, op in ops:
        heading = f"### `{method.upper()} {path}`"
        assert text.count(heading) == 1, heading
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        assert f"Lowest role: **{op.get('x-role', 'none')}**" in section
        for p in op.get("parameters", []):
            assert f"| `{p['name']}` | {p['in']} |" in section
        body = op.get("requestBody", {}).get("content", {})
        for media in body.values():
            ref = media["schema"].get("$ref")
            if ref:
                assert f"Request body (required): `{ref.rsplit('/', 1)[-1]}`" in section
    roles = {op.get("x-role") for _, _, op in ops}
    assert {"public", "analyst", "admin"} <= roles
    for name in schema["components"]["schemas"]:
        assert f"### `{name}`" in text


def test_check_mode_fails_on_a_stale_page(api_docs: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert api_docs.main(["--check", "--out", str(stale)]) == 1
    assert api_docs.main(["--out", str(stale)]) == 0
    assert api_docs.main(["--check", "--out", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")


def test_environment_does_not_change_the_page(
    api_docs: ModuleType, schema: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POVERTYMAP_REQUIRE_KEY", "true")
    assert api_docs.render(api_docs.openapi_schema()) == api_docs.render(schema)
