"""Request building and validation: keyword arguments in, a `Prepared` call out, with no I/O.

Each builder takes the client's settings first, checks every argument
(a ValidationError names the argument, e.g. ``messages[2].content``) and
returns what to call, with what, and how.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from apex_grpc._methods import Method, Req, Resp
from apex_grpc._settings.call import CallSettings


class Prepared(NamedTuple, Generic[Req, Resp]):
    """One RPC ready to run: the method, the validated request, and how to run it."""

    method: Method[Req, Resp]
    request: Req
    settings: CallSettings


Builder = TypeVar("Builder", bound=Callable[..., Any])


def builds(method: Method[Any, Any]) -> Callable[[Builder], Builder]:
    """Mark a builder with the method it prepares (the resources read its response type)."""

    def mark(builder: Builder) -> Builder:
        builder.method = method  # type: ignore[attr-defined]
        return builder

    return mark
