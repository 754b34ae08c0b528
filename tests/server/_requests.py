"""Request builders shared by the server tests (the `chat` fixture and the socketless tests)."""

from __future__ import annotations

from apex_grpc_proto.apex.v1 import apex_pb2 as pb


def chat_request(*turns: str | tuple[str, str], **fields: object) -> pb.ChatCompletionRequest:
    """A chat request: ``chat_request("hi")`` or ``chat_request(("system", "..."), ("user", "x"))``.

    A bare string is a user turn; keyword arguments are other request fields.
    """
    messages = [
        pb.ChatMessage(role="user", content=turn)
        if isinstance(turn, str)
        else pb.ChatMessage(role=turn[0], content=turn[1])
        for turn in turns
    ]
    return pb.ChatCompletionRequest(messages=messages, **fields)  # type: ignore[arg-type]
