"""Optional Prometheus metrics (``pip install '.[metrics]'``, ``--metrics-port``).

The recorder calls the same small set of methods on :class:`PrometheusMetrics` or on the no-op
:class:`NullMetrics`, so it never checks whether metrics are on. ``prometheus_client`` is
imported only when metrics are asked for. Each :class:`PrometheusMetrics` has its own registry
(several recorders in one test process do not collide). :func:`run_metrics_server` serves it
with prometheus_client's own threaded HTTP server: a scrape never runs on the event loop.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, Final

import trio

from bmac_trio.errors import ConfigError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "LAG_BUCKETS",
    "Metrics",
    "NullMetrics",
    "PrometheusMetrics",
    "make_metrics",
    "metrics_port_problem",
    "run_metrics_server",
]

LOGGER = logging.getLogger("bmac_trio.metrics")
NAMESPACE: Final = "bmac"
#: Period lag buckets (seconds): the target is well under 0.2 s, BMAC v2 needed seconds.
LAG_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
INSTALL_HINT: Final = (
    "--metrics-port needs prometheus-client: pip install 'bmac-trio[metrics]' "
    "(or pip install prometheus-client)"
)


def metrics_port_problem(port: int, host: str = "127.0.0.1") -> str | None:
    """Why ``--metrics-port PORT`` cannot work, or None: checked before anything starts.

    The port is bound and released at once; a program that takes it in between is still
    reported, later, by :func:`run_metrics_server`.
    """
    if not 0 <= port < 65536:
        return f"--metrics-port must be 0..65535 (0: any free port, logged), got {port}"
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"metrics port {host}:{port} is in use or refused ({exc.strerror or exc})"
    return None


class NullMetrics:
    """Metrics switched off: every method is a no-op."""

    def message_received(self, n: int = 1) -> None:
        """``n`` WebSocket kline messages arrived."""

    def reconnected(self) -> None:
        """A WebSocket connection was replaced."""

    def connections(self, open_now: int) -> None:
        """How many WebSocket connections are open."""

    def rest_call(self, weight: int) -> None:
        """A REST request was made that costs ``weight``."""

    def rest_weight_used(self, used: int) -> None:
        """The exchange's ``X-MBX-USED-WEIGHT-1M`` after the latest response."""

    def rate_limited(self, banned: bool) -> None:
        """A 429 (or, ``banned``, a 418) was received."""

    def gap_refilled(self, candles: int) -> None:
        """A gap of ``candles`` candles was refilled over REST."""

    def late_symbols(self, n: int) -> None:
        """``n`` symbols missed their deadline and were sent to REST."""

    def period_complete(self, lag_seconds: float, run_time_ms: int) -> None:
        """The period ending at ``run_time_ms`` is complete on disk, ``lag_seconds`` late."""

    def symbols(self, ready: int, missing: int) -> None:
        """Symbols complete / missing for the latest period."""

    def error(self, kind: str) -> None:
        """An unexpected error of class ``kind`` was caught (and recovered from)."""

    def bus_sent(self, n: int = 1) -> None:
        """``n`` messages were published on the live bus."""

    def bus_dropped(self, n: int = 1) -> None:
        """``n`` messages were dropped for a slow subscriber (its queue was at the HWM)."""


