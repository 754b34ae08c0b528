"""Every refusal of a bad argument says which argument and what is wrong with it, in words.

`test_requests.py` checks which argument each error names; these check the
whole message a user reads, and the edges of what is accepted.
"""

from __future__ import annotations

import math
import pickle
from types import MappingProxyType
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc._requests import chats
from apex_grpc._settings.checks import NOT_GIVEN, NotGiven
from apex_grpc._settings.client import ClientSettings

from . import _builders
from ._builders import prepare_chat

pytestmark = pytest.mark.oldest

SETTINGS = ClientSettings.create(api_key="k", base_url="127.0.0.1:1", environ={})
USER = [{"role": "user", "content": "hi"}]


def build(stream: bool = False, **params: Any) -> Any:
    return prepare_chat(SETTINGS, {"messages": USER, **params}, stream=stream)


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    """`argument: problem` of the ValidationError `call` raises."""
    with pytest.raises(mc.ValidationError) as caught:
        call(*args, **kwargs)
    error = caught.value
    assert str(error) == f"{error.argument}: {error.problem}"
    return str(error)


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ("hi", "messages: must be a list of messages, got str"),
        ({"role": "user"}, "messages: must be a list of messages, got dict"),
        (42, "messages: must be a list of messages, got int"),
        ([], "messages: must not be empty"),
        ([{"role": "user"}], "messages[0]: missing 'content'"),
        ([{"role": "user", "content": "a", "name": "x"}], "messages[0]: unexpected key 'name'"),
        ([{"content": "a"}], "messages[0]: missing 'role'"),
        (  # keys of any type are named, the first by their text
            [{"role": "user", "content": "a", "name": "x", 1: "y"}],
            "messages[0]: unexpected key 1",
        ),
        ([{"role": "user", "x": "a"}], "messages[0]: missing 'content'"),
        ([*USER, "hi"], "messages[1]: must be a dict or ChatMessage, got str"),
        (
            [{"role": "bot", "content": "a"}],
            "messages[0].role: unknown role 'bot' (expected one of system, user, assistant)",
        ),
        ([{"role": "user", "content": 3}], "messages[0].content: must be a string, got int"),
        (
            [{"role": "user", "content": None}],
            "messages[0].content: must be a string, got NoneType",
        ),
    ],
)
def test_bad_messages(messages: Any, message: str) -> None:
    assert refusal(prepare_chat, SETTINGS, {"messages": messages}, stream=False) == message


def test_messages_may_be_any_sequence_of_dicts_mappings_or_chat_messages() -> None:
    given = (
        {"role": "system", "content": "be brief"},
        MappingProxyType({"content": "hi", "role": "user"}),
        mc.ChatMessage(role="assistant", content="hello"),
    )
    request = prepare_chat(SETTINGS, {"messages": given}, stream=False).request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "be brief"),
        ("user", "hi"),
        ("assistant", "hello"),
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temp": 1}, "sampling_parameters.temp: unknown sampling parameter"),
        ({"temp": 1, 2: 1}, "sampling_parameters.2: unknown sampling parameter"),
        ({"top_p": "all"}, "sampling_parameters.top_p: must be a number, got 'all'"),
        ({"top_k": "5"}, "sampling_parameters.top_k: must be a number, got '5'"),
        ({"temperature": -0.5}, "sampling_parameters.temperature: must be >= 0, got -0.5"),
        ({"temperature": "hot"}, "sampling_parameters.temperature: must be a number, got 'hot'"),
        ({"temperature": True}, "sampling_parameters.temperature: must be a number, got True"),
        ({"temperature": math.inf}, "sampling_parameters.temperature: must be finite, got inf"),
        ({"top_p": 0}, "sampling_parameters.top_p: must be in (0, 1], got 0.0"),
        ({"top_p": 1.01}, "sampling_parameters.top_p: must be in (0, 1], got 1.01"),
        ({"top_k": -1}, "sampling_parameters.top_k: must be a whole number >= 0, got -1"),
        ({"top_k": 2.5}, "sampling_parameters.top_k: must be a whole number >= 0, got 2.5"),
        ({"max_new_tokens": 0}, "sampling_parameters.max_new_tokens: must be >= 1, got 0"),
        (
            {"max_new_tokens": 2**63},
            f"sampling_parameters.max_new_tokens: must be <= {2**63 - 1}, got {2**63}",
        ),
        (
            {"max_new_tokens": "9"},
            "sampling_parameters.max_new_tokens: must be an integer, got str",
        ),
        ({"do_sample": 1}, "sampling_parameters.do_sample: must be True or False, got 1"),
    ],
)
def test_bad_sampling_parameters(values: dict[str, Any], message: str) -> None:
    assert refusal(build, sampling_parameters=values) == message


