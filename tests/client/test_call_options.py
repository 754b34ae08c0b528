"""Per-call options resolved over the client's defaults (`resolve`), with no I/O."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._requests.chats import list_sessions
from apex_grpc._settings.call import CallSettings
from apex_grpc._settings.client import ClientSettings

from ._builders import build, prepare_chat

pytestmark = pytest.mark.oldest

USER = [{"role": "user", "content": "hi"}]


def client(**options: Any) -> ClientSettings:
    return ClientSettings.create(environ={}, api_key="k", **options)


def unary(settings: ClientSettings, **call: Any) -> CallSettings:
    # timeout= makes every call resolve its options (a call with none takes the defaults whole).
    return build(list_sessions, settings, **{"timeout": 30.0, **call}).settings


def chat(settings: ClientSettings, **call: Any) -> CallSettings:
    call = {"timeout": 30.0, **call}
    return prepare_chat(settings, {"messages": USER, **call}, stream=True).settings


def test_a_call_without_options_runs_with_the_clients_defaults() -> None:
    settings = client(compression=True, wait_for_ready=True, stream_idle_timeout=2.0)
    assert build(list_sessions, settings).settings == settings.call_defaults


@pytest.mark.parametrize(
    ("client_default", "per_call", "expected"),
    [
        (False, None, None),
        (True, None, grpc.Compression.Gzip),
        (False, True, grpc.Compression.Gzip),
        (True, False, None),
    ],
)
def test_compression_per_call_overrides_the_client(
    client_default: bool, per_call: bool | None, expected: grpc.Compression | None
) -> None:
    call = {} if per_call is None else {"compression": per_call}
    assert unary(client(compression=client_default), **call).compression is expected


@pytest.mark.parametrize(
    ("client_default", "per_call", "expected"),
    [(False, None, None), (True, None, True), (False, True, True), (True, False, None)],
)
def test_wait_for_ready_per_call_overrides_the_client(
    client_default: bool, per_call: bool | None, expected: bool | None
) -> None:
    call = {} if per_call is None else {"wait_for_ready": per_call}
    assert unary(client(wait_for_ready=client_default), **call).wait_for_ready is expected


def test_call_metadata_comes_after_the_clients() -> None:
    settings = client(metadata={"x-team": "a"})
    plain = unary(settings)
    assert plain.metadata == settings.call_defaults.metadata and ("x-team", "a") in plain.metadata
    extra = unary(settings, metadata={"x-trace": "t1"}).metadata
    assert extra[: len(plain.metadata)] == plain.metadata
    assert extra[len(plain.metadata) :] == (("x-trace", "t1"),)


def test_stream_limits_default_to_the_clients_and_a_call_can_change_them() -> None:
    settings = client(stream_first_chunk_timeout=3.0, stream_idle_timeout=4.0)
    inherited = chat(settings)
    assert (inherited.first_chunk_timeout, inherited.idle_timeout) == (3.0, 4.0)
    own = chat(settings, first_chunk_timeout=1.0, idle_timeout=None)
    assert (own.first_chunk_timeout, own.idle_timeout) == (1.0, None)


def test_stream_limits_are_refused_by_methods_that_do_not_stream() -> None:
    for name in ("first_chunk_timeout", "idle_timeout"):
        with pytest.raises(mc.ValidationError) as caught:
            build(list_sessions, client(), **{name: 1.0})
        assert caught.value.argument == name
        assert caught.value.problem == "unexpected keyword argument"


def test_a_retry_policy_and_max_retries_per_call() -> None:
    policy = mc.RetryPolicy(max_retries=5, initial_backoff=0.1)
    assert unary(client(), retry=policy).retry is policy
    assert unary(client(), retry=policy, max_retries=1).retry.max_retries == 1
    assert unary(client(retry=policy)).retry is policy
    # None means "not given", as it does for the client's own max_retries and retry.
    assert unary(client(retry=policy), max_retries=None, retry=None).retry is policy


@pytest.mark.parametrize(
    ("options", "argument", "problem"),
    [
        ({"retry": "twice"}, "retry", "must be a RetryPolicy, got str"),
        ({"call_info": {}}, "call_info", "must be a CallInfo, got dict"),
        ({"compression": "gzip"}, "compression", ""),
        ({"wait_for_ready": 1}, "wait_for_ready", ""),
        ({"timeout": -1}, "timeout", ""),
    ],
)
def test_a_bad_call_option_names_itself(
    options: dict[str, Any], argument: str, problem: str
) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        unary(client(), **options)
    assert caught.value.argument == argument and problem in caught.value.problem


def test_an_unknown_call_option_is_a_type_error_naming_it() -> None:
    with mc.ApexClient(api_key="k", base_url="127.0.0.1:1") as c:
        with pytest.raises(TypeError, match="retries"):
            c.chats.list_sessions(retries=3)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="first_chunk_timeout"):
            c.chats.list_sessions(first_chunk_timeout=1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["first_chunk_timeout", "idle_timeout"])
def test_a_bad_stream_limit_names_itself(name: str) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        chat(client(), **{name: 0})
    assert caught.value.argument == name


def test_metadata_checked_once_is_remembered_and_a_bad_one_never_is() -> None:
    constant = (("x-trace", "t1"),)
    first, again = unary(client(), metadata=constant), unary(client(), metadata=constant)
    assert first.metadata[-1] == again.metadata[-1] == ("x-trace", "t1")
    bad = (("X-Trace", "t1"),)
    for _ in range(2):  # refused every time, not remembered as checked
        with pytest.raises(mc.ValidationError, match="lowercase") as caught:
            unary(client(), metadata=bad)
        assert caught.value.argument == "metadata['X-Trace']"
    with pytest.raises(mc.ValidationError):  # an unhashable entry: checked, and refused
        unary(client(), metadata=(("x-a", ["list"]),))
