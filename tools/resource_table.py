"""The hand-written part of the resource classes: each method's name, parameters and docs.

tools/resource_codegen.py turns each row into a plain method of the sync class
and an ``async def`` of the async one; the call options every method also
takes come from `CallOptions`, the response type from the proto.
"""

from __future__ import annotations

from typing import NamedTuple


class Rpc(NamedTuple):
    """One unary resource method: `name` calls `builder` and runs `rpc` (the proto's name)."""

    name: str
    rpc: str
    builder: str
    params: tuple[str, ...]
    doc: str


CHATS = (
    Rpc(
        "list_sessions",
        "GetChatSessions",
        "chats.list_sessions",
        ('chat_type: str = ""',),
        'List your chats, optionally only those of one `chat_type` (e.g. "apex").',
    ),
    Rpc(
        "list_completions",
        "GetStoredChatCompletions",
        "chats.list_completions",
        ("chat_id: str",),
        "List the stored completions of one of your chats.",
    ),
    Rpc(
        "get_completion",
        "GetChatCompletion",
        "chats.get_completion",
        ("completion_id: str",),
        "Fetch one stored completion by id.",
    ),
    Rpc(
        "update",
        "UpdateChatAttributes",
        "chats.update_chat",
        ("chat_id: str", "attributes: Mapping[str, str]"),
        'Change attributes of a chat (e.g. ``{"title": "..."}``); returns the chat.',
    ),
    Rpc(
        "delete",
        "DeleteChats",
        "chats.delete_chats",
        ("chat_ids: str | Sequence[str]",),
        "Delete chats (one id or a list), with their completions.",
    ),
    Rpc(
        "create",
        "CreateChatAndCompletion",
        "chats.create_chat",
        (
            "user_prompt: str",
            "*",
            'chat_type: str = "apex"',
            'completion_type: str = "basic"',
            "title: str | None = None",
        ),
        "Start a chat with its first prompt; returns the chat and its completion.",
    ),
    Rpc(
        "create_completion",
        "CreateCompletion",
        "chats.create_completion",
        ("chat_id: str", "user_prompt: str", "*", 'completion_type: str = "basic"'),
        "Add a prompt (and its completion) to one of your chats.",
    ),
    Rpc(
        "delete_completions",
        "DeleteCompletions",
        "chats.delete_completions",
        ("completion_ids: str | Sequence[str]",),
        "Delete stored completions (one id or a list).",
    ),
    Rpc(
        "search",
        "SearchChatIdsByPromptAndCompletionText",
        "chats.search_chats",
        ("search_term: str",),
        "Ids of your chats whose prompts or answers match `search_term`.",
    ),
    Rpc(
        "update_completion",
        "UpdateCompletionAttributes",
        "chats.update_completion",
        (
            "completion_id: str",
            "*",
            "completion_text: str | None = None",
            "user_prompt_text: str | None = None",
            "completion_metadata: Mapping[str, Any] | None = None",
        ),
        "Change a stored completion's text, prompt or metadata.\n\n"
        "completion_metadata: a JSON-like dict merged into the stored metadata\n"
        "(the request's `metadata` field; `metadata=` is the call's gRPC metadata).",
    ),
    Rpc(
        "list_deep_research_completions",
        "GetCompletionsWithDeepResearcherEntry",
        "chats.list_deep_research_completions",
        (),
        "Your stored completions that carry deep-research metadata.",
    ),
)

WEB_SEARCH = (
    Rpc(
        "search",
        "WebRetrieval",
        "search.web_search",
        (
            "search_query: str",
            "*",
            "n_results: int | None = None",
            "max_response_time: float | None = None",
            "n_miners: int | None = None",
            "uids: Sequence[int] | None = None",
            "max_results_per_miner: int | None = None",
        ),
        "Search the web through subnet miners.\n\n"
        "search_query: what to look for (required, non-empty).\n"
        "n_results: how many results to return (default 5);\n"
        "    `max_results_per_miner` is the official SDK's (2.1.0) name for it.\n"
        "max_response_time: seconds miners may take (default 30). Unless a timeout\n"
        "    is set on the call or the client, the call's deadline is this plus\n"
        "    10 seconds.\n"
        "n_miners: how many miners to ask (default 5).\n"
        "uids: specific miner UIDs to ask (default: the validator chooses).",
    ),
)

_SUBMIT_DOC = (
    "Start a deep-research job; returns its id and status at once.\n\n"
    "Takes the chat-completion keywords (messages, sampling_parameters, seed,\n"
    "model, uids, ...) with the official SDK's (2.1.0) deep-research defaults: task\n"
    '"InferenceTask", inference_mode "Chain-of-Thought", mixture False,\n'
    "max_new_tokens 8192, do_sample False."
)
MESSAGES = "messages: Sequence[MessageParam | pb.ChatMessage]"
DEEP_RESEARCH = (
    Rpc(
        "submit",
        "SubmitDeepResearcherJob",
        "research.submit_deep_research",
        (MESSAGES, "*", "FIELDS"),
        _SUBMIT_DOC,
    ),
    Rpc(
        "create_job",
        "SubmitDeepResearcherJob",
        "research.submit_deep_research",
        (MESSAGES, "*", "FIELDS"),
        "The official SDK's (2.1.0) name for `submit`.\n\n" + _SUBMIT_DOC,
    ),
    Rpc(
        "get",
        "GetDeepResearcherJob",
        "research.get_deep_research",
        ("job_id: str",),
        "Fetch a deep-research job: its status and the result chunks so far.",
    ),
    Rpc(
        "get_job_results",
        "GetDeepResearcherJob",
        "research.get_deep_research",
        ("job_id: str",),
        "The official SDK's (2.1.0) name for `get`.\n\nFetch a deep-research job: its status and "
        "the result chunks so far.",
    ),
)
