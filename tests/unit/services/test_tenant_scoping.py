"""Tenancy in one place: no service builds a tenant predicate outside `services/base_service.py`
(`of_tenant`, `tenant_filter`, `readable`, `own_company`, `is_own_company`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[3] / "services"
TENANT_COLUMNS = {"company_id", "tenant_id"}
SCOPING_POINT = "base_service.py"


def tenant_predicates(source: str, filename: str = "<source>") -> list[int]:
    """Lines comparing a `.company_id` / `.tenant_id` attribute, or filtering by one."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot) for op in node.ops
        ):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Attribute) and o.attr in TENANT_COLUMNS for o in operands):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            function = node.func
            named = isinstance(function, ast.Attribute) and function.attr == "filter_by"
            if named and any(k.arg in TENANT_COLUMNS for k in node.keywords):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    "source",
    [
        "select(User).where(User.company_id == principal.company_id)",
        "history.tenant_id != 3",
        "select(Document).filter_by(tenant_id=7)",
        "allowed = workflow.company_id == self.principal.company_id",
    ],
)
def test_the_scan_sees_a_hand_written_predicate(source: str):
    assert tenant_predicates(source) == [1]


def test_no_service_writes_a_tenant_predicate_outside_the_scoping_point():
    offences = {
        path.name: lines
        for path in sorted(SERVICES.glob("*.py"))
        if path.name != SCOPING_POINT and (lines := tenant_predicates(path.read_text(), str(path)))
    }
    assert not offences, f"tenant predicates outside {SCOPING_POINT}: {offences}"
