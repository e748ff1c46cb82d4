"""Telemetry export in a child process, so that the worker's interpreter never encodes or sends.

The stock OTLP exporters encode protobuf in a thread that holds the GIL for milliseconds per
batch (an asyncio loop stalls meanwhile) and retry for seconds at exit when the collector is
down. Here the process that makes telemetry only turns finished spans and collected metrics
into plain tuples (``marshal``-able builtins) and a shipper thread writes them, in frames, to
the stdin pipe of a child (``child_main``) that runs the stock ``BatchSpanProcessor`` and
OTLP exporters, configured by the same ``OTEL_*`` variables. The child encodes span records
with ``otel_encode`` where the stock exporter allows it (about a fifth of the stock path's CPU),
and otherwise rebuilds SDK spans from them for the stock encoder.

The parent never waits on the child: a full queue drops (and counts) instead of blocking, and
``ExportChild.close`` gives the child a bounded time to finish before terminating it. The child
ends by itself when its stdin closes (the parent exited or died).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import logging
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("<I")
# Records per frame; also the queue length that wakes the shipper before its delay is up.
_BATCH = 256
# Seconds between shipments of a partial batch (spans reach the child's processor this late).
_DELAY = 0.2
# A child whose parent went away exports what it has for at most this long.
_ORPHAN_GRACE = 5.0
_PIPE_SIZE = 1 << 20  # ask Linux for a 1 MiB pipe: room while the child imports
# The child's command. It needs none of the tracedjobs package around this module (the app,
# psycopg, croniter…), so it starts from a bare package: its start-up and shutdown cost
# 0.24 s of CPU instead of 0.34 (bench/otel_floor.py), on the core the worker is using then.
_CHILD_MAIN = (
    "import sys, types; package = types.ModuleType('tracedjobs'); "
    "package.__path__ = [sys.argv.pop(1)]; sys.modules['tracedjobs'] = package; "
    "from tracedjobs.otel_export import child_main; sys.exit(child_main(sys.argv[1:]))"
)


def _queue_limit() -> int:
    # Same knob as the stock processor's queue (default 2,048), with room for bursts.
    try:
        return max(int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "0")), 8192)
    except ValueError:
        return 8192


# -- exporters (used by the child, and by the in-process mode of otel_sdk) ----------------


def protocol(signal_name: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal_name}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def span_exporter() -> Any:
    if protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def metric_exporter() -> Any:
    if protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    return OTLPMetricExporter()


# -- parent side ----------------------------------------------------------------------------


class ExportChild:
    """The child exporter process and the bounded, non-blocking channel to it."""

    def __init__(self, *, spans: bool, metrics: bool) -> None:
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._limit = _queue_limit()
        self.dropped = 0
        self._wake = threading.Event()
        self._closing = False
        self._abandon = False
        self._dead = False
        self._keys: dict[int, tuple[object, int]] = {}
        args = [sys.executable, "-c", _CHILD_MAIN, os.path.dirname(os.path.abspath(__file__))]
        args += ["--spans"] if spans else []
        args += ["--metrics"] if metrics else []
        # Its own session: a Ctrl-C on the terminal reaches the worker, which then decides
        # when the exporter stops. stdout is not shared (callers capture ours): the child
        # writes on it only to acknowledge a flush (see flush_and_wait).
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        self._flush_lock = threading.Lock()
        self._flushes = 0  # flush requests sent
        self._flushed = 0  # the latest one the child acknowledged
        self._acks = b""
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError, AttributeError):
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self._thread = threading.Thread(
            target=self._ship, name="tracedjobs-otel-shipper", daemon=True
        )
        self._thread.start()
        # A task that forks (multiprocessing's "fork"): the copy has no shipper thread, and
        # its copy of the pipe would keep the export child from ever seeing EOF.
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forked(ref))

    @property
    def pid(self) -> int:
        return self._proc.pid

    # Called on the hot path (a span's end): never blocks, never raises.
    def submit(self, record: tuple[Any, ...]) -> None:
        if self._dead or self._closing or len(self._pending) >= self._limit:
            self.dropped += 1
            return
        self._pending.append(record)
        if len(self._pending) == _BATCH:
            self._wake.set()

    def key_of(self, obj: Any, define: Any) -> int:
        """A small number standing for ``obj`` (a resource, a scope), defined once in the stream."""
        entry = self._keys.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        key = len(self._keys) + 1
        # The definition goes in before the key is published, so that no record using the key
        # can precede it; it bypasses the queue bound (a handful per process).
        self._pending.append(define(key))
        self._keys[id(obj)] = (obj, key)
        return key

    def flush(self) -> None:
        """Ship what is queued now (the child exports it on its own schedule)."""
        self._wake.set()

    def flush_and_wait(self, timeout: float) -> bool:
        """Ship what is queued and have the child export everything it holds now; True once
        it reports that done, False after ``timeout`` seconds or without a child. This is
        what ``force_flush`` promises: spans ended before it are at the collector after."""
        deadline = time.monotonic() + timeout
        if not self._flush_lock.acquire(timeout=max(timeout, 0)):
            return False
        try:
            if self._dead or self._closing:
                return False
            self._flushes += 1
            token = self._flushes
            self._pending.append(("F", token))  # after every record before it; never dropped
            self._wake.set()
            return self._await_ack(token, deadline)
        finally:
            self._flush_lock.release()

    def _await_ack(self, token: int, deadline: float) -> bool:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while self._flushed < token:
            left = deadline - time.monotonic()
            if left <= 0 or self._dead or not select.select([fd], [], [], left)[0]:
                return False
            data = os.read(fd, 4096)
            if not data:  # the child is gone
                return False
            *lines, self._acks = (self._acks + data).split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    self._flushed = max(self._flushed, int(line))
        return True

    def _take(self) -> list[tuple[Any, ...]]:
        pending, out = self._pending, []
        for _ in range(min(len(pending), _BATCH)):
            out.append(pending.popleft())
        return out

    def _ship(self) -> None:
        while True:
            self._wake.wait(_DELAY)
            self._wake.clear()
            final = self._closing
            while records := self._take():
                if not self._write(_encode(records, self)):
                    return
            if final:
                return

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._abandon:
                return False
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                select.select([], [self._fd], [], 0.05)
            except OSError:  # the child is gone (EPIPE) or the pipe was closed
                self._dead = True
                self.dropped += len(self._pending)
                self._pending.clear()
                logger.warning("the telemetry exporter process is gone; telemetry is dropped")
                return False
        return True

    def close(self, deadline: float) -> None:
        """Hand over what is queued, let the child export until ``deadline`` (a
        ``time.monotonic()`` value), then stop it. Never waits past the deadline."""
        self._closing = True
        self._wake.set()
        self._thread.join(max(deadline - time.monotonic(), 0))
        if self._thread.is_alive():
            self._abandon = True
            self._thread.join(0.1)
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # EOF: the child flushes its processors and exits
        try:
            self._proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(0.5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            logger.warning(
                "stopped the telemetry exporter: it had not finished sending at exit "
                "(is the OTLP endpoint reachable?)"
            )
        if self._proc.stdout is not None:
            self._proc.stdout.close()  # its flush acknowledgements
        if self.dropped:
            logger.warning("telemetry: %d records dropped (export queue full)", self.dropped)


def _forked(ref: weakref.ref[ExportChild]) -> None:
    child = ref()
    if child is not None:
        child._dead = True
        child._pending.clear()
        with contextlib.suppress(OSError):
            os.close(child._fd)


def _encode(records: list[tuple[Any, ...]], child: ExportChild) -> bytes:
    try:
        payload = marshal.dumps(records)
    except ValueError:
        # A value marshal cannot carry (an attribute of an odd type): drop that record only.
        good = []
        for r in records:
            try:
                marshal.dumps(r)
                good.append(r)
            except ValueError:
                child.dropped += 1
        payload = marshal.dumps(good)
    return _FRAME.pack(len(payload)) + payload


def _context(ctx: Any) -> tuple[Any, ...] | None:
    if ctx is None:
        return None
    state = tuple(ctx.trace_state.items()) if ctx.trace_state else None
    return (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), state, ctx.is_remote)


def _attributes(attrs: Any) -> dict[str, Any] | None:
    if not attrs:
        return None
    # BoundedAttributes keeps a plain dict inside: copying that one is C-fast (through the
    # public read-only proxy it costs ~20× more).
    inner = getattr(attrs, "_dict", None)
    return dict(inner if inner is not None else attrs)


def span_record(span: ReadableSpan, resource_key: int, scope_key: int) -> tuple[Any, ...]:
    """Everything the OTLP encoder reads from a span, as builtins (see ``_Rebuilder.span``).

    Runs on the hot path of every span: ``_value_`` rather than the enums' slow ``.value``.
    """
    status = span.status
    events = span.events
    links = span.links
    return (
        "S",
        span.name,
        _context(span.context),
        _context(span.parent),
        span.kind._value_,
        span.start_time,
        span.end_time,
        _attributes(getattr(span, "_attributes", None) or span.attributes),
        tuple(
            (e.name, e.timestamp, _attributes(getattr(e, "_attributes", None) or e.attributes))
            for e in events
        ) if events else None,
        tuple(
            (_context(li.context), _attributes(li.attributes)) for li in links
        ) if links else None,
        status.status_code._value_,
        status.description,
        resource_key,
        scope_key,
        span.dropped_attributes,
        span.dropped_events,
        span.dropped_links,
    )  # fmt: skip


def resource_record(key: int, resource: Resource) -> tuple[Any, ...]:
    return ("R", key, dict(resource.attributes), resource.schema_url)


class ChildSpanProcessor(SpanProcessor):
    """Ships each ended span's plain data to the export child; costs the caller a few µs."""

    def __init__(self, child: ExportChild) -> None:
        self._child = child
        # A provider has one resource and a few scopes: remember the last ones' keys.
        self._resource: tuple[Any, int] = (None, 0)
        self._scope: tuple[Any, int] = (None, 0)

    def _keys(self, resource: Any, scope: Any) -> tuple[int, int]:
        if resource is not self._resource[0]:
            key = self._child.key_of(resource, lambda k: resource_record(k, resource))
            self._resource = (resource, key)
        if scope is not self._scope[0]:
            self._scope = (scope, self._child.key_of(scope, lambda k: scope_record(k, scope)))
        return self._resource[1], self._scope[1]

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        keys = self._keys(span.resource, span.instrumentation_scope)
        self._child.submit(span_record(span, *keys))

    def lite_sink(self, resource: Resource, scope: InstrumentationScope) -> Any:
        """The sink of ``otel_lite.DirectSpans``: each ended LiteSpan of ``resource`` and
        ``scope`` goes to the child as the record ``on_end`` would have made."""
        submit = self._child.submit

        def sink(span: Any) -> None:
            (name, ctx, parent, kind, start, end, attrs, events, links, status) = span.record()
            resource_key, scope_key = self._keys(resource, scope)
            # _context(ctx), inline: a LiteSpan's own context is never remote.
            state = tuple(ctx.trace_state.items()) if ctx.trace_state else None
            submit((
                "S", name, (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), state, False),
                _context(parent) if parent is not None else None, kind._value_, start, end, attrs,
                tuple((n, t, a or None) for n, t, a in events) if events else None,
                tuple(
                    (_context(li.context), _attributes(li.attributes)) for li in links
                ) if links else None,
                status.status_code._value_, status.description, resource_key, scope_key, 0, 0, 0,
            ))  # fmt: skip

        return sink

    def shutdown(self) -> None:
        self._child.flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Ships what is queued and waits (at most the timeout) until the child exported it."""
        return self._child.flush_and_wait(timeout_millis / 1000)


def scope_record(key: int, scope: Any) -> tuple[Any, ...]:
    if scope is None:
        return ("I", key, None, None, None, None)
    attrs = getattr(scope, "attributes", None)
    return ("I", key, scope.name, scope.version, scope.schema_url, _attributes(attrs))


class ChildMetricExporter(MetricExporter):
    """Hands collected metrics to the export child (the parent does no encoding, no I/O).

    Temporality and aggregation preferences are the OTLP exporter's (``OTEL_EXPORTER_OTLP_
    METRICS_…`` variables), since the parent aggregates.
    """

    def __init__(self, child: ExportChild) -> None:
        from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import (
            OTLPMetricExporterMixin,
        )

        class Prefs(OTLPMetricExporterMixin, MetricExporter):  # reads the OTEL_* variables
            export = force_flush = shutdown = None  # type: ignore[assignment]

        prefs = Prefs.__new__(Prefs)
        prefs._common_configuration()
        super().__init__(
            preferred_temporality=prefs._preferred_temporality,
            preferred_aggregation=prefs._preferred_aggregation,
        )
        self._child = child

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self._child.submit(("M", to_plain(metrics_data)))
        self._child.flush()
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._child.flush_and_wait(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._child.flush()


# MetricsData is a tree of frozen dataclasses; it travels as tagged tuples. This runs in the
# metric reader's thread once per export, holding the GIL: kept cheaper than OTLP encoding.
_PRIMITIVES = frozenset({str, int, float, bool, bytes, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}


def to_plain(obj: Any) -> Any:
    cls = type(obj)
    if cls in _PRIMITIVES:
        return obj
    names = _FIELDS.get(cls)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        return ("D", cls.__name__, {n: to_plain(getattr(obj, n)) for n in names})
    if cls is list or cls is tuple:
        # Bucket counts and bounds are long lists of numbers: copied, not walked.
        if not obj or type(obj[0]) in _PRIMITIVES:
            return ("L", list(obj))
        return ("L", [to_plain(x) for x in obj])
    if isinstance(obj, enum.Enum):
        return ("E", cls.__name__, obj._value_)
    if isinstance(obj, Resource):
        return ("R", dict(obj.attributes), obj.schema_url)
    if isinstance(obj, InstrumentationScope):
        return scope_record(0, obj)
    if isinstance(obj, Mapping):  # attributes: values are builtins already
        return ("A", _attributes(obj) or {})
    if isinstance(obj, Sequence):
        return ("L", [to_plain(x) for x in obj])
    if isinstance(obj, int):  # an int subclass that is not an enum
        return int(obj)
    raise ValueError(f"cannot ship a {cls.__name__} to the export process")


def from_plain(obj: Any) -> Any:
    if not isinstance(obj, tuple):
        return obj
    from opentelemetry.sdk.metrics._internal import point
    from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    tag = obj[0]
    if tag == "E":
        return {"AggregationTemporality": AggregationTemporality}[obj[1]](obj[2])
    if tag == "D":
        cls = Exemplar if obj[1] == "Exemplar" else getattr(point, obj[1])
        return cls(**{k: from_plain(v) for k, v in obj[2].items()})
    if tag == "R":
        return Resource(obj[1] or {}, obj[2])
    if tag == "I":
        return _scope(obj)
    if tag == "A":
        return obj[1]
    if tag == "L":
        return [from_plain(x) for x in obj[1]]
    raise ValueError(f"unknown record tag {tag!r}")


def _scope(record: tuple[Any, ...]) -> Any:
    _, _, name, version, schema_url, attrs = record
    if name is None:
        return None
    try:
        return InstrumentationScope(name, version, schema_url, attrs)
    except TypeError:  # SDKs before scope attributes
        return InstrumentationScope(name, version, schema_url)


# -- child side -----------------------------------------------------------------------------


class _HashedResource(Resource):
    """A resource hashed once. The SDK's encoder groups spans by resource and hashes it for
    every span, and ``Resource.__hash__`` JSON-encodes the attributes each time (about 6 % of
    the export child's work). A resource is immutable, so its hash is too."""

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


class AttributeLimits:
    """The SDK's span attribute limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``,
    ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``), which the SDK applies when a span is made: spans
    the parent made without the SDK (otel_lite) reach them in the child."""

    def __init__(self) -> None:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import SpanLimits

        limits = SpanLimits()
        self._bounded = BoundedAttributes
        self.max_attributes = limits.max_span_attributes
        self.max_length = limits.max_span_attribute_length

    def apply(self, attributes: Any, dropped: int) -> tuple[Any, int]:
        """``attributes`` within the limits (the oldest go first, long strings are cut, as
        in the SDK) and the span's dropped-attribute count."""
        if attributes and (
            self.max_length is not None
            or (self.max_attributes is not None and len(attributes) > self.max_attributes)
        ):
            attributes = self._bounded(
                self.max_attributes, attributes, immutable=True, max_value_len=self.max_length
            )
            dropped = max(dropped, attributes.dropped)
        return attributes, dropped


class _Rebuilder:
    """Turns shipped records back into the SDK's own objects."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace import Event
        from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
        from opentelemetry.trace.status import Status, StatusCode

        self.Event, self.Link = Event, Link
        self.SpanContext, self.TraceFlags, self.TraceState = SpanContext, TraceFlags, TraceState
        self.Status, self.StatusCode = Status, StatusCode
        self.kinds = {kind.value: kind for kind in SpanKind}
        # Statuses without a description, made once (they are immutable).
        self.statuses = {code.value: Status(code) for code in StatusCode}
        self.resources: dict[int, Any] = {}
        self.scopes: dict[int, Any] = {}

        class ShippedSpan(ReadableSpan):
            # The SDK reads these counts from its bounded containers; here they are data.
            _dropped = (0, 0, 0)

            @property
            def dropped_attributes(self) -> int:
                return self._dropped[0]

            @property
            def dropped_events(self) -> int:
                return self._dropped[1]

            @property
            def dropped_links(self) -> int:
                return self._dropped[2]

        self.ShippedSpan = ShippedSpan
        self.limits = AttributeLimits()

    def context(self, c: tuple[Any, ...] | None) -> Any:
        if c is None:
            return None
        trace_id, span_id, flags, state, remote = c
        return self.SpanContext(
            trace_id,
            span_id,
            is_remote=remote,
            trace_flags=self.TraceFlags(flags),
            trace_state=self.TraceState(list(state)) if state else None,
        )

    def define(self, record: tuple[Any, ...]) -> None:
        if record[0] == "R":
            self.resources[record[1]] = _HashedResource(record[2] or {}, record[3])
        else:
            self.scopes[record[1]] = _scope(record)

    def span(self, r: tuple[Any, ...]) -> ReadableSpan:
        (_, name, ctx, parent, kind, start, end, attrs, events, links, code, description,
         resource, scope, *dropped) = r  # fmt: skip
        attrs, dropped[0] = self.limits.apply(attrs, dropped[0])
        span = self.ShippedSpan(
            name=name,
            context=self.context(ctx),
            parent=self.context(parent),
            resource=self.resources.get(resource),
            attributes=attrs or {},
            events=[self.Event(n, a or {}, t) for n, t, a in events or ()],
            links=[self.Link(self.context(c), a or {}) for c, a in links or ()],
            kind=self.kinds[kind],
            status=(
                self.statuses[code]
                if description is None
                else self.Status(self.StatusCode(code), description)
            ),
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scopes.get(scope),
        )
        span._dropped = tuple(dropped)
        return span


def _read_exact(stream: Any, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def child_main(argv: Sequence[str]) -> int:
    """Read frames from stdin until EOF, export with the stock SDK, then flush (bounded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    logging.basicConfig(
        level=logging.WARNING, format="tracedjobs telemetry exporter: %(levelname)s %(message)s"
    )
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from tracedjobs import otel_encode

    processor = None
    encoder = None  # records go to the exporter as they are (see otel_encode)
    if "--spans" in argv:
        exporter = span_exporter()
        if otel_encode.install(exporter):
            encoder = otel_encode.SpanEncoder()
        # A bigger queue than the default 2,048: the parent already bounds what it sends.
        queue = max(int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "0") or 0), 65536)
        processor = BatchSpanProcessor(exporter, max_queue_size=queue)
    metrics_out = _MetricSender() if "--metrics" in argv else None
    # What a span record becomes for the processor (None: not sampled, not exported).
    to_span: Callable[[tuple[Any, ...]], Any]
    if encoder is not None:
        define, to_span = encoder.define, encoder.shipped
    else:
        rebuild = _Rebuilder()
        define, to_span = rebuild.define, rebuild.span
    stdin = sys.stdin.buffer
    while (head := _read_exact(stdin, _FRAME.size)) is not None:
        body = _read_exact(stdin, _FRAME.unpack(head)[0])
        if body is None:
            break
        for record in marshal.loads(body):
            tag = record[0]
            if tag == "S" and processor is not None:
                if (span := to_span(record)) is not None:
                    processor.on_end(span)  # type: ignore[arg-type]  # Shipped records too
            elif tag == "M" and metrics_out is not None:
                metrics_out.put(from_plain(record[1]))
            elif tag in ("R", "I"):
                define(record)
            elif tag == "F":  # the parent's force_flush: export everything now, then say so
                if processor is not None:
                    processor.force_flush()
                if metrics_out is not None:
                    metrics_out.wait_idle()
                with contextlib.suppress(OSError):  # the parent gave up waiting, or is gone
                    os.write(1, b"%d\n" % record[1])
    # EOF: the parent is done (or gone). Export what is left, within a bound.
    closers = [
        threading.Thread(target=c.shutdown, daemon=True)
        for c in (processor, metrics_out)
        if c is not None
    ]
    for t in closers:
        t.start()
    deadline = time.monotonic() + _ORPHAN_GRACE
    for t in closers:
        t.join(max(deadline - time.monotonic(), 0))
    sys.stdout.flush()
    os._exit(0)  # not waiting for exporter threads stuck in retries


class _MetricSender:
    """Exports metric batches from a thread of the child, latest first when it falls behind."""

    def __init__(self) -> None:
        self._exporter = metric_exporter()
        self._queue: collections.deque[Any] = collections.deque(maxlen=8)
        self._ready = threading.Condition()
        self._stop = False
        self._busy = False  # exporting a batch taken off the queue
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, data: Any) -> None:
        with self._ready:
            self._queue.append(data)
            self._ready.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every batch handed over so far is exported (or ``timeout`` seconds)."""
        with self._ready:
            self._ready.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                self._busy = False
                self._ready.notify_all()
                while not self._queue and not self._stop:
                    self._ready.wait()
                if not self._queue:
                    return
                data = self._queue.popleft()
                self._busy = True
            try:
                self._exporter.export(data)
            except Exception:
                logging.getLogger(__name__).exception("metric export failed")

    def shutdown(self) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify_all()
        self._thread.join()
        self._exporter.shutdown()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
