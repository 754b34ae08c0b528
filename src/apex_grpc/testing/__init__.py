"""A fake Apex server for testing code that uses apex-grpc, with both clients.

    from apex_grpc.testing import FakeApex, error

    with FakeApex() as fake:
        fake.on("ChatCompletion").reply(error("UNAVAILABLE"), "Hello")
        with fake.client() as client:
            reply = client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "Hello"
        assert len(fake.calls_to("ChatCompletion")) == 2

It serves the real ``apex.v1.ApexService`` over a real grpc server on
loopback, so deadlines, cancellation, retries and metadata behave as in
production. With pytest, the fixtures ``apex_fake``, ``apex_client``,
``async_apex_client`` and ``apex_fake_env`` are ready (see docs/testing.md). Importing
``apex_grpc`` does not import this module.
"""

from apex_grpc.testing._fake import TEST_API_KEY, FakeApex, UnscriptedCallError
from apex_grpc.testing._outcomes import (
    Fail,
    Reply,
    ScriptError,
    Stream,
    completion,
    error,
    research_polls,
    search_results,
    stream,
)
from apex_grpc.testing._routes import RecordedCall, RecordedMetadata, Route

__all__ = [
    "TEST_API_KEY",
    "Fail",
    "FakeApex",
    "RecordedCall",
    "RecordedMetadata",
    "Reply",
    "Route",
    "ScriptError",
    "Stream",
    "UnscriptedCallError",
    "completion",
    "error",
    "research_polls",
    "search_results",
    "stream",
]
