"""What a scripted call does: answer, stream chunks, or fail; and builders for each (pure).

An outcome is a value: `Reply` (a unary answer), `Stream` (chunks with
delays, optionally ending in an error) or `Fail` (a status with details and
trailing metadata). `as_outcome` turns what a user scripts (a string, a
response message, bytes, an outcome) into the outcome a method can play, and
refuses what that method could never answer with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from apex_grpc import _methods
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

Metadata = tuple[tuple[str, str | bytes], ...]

FAKE_MODEL = "apex-fake"
"""The model name the builders put in responses unless told otherwise."""


class ScriptError(ValueError):
    """A script the fake cannot play: a wrong response type, an unknown method, a bad value."""


@dataclass(frozen=True)
class Reply:
    """A unary call's answer: the response message, and the metadata sent with it."""

    message: Message | bytes
    """The response, of the method's response type (bytes: sent as they are, undecoded)."""
    initial_metadata: Metadata = ()
    """Sent with the response headers."""
    trailing_metadata: Metadata = ()
    """Sent with the status."""


@dataclass(frozen=True)
class Fail:
    """The call ends with this status (see `error`)."""

    code: grpc.StatusCode
    """The status code (never OK)."""
    details: str = ""
    """The status message the client's error carries."""
    trailing_metadata: Metadata = ()
    """Sent with the status (``grpc-retry-pushback-ms``, ``x-request-id``...)."""


@dataclass(frozen=True)
class Stream:
    """A ChatCompletionStream answer: chunks with delays, then OK or `then` (see `stream`)."""

    chunks: tuple[pb.ChatCompletionChunkResponse, ...]
    """The chunks, in order."""
    delay: float = 0.0
    """Seconds between two chunks."""
    first_delay: float = 0.0
    """Seconds between the response headers and the first chunk."""
    then: Fail | None = None
    """The error the stream ends with after its chunks (None: it ends OK)."""
    trailing_metadata: Metadata = field(default=())
    """Sent with the OK status at the end."""
    initial_metadata: Metadata = field(default=())
    """Sent with the response headers, before the first chunk."""


Outcome = Reply | Fail | Stream


def completion(
    text: str = "",
    *,
    id: str = "chatcmpl-fake",
    model: str = FAKE_MODEL,
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = None,
) -> pb.ChatCompletionResponse:
    """A ChatCompletionResponse with one assistant choice saying `text`.

    usage: ``(prompt_tokens, completion_tokens)`` to fill ``usage`` with.
    """
    response = pb.ChatCompletionResponse(
        id=id,
        model=model,
        object="chat.completion",
        choices=[
            pb.Choice(
                index=0,
                finish_reason=finish_reason,
                message=pb.ChatCompletionMessage(role="assistant", content=text),
            )
        ],
    )
    if usage is not None:
        prompt, generated = usage
        response.usage.CopyFrom(
            pb.CompletionUsage(
                prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated
            )
        )
    return response


def stream(
    *chunks: str | pb.ChatCompletionChunkResponse,
    delay: float = 0.0,
    first_delay: float = 0.0,
    then: Fail | None = None,
    id: str = "chatcmpl-fake",
    model: str = FAKE_MODEL,
    finish_reason: str = "stop",
    trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    initial_metadata: Iterable[tuple[str, str | bytes]] = (),
) -> Stream:
    """A stream of chunks: each string becomes a content delta (the last carries `finish_reason`).

    delay: seconds between chunks; first_delay: seconds before the first;
    then: an `error(...)` to end with after the chunks instead of OK (no
    ``finish_reason`` is sent then). Chunk messages are sent as given.
    trailing_metadata: sent with the OK status at the end; initial_metadata:
    with the response headers (``x-request-id``...).
    """
    check_seconds("delay", delay)
    check_seconds("first_delay", first_delay)
    if then is not None and not isinstance(then, Fail):
        raise ScriptError(f"stream(then=...) takes an error(...), got {then!r}")
    built = []
    for index, chunk in enumerate(chunks):
        if isinstance(chunk, pb.ChatCompletionChunkResponse):
            built.append(chunk)
        elif isinstance(chunk, str):
            last = index == len(chunks) - 1 and then is None
            built.append(
                pb.ChatCompletionChunkResponse(
                    id=id,
                    model=model,
                    object="chat.completion.chunk",
                    choices=[
                        pb.ChunkChoice(
                            index=0,
                            delta=pb.ChoiceDelta(
                                content=chunk, role="assistant" if index == 0 else ""
                            ),
                            finish_reason=finish_reason if last else "",
                        )
                    ],
                )
            )
        else:
            raise ScriptError(
                f"stream() chunk {index} must be a str or a ChatCompletionChunkResponse, "
                f"got {type(chunk).__name__}"
            )
    return Stream(
        tuple(built),
        delay=delay,
        first_delay=first_delay,
        then=then,
        trailing_metadata=tuple(trailing_metadata),
        initial_metadata=tuple(initial_metadata),
    )


