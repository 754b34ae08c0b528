"""Hostile shapes over the wire (issue #19): raw bytes, deep nesting, listings near the limit.

- Random bytes as the body of every RPC (grpc's generic callable, no serializer): without a
  key always UNAUTHENTICATED (the key is checked before the body is read); with one,
  INVALID_ARGUMENT unless the bytes happen to parse as the request type. Never UNKNOWN or
  INTERNAL.
- Struct metadata nested 10 to 60 levels: refused with INVALID_ARGUMENT, or accepted and
  readable back by both reads that return it. Never stored but unreadable.
- A chat grown until a write is refused: every accepted write leaves its listing readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex_grpc import _methods
from apex_grpc._methods import ALL_METHODS, Method
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

pytestmark = pytest.mark.oldest

NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
Metadata = tuple[tuple[str, str], ...]


# grpc's default receive limit is not the subject here: read with a generous one.
BIG = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@pytest.fixture(scope="module")
def raw_channel(module_echo_server: Any) -> Iterator[grpc.Channel]:
    """A channel to this module's own server (its many small cases share it)."""
    with grpc.insecure_channel(module_echo_server.target, options=BIG) as channel:
        yield channel


def _outcome(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status a call ended with (OK, or its error's code and details)."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _call_raw(
    channel: grpc.Channel, method: Method[Any, Any], body: bytes, metadata: Metadata
) -> tuple[grpc.StatusCode, str]:
    """Send `body` as the request of `method` as it is: no serializer on either side."""
    if method.server_streaming:
        stream = channel.unary_stream(method.path)
        return _outcome(lambda: list(stream(body, metadata=metadata, timeout=30)))
    unary = channel.unary_unary(method.path)
    return _outcome(lambda: unary(body, metadata=metadata, timeout=30))


def _parses(method: Method[Any, Any], body: bytes) -> bool:
    try:
        method.request_type.FromString(body)
    except (DecodeError, RuntimeError, ValueError):
        return False
    return True


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(ALL_METHODS),
    body=st.binary(max_size=300) | st.binary(min_size=1, max_size=8).map(lambda b: b * 200),
)
def test_raw_bytes_as_any_request_never_answer_unknown_or_internal(
    raw_channel: grpc.Channel, auth: Metadata, method: Method[Any, Any], body: bytes
) -> None:
    code, details = _call_raw(raw_channel, method, body, ())
    assert code is grpc.StatusCode.UNAUTHENTICATED, (method.name, body, code, details)

    code, details = _call_raw(raw_channel, method, body, auth)
    assert code not in NEVER, (method.name, body, code, details)
    if not _parses(method, body):
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.name, body, code, details)
        assert details


def test_raw_bytes_that_are_not_the_request_type_name_the_problem(
    raw_channel: grpc.Channel, auth: Metadata
) -> None:
    # Truncated, a bad length, an unterminated varint, and (for string fields) bad UTF-8.
    bodies = (b"\xff\xff\xff", b"\x12\x05\x0a", b"\x0a\x80", b"\x0a\x02\xc3\x28")
    refused = 0
    for method in ALL_METHODS:
        for body in bodies:
            if _parses(method, body):  # e.g. an unknown field 1 for Empty
                continue
            code, details = _call_raw(raw_channel, method, body, auth)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.name, body, code, details)
            assert details
            refused += 1
    assert refused >= 3 * len(ALL_METHODS)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def nested(depth: int, lists: int = 0) -> bytes:
    """The wire bytes of a Struct nested `depth` levels: {"k": {"k": ... ["x"]}}, the innermost
    `lists` levels lists (a list costs the parser 2 message levels, a Struct 3, so both kinds
    reach every parser depth).

    Written by hand: protobuf's own Struct.update refuses depths past its parser's limit,
    and a hostile caller is not bound by it. Struct.fields is field 1 (map entries: key 1,
    value 2); Value.struct_value is field 5, list_value 6, string_value 3; ListValue.values 1.
    """
    value = _field(3, b"x")
    for level in range(depth - 1):
        if level < lists:
            value = _field(6, _field(1, value))
        else:
            value = _field(5, _field(1, _field(1, b"k") + _field(2, value)))
    return _field(1, _field(1, b"k") + _field(2, value))


