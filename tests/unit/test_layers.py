"""The layout's import rules (README, Layout): each folder imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("api", "common", "middleware", "models", "schemas", "seeding", "services", "settings")
MAY_IMPORT = {
    "api": {"api", "services", "schemas", "common", "settings"},
    "services": {"services", "models", "schemas", "common", "settings"},
    "models": {"models", "common"},
    "schemas": {"schemas", "common"},
    "middleware": {"middleware", "common", "settings"},
    "common": {"common", "settings"},
    "seeding": {"seeding", "services", "models", "schemas", "common", "settings"},
    "settings": set(LAYERS) - {"seeding"},
    "alembic": {"models", "settings"},
}


def first_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(LAYERS)
    return found


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_a_layer_imports_only_what_the_layout_allows(folder: str):
    offences = {
        str(path.relative_to(ROOT)): sorted(imported - MAY_IMPORT[folder])
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (imported := first_party_imports(path)) - MAY_IMPORT[folder]
    }
    assert not offences


def test_api_plumbing_and_common_share_no_module_names():
    """Resource routers are named after their resource (`api/metrics.py` serves /metrics); the
    plumbing beside them must not echo a `common/` module's name."""
    plumbing = {p.stem for p in (ROOT / "api").glob("*.py") if "router = " not in p.read_text()} - {
        "__init__"
    }
    common = {p.stem for p in (ROOT / "common").glob("*.py")} - {"__init__"}
    assert plumbing == {"deps", "http_cache", "idempotency", "routers"}
    assert not plumbing & common
