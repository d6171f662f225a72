"""Prometheus metrics: updated by the recorder's calls, scraped over real HTTP."""

from __future__ import annotations

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from bmac_trio.ops.metrics import NullMetrics, PrometheusMetrics, make_metrics, run_metrics_server


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_scraped_over_http() -> None:
    metrics = PrometheusMetrics()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: run_metrics_server(metrics, port=0, task_status=task_status)
            )
            metrics.message_received(250)
            metrics.message_received()
            metrics.reconnected()
            metrics.connections(3)
            metrics.rest_call(5)
            metrics.rest_call(2)
            metrics.rest_weight_used(120)
            metrics.rate_limited(banned=False)
            metrics.gap_refilled(130)
            metrics.late_symbols(2)
            for lag in (0.03, 0.08, 0.15, 1.5):
                metrics.period_complete(lag, run_time_ms=1_764_000_300_000)
            metrics.symbols(ready=262, missing=2)
            metrics.error("RestUnavailable")
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://127.0.0.1:{port}/metrics")
            nursery.cancel_scope.cancel()
    assert response.status_code == 200
    got = samples(response.text)
    assert got[("bmac_messages_received_total", ())] == 251
    assert got[("bmac_reconnects_total", ())] == 1
    assert got[("bmac_ws_connections", ())] == 3
    assert got[("bmac_rest_requests_total", ())] == 2
    assert got[("bmac_rest_weight_spent_total", ())] == 7
    assert got[("bmac_rest_weight_used", ())] == 120
    assert got[("bmac_rate_limited_total", (("status", "429"),))] == 1
    assert got[("bmac_gaps_refilled_total", ())] == 1
    assert got[("bmac_gap_candles_refilled_total", ())] == 130
    assert got[("bmac_late_symbols_total", ())] == 2
    assert got[("bmac_period_lag_seconds_count", ())] == 4
    assert got[("bmac_period_lag_seconds_sum", ())] == pytest.approx(1.76)
    assert got[("bmac_period_lag_seconds_bucket", (("le", "0.1"),))] == 2
    assert got[("bmac_period_lag_seconds_bucket", (("le", "0.2"),))] == 3
    assert got[("bmac_period_lag_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("bmac_periods_completed_total", ())] == 4
    assert got[("bmac_last_complete_period_timestamp_seconds", ())] == 1_764_000_300
    assert got[("bmac_symbols_ready", ())] == 262
    assert got[("bmac_symbols_missing", ())] == 2
    assert got[("bmac_errors_total", (("kind", "RestUnavailable"),))] == 1


async def test_server_stops_with_its_task() -> None:
    metrics = PrometheusMetrics()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: run_metrics_server(metrics, port=0, task_status=task_status)
            )
            nursery.cancel_scope.cancel()
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/metrics")


async def test_two_recorders_do_not_share_a_registry() -> None:
    a, b = PrometheusMetrics(), PrometheusMetrics()
    a.message_received(5)
    assert b"bmac_messages_received_total 0.0" in b.exposition()
    assert b"bmac_messages_received_total 5.0" in a.exposition()


def test_metrics_off_is_the_null_object() -> None:
    null = make_metrics(None)
    assert isinstance(null, NullMetrics)
    # every method of the real one exists on the null one, with no effect
    public = {n for n in dir(PrometheusMetrics) if not n.startswith("_")} - {"exposition"}
    assert public <= set(dir(NullMetrics))
    null.period_complete(0.1, run_time_ms=0)
    assert isinstance(make_metrics(0), PrometheusMetrics)
