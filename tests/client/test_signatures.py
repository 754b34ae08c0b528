"""Every public method of both clients tells the truth to inspect.signature, help() and IDEs."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc import _methods
from apex_grpc._requests import chats, research, search
from apex_grpc._settings.call import StreamOptions

pytestmark = pytest.mark.oldest

RESOURCES = ("chat.completions", "completions", "web_search", "deep_research", "chats")

# Each unary resource method, and the RPC whose response it returns.
RPC_METHODS = {
    "web_search.search": (search.web_search, _methods.WEB_RETRIEVAL),
    "deep_research.submit": (research.submit_deep_research, _methods.SUBMIT_DEEP_RESEARCHER_JOB),
    "deep_research.create_job": (
        research.submit_deep_research,
        _methods.SUBMIT_DEEP_RESEARCHER_JOB,
    ),
    "deep_research.get": (research.get_deep_research, _methods.GET_DEEP_RESEARCHER_JOB),
    "deep_research.get_job_results": (
        research.get_deep_research,
        _methods.GET_DEEP_RESEARCHER_JOB,
    ),
    "chats.list_sessions": (chats.list_sessions, _methods.GET_CHAT_SESSIONS),
    "chats.list_completions": (chats.list_completions, _methods.GET_STORED_CHAT_COMPLETIONS),
    "chats.get_completion": (chats.get_completion, _methods.GET_CHAT_COMPLETION),
    "chats.update": (chats.update_chat, _methods.UPDATE_CHAT_ATTRIBUTES),
    "chats.delete": (chats.delete_chats, _methods.DELETE_CHATS),
    "chats.create": (chats.create_chat, _methods.CREATE_CHAT_AND_COMPLETION),
    "chats.create_completion": (chats.create_completion, _methods.CREATE_COMPLETION),
    "chats.delete_completions": (chats.delete_completions, _methods.DELETE_COMPLETIONS),
    "chats.search": (chats.search_chats, _methods.SEARCH_CHAT_IDS_BY_PROMPT_AND_COMPLETION_TEXT),
    "chats.update_completion": (chats.update_completion, _methods.UPDATE_COMPLETION_ATTRIBUTES),
    "chats.list_deep_research_completions": (
        chats.list_deep_research_completions,
        _methods.GET_COMPLETIONS_WITH_DEEP_RESEARCHER_ENTRY,
    ),
}


def clients() -> list[Any]:
    options = {"api_key": "k", "base_url": "127.0.0.1:1", "secure": False}
    return [mc.ApexClient(**options), mc.AsyncApexClient(**options)]


def public_methods(client: Any) -> Iterator[tuple[str, Any]]:
    """(dotted name, bound method) for every public method of the client and its resources."""
    owners = [("", client)] + [(f"{path}.", _resolve(client, path)) for path in RESOURCES]
    for prefix, owner in owners:
        for name in dir(owner):
            if name.startswith("_") or isinstance(
                inspect.getattr_static(owner, name, None), property
            ):
                continue  # (the async client's channel needs a running loop)
            value = getattr(owner, name)
            if inspect.ismethod(value):
                yield prefix + name, value


def _resolve(client: Any, path: str) -> Any:
    for part in path.split("."):
        client = getattr(client, part)
    return client


@pytest.mark.parametrize("client", clients(), ids=["sync", "async"])
def test_every_public_method_tells_the_truth(client: Any) -> None:
    seen = 0
    for dotted, method in public_methods(client):
        seen += 1
        name = dotted.rsplit(".", 1)[-1]
        assert method.__name__ == name, dotted
        owner, _, qualified_name = method.__qualname__.rpartition(".")
        assert qualified_name == name, dotted
        assert owner in {klass.__qualname__ for klass in type(method.__self__).__mro__}, dotted
        assert method.__doc__ and method.__doc__.strip(), f"{dotted} has no docstring"
        signature = inspect.signature(method)
        for parameter in signature.parameters.values():
            # **kwargs hides the real keywords from help() and IDEs (with_options takes
            # **changes typed by the ClientOptions TypedDict, which help() shows).
            if dotted != "with_options":
                assert parameter.kind is not inspect.Parameter.VAR_KEYWORD, f"{dotted}: {parameter}"
        returns = signature.return_annotation
        assert returns is not inspect.Signature.empty, f"{dotted} says nothing of its result"
        assert "Prepared" not in str(returns) and "Call[" not in str(returns), dotted
    assert seen >= 20


@pytest.mark.parametrize("client", clients(), ids=["sync", "async"])
@pytest.mark.parametrize("dotted", sorted(RPC_METHODS))
def test_rpc_methods_are_plain_functions_with_the_builders_parameters_and_response(
    client: Any, dotted: str
) -> None:
    builder, rpc = RPC_METHODS[dotted]
    method = _resolve(client, dotted)
    # A plain def of its own name, in a module of its own (go-to-definition lands there).
    assert method.__func__.__code__.co_name == dotted.rsplit(".", 1)[1]
    assert method.__module__.startswith("apex_grpc._resources.")
    assert not hasattr(method.__func__, "__signature__"), "no signature rewriting"
    signature = inspect.signature(method)
    own = list(inspect.signature(builder).parameters.values())[2:]  # no settings, options
    spelled = dict(signature.parameters)
    for parameter in own:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:  # submit: the chat fields
            for name in mc.ChatCompletionParams.__annotations__:
                if (
                    name not in mc.CallOptions.__annotations__
                    and name not in StreamOptions.__annotations__
                ):
                    assert name in spelled, f"{dotted} hides the request field {name}"
            continue
        assert spelled[parameter.name].default == parameter.default, dotted
    for option in mc.CallOptions.__annotations__:
        assert spelled[option].default is mc.NOT_GIVEN, f"{dotted} hides the call option {option}"
        assert spelled[option].kind is inspect.Parameter.KEYWORD_ONLY
    hints = typing.get_type_hints(method)
    assert hints["return"] is rpc.response_type
    assert mc.NotGiven in typing.get_args(hints["timeout"])
    is_async = isinstance(client, mc.AsyncApexClient)
    assert inspect.iscoroutinefunction(method) is is_async


def test_both_clients_show_the_same_parameters() -> None:
    sync, aio = clients()
    sync_methods = dict(public_methods(sync))
    aio_methods = dict(public_methods(aio))
    shared = (set(sync_methods) & set(aio_methods)) - {"channel", "close", "wait_until_ready"}
    assert {"web_search.search", "chats.update", "chat.completions.create"} <= shared
    for dotted in shared:
        sync_parameters = inspect.signature(sync_methods[dotted]).parameters
        assert sync_parameters == inspect.signature(aio_methods[dotted]).parameters, dotted


def test_the_examples_from_the_issue() -> None:
    client = clients()[0]
    assert "search_query" in inspect.signature(client.web_search.search).parameters
    update = client.chats.update
    assert update.__name__ == "update" and "chat_id" in inspect.signature(update).parameters
    create = inspect.signature(client.chat.completions.create)
    assert create.parameters["messages"].default is inspect.Parameter.empty  # required
    assert "max_response_time" in (client.web_search.search.__doc__ or "")
    constructor = inspect.signature(mc.ApexClient)
    assert constructor.parameters["app_name"].default == "apex-grpc"
    assert "timeout: overall deadline" in (mc.ApexClient.__init__.__doc__ or "")
    hints = typing.get_type_hints(mc.ApexClient.__init__)
    assert mc.NotGiven in typing.get_args(hints["timeout"])