def test_sampling_parameters_must_be_a_dict_or_the_message() -> None:
    assert refusal(build, sampling_parameters=[0.1]) == (
        "sampling_parameters: must be a dict or SamplingParameters, got list"
    )


def test_the_edges_of_the_sampling_parameters_are_accepted() -> None:
    given = {"temperature": 0, "top_p": 1, "top_k": 0, "max_new_tokens": 1, "do_sample": False}
    got = build(sampling_parameters=given).request.sampling_parameters
    assert (got.temperature, got.top_p, got.top_k, got.max_new_tokens, got.do_sample) == (
        0.0,
        1.0,
        0,
        1,
        False,
    )
    message = mc.SamplingParameters(temperature=0.2, top_p=0.5, max_new_tokens=7, top_k=3)
    got = build(sampling_parameters=message).request.sampling_parameters
    assert (got.temperature, got.top_p, got.max_new_tokens, got.top_k, got.do_sample) == (
        pytest.approx(0.2),
        0.5,
        7,
        3,
        False,
    )
    assert not build(
        sampling_parameters=mc.SamplingParameters(top_p=0.5, max_new_tokens=7)
    ).request.sampling_parameters.HasField("top_k")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seed": -1}, "seed: must be >= 0, got -1"),
        ({"seed": 2**63}, f"seed: must be <= {2**63 - 1}, got {2**63}"),
        ({"seed": 1.0}, "seed: must be an integer, got float"),
        ({"uids": "1,2"}, "uids: must be a list of integers, got str"),
        ({"uids": 7}, "uids: must be a list of integers, got int"),
        ({"uids": [1, -1]}, "uids[1]: must be an integer >= 0, got -1"),
        ({"uids": [True]}, "uids[0]: must be an integer >= 0, got True"),
        ({"uids": [2**63]}, f"uids[0]: must be an integer >= 0, got {2**63}"),
        ({"model": 3}, "model: must be a string, got int"),
        ({"mixture": "yes"}, "mixture: must be True or False, got 'yes'"),
    ],
)
def test_bad_request_fields(params: dict[str, Any], message: str) -> None:
    assert refusal(build, **params) == message


def test_the_edges_of_the_request_fields_are_accepted() -> None:
    request = build(seed=2**63 - 1, uids=[0, 2**63 - 1], mixture=True, model="m").request
    assert request.seed == 2**63 - 1 and list(request.uids) == [0, 2**63 - 1]
    assert request.mixture is True and request.model == "m"
    assert build(seed=0).request.seed == 0


def test_stream_is_a_bool_and_call_info_is_for_unary_calls() -> None:
    assert refusal(prepare_chat, SETTINGS, {"messages": USER}, stream=1) == (
        "stream: must be True or False, got 1"
    )
    assert refusal(build, stream=True, call_info=mc.CallInfo()) == (
        "call_info: is for unary calls; a stream has initial_metadata() and trailing_metadata()"
    )
    with pytest.raises(TypeError, match="messages"):  # a plain keyword: Python names it
        mc.ApexClient(api_key="k", base_url="127.0.0.1:1").chat.completions.create()  # type: ignore[call-overload]
    assert build(call_info=mc.CallInfo()).method.path.endswith("/ChatCompletion")
    assert build(stream=True).method.path.endswith("/ChatCompletionStream")


def test_the_servers_time_budget_is_the_calls_whole_seconds_rounded_up() -> None:
    assert build(timeout=2.1).request.timeout == 3
    assert build(timeout=0.2).request.timeout == 1
    assert not build(timeout=None).request.HasField("timeout")
    assert not build().request.HasField("timeout")  # no timeout chosen: no budget is sent
    limited = ClientSettings.create(environ={}, api_key="k", timeout=30)
    assert prepare_chat(limited, {"messages": USER}, stream=False).request.timeout == 30


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([], "chat_ids: must not be empty"),
        (b"c1", "chat_ids: must be an id or a list of ids, got bytes"),
        (3, "chat_ids: must be an id or a list of ids, got int"),
        (["c1", " "], "chat_ids[1]: must not be empty"),
        (["c1", 2], "chat_ids[1]: must be a string, got int"),
    ],
)
def test_bad_ids(ids: Any, message: str) -> None:
    assert refusal(_builders.build, chats.delete_chats, SETTINGS, ids) == message


