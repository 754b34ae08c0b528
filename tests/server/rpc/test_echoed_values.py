"""Error messages repeat a caller's bad value only as a short prefix with its length.

A status message travels as trailing metadata, which grpc limits (8-16 KB): one
that repeated a 10k-100k character value in full reached the client as
RESOURCE_EXHAUSTED, at random, instead of the INVALID_ARGUMENT it was.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._status import MAX_DETAILS_CHARS, SHOWN_CHARS, RpcAbort, shown

pytestmark = pytest.mark.oldest

SIZES = [100, 9_000, 17_000, 100_000]


def refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details()


def assert_short(details: str, size: int) -> None:
    assert f"... ({size} characters)" in details or f"... ({size + 2} characters)" in details
    assert len(details) < 300


@pytest.mark.parametrize("size", SIZES)
def test_a_long_role_is_invalid_argument_with_a_short_message(
    stub: pb_grpc.ApexServiceStub, auth: tuple, size: int
) -> None:
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="r" * size, content="hi")])
    code, details = refusal(lambda: stub.ChatCompletion(request, metadata=auth))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"messages[0].role: unknown role {'r' * SHOWN_CHARS!r}...")
    assert_short(details, size)


@pytest.mark.parametrize("size", SIZES)
def test_a_long_attribute_key_is_invalid_argument_with_a_short_message(
    stub: pb_grpc.ApexServiceStub, auth: tuple, size: int
) -> None:
    request = pb.UpdateChatAttributesRequest(chat_id="c", attributes={"k" * size: "v"})
    code, details = refusal(lambda: stub.UpdateChatAttributes(request, metadata=auth))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("attributes: unknown attribute 'kkkk")
    assert_short(details, size)


@pytest.mark.parametrize("size", SIZES)
def test_a_long_metadata_key_in_an_error_path_is_cut(
    stub: pb_grpc.ApexServiceStub, auth: tuple, size: int
) -> None:
    created = stub.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="hello"), metadata=auth
    )
    metadata = struct_pb2.Struct()
    metadata.update({"m" * size: float("nan")})
    request = pb.UpdateCompletionAttributesRequest(
        completion_id=created.parsed_completion.id, metadata=metadata
    )
    code, details = refusal(lambda: stub.UpdateCompletionAttributes(request, metadata=auth))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("metadata['mmmm")
    assert "numbers must be finite" in details
    assert_short(details, size)


def test_shown_keeps_short_values_whole_and_cuts_long_ones() -> None:
    assert shown("bot") == "'bot'"
    assert shown(2.5) == "2.5"
    assert shown("x" * SHOWN_CHARS) == repr("x" * SHOWN_CHARS)
    assert (
        shown("x" * (SHOWN_CHARS + 1)) == f"{'x' * SHOWN_CHARS!r}... ({SHOWN_CHARS + 1} characters)"
    )


def test_every_status_message_is_capped() -> None:
    """The last line of defence, for a message built from anything: RpcAbort cuts it."""
    abort = RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, "y" * 50_000)
    assert len(abort.details) <= MAX_DETAILS_CHARS + 30
    assert abort.details.endswith("... (50000 characters)")
    assert RpcAbort(grpc.StatusCode.INTERNAL, "short").details == "short"
