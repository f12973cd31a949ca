"""OpenTelemetry tracing: server spans per request, child spans per SQL statement and Redis
command, exported over OTLP/HTTP; and the trace ids on every log event of a traced request.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, or
OTEL_ENABLED=true; OTEL_SDK_DISABLED=true wins. Everything else comes from the SDK's standard
OTEL_* variables, which it reads itself: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the
resource), OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parentbased_always_on),
OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _COMPRESSION, OTEL_PROPAGATORS (default W3C
tracecontext and baggage), OTEL_BSP_* (the batch processor).

A request's incoming W3C `traceparent` becomes the parent of its server span, so the spans of
the SQL statements and Redis commands it causes join the caller's trace.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import __version__ as sqlalchemy_instr_version
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from redis.asyncio import Redis
from sqlalchemy.event import remove
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.typing import EventDict

from settings.config import Settings

DEFAULT_SERVICE_NAME = "etter-api"
# Probes and the scrape would be most of the spans and say nothing.
EXCLUDED_URLS = "/health/live,/health/ready,/metrics"

log = structlog.get_logger("etter.apm")

# Set once a tracer provider is configured: the log processor does nothing until then.
_tracing_on = False


def add_trace_context(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: `trace_id` and `span_id` of the current span, when there is one."""
    if not _tracing_on:
        return event_dict
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def _otlp_exporter(settings: Settings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Headers, timeout, compression and certificates: the OTEL_EXPORTER_OTLP_* variables.
    endpoint = settings.otel_exporter_otlp_traces_endpoint
    if endpoint is None and settings.otel_exporter_otlp_endpoint:
        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)  # None: the SDK's default, localhost:4318


def create_tracer_provider(
    version: str, exporter: SpanExporter, *, batch: bool = True
) -> TracerProvider:
    """A provider whose resource and sampler come from the OTEL_* variables; spans go to
    `exporter`, or to OTLP/HTTP as the OTEL_EXPORTER_OTLP_* variables say."""
    # The SDK fills service.name from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES when set;
    # these are the defaults beneath them.
    resource = Resource.create({SERVICE_VERSION: version}).merge(Resource.create())
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
    if batch:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


class Tracing:
    """What `instrument_app` set up for one app; `instrument_resources` adds the engine and
    the Redis client once the lifespan has made them; `shutdown` flushes the spans."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._engine_tracers: list[tuple[Any, EngineTracer]] = []

    def instrument_resources(self, engine: AsyncEngine, redis: Redis | None) -> None:
        tracer = self.provider.get_tracer(
            "opentelemetry.instrumentation.sqlalchemy", sqlalchemy_instr_version
        )
        # The engine-level tracer of opentelemetry-instrumentation-sqlalchemy (what its
        # `instrument(engine=...)` builds), per engine: the instrumentor itself may run only
        # once per process and would also patch every engine created later.
        connections = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("unused")
        self._engine_tracers.append(
            (engine.sync_engine, EngineTracer(tracer, engine.sync_engine, connections))
        )
        if redis is not None:
            RedisInstrumentor.instrument_client(redis, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Detach from the engines (only this app's listeners) and send the queued spans."""
        engines = {id(engine) for engine, _ in self._engine_tracers}
        registered = EngineTracer._remove_event_listener_params
        for entry in list(registered):
            target = entry[0]()
            if target is not None and id(target) in engines:
                remove(target, entry[1], entry[2])
                registered.remove(entry)
        self._engine_tracers.clear()
        self.provider.force_flush()
        self.provider.shutdown()


def instrument_app(
    app: FastAPI, settings: Settings, version: str, exporter: SpanExporter | None = None
) -> Tracing | None:
    """Trace the app's requests when tracing is on (or an exporter is given, in tests)."""
    global _tracing_on
    if exporter is None and not settings.tracing_enabled:
        return None
    provider = create_tracer_provider(
        version, exporter or _otlp_exporter(settings), batch=exporter is None
    )
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )
    _tracing_on = True
    log.info("tracing_enabled", service=provider.resource.attributes.get(SERVICE_NAME))
    return Tracing(provider)


def name_server_span(method: str, route: str) -> None:
    """Name the current server span after the route template once routing has matched it.

    The span starts before routing; FastAPI's included routers are matched below the app's own
    route list, so the instrumentation's guess can miss the include prefix.
    """
    if not _tracing_on:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
