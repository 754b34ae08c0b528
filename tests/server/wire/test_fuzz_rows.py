"""Hypothesis on rows that exist: edit, read and delete real chats and completions with
non-ASCII and boundary text.

Each example creates a chat for a fresh user, applies one drawn operation, and compares what
the server then returns with what a model of the operation predicts: never INTERNAL or
UNKNOWN, an accepted edit reads back exactly what was written (GetChatCompletion,
GetStoredChatCompletions, GetChatSessions), and a refused one is INVALID_ARGUMENT (NOT_FOUND
for unknown ids) and leaves every row as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

pytestmark = pytest.mark.oldest

OK, INVALID, NOT_FOUND = (
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
)
# The server's documented limits (src/apex_grpc_server/_wire/validation.py and _service.py).
MAX_TITLE_CHARS = 1024
MAX_ID_CHARS = 128
MAX_METADATA_BYTES = 256 * 1024

# Emoji (with ZWJ and skin tone), combining marks, RTL and bidi overrides, NUL, BOM, line
# and paragraph separators, the last code point, and text FTS5 treats as syntax.
TRICKY = [
    "",
    " ",
    "\u3000",
    "\x00",
    "a\x00b",
    "🚀",
    "👩🏽‍👩‍👧‍👦",
    "e\u0301\u0323",
    "क्षि",
    "שלום עולם",
    "مرحبا بالعالم",
    "\u202eevil\u202c",
    "\ufeffbom",
    "line\u2028para\u2029",
    "\U0010ffff",
    '"NEAR(*',
]
# Any code point but surrogates, which are not valid in a proto string.
text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(TRICKY)
prose = text.filter(lambda t: t.strip() and "\x00" not in t)  # a chat that can be created
ident = text | st.uuids().map(str) | st.just("x" * (MAX_ID_CHARS + 1))
json_value = st.recursive(
    st.none() | st.booleans() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy`, or None (the field is not sent)."""
    return st.none() | strategy


edit_completion = st.tuples(
    st.just("edit completion"),
    st.fixed_dictionaries(
        {
            "completion_text": optional(text),
            "user_prompt_text": optional(text),
            "metadata": optional(st.dictionaries(text, json_value, max_size=4)),
        }
    ),
)
OPERATIONS = st.one_of(
    edit_completion,
    st.tuples(st.just("rename chat"), text),
    st.tuples(st.just("delete completion"), st.lists(ident, max_size=2)),
    st.tuples(st.just("delete chat"), st.lists(ident, max_size=2)),
    st.tuples(st.just("read a lookalike id"), text.filter(bool)),
)


@dataclass
class Rows:
    """One user's chat with one completion, as the server returns them."""

    auth: tuple[tuple[str, str], ...]
    chat_id: str
    completion_id: str


@dataclass
class Seen:
    """Everything the server shows about a Rows: None for what does not exist (NOT_FOUND)."""

    completion: pb.StoredChatCompletion | None
    chat_completions: list[pb.StoredChatCompletion] | None
    title: str | None


def status(call: Callable[[], Any]) -> tuple[grpc.StatusCode, Any]:
    """(OK, what `call` returned), or the status code and details it failed with."""
    try:
        return OK, call()
    except grpc.RpcError as error:
        return error.code(), error.details()


def look(stub: pb_grpc.ApexServiceStub, rows: Rows) -> Seen:
    """Read the rows back through every RPC that shows them."""
    found, completion = status(
        lambda: stub.GetChatCompletion(
            pb.GetChatCompletionRequest(completion_id=rows.completion_id), metadata=rows.auth
        )
    )
    assert found in (OK, NOT_FOUND), (found, completion)
    listed, stored = status(
        lambda: stub.GetStoredChatCompletions(
            pb.GetStoredChatCompletionsRequest(chat_id=rows.chat_id), metadata=rows.auth
        )
    )
    assert listed in (OK, NOT_FOUND), (listed, stored)
    sessions = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=rows.auth)
    titles = [s.title for s in sessions.chat_sessions if s.id == rows.chat_id]
    return Seen(
        completion if found is OK else None,
        list(stored.chat_completions) if listed is OK else None,
        titles[0] if titles else None,
    )


