"""``apex-grpc chat --save``: turns that are stored chats, listed by ``apex-grpc chats list``.

The stored-chat RPCs answer a prompt and store it in one call
(CreateChatAndCompletion starts a chat, CreateCompletion adds to it), so
each answer is generated once, on the server, which also keeps the history
(it sends the chat's recent turns with each prompt). Storing a streamed
conversation afterwards would mean generating every answer a second time:
those RPCs always generate. The cost of --save: the answer comes whole, not
streamed, and the request carries only the prompt (no system message, model
or sampling flags), so those flags are refused with it.
"""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from apex_grpc import ApexClient, ParsedCompletion
from apex_grpc.cli._errors import UsageError
from apex_grpc.cli._terminal import Terminal

# The chat flags a stored-chat request has no field for, as the user spells them.
_NOT_STORABLE = {
    "system": "--system",
    "model": "--model",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "max_new_tokens": "--max-new-tokens",
    "seed": "--seed",
    "greedy": "--greedy",
}


def check_flags(args: argparse.Namespace) -> None:
    """Refuse --save with a flag the stored-chat RPCs cannot carry (a usage error)."""
    given = [flag for name, flag in _NOT_STORABLE.items() if getattr(args, name)]
    if given:
        raise UsageError(
            f"--save cannot be used with {', '.join(given)}: a stored chat is answered by the"
            " server from the prompt alone"
        )


class StoredChat:
    """Each turn goes through the stored-chat RPCs; the first one creates the chat."""

    def __init__(self, client: ApexClient, args: argparse.Namespace, term: Terminal) -> None:
        check_flags(args)
        self.client = client
        self.as_json = bool(args.json)
        self.term = term
        self.chat_id: str | None = None

    def ask(self, prompt: str) -> None:
        """Answer `prompt` in the stored chat (a new one for the first prompt) and print it."""
        if self.chat_id is None:
            created = self.client.chats.create(prompt)
            self._show(created, created.parsed_completion)
            self.chat_id = created.parsed_chat.id
            self.term.note(f"(saved as chat {self.chat_id}: apex-grpc chats show {self.chat_id})")
        else:
            added = self.client.chats.create_completion(self.chat_id, prompt)
            self._show(added, added.parsed_completion)

    def reset(self) -> str:
        """Start a new stored chat with the next prompt; returns what to tell the user."""
        self.chat_id = None
        return "(history cleared: the next prompt starts a new saved chat)"

    def _show(self, response: Message, completion: ParsedCompletion) -> None:
        if self.as_json:
            self.term.json(response)
        else:
            self.term.line(completion.completion_text)
