"""The load test's bookkeeping: report sections replaced in place, statements classified,
the profile summarised, CPU summed over a process tree, the access log read for a window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tests.performance.loadtest import (
    access_log_figures,
    statement_kind,
    summarize_profile,
    tree_cpu,
)
from tests.performance.report import write_section


def test_a_section_is_replaced_and_the_others_are_left_alone(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    report.write_text("# Title\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\nkept text\n")
    write_section(
        report, "<!-- a:start -->", "<!-- a:end -->", "<!-- a:start -->\nnew a\n<!-- a:end -->\n"
    )
    text = report.read_text()
    assert "new a" in text
    assert "old a" not in text
    assert "kept text" in text
    assert text.count("<!-- a:start -->") == 1


def test_a_new_section_goes_under_the_title_or_after_the_named_one(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    report.write_text("# Title\n\n<!-- old:start -->\nold\n<!-- old:end -->\n")
    write_section(
        report,
        "<!-- m:start -->",
        "<!-- m:end -->",
        "<!-- m:start -->\nM\n<!-- m:end -->\n",
        after_mark="",
    )
    write_section(
        report,
        "<!-- n:start -->",
        "<!-- n:end -->",
        "<!-- n:start -->\nN\n<!-- n:end -->\n",
        after_mark="<!-- m:end -->",
    )
    text = report.read_text()
    assert text.startswith("# Title\n")
    assert text.index("M\n") < text.index("N\n") < text.index("old\n")


def test_statements_are_told_apart_by_kind() -> None:
    assert statement_kind("BEGIN") == "transaction control"
    assert statement_kind("COMMIT") == "transaction control"
    assert statement_kind("SELECT users.id FROM users WHERE users.id = $1") == "query"
    assert statement_kind("INSERT INTO user_workflow_history (user_id) VALUES ($1)") == "query"
    assert statement_kind("SELECT 1") == "ping"
    assert statement_kind("SET statement_timeout = 15000") == "session"


def test_the_profile_is_summarised_by_package_and_by_etter_frame(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    head = 'process 1:"gunicorn";run (uvicorn/server.py:1);__call__ (middleware/headers.py:5);'
    raw.write_text(
        head
        + "execute (sqlalchemy/engine/base.py:9);_execute (asyncpg/connection.py:3) 30\n"
        + head
        + "decode (jwt/api_jwt.py:2) 10\n"
        + "not a stack line\n"
    )
    profile = summarize_profile(raw)
    assert profile["samples"] == 40
    assert dict(profile["self_by_package"]) == {"asyncpg": 75.0, "PyJWT": 25.0}
    assert dict(profile["etter_inclusive"])["__call__ (Etter (middleware))"] == 100.0
    assert dict(profile["inclusive_by_package"])["SQLAlchemy"] == 75.0
    assert summarize_profile(tmp_path / "missing.txt") == {}


def test_cpu_is_summed_over_the_tree_with_reaped_children() -> None:
    table = {10: (1, 1.0, 0.5), 11: (10, 2.0, 0.0), 12: (11, 0.25, 0.0), 20: (1, 9.0, 0.0)}
    assert tree_cpu(table, 10) == 3.75
    assert tree_cpu(table, 99) == 0.0


def test_the_access_log_is_read_for_the_window_only(tmp_path: Path) -> None:
    log = tmp_path / "access.log"

    def line(second: int, status: int, size: int) -> str:
        stamp = datetime(2026, 11, 30, 0, 0, second, tzinfo=UTC).isoformat().replace("+00:00", "Z")
        event = {
            "method": "GET",
            "route": "/api/v1/workflows/{workflow_id}",
            "path": "/api/v1/workflows/7",
            "status": status,
            "response_bytes": size,
            "event": "request",
            "timestamp": stamp,
        }
        return json.dumps(event, separators=(",", ":"))

    log.write_text(
        "\n".join([line(1, 200, 100), line(5, 200, 300), line(6, 503, 200), line(9, 200, 999)])
        + "\nplain text from gunicorn\n"
    )
    start = datetime(2026, 11, 30, 0, 0, 4, tzinfo=UTC).timestamp()
    end = datetime(2026, 11, 30, 0, 0, 8, tzinfo=UTC).timestamp()
    figures = access_log_figures(log, start, end)
    assert figures["requests"] == 2
    assert figures["statuses"] == {"200": 1, "503": 1}
    assert figures["bytes_by_route"] == {"GET /api/v1/workflows/{id}": 250}
