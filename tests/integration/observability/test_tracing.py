"""OpenTelemetry: the SDK's in-memory exporter sees a server span named by the route template
with child spans for the request's SQL statements and Redis commands, the incoming
`traceparent` continued, and the request's log lines carrying its trace id; a local OTLP/HTTP
receiver gets the spans as the exporter really sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import apm
from settings.server import APP_VERSION, create_app
from tests.conftest import isolated_sessionmaker
from tests.fixtures.apps import client_for, override
from tests.fixtures.logs import captured_logs
from tests.fixtures.observability import http_receiver

USER_ROUTE = "/api/v1/users/{user_id}"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture
async def traced(settings, connection) -> AsyncIterator[tuple]:
    exporter = InMemorySpanExporter()
    app = create_app(settings)
    app.state.tracing = apm.instrument_app(app, settings, APP_VERSION, exporter=exporter)
    async with LifespanManager(app):
        if connection is not None:
            app.state.database.sessionmaker = isolated_sessionmaker(connection)
            # The app's sessions run on the test's connection: trace its engine as well.
            app.state.tracing.instrument_resources(connection.engine, None)
        yield app, exporter


def children_of(spans: list[ReadableSpan], server: ReadableSpan) -> list[ReadableSpan]:
    by_id = {span.context.span_id: span for span in spans}

    def under_server(span: ReadableSpan) -> bool:
        parent = span.parent
        while parent is not None:
            if parent.span_id == server.context.span_id:
                return True
            parent = by_id[parent.span_id].parent if parent.span_id in by_id else None
        return False

    return [span for span in spans if under_server(span)]


async def test_a_request_is_one_trace_with_sql_and_redis_spans_and_its_log_lines(
    traced, world, redis
):
    app, exporter = traced
    async with client_for(app) as client:
        headers = {
            **world.auth(world.member),
            "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01",
        }
        with captured_logs("INFO") as logs:
            r = await client.get(f"/api/v1/users/{world.member.id}", headers=headers)
    assert r.status_code == 200, r.text
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 1, [s.name for s in spans]
    server = servers[0]
    assert server.name == f"GET {USER_ROUTE}"
    assert server.attributes["http.route"] == USER_ROUTE
    # The caller's traceparent: same trace, its span is the parent.
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_SPAN_ID

    inside = children_of(spans, server)
    assert {format(s.context.trace_id, "032x") for s in inside} == {TRACE_ID}
    sql = [s for s in inside if s.attributes.get("db.system") == "postgresql"]
    assert sql, [s.name for s in inside]
    assert all(s.kind is SpanKind.CLIENT and s.attributes["db.statement"] for s in sql)
    if redis is not None:
        commands = [s for s in inside if s.attributes.get("db.system") == "redis"]
        assert commands, [s.name for s in inside]
        assert all(s.kind is SpanKind.CLIENT for s in commands)

    access = logs.named("request")
    assert len(access) == 1
    assert access[0]["trace_id"] == TRACE_ID
    assert access[0]["span_id"] == format(server.context.span_id, "016x")


async def test_untraced_paths_and_untraced_apps_log_no_trace_ids(client, traced):
    app, exporter = traced
    async with client_for(app) as traced_client:
        with captured_logs("INFO") as logs:
            assert (await traced_client.get("/health/live")).status_code == 200
            assert (await client.get("/health/live")).status_code == 200
    assert exporter.get_finished_spans() == ()
    assert [e for e in logs.named("request") if "trace_id" in e] == []


async def test_spans_reach_an_otlp_http_receiver(settings, connection, world, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "etter-under-test")
    with http_receiver() as receiver:
        endpoint = f"http://127.0.0.1:{receiver.port}"
        app = create_app(override(settings, otel_exporter_otlp_endpoint=endpoint))
        assert app.state.tracing is not None
        async with LifespanManager(app):
            if connection is not None:
                app.state.database.sessionmaker = isolated_sessionmaker(connection)
            async with client_for(app) as client:
                r = await client.get("/api/v1/auth/me", headers=world.auth(world.member))
                assert r.status_code == 200, r.text
        # The lifespan's end flushed the batch.
        received = receiver.wait_for(lambda requests: requests)
    assert received[0].path == "/v1/traces"
    assert received[0].headers["content-type"] == "application/x-protobuf"
    names, services = [], set()
    for request in received:
        export = ExportTraceServiceRequest()
        export.ParseFromString(request.body)
        for resource_spans in export.resource_spans:
            services |= {
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            }
            names += [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert services == {"etter-under-test"}
    assert "GET /api/v1/auth/me" in names
