"""What the server reports: calls, chat completions, the engine queue.

- ``recorder.py``: `Metrics` (the hooks the server calls), `ChatTimer`, the no-op
  `NO_METRICS`, `error_type`.
- ``prometheus.py``: the Prometheus recorder and its ``/metrics`` endpoint; imported
  only when ``metrics_port`` is set, so ``prometheus_client`` is never loaded otherwise.

`create_metrics` chooses one, once, at start (as `apex_grpc_server._engines` chooses
the engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apex_grpc_server._metrics.recorder import NO_METRICS, Metrics

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig


def create_metrics(config: ServerConfig) -> Metrics:
    """The server's recorder: Prometheus with ``config.metrics_port``, else `NO_METRICS`."""
    if config.metrics_port is None:
        return NO_METRICS
    from apex_grpc_server._metrics.prometheus import PrometheusMetrics

    return PrometheusMetrics(config.metrics_host, config.metrics_port)
