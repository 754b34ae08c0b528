"""Request building and validation: every bad input is a ValidationError naming the argument."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc._requests import chats, research, search
from apex_grpc._settings.client import ClientSettings

from . import _builders
from ._builders import build

pytestmark = pytest.mark.oldest

SETTINGS = ClientSettings.create(api_key="k", base_url="127.0.0.1:1", environ={})


def prepare_chat(params: dict[str, Any], stream: Any) -> Any:
    return _builders.prepare_chat(SETTINGS, params, stream=stream)


class ops:
    web_search = functools.partial(build, search.web_search, SETTINGS)
    submit_deep_research = functools.partial(build, research.submit_deep_research, SETTINGS)
    get_deep_research = functools.partial(build, research.get_deep_research, SETTINGS)
    list_sessions = functools.partial(build, chats.list_sessions, SETTINGS)
    list_completions = functools.partial(build, chats.list_completions, SETTINGS)
    get_completion = functools.partial(build, chats.get_completion, SETTINGS)
    update_chat = functools.partial(build, chats.update_chat, SETTINGS)
    delete_chats = functools.partial(build, chats.delete_chats, SETTINGS)
    create_chat = functools.partial(build, chats.create_chat, SETTINGS)
    create_completion = functools.partial(build, chats.create_completion, SETTINGS)
    delete_completions = functools.partial(build, chats.delete_completions, SETTINGS)
    search_chats = functools.partial(build, chats.search_chats, SETTINGS)
    update_completion = functools.partial(build, chats.update_completion, SETTINGS)


USER = [{"role": "user", "content": "hi"}]


def test_official_defaults_for_sampling_and_seed() -> None:
    request = prepare_chat({"messages": USER}, stream=False).request
    sampling = request.sampling_parameters
    assert (sampling.temperature, sampling.top_p, sampling.max_new_tokens, sampling.do_sample) == (
        0.7,
        0.95,
        4096,
        True,
    )
    assert not sampling.HasField("top_k")
    assert request.HasField("seed") and 0 <= request.seed <= 65535
    assert request.HasField("stream") and request.stream is False
    assert not request.HasField("timeout") and not request.HasField("model")


def test_sampling_dict_is_merged_over_the_defaults() -> None:
    request = prepare_chat(
        {"messages": USER, "sampling_parameters": {"temperature": 0.0, "top_k": 40}}, stream=True
    ).request
    sampling = request.sampling_parameters
    assert sampling.temperature == 0.0 and sampling.top_p == 0.95 and sampling.top_k == 40
    assert request.stream is True


def test_every_request_field_is_reachable_by_keyword() -> None:
    request = prepare_chat(
        {
            "messages": [
                mc.ChatMessage(role="system", content="s"),
                {"role": "user", "content": "u"},
            ],
            "seed": 7,
            "model": "m",
            "task": "InferenceTask",
            "inference_mode": "Reasoning-Fast",
            "uids": [1, 2],
            "test_time_inference": True,
            "mixture": True,
            "json_format": False,
            "timeout": 12.2,
            "sampling_parameters": mc.SamplingParameters(
                temperature=0.1, top_p=0.5, max_new_tokens=9, do_sample=False
            ),
        },
        stream=False,
    ).request
    assert [m.role for m in request.messages] == ["system", "user"]
    assert (request.seed, request.model, request.task, request.inference_mode) == (
        7,
        "m",
        "InferenceTask",
        "Reasoning-Fast",
    )
    assert list(request.uids) == [1, 2]
    assert request.test_time_inference and request.mixture and request.HasField("json_format")
    assert request.timeout == 13  # the server-side budget: whole seconds, rounded up
    assert request.sampling_parameters.max_new_tokens == 9


@pytest.mark.parametrize(
    ("params", "argument"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": {"role": "user", "content": "x"}}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [*USER, {"role": "user", "content": 5}]}, "messages[1].content"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "messages[0]"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": USER, "seed": -1}, "seed"),
        ({"messages": USER, "seed": 2**63}, "seed"),
        ({"messages": USER, "seed": "7"}, "seed"),
        ({"messages": USER, "model": 3}, "model"),
        ({"messages": USER, "uids": [1, -2]}, "uids[1]"),
        ({"messages": USER, "uids": "12"}, "uids"),
        ({"messages": USER, "mixture": "yes"}, "mixture"),
        ({"messages": USER, "timeout": 0}, "timeout"),
        ({"messages": USER, "idle_timeout": -3}, "idle_timeout"),
        ({"messages": USER, "sampling_parameters": {"temp": 1}}, "sampling_parameters.temp"),
        (
            {"messages": USER, "sampling_parameters": {"temperature": -1}},
            "sampling_parameters.temperature",
        ),
        ({"messages": USER, "sampling_parameters": {"top_p": 0}}, "sampling_parameters.top_p"),
        ({"messages": USER, "sampling_parameters": {"top_p": 1.5}}, "sampling_parameters.top_p"),
        ({"messages": USER, "sampling_parameters": {"top_k": 2.5}}, "sampling_parameters.top_k"),
        (
            {"messages": USER, "sampling_parameters": {"max_new_tokens": 0}},
            "sampling_parameters.max_new_tokens",
        ),
        (
            {"messages": USER, "sampling_parameters": {"max_new_tokens": 2**64}},
            "sampling_parameters.max_new_tokens",
        ),
        (
            {"messages": USER, "sampling_parameters": {"max_new_tokens": 1.0}},
            "sampling_parameters.max_new_tokens",
        ),
        (
            {"messages": USER, "sampling_parameters": {"do_sample": 1}},
            "sampling_parameters.do_sample",
        ),
        (
            {"messages": USER, "sampling_parameters": {"temperature": float("nan")}},
            "sampling_parameters.temperature",
        ),
        ({"messages": USER, "sampling_parameters": [0.1]}, "sampling_parameters"),
        (
            {"messages": USER, "sampling_parameters": mc.SamplingParameters(top_p=0.5)},
            "sampling_parameters.max_new_tokens",
        ),
        ({"messages": USER, "metadata": {"authorization": "x"}}, "metadata['authorization']"),
        ({"messages": USER, "max_retries": -1}, "max_retries"),
        ({"messages": USER, "retry": 3}, "retry"),
    ],
)
def test_chat_validation(params: dict[str, Any], argument: str) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        prepare_chat(params, stream=False)
    assert caught.value.argument == argument, str(caught.value)
    assert str(caught.value).startswith(argument)


def test_stream_flag_must_be_a_bool() -> None:
    with pytest.raises(mc.ValidationError):
        prepare_chat({"messages": USER}, stream="yes")  # type: ignore[arg-type]


def test_web_search_defaults_and_deadline() -> None:
    call = ops.web_search("What is Bittensor?")
    assert (call.request.n_results, call.request.n_miners, call.request.max_response_time) == (
        5,
        5,
        30,
    )
    assert call.settings.timeout == 40.0  # max_response_time + 10 s
    seeded = ops.web_search(search_query="q", n_results=3, max_response_time=20)
    assert seeded.request.n_results == 3 and seeded.settings.timeout == 30.0
    assert ops.web_search("q", max_results_per_miner=2).request.n_results == 2
    assert ops.web_search("q", timeout=4.5).request.timeout == 5


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"search_query": ""}, "search_query"),
        ({"search_query": "   "}, "search_query"),
        ({"search_query": None}, "search_query"),
        ({"search_query": "q", "n_results": -1}, "n_results"),
        ({"search_query": "q", "n_results": 0}, "n_results"),
        ({"search_query": "q", "n_results": "3"}, "n_results"),
        ({"search_query": "q", "n_miners": 0}, "n_miners"),
        ({"search_query": "q", "n_miners": 2**63}, "n_miners"),
        ({"search_query": "q", "max_response_time": 0}, "max_response_time"),
        ({"search_query": "q", "max_response_time": "20"}, "max_response_time"),
        (
            {"search_query": "q", "n_results": 2, "max_results_per_miner": 3},
            "max_results_per_miner",
        ),
        ({"search_query": "q", "uids": [True]}, "uids[0]"),
        ({"search_query": "q", "timeout": -1}, "timeout"),
    ],
)
def test_web_search_validation(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        ops.web_search(**kwargs)
    assert caught.value.argument == argument


def test_deep_research_uses_the_official_defaults() -> None:
    request = ops.submit_deep_research(USER).request  # type: ignore[arg-type]
    assert request.task == "InferenceTask" and request.inference_mode == "Chain-of-Thought"
    assert request.HasField("mixture") and request.mixture is False
    assert request.sampling_parameters.max_new_tokens == 8192
    assert request.sampling_parameters.do_sample is False
    assert request.stream is True
    custom = ops.submit_deep_research(USER, task="Other", model="m").request  # type: ignore[arg-type]
    assert custom.task == "Other" and custom.model == "m"


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: ops.get_deep_research(""), "job_id"),
        (lambda: ops.list_completions(""), "chat_id"),
        (lambda: ops.get_completion(None), "completion_id"),
        (lambda: ops.update_chat("c", {}), "attributes"),
        (lambda: ops.update_chat("c", {"title": 3}), "attributes['title']"),
        (lambda: ops.delete_chats([]), "chat_ids"),
        (lambda: ops.delete_chats(["a", ""]), "chat_ids[1]"),
        (lambda: ops.create_chat(""), "user_prompt"),
        (lambda: ops.create_chat("p", title=5), "title"),
        (lambda: ops.create_completion("c", ""), "user_prompt"),
        (lambda: ops.delete_completions(7), "completion_ids"),
        (lambda: ops.search_chats(" "), "search_term"),
        (lambda: ops.update_completion("c"), "completion_id"),
        (
            lambda: ops.update_completion("c", completion_metadata={"x": object()}),
            "completion_metadata",
        ),
        (lambda: ops.list_sessions(chat_type=5), "chat_type"),
    ],
)
def test_chat_session_validation(build: Any, argument: str) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        build()
    assert caught.value.argument == argument


def test_chat_session_requests() -> None:
    assert list(ops.delete_chats("one").request.chat_ids) == ["one"]
    update = ops.update_completion("c", completion_text="t", completion_metadata={"a": [1, "b"]})
    assert update.request.completion_text == "t"
    assert not update.request.HasField("user_prompt_text")
    assert update.request.metadata["a"][1] == "b"
    created = ops.create_chat("hello")
    assert created.request.chat_type == "apex" and not created.request.HasField("title")


def test_drawn_seeds_cover_the_official_range_and_stay_in_it() -> None:
    import random

    random.seed(20261126)  # deterministic draws
    seeds = [prepare_chat({"messages": USER}, stream=False).request.seed for _ in range(400)]
    assert all(0 <= seed <= 65535 for seed in seeds)
    assert max(seeds) > 60000 and min(seeds) < 5000  # the whole range, not a corner of it
