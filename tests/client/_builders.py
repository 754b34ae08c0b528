"""The request builders called as the resource methods call them, for the pure tests.

A resource method passes its call options as one mapping (`call_options`) and
its own arguments by name; these helpers split a test's keywords the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from apex_grpc._requests import chat
from apex_grpc._settings.call import CallOptions, StreamOptions
from apex_grpc._settings.client import ClientSettings

OPTION_NAMES = frozenset(CallOptions.__optional_keys__) | frozenset(StreamOptions.__optional_keys__)


def build(builder: Callable[..., Any], settings: ClientSettings, *args: Any, **kwargs: Any) -> Any:
    """`builder` given the options among `kwargs` as its options mapping."""
    options = {k: v for k, v in kwargs.items() if k in OPTION_NAMES}
    own = {k: v for k, v in kwargs.items() if k not in OPTION_NAMES}
    return builder(settings, options, *args, **own)


def prepare_chat(settings: ClientSettings, params: Mapping[str, Any], *, stream: Any) -> Any:
    """`chat.completions.create(**params, stream=stream)`'s request, as the method builds it."""
    fields = dict(params)
    messages = fields.pop("messages", None)  # None: refused as "must be a list of messages"
    return build(chat.prepare_chat, settings, messages, stream=stream, **fields)