def plain(patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` as the server stores it: a google.protobuf.Struct's JSON values."""
    return json_format.MessageToDict(struct(patch))


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """A google.protobuf.Struct holding `value`."""
    message = struct_pb2.Struct()
    message.update(value)
    return message


def finite(value: Any) -> bool:
    """Whether every number in a JSON value is finite (the server refuses NaN and infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def predict_edit(before: pb.StoredChatCompletion, fields: dict[str, Any]) -> Any:
    """The status an edit must get, and the completion it must leave behind."""
    sent = {name: value for name, value in fields.items() if value is not None}
    prompt, patch = sent.get("user_prompt_text"), sent.get("metadata")
    refused = (
        not sent
        or (prompt is not None and not prompt.strip())
        or any("\x00" in sent.get(name, "") for name in ("completion_text", "user_prompt_text"))
        or (patch is not None and not finite(patch))
        or (patch is not None and len(json.dumps(plain(patch))) > MAX_METADATA_BYTES)
    )
    if refused:
        return INVALID, before
    after = pb.StoredChatCompletion()
    after.CopyFrom(before)
    for name in ("completion_text", "user_prompt_text"):
        if name in sent:
            setattr(after, name, sent[name])
    if patch is not None:
        merged = json_format.MessageToDict(before.metadata)
        for key, value in plain(patch).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        after.metadata.CopyFrom(struct(merged))
    return OK, after


def predict_delete(existing: str, extra: list[str]) -> grpc.StatusCode:
    """The status of deleting `existing` with `extra` ids: all or nothing."""
    ids = [existing, *extra]
    if any(not i or len(i) > MAX_ID_CHARS or "\x00" in i for i in ids):
        return INVALID
    return NOT_FOUND if any(i != existing for i in ids) else OK


@pytest.fixture
def rows_server(start_server):
    # Any key is a user of its own, so each example starts with an empty account.
    return start_server(api_keys=frozenset(), allow_any_key=True, test_knobs=False)


@contextlib.contextmanager
def fresh_chat(target: str, prompt: str) -> Iterator[tuple[pb_grpc.ApexServiceStub, Rows]]:
    """A stub, and a chat with one completion belonging to a user of its own."""
    auth = (("authorization", f"Bearer {uuid.uuid4().hex}"),)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        created = stub.CreateChatAndCompletion(
            pb.CreateChatAndCompletionRequest(user_prompt=prompt), metadata=auth
        )
        yield stub, Rows(auth, created.parsed_chat.id, created.parsed_completion.id)


DELETES = {
    "delete completion": (
        "DeleteCompletions",
        pb.DeleteCompletionsRequest,
        "completion_ids",
        "completion_id",
    ),
    "delete chat": ("DeleteChats", pb.DeleteChatsRequest, "chat_ids", "chat_id"),
}
"""Each delete operation: the RPC, its request type, the request's id list, the Rows id."""

Plan = tuple[grpc.StatusCode, Callable[[], Any], Seen, Any]
"""The status an operation must get, the call making it (returning the part of the answer to
check), what the rows must look like afterwards, and that part of the answer (None: any)."""


def plan(stub: pb_grpc.ApexServiceStub, rows: Rows, before: Seen, op: str, value: Any) -> Plan:
    """What `op` with `value` must do to rows that look like `before`."""
    auth = rows.auth
    if op == "edit completion":
        request = pb.UpdateCompletionAttributesRequest(completion_id=rows.completion_id)
        for name, field in value.items():
            if name == "metadata" and field is not None:
                request.metadata.CopyFrom(struct(field))
            elif field is not None:
                setattr(request, name, field)
        want, completion = predict_edit(before.completion, value)
        return (
            want,
            lambda: stub.UpdateCompletionAttributes(request, metadata=auth).completion,
            Seen(completion, [completion], before.title),
            completion,
        )
    if op == "rename chat":
        valid = bool(value.strip()) and len(value) <= MAX_TITLE_CHARS and "\x00" not in value
        rename = pb.UpdateChatAttributesRequest(chat_id=rows.chat_id, attributes={"title": value})
        return (
            OK if valid else INVALID,
            lambda: stub.UpdateChatAttributes(rename, metadata=auth).chat.title,
            Seen(before.completion, before.chat_completions, value) if valid else before,
            value,
        )
    if op in DELETES:
        method, request_type, ids_field, row = DELETES[op]
        existing = getattr(rows, row)
        request = request_type(**{ids_field: [existing, *value]})
        want = predict_delete(existing, value)
        # A deleted completion leaves its chat, empty; a deleted chat takes everything.
        gone = Seen(None, [], before.title) if row == "completion_id" else Seen(None, None, None)
        return (
            want,
            lambda: getattr(stub, method)(request, metadata=auth).success,
            gone if want is OK else before,
            True,
        )
    # A read of an id that is not ours (ours plus a suffix) must never return our row.
    other = rows.completion_id + value
    return (
        NOT_FOUND if len(other) <= MAX_ID_CHARS and "\x00" not in other else INVALID,
        lambda: stub.GetChatCompletion(
            pb.GetChatCompletionRequest(completion_id=other), metadata=auth
        ),
        before,
        None,
    )


def boundary(op: str, value: Any) -> Any:
    """An operation hypothesis always tries, whatever it draws."""
    return example(prompt="boundary", operation=(op, value))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prompt=prose, operation=OPERATIONS)
@boundary("rename chat", "é" * MAX_TITLE_CHARS)
@boundary("rename chat", "🚀" * (MAX_TITLE_CHARS + 1))
@boundary("rename chat", "\u3000" * 3)
@boundary("edit completion", {"completion_text": ""})
@boundary("edit completion", {"completion_text": "naïve\x00 👩🏽‍👩‍👧‍👦 שלום e\u0301"})
@boundary("edit completion", {"user_prompt_text": " \u3000\n"})
@boundary(
    "edit completion", {"metadata": {"k": "é" * 10_000 + "x" * (MAX_METADATA_BYTES - 60_009)}}
)
@boundary(
    "edit completion", {"metadata": {"k": "é" * 10_000 + "x" * (MAX_METADATA_BYTES - 60_008)}}
)
@boundary("edit completion", {"metadata": {"gone": None, "n": float("nan")}})
def test_edits_of_existing_rows_read_back_exactly(rows_server, prompt, operation) -> None:
    with fresh_chat(rows_server.target, prompt) as (stub, rows):
        before = look(stub, rows)
        assert before.completion is not None and before.completion.user_prompt_text == prompt
        assert before.chat_completions == [before.completion]
        want, call, expected, expected_answer = plan(stub, rows, before, *operation)
        code, answer = status(call)
        assert code is want, (operation[0], code, answer)
        assert look(stub, rows) == expected
        if want is OK and expected_answer is not None:
            assert answer == expected_answer


def test_a_large_non_ascii_edit_reads_back_exactly(rows_server) -> None:
    """1.8 MiB of emoji sequences, compared by digest so a failure prints a line, not 1.8 MiB."""
    big = "👩🏽\u200d👩\u200d👧\u200d👦" * 2**16
    with fresh_chat(rows_server.target, "short") as (stub, rows):
        request = pb.UpdateCompletionAttributesRequest(
            completion_id=rows.completion_id, completion_text=big
        )
        code, answer = status(lambda: stub.UpdateCompletionAttributes(request, metadata=rows.auth))
        assert code is OK, answer
        seen = look(stub, rows)
        assert seen.completion is not None and seen.chat_completions is not None
        texts = [
            answer.completion.completion_text,
            seen.completion.completion_text,
            seen.chat_completions[0].completion_text,
        ]
        digest = hashlib.sha256(big.encode()).hexdigest()
        assert [hashlib.sha256(t.encode()).hexdigest() for t in texts] == [digest] * 3


def test_an_edit_too_large_to_send_back_is_refused_and_changes_nothing(start_server) -> None:
    limit = 64 * 1024
    server = start_server(api_keys=frozenset(), allow_any_key=True, max_message_bytes=limit)
    with fresh_chat(server.target, "short") as (stub, rows):
        before = look(stub, rows)
        # The request fits the limit; the stored completion (text, prompt, ids, timestamps)
        # that every read must send back does not.
        request = pb.UpdateCompletionAttributesRequest(
            completion_id=rows.completion_id, completion_text="a" * (limit - 100)
        )
        assert request.ByteSize() < limit
        code, answer = status(lambda: stub.UpdateCompletionAttributes(request, metadata=rows.auth))
        assert code in (OK, INVALID), (code, answer)
        after = look(stub, rows)
        if code is OK:
            assert after.completion is not None
            assert after.completion.completion_text == request.completion_text
        else:
            assert after == before
