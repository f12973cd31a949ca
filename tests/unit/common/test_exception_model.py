"""The exception model: one base, distinct statuses and types; services never raise HTTP errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from common import exceptions
from common.exceptions import EtterError, problem_type, problem_type_for_status

SERVICES = Path(__file__).resolve().parents[3] / "services"


def error_classes() -> list[type[EtterError]]:
    return [
        value
        for value in vars(exceptions).values()
        if isinstance(value, type) and issubclass(value, EtterError) and value is not EtterError
    ]


def test_every_error_is_a_client_visible_status_with_its_own_type():
    classes = error_classes()
    assert len(classes) >= 7
    assert len({c.slug for c in classes}) == len(classes)
    for error_class in classes:
        assert 400 <= error_class.status <= 599
        assert error_class.title


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, "not-found"),
        (401, "unauthenticated"),
        (422, "validation-error"),
        (429, "rate-limited"),
    ],
)
def test_framework_errors_share_the_types_of_ours(status, expected):
    assert problem_type_for_status(status) == problem_type(expected)


def test_statuses_without_an_error_of_ours_are_about_blank():
    assert problem_type_for_status(405) == "about:blank"


def test_services_never_use_http_exceptions():
    offenders = []
    modules = sorted(SERVICES.rglob("*.py"))
    assert len(modules) > 5, f"no service modules found under {SERVICES}"
    for path in modules:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.Name):
                names = [node.id]
            if "HTTPException" in names:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
