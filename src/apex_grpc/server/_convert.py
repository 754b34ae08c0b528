"""Engine results and stored rows to apex.v1 messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from apex_grpc.server._engines import Usage
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


def usage(value: Usage) -> pb.CompletionUsage:
    """CompletionUsage with the total filled in."""
    return pb.CompletionUsage(
        prompt_tokens=value.prompt_tokens,
        completion_tokens=value.completion_tokens,
        total_tokens=value.total_tokens,
    )


def timestamp(micros: int) -> timestamp_pb2.Timestamp:
    """A Timestamp from microseconds since the epoch."""
    seconds, rest = divmod(micros, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def rfc3339(micros: int) -> str:
    """RFC 3339 text in UTC, e.g. ``2025-04-03T17:31:53.123456Z``."""
    moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
