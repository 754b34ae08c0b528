"""Every public method of the resources, and arguments that make a valid call of each."""

from __future__ import annotations

import inspect
from typing import Any

from apex_grpc._resources.chat import Completions
from apex_grpc._resources.chats import Chats
from apex_grpc._resources.deep_research import DeepResearch
from apex_grpc._resources.web_search import WebSearch

USER = {"role": "user", "content": "hello"}
RESOURCES: dict[str, type] = {
    # where each resource class hangs on a client
    "chat.completions": Completions,
    "web_search": WebSearch,
    "deep_research": DeepResearch,
    "chats": Chats,
}
# Valid arguments of each method, by its path from the client.
VALID: dict[str, dict[str, Any]] = {
    "chat.completions.create": {"messages": [USER]},
    "web_search.search": {"search_query": "q"},
    "deep_research.submit": {"messages": [USER]},
    "deep_research.create_job": {"messages": [USER]},
    "deep_research.get": {"job_id": "job-1"},
    "deep_research.get_job_results": {"job_id": "job-1"},
    "deep_research.follow": {"job_id": "job-1"},
    "deep_research.stream": {"job_id": "job-1"},
    "deep_research.wait": {"job_id": "job-1"},
    "chats.list_sessions": {},
    "chats.list_completions": {"chat_id": "chat-1"},
    "chats.get_completion": {"completion_id": "cmpl-1"},
    "chats.update": {"chat_id": "chat-1", "attributes": {"title": "t"}},
    "chats.delete": {"chat_ids": ["chat-1"]},
    "chats.create": {"user_prompt": "hi"},
    "chats.create_completion": {"chat_id": "chat-1", "user_prompt": "hi"},
    "chats.delete_completions": {"completion_ids": ["cmpl-1"]},
    "chats.search": {"search_term": "term"},
    "chats.update_completion": {"completion_id": "cmpl-1", "completion_text": "x"},
    "chats.list_deep_research_completions": {},
}


def parameters(path: str) -> dict[str, inspect.Parameter]:
    """The parameters of the method at `path` (e.g. ``chats.update``), read from its class."""
    resource, name = path.rsplit(".", 1)
    return dict(inspect.signature(getattr(RESOURCES[resource], name)).parameters)


def bound(client: object, path: str) -> Any:
    """The method at `path` on `client`."""
    target: Any = client
    for part in path.split("."):
        target = getattr(target, part)
    return target


def every_method() -> list[str]:
    """The path of every public method of the resources."""
    return sorted(
        f"{path}.{name}"
        for path, resource in RESOURCES.items()
        for name, _ in inspect.getmembers(resource, inspect.isfunction)
        if not name.startswith("_")
    )