def test_one_id_or_several() -> None:
    assert list(_builders.build(chats.delete_chats, SETTINGS, "c1").request.chat_ids) == ["c1"]
    assert list(_builders.build(chats.delete_chats, SETTINGS, ("c1", "c2")).request.chat_ids) == [
        "c1",
        "c2",
    ]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("x=1", "metadata: must be a dict or a list of (key, value) pairs, got str"),
        ([("a", "1"), ["b", "2"]], "metadata[1]: must be a (key, value) pair"),
        ([("a", "1", "2")], "metadata[0]: must be a (key, value) pair"),
        ({"X-Up": "1"}, "metadata['X-Up']: keys must be non-empty lowercase ASCII strings"),
        ({"": "1"}, "metadata['']: keys must be non-empty lowercase ASCII strings"),
        ({"é": "1"}, "metadata['é']: keys must be non-empty lowercase ASCII strings"),
        ({1: "1"}, "metadata[1]: keys must be non-empty lowercase ASCII strings"),
        (
            {"grpc-timeout": "1"},
            "metadata['grpc-timeout']: is reserved; set the API key with api_key=",
        ),
        ({"te": "x"}, "metadata['te']: is reserved; set the API key with api_key="),
        (
            {"content-type": "x"},
            "metadata['content-type']: is reserved; set the API key with api_key=",
        ),
        ({"x-bin": "text"}, "metadata['x-bin']: values of -bin keys must be bytes"),
        ({"x": b"raw"}, "metadata['x']: values must be printable ASCII strings"),
        ({"x": "é"}, "metadata['x']: values must be printable ASCII strings"),
        ({"x": "a\nb"}, "metadata['x']: values must be printable ASCII strings"),
        ({"x": "a\rb"}, "metadata['x']: values must be printable ASCII strings"),
    ],
)
def test_bad_metadata(metadata: Any, message: str) -> None:
    assert refusal(build, metadata=metadata) == message


def test_metadata_as_a_dict_or_pairs_and_bytes_for_bin_keys() -> None:
    sent = build(metadata=[("x-a", "1"), ("x-b-bin", b"\x00")]).settings.metadata
    assert sent[-2:] == (("x-a", "1"), ("x-b-bin", b"\x00"))
    assert build(metadata={"x-a": "1"}).settings.metadata[-1] == ("x-a", "1")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": "5"}, "timeout: must be a number of seconds, got str"),
        ({"timeout": True}, "timeout: must be a number of seconds, got bool"),
        ({"timeout": 0}, "timeout: must be > 0 seconds, got 0"),
        ({"timeout": math.nan}, "timeout: must be > 0 seconds, got nan"),
        ({"timeout": math.inf}, "timeout: must be > 0 seconds, got inf"),
        ({"max_retries": -1}, "max_retries: must be an integer >= 0, got -1"),
        ({"max_retries": True}, "max_retries: must be an integer >= 0, got True"),
        ({"max_retries": 1.0}, "max_retries: must be an integer >= 0, got 1.0"),
        ({"compression": 1}, "compression: must be True or False, got 1"),
        ({"wait_for_ready": "no"}, "wait_for_ready: must be True or False, got 'no'"),
    ],
)
def test_bad_call_options(options: dict[str, Any], message: str) -> None:
    assert refusal(build, **options) == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_message_bytes": 0}, "max_message_bytes: must be >= 1, got 0"),
        ({"max_message_bytes": 1.5}, "max_message_bytes: must be an integer, got 1.5"),
        ({"max_message_bytes": True}, "max_message_bytes: must be an integer, got True"),
        ({"keepalive": 30}, "keepalive: must be a KeepAliveConfig, got int"),
        ({"tls": "yes"}, "tls: must be a TLSConfig, got str"),
        ({"compression": "gzip"}, "compression: must be True or False, got 'gzip'"),
    ],
)
def test_bad_client_options(options: dict[str, Any], message: str) -> None:
    assert refusal(ClientSettings.create, environ={}, api_key="k", **options) == message


def test_the_edges_of_the_client_and_call_options_are_accepted() -> None:
    settings = ClientSettings.create(environ={}, api_key="k", max_message_bytes=1, tls=None)
    assert settings.max_message_bytes == 1
    prepared = build(timeout=1e-3, max_retries=0, compression=False, wait_for_ready=None)
    assert prepared.settings.timeout == 1e-3 and prepared.settings.retry.max_retries == 0
    assert prepared.settings.compression is None


def test_not_given_is_falsy_named_and_one_of_a_kind() -> None:

    assert not NOT_GIVEN and repr(NOT_GIVEN) == "NOT_GIVEN" and NotGiven() is NOT_GIVEN
    assert pickle.loads(pickle.dumps(NOT_GIVEN)) is NOT_GIVEN
