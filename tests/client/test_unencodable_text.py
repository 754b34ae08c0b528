"""Text UTF-8 cannot encode (a lone surrogate) is a ValidationError naming the argument.

protobuf refuses such text with a bare UnicodeEncodeError (upb) or ValueError (its Python
implementation); the request builders turn it into the error every other bad argument
gets, before any I/O. The cases are every text argument of every resource method, read
from the signatures, on both clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc._requests.validate import unencodable
from apex_grpc.testing import FakeApex

from ._methods_table import USER, VALID, bound, every_method, parameters
from .conftest import Client, settle

pytestmark = pytest.mark.oldest

BAD = "a\ud800b"
# The bad text where an argument is not a plain string, and the name the error must give.
PLACED: dict[str, tuple[Any, str]] = {
    "messages": ([USER, {"role": "user", "content": BAD}], "messages[1].content"),
    "chat_ids": (["chat-1", BAD], "chat_ids[1]"),
    "completion_ids": (["cmpl-1", BAD], "completion_ids[1]"),
    "attributes": ({"title": BAD}, "attributes['title']"),
    "completion_metadata": ({"notes": [1, {"by": BAD}]}, "completion_metadata['notes'][1]['by']"),
}


def text_arguments() -> Iterator[tuple[str, str]]:
    """(method, argument) for each argument whose annotation takes text, of every method."""
    for method in every_method():
        for parameter in parameters(method).values():
            annotation = str(parameter.annotation)
            if "str" in annotation or "Message" in annotation:
                yield method, parameter.name


CASES = sorted(text_arguments())


def test_every_method_is_in_the_table() -> None:
    methods = {method for method, _ in CASES}
    assert len(CASES) >= 40 and methods <= set(VALID)
    assert methods == set(VALID) - {"chats.list_deep_research_completions"}


async def run(call: Any) -> None:
    """Call; a poller (a generator) runs until its first poll."""
    result = await settle(call())
    if isinstance(result, Iterator):
        next(result)
    elif hasattr(result, "__anext__"):
        await result.__anext__()


@pytest.mark.parametrize(("method", "argument"), CASES)
async def test_text_that_cannot_be_encoded_is_a_validation_error_naming_it(
    either_client: Client, apex_fake: FakeApex, method: str, argument: str
) -> None:
    value, named = PLACED.get(argument, (BAD, argument))
    target = bound(either_client, method)
    arguments = {**VALID[method], argument: value}
    with pytest.raises(mc.ValidationError) as caught:
        await run(lambda: target(**arguments))
    assert caught.value.argument == named
    if argument != "idempotency_key":  # refused earlier, as not visible ASCII
        assert caught.value.problem == "cannot be encoded as UTF-8: '\\ud800' at index 1"
    assert apex_fake.requests == []  # refused before any call


def test_the_first_text_at_fault_is_named_and_other_errors_pass_through() -> None:
    found = unencodable(ValueError("x"), {"title": "ok", "tags": ["ok", BAD], "model": BAD})
    assert isinstance(found, mc.ValidationError) and found.argument == "tags[1]"
    other = ValueError("not about text")
    assert unencodable(other, {"title": "fine", "tags": ["ok", {"k": "v"}]}) is other
    refused = mc.ValidationError("title", "must be a string, got int")
    assert unencodable(refused, {"title": BAD}) is refused