def error(
    code: grpc.StatusCode | str,
    details: str = "",
    *,
    trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    retry_pushback_ms: int | None = None,
) -> Fail:
    """The call fails with `code` (a grpc.StatusCode or its name, e.g. "UNAVAILABLE").

    retry_pushback_ms: sent as ``grpc-retry-pushback-ms``, the server's hint
    of how long to wait before retrying (negative: do not retry).
    """
    if isinstance(code, str):
        try:
            code = grpc.StatusCode[code.upper()]
        except KeyError:
            names = ", ".join(c.name for c in grpc.StatusCode)
            raise ScriptError(f"error(): unknown status code {code!r} (one of {names})") from None
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        raise ScriptError(f"error() needs a status code other than OK, got {code!r}")
    trailing = tuple(trailing_metadata)
    if retry_pushback_ms is not None:
        trailing += (("grpc-retry-pushback-ms", str(int(retry_pushback_ms))),)
    return Fail(code, details or f"scripted {code.name}", trailing)


def search_results(*results: tuple[str, str] | pb.WebSearchResult) -> pb.WebRetrievalResponse:
    """A WebRetrievalResponse from ``(url, content)`` pairs or WebSearchResult messages."""
    built = []
    for index, result in enumerate(results):
        if isinstance(result, pb.WebSearchResult):
            built.append(result)
        elif isinstance(result, tuple) and len(result) == 2:
            url, content = result
            built.append(pb.WebSearchResult(url=url, content=content, relevant=content))
        else:
            raise ScriptError(
                f"search_results() result {index} must be (url, content) or a WebSearchResult"
            )
    return pb.WebRetrievalResponse(results=built)


def research_polls(
    job_id: str,
    *,
    statuses: Sequence[str] = ("pending", "running"),
    chunks: Sequence[str] = (),
    error: str | None = None,
) -> list[pb.GetDeepResearcherJobResponse]:
    """What successive GetDeepResearcherJob polls of one job return.

    One poll per status in `statuses` (no results yet), then one poll per
    result chunk (status "running", each poll carrying the chunks so far,
    as the server does), then a last poll: "completed" with every chunk,
    or "failed" with `error` when it is given.
    """
    if not job_id:
        raise ScriptError("research_polls(): job_id must not be empty")
    made = [_chunk(seq, text) for seq, text in enumerate(chunks)]
    polls = [pb.GetDeepResearcherJobResponse(job_id=job_id, status=s) for s in statuses]
    polls += [
        pb.GetDeepResearcherJobResponse(job_id=job_id, status="running", result=made[: n + 1])
        for n in range(len(made) - 1)
    ]
    last = pb.GetDeepResearcherJobResponse(
        job_id=job_id, status="failed" if error else "completed", result=made
    )
    if error:
        last.error = error
    return [*polls, last]


def _chunk(seq: int, text: str) -> pb.DeepResearcherResultChunk:
    # The API's chunk: a JSON array whose [0]["content"] is the text (apex_grpc.chunk_text).
    return pb.DeepResearcherResultChunk(
        seq_id=seq, chunk=json.dumps([{"content": text}], ensure_ascii=False)
    )


def as_outcome(method: _methods.Method[Any, Any], value: object) -> Outcome:
    """What `value` means as `method`'s answer; ScriptError if the method cannot answer so."""
    if isinstance(value, Fail):
        return value
    if method.server_streaming:
        if isinstance(value, str):
            return stream(value)
        if isinstance(value, Stream):
            return value
        raise ScriptError(
            f"{method.name} streams: script it with stream(...), a str or error(...), "
            f"not {type(value).__name__}"
        )
    if isinstance(value, str) and method is _methods.CHAT_COMPLETION:
        return Reply(completion(value))
    if isinstance(value, bytes):
        return Reply(value)  # a response the client may not decode: for testing just that
    message = value.message if isinstance(value, Reply) else value
    if not isinstance(message, method.response_type):
        raise ScriptError(
            f"{method.name} answers {method.response_type.__name__}, not {type(message).__name__}"
        )
    return value if isinstance(value, Reply) else Reply(message)


def method_named(name: str) -> _methods.Method[Any, Any]:
    """The RPC called `name` (e.g. "ChatCompletion"); ScriptError naming the known ones if none."""
    for method in _methods.ALL_METHODS:
        if name in (method.name, method.path):
            return method
    known = ", ".join(m.name for m in _methods.ALL_METHODS)
    raise ScriptError(f"apex.v1.ApexService has no method {name!r} (it has {known})")


def check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ScriptError(f"{name} must be seconds >= 0, got {value!r}")
