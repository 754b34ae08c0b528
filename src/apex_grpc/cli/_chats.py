"""``apex-grpc chats list|show|delete|search``: the stored chats of your key."""

from __future__ import annotations

import argparse
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from apex_grpc import ApexClient, ChatSession, StoredChatCompletion
from apex_grpc.cli._terminal import Terminal


def when(stamp: Timestamp) -> str:
    """A timestamp as ``2025-01-31 12:00:00Z`` (empty when unset)."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _updated(chat: ChatSession) -> str:
    return when(chat.updated_at) or when(chat.created_at)


def list_chats(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """A table of id, title, type and last update (plain: tab-separated lines)."""
    response = client.chats.list_sessions(args.chat_type)
    if args.json:
        term.json(response)
        return 0
    chats = list(response.chat_sessions)
    if not chats:
        term.note('no chats: `apex-grpc chat --save "..."` stores a conversation as one')
    elif term.fancy:
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        # Ids are copied into other commands: never cut them.
        table.add_column("id", no_wrap=True, min_width=max(len(c.id) for c in chats))
        table.add_column("title", overflow="fold")
        table.add_column("type", no_wrap=True)
        table.add_column("updated", no_wrap=True)
        for chat in chats:
            table.add_row(chat.id, chat.title, chat.chat_type, _updated(chat))
        term.console().print(table)
    else:
        for chat in chats:
            term.line("\t".join((chat.id, chat.title, chat.chat_type, _updated(chat))))
    return 0


def show_chat(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """Each stored completion of the chat: its prompt, then its answer."""
    response = client.chats.list_completions(args.chat_id)
    if args.json:
        term.json(response)
        return 0
    completions = list(response.chat_completions)
    if not completions:
        term.note(f"chat {args.chat_id} has no completions")
    for number, completion in enumerate(completions):
        if number:
            term.line()
        _print_completion(term, completion)
    return 0


def _print_completion(term: Terminal, completion: StoredChatCompletion) -> None:
    heading = f"{when(completion.created_at)}  {completion.id}".strip()
    answer = completion.completion_text or (
        f"(error: {completion.error_message})" if completion.error_message else ""
    )
    if term.fancy:
        from rich.text import Text

        console = term.console()
        console.print(Text(heading, style="dim"))
        console.print(Text("> " + completion.user_prompt_text, style="bold"))
        console.print(Text(answer), soft_wrap=True)
    else:
        term.line(f"# {heading}")
        term.line(f"> {completion.user_prompt_text}")
        term.line(answer)


def delete_chats(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """Delete the chats (all or nothing: an unknown id fails the call)."""
    response = client.chats.delete(args.chat_ids)
    if args.json:
        term.json({"success": response.success, "chat_ids": list(args.chat_ids)})
    else:
        count = len(args.chat_ids)
        term.line(f"deleted {count} chat{'' if count == 1 else 's'}")
    return 0


def search_chats(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """The ids of the chats whose prompts or answers match, one per line."""
    response = client.chats.search(" ".join(args.term))
    if args.json:
        term.json(response)
        return 0
    if not response.chat_ids:
        term.note("no matching chats")
    for chat_id in response.chat_ids:
        term.line(chat_id)
    return 0