def _depth_of(struct: struct_pb2.Struct) -> int:
    depth, value = 1, struct.fields["k"]
    while value.WhichOneof("kind") in ("struct_value", "list_value"):
        if value.HasField("struct_value"):
            value = value.struct_value.fields["k"]
        else:
            value = value.list_value.values[0]
        depth += 1
    assert value.string_value == "x"
    return depth


# Every nesting the server accepts must read back; the server refuses metadata deeper than
# a reply can carry (one shape, 34 levels with 2 list levels, used to be stored but unreadable:
# its request parsed within protobuf's depth limit and the listing reply did not).
NESTINGS = [(depth, lists) for depth in range(10, 61) for lists in (0, 1, 2)]


@pytest.mark.parametrize(("depth", "lists"), NESTINGS)
def test_nested_metadata_is_refused_or_readable_back_never_stored_but_unreadable(
    raw_channel: grpc.Channel, auth: Metadata, depth: int, lists: int
) -> None:
    stub = pb_grpc.ApexServiceStub(raw_channel)
    created = stub.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="nest"), metadata=auth, timeout=30
    )
    chat_id, completion_id = created.parsed_chat.id, created.parsed_completion.id
    # UpdateCompletionAttributesRequest: completion_id is field 1, metadata field 3.
    body = _field(1, completion_id.encode()) + _field(3, nested(depth, lists))
    code, details = _call_raw(raw_channel, _methods.UPDATE_COMPLETION_ATTRIBUTES, body, auth)
    if code is not grpc.StatusCode.OK:
        # Refused (the lead's depth limit, or protobuf's own parser limit): fine.
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (depth, lists, details)
        assert details
        return
    # Accepted: both reads that return the metadata must carry it back.
    listed = stub.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=chat_id), metadata=auth, timeout=30
    )
    (stored,) = [c for c in listed.chat_completions if c.id == completion_id]
    assert _depth_of(stored.metadata) == depth
    one = stub.GetChatCompletion(
        pb.GetChatCompletionRequest(completion_id=completion_id), metadata=auth, timeout=30
    )
    assert _depth_of(one.metadata) == depth


LIMIT = 256 * 1024


def test_a_chat_grown_past_the_message_limit_stays_listable(
    start_server: Callable[..., Any], auth: Metadata
) -> None:
    server = start_server(test_knobs=False, max_message_bytes=LIMIT)
    prompt = "p" * (LIMIT // 5)  # each write well under the limit; a few fill a listing
    with grpc.insecure_channel(server.target, options=BIG) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        created = stub.CreateChatAndCompletion(
            pb.CreateChatAndCompletionRequest(user_prompt=prompt), metadata=auth, timeout=30
        )
        chat_id = created.parsed_chat.id
        accepted = 1
        for _ in range(20):
            listed = stub.GetStoredChatCompletions(
                pb.GetStoredChatCompletionsRequest(chat_id=chat_id), metadata=auth, timeout=30
            )
            assert len(listed.chat_completions) == accepted
            request = pb.CreateCompletionRequest(chat_id=chat_id, user_prompt=prompt)
            code, details = _outcome(
                lambda: stub.CreateCompletion(request, metadata=auth, timeout=30)  # noqa: B023
            )
            if code is not grpc.StatusCode.OK:
                assert code is grpc.StatusCode.INVALID_ARGUMENT, details
                break
            accepted += 1
        else:
            pytest.fail("20 writes of a fifth of the limit each were all accepted")
        listed = stub.GetStoredChatCompletions(
            pb.GetStoredChatCompletionsRequest(chat_id=chat_id), metadata=auth, timeout=30
        )
        assert len(listed.chat_completions) == accepted >= 2