class PrometheusMetrics:
    """Metrics in a private ``prometheus_client`` registry.

    Raises:
        ConfigError: prometheus_client is not installed.
    """

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        self.prom = prom
        self.registry = prom.CollectorRegistry()

        def counter(name: str, doc: str) -> Any:
            return prom.Counter(name, doc, namespace=NAMESPACE, registry=self.registry)

        def gauge(name: str, doc: str) -> Any:
            return prom.Gauge(name, doc, namespace=NAMESPACE, registry=self.registry)

        self._messages = counter("messages_received", "Kline WebSocket messages received.")
        self._reconnects = counter("reconnects", "WebSocket connections replaced.")
        self._connections = gauge("ws_connections", "WebSocket connections open.")
        self._rest_calls = counter("rest_requests", "REST requests made.")
        self._weight_spent = counter("rest_weight_spent", "REST weight spent.")
        self._weight_used = gauge("rest_weight_used", "X-MBX-USED-WEIGHT-1M, latest response.")
        self._rate_limited = prom.Counter(
            "rate_limited",
            "429 / 418 responses.",
            ["status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._gaps = counter("gaps_refilled", "Gaps refilled over REST.")
        self._gap_candles = counter("gap_candles_refilled", "Candles refilled in gaps.")
        self._late = counter("late_symbols", "Symbols sent to REST after their deadline.")
        self._lag = prom.Histogram(
            "period_lag_seconds",
            "Last closed kline received -> period complete on disk.",
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LAG_BUCKETS,
        )
        self._periods = counter("periods_completed", "Periods complete on disk.")
        self._last_period = gauge(
            "last_complete_period_timestamp_seconds", "End of the newest complete period."
        )
        self._ready = gauge("symbols_ready", "Symbols complete for the latest period.")
        self._missing = gauge("symbols_missing", "Symbols missing from the latest period.")
        self._bus_sent = counter("bus_messages_sent", "Messages published on the live bus.")
        self._bus_dropped = counter(
            "bus_messages_dropped", "Messages a slow bus subscriber did not get (HWM reached)."
        )
        self._errors = prom.Counter(
            "errors",
            "Unexpected errors caught.",
            ["kind"],
            namespace=NAMESPACE,
            registry=self.registry,
        )

    def message_received(self, n: int = 1) -> None:
        self._messages.inc(n)

    def reconnected(self) -> None:
        self._reconnects.inc()

    def connections(self, open_now: int) -> None:
        self._connections.set(open_now)

    def rest_call(self, weight: int) -> None:
        self._rest_calls.inc()
        self._weight_spent.inc(weight)

    def rest_weight_used(self, used: int) -> None:
        self._weight_used.set(used)

    def rate_limited(self, banned: bool) -> None:
        self._rate_limited.labels(status="418" if banned else "429").inc()

    def gap_refilled(self, candles: int) -> None:
        self._gaps.inc()
        self._gap_candles.inc(candles)

    def late_symbols(self, n: int) -> None:
        self._late.inc(n)

    def period_complete(self, lag_seconds: float, run_time_ms: int) -> None:
        self._lag.observe(max(0.0, lag_seconds))
        self._periods.inc()
        self._last_period.set(run_time_ms / 1000)

    def symbols(self, ready: int, missing: int) -> None:
        self._ready.set(ready)
        self._missing.set(missing)

    def error(self, kind: str) -> None:
        self._errors.labels(kind=kind).inc()

    def bus_sent(self, n: int = 1) -> None:
        self._bus_sent.inc(n)

    def bus_dropped(self, n: int = 1) -> None:
        self._bus_dropped.inc(n)

    def exposition(self) -> bytes:
        """The text a scrape returns (for tests and ``status``)."""
        return self.prom.generate_latest(self.registry)


#: What the recorder receives: either implementation.
Metrics = NullMetrics | PrometheusMetrics


def make_metrics(port: int | None) -> Metrics:
    """PrometheusMetrics when a port is given, else NullMetrics.

    Raises:
        ConfigError: a port is given but prometheus_client is not installed.
    """
    return NullMetrics() if port is None else PrometheusMetrics()


async def run_metrics_server(
    metrics: PrometheusMetrics,
    *,
    port: int,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on ``host:port`` until cancelled; reports the bound port.

    prometheus_client's WSGI server runs in its own daemon thread; this task owns it.

    Cancellation:
        The server is shut down and its socket closed (shielded, a fraction of a second).

    Raises:
        ConfigError: the port cannot be bound (already in use).
    """
    server: WSGIServer
    try:
        server, thread = metrics.prom.start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        msg = f"metrics port {host}:{port} is in use or refused ({exc.strerror or exc})"
        raise ConfigError(msg) from exc
    try:
        bound = int(server.server_address[1])
        LOGGER.info("metrics on http://%s:%d/metrics", host, bound)
        task_status.started(bound)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_stop_server, server, thread)


def _stop_server(server: WSGIServer, thread: Any) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
