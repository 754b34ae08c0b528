"""Engine results and stored rows as apex.v1 messages."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._engines import Usage
from apex_grpc_server._status import invalid_argument, shown
from apex_grpc_server._store import ChatRow, CompletionRow, JobRow

MAX_METADATA_DEPTH = 32
"""Objects or arrays nested below a metadata object, at most.

protobuf parsers refuse a message nested more than 100 messages deep, counting the
reply around the metadata: a JSON object costs 3 (Struct, map entry, Value), an array
2. The deepest reply that carries metadata (GetStoredChatCompletions: response,
completion, metadata) still parses with 32 levels below the metadata object, whether
objects or arrays; 33 object levels do not (tests/server/wire/test_reply_limits.py).
"""


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


def struct_to_dict(message: struct_pb2.Struct, field: str, depth: int = 0) -> dict[str, Any]:
    """A Struct as plain JSON values; INVALID_ARGUMENT for NaN or infinite numbers.

    Also INVALID_ARGUMENT for objects or arrays nested more than MAX_METADATA_DEPTH
    levels below the top (``depth`` is the level of ``message``): a reply could not
    carry them back.
    """
    return {
        key: _plain(value, f"{field}[{shown(key)}]", depth) for key, value in message.fields.items()
    }


def _plain(value: struct_pb2.Value, field: str, depth: int) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        if not math.isfinite(value.number_value):
            raise invalid_argument(f"{field}: numbers must be finite, got {value.number_value}")
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind in ("struct_value", "list_value") and depth >= MAX_METADATA_DEPTH:
        raise invalid_argument(
            f"{field}: nested more than {MAX_METADATA_DEPTH} levels deep (objects or arrays"
            " within the top-level object): a reply could not carry it back"
        )
    if kind == "struct_value":
        return struct_to_dict(value.struct_value, field, depth + 1)
    if kind == "list_value":
        items = value.list_value.values
        return [_plain(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(items)]
    return None  # null_value, or a Value with nothing set


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """A google.protobuf.Struct holding a JSON object."""
    message = struct_pb2.Struct()
    message.update(value)
    return message


def chat_session(row: ChatRow) -> pb.ChatSession:
    """ChatSession from a stored chat."""
    return pb.ChatSession(
        id=row.id,
        user_id=row.user_id,
        title=row.title,
        chat_type=row.chat_type,
        created_at=timestamp(row.created_us),
        updated_at=timestamp(row.updated_us),
    )


def parsed_chat(row: ChatRow) -> pb.ParsedChat:
    """ParsedChat (what the create RPCs return) from a stored chat."""
    return pb.ParsedChat(
        id=row.id,
        title=row.title,
        created_at=timestamp(row.created_us),
        chat_type=row.chat_type,
    )


def stored_completion(row: CompletionRow) -> pb.StoredChatCompletion:
    """StoredChatCompletion from a stored completion."""
    message = pb.StoredChatCompletion(
        id=row.id,
        chat_id=row.chat_id,
        completion_type=row.completion_type,
        created_at=timestamp(row.created_us),
        user_prompt_text=row.user_prompt_text,
        completion_text=row.completion_text,
        metadata=struct(row.metadata),
        error_message=row.error_message,
    )
    if row.completed_us is not None:
        message.completed_at.CopyFrom(timestamp(row.completed_us))
    return message


def parsed_completion(row: CompletionRow) -> pb.ParsedCompletion:
    """ParsedCompletion (what the create RPCs return) from a stored completion."""
    return pb.ParsedCompletion(
        id=row.id,
        chat_id=row.chat_id,
        created_at=timestamp(row.created_us),
        user_prompt_text=row.user_prompt_text,
        completion_text=row.completion_text,
        completion_type=row.completion_type,
        metadata=struct(row.metadata),
    )


def job(row: JobRow) -> pb.GetDeepResearcherJobResponse:
    """GetDeepResearcherJobResponse from a stored job and its chunks."""
    message = pb.GetDeepResearcherJobResponse(
        job_id=row.id,
        status=row.status,
        created_at=rfc3339(row.created_us),
        updated_at=rfc3339(row.updated_us),
        result=[pb.DeepResearcherResultChunk(seq_id=seq, chunk=chunk) for seq, chunk in row.chunks],
    )
    if row.status == "failed":
        message.error = row.error or "failed"
    return message
